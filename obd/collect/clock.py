"""Time as the samplers see it: wall-clock µs, and sleeping until an instant. The
seam lets the slot logic be tested without waiting for real seconds."""

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int:
        """Wall-clock time, µs since the epoch."""
        ...

    async def sleep_until_us(self, at_us: int) -> None:
        """Return once `now_us() >= at_us`."""
        ...


class WallClock:
    def now_us(self) -> int:
        return time.time_ns() // 1_000

    async def sleep_until_us(self, at_us: int) -> None:
        """Loop timers run on a coarser monotonic clock and may fire a hair early, so
        check and top up."""
        while (left_us := at_us - self.now_us()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
            await asyncio.sleep(max(left_us / 1e6, 0.0005))


WALL = WallClock()
