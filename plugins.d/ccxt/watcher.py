"""One watched symbol's wake-ups, driven by the frames of its connection."""

import asyncio
import time
from typing import Any

from obd.plugin import FeedError

from .books import now_ms, version

_HEARTBEAT_S = 0.2  # a quiet book is re-confirmed at most this often (frames permitting)


class Watcher:
    """One watched symbol, woken by every frame of its connection that matters: at once
    when ccxt changed its book (ccxt applies diffs it has no waiter to tell, and a
    change noticed late would be stamped late), and at most every `_HEARTBEAT_S` when
    the connection merely spoke (the heartbeat that proves a quiet book current). A
    frame that proved the book wrong (a failed checksum, a sequence gap ccxt let by)
    is kept as `failure`, for the watch loop to raise."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.source: Any = None  # ccxt's book object, once a watch returned it
        self.version: tuple[Any, Any] = (None, None)  # of the book last yielded
        self.wake = asyncio.Event()
        self.client: Any = None  # the ccxt websocket client it listens to
        self.heard = False  # a frame arrived since the last yield
        self.ticked = False  # time to look at the connection and the listing
        self.failure: Exception | None = None
        # When a frame last changed this book (ms): the book is verified as of then. A
        # loss found at a later frame makes everything served since unverifiable.
        self.own_ms: int | None = None
        self._seen: tuple[Any, Any, Any] = (None, None, None)  # (book, nonce, timestamp)
        self._woken_s = 0.0

    def tick(self) -> None:
        self.ticked = True
        self.wake.set()

    def changed(self, current: Any) -> bool:
        """Whether ccxt's book differs from the one last yielded (always, if it keeps
        neither a nonce nor a timestamp)."""
        now = version(current)
        return current is not self.source or now != self.version or now == (None, None)

    def on_frame(self, books: dict[str, Any]) -> None:
        current = books.get(self.symbol)
        if current is not None and (current, *version(current)) != self._seen:
            self._seen, self.own_ms = (current, *version(current)), now_ms()
        changed = current is not None and self.changed(current)
        now_s = time.monotonic()
        if changed or now_s - self._woken_s >= _HEARTBEAT_S:
            self._woken_s = now_s
            self.heard = True
            self.wake.set()

    def fail(self, error: Exception) -> None:
        """A frame proved the book wrong: keep the error, stamped with when the book
        was last verified (before that frame changed it)."""
        if self.failure is None:
            self.failure = self.unverified(error)
        self.wake.set()

    def unverified(self, error: Exception) -> Exception:
        """`error`, saying the books served since the last verified frame may be wrong."""
        if isinstance(error, FeedError) and error.unverified_since_ms is None:
            error.unverified_since_ms = self.own_ms
        return error
