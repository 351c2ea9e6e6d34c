"""Capped, jittered exponential backoff for reconnect loops."""

import random


class Backoff:
    """ "Equal jitter": a random pause in [c/2, c] with c = min(cap, base * 2**failures),
    so coins that fail together do not retry together, yet never retry at once."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def next_pause_s(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.failures, 32))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0
