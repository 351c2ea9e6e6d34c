"""The data obd keeps and serves: books, snapshots, coins, gaps."""

from typing import Literal

import msgspec

Level = tuple[float, float]  # (price, size), exactly as the source gave them

GapReason = Literal[
    "daemon_down",  # no obd process was collecting
    "disconnected",  # the live stream was down at the slot
    "not_synced",  # connected, but no consistent book yet
    "checksum",  # the exchange's checksum proved the kept book wrong: resyncing
    "stale",  # the newest book was older than the freshness limit
    "rate_limited",
    "exchange_error",
    "not_listed",
    "late",  # the slot passed while obd could not look at it (loop stalled)
]


class Book(msgspec.Struct, frozen=True, gc=False):
    """A consistent L2 book: bids best (highest) first, asks best (lowest) first."""

    bids: list[Level]
    asks: list[Level]
    exchange_ts: int | None = None  # the source's own book time, ms
    received_ts: int | None = None  # when it reached obd, ms; the kernel stamps it if None
    seq: int | None = None  # the exchange's own update id / sequence of this book, if any


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """One stored book: the book as it stood at slot `ts` of a coin."""

    exchange: str
    symbol: str
    ts: int  # the slot, a multiple of the coin's interval
    exchange_ts: int | None
    received_ts: int
    bids: list[Level]
    asks: list[Level]
    capture: str  # "ws", "rest", "synthetic" or "backfill:<plugin>"
    seq: int | None = None  # the exchange's update id / sequence of the book (null if none)


class Coin(msgspec.Struct, frozen=True):
    """A series the daemon collects (or collected): one exchange symbol at one cadence."""

    id: int
    exchange: str
    symbol: str
    interval_ms: int
    interval: str  # as the user spelled it ("1s") or the canonical spelling
    depth: int
    active: bool
    synthetic: bool
    added_ts: int
    tick_size: float | None = None
    lot_size: float | None = None


class Gap(msgspec.Struct, frozen=True, array_like=True):
    """Slots [start, end) of a coin without a snapshot, and why."""

    start: int
    end: int
    reason: str
