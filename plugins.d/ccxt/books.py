"""ccxt's order books seen from obd: converted to obd's `Book`, versioned, and
guarded against serving levels a diff-kept book never saw."""

import time
from typing import Any

import msgspec

from obd.plugin import Book, Level


class Edges(msgspec.Struct, frozen=True):
    """The deepest bid and ask of a REST snapshot (None: it held the whole side)."""

    low: float | None
    high: float | None


def edges(book: Any, limit: int | None) -> Edges:
    bids, asks = book["bids"], book["asks"]
    if limit is None:
        return Edges(None, None)
    return Edges(
        low=bids[-1][0] if len(bids) >= limit else None,
        high=asks[-1][0] if len(asks) >= limit else None,
    )


class Range:
    """The price range a diff-kept book is complete in: between its snapshot's deepest
    levels, narrowed whenever ccxt trims the book to its limit. Levels outside were
    never seen, so the top `depth` are right only while they all lie inside."""

    def __init__(self) -> None:
        self.snapshot: Edges | None = None
        self.low: float | None = None
        self.high: float | None = None

    def covers(self, book: Any, snapshot: Edges | None, depth: int, limit: int) -> bool:
        if snapshot is None:  # no REST snapshot behind it: the exchange keeps the depth
            return True
        if snapshot is not self.snapshot:  # resynced: start from the new snapshot
            self.snapshot, self.low, self.high = snapshot, snapshot.low, snapshot.high
        bids, asks = book["bids"], book["asks"]
        if len(bids) >= limit:
            self.low = bids[limit - 1][0] if self.low is None else max(self.low, bids[limit - 1][0])
        if len(asks) >= limit:
            self.high = (
                asks[limit - 1][0] if self.high is None else min(self.high, asks[limit - 1][0])
            )
        bids_ok = self.low is None or (len(bids) >= depth and bids[depth - 1][0] >= self.low)
        asks_ok = self.high is None or (len(asks) >= depth and asks[depth - 1][0] <= self.high)
        return bids_ok and asks_ok


def to_book(raw: Any, depth: int, received_ts: int) -> Book:
    """A ccxt order book (levels `[price, amount, ...]`, floats) as obd's Book."""
    bids: list[Level] = [(level[0], level[1]) for level in raw["bids"][:depth]]
    asks: list[Level] = [(level[0], level[1]) for level in raw["asks"][:depth]]  # copies:
    # ccxt updates its levels in place
    nonce = raw.get("nonce")
    seq = nonce if isinstance(nonce, int) else None  # the exchange's update id, if it has one
    return Book(bids, asks, exchange_ts=raw.get("timestamp"), received_ts=received_ts, seq=seq)


def version(book: Any) -> tuple[Any, Any]:
    """What tells one state of a ccxt book from the next: its nonce and timestamp."""
    return book.get("nonce"), book.get("timestamp")


def now_ms() -> int:
    return time.time_ns() // 1_000_000
