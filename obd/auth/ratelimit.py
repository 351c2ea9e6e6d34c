"""Failure counting for the token endpoint: too many failed attempts from one client
id or one address within a window, and further attempts get 429 until it passes."""

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterator

MAX_KEYS = 10_000  # tracked clients/addresses; expired ones are dropped past this


class FailureLimit:
    def __init__(self, max_failures: int, window_s: float) -> None:
        self._max = max_failures
        self._window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}  # attempts being checked now, by key

    def retry_after_s(self, *keys: str) -> int:
        """0 when an attempt may go ahead; else whole seconds until one may. Attempts
        still being checked count as failures until they settle."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self._max:
                wait = max(wait, times[0] + self._window_s - now)
            elif len(times) + self._pending.get(key, 0) >= self._max:
                wait = max(wait, 1.0)  # the ones in flight settle within a second
        return math.ceil(wait) if wait > 0 else 0

    @contextlib.contextmanager
    def attempt(self, *keys: str) -> Iterator[None]:
        """Hold a place for an attempt while its secret is checked (scrypt, off the loop):
        concurrent wrong secrets cannot all pass `retry_after_s` before the first fails."""
        for key in keys:
            self._pending[key] = self._pending.get(key, 0) + 1
        try:
            yield
        finally:
            for key in keys:
                if (left := self._pending[key] - 1) > 0:
                    self._pending[key] = left
                else:
                    del self._pending[key]

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= MAX_KEYS:
            self._forget_expired(now)
        for key in keys:
            times = self._failures.setdefault(key, deque(maxlen=self._max))
            times.append(now)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self._window_s:
            times.popleft()
        return times

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self._window_s]:
            del self._failures[key]
        if len(self._failures) >= MAX_KEYS:  # a flood of fresh keys: start over
            self._failures.clear()
