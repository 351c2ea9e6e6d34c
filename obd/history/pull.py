"""A blocking generator (a download being parsed) consumed from the event loop: each
step runs on a worker thread and hands over a batch, so the loop never waits on I/O."""

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

BATCH = 64  # items handed from the worker thread to the loop a step


async def pulled(make: Callable[[], Iterator[T]], size: int = BATCH) -> AsyncGenerator[T, None]:
    """The items of `make()` (called on a worker thread), `size` a step; closing this
    closes the generator on a worker thread too (it may close a socket)."""
    holder: list[Iterator[T]] = []
    # A cancelled request leaves its step running on the thread: closing waits for it
    # (a generator cannot be closed while it runs).
    running = threading.Lock()

    def step() -> list[T]:
        with running:
            if not holder:
                holder.append(make())
            batch: list[T] = []
            for item in holder[0]:
                batch.append(item)
                if len(batch) == size:
                    break
            return batch

    def close() -> None:
        with running:
            if holder and (end := getattr(holder[0], "close", None)) is not None:
                end()

    try:
        while batch := await asyncio.to_thread(step):
            for item in batch:
                yield item
    finally:
        await asyncio.to_thread(close)
