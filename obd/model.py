"""The data obd keeps and serves: books, snapshots, coins, gaps."""

from typing import Literal, get_args

import msgspec

Level = tuple[float, float]  # (price, size), exactly as the source gave them

# Why slots hold no snapshot: the one list (docs/HTTP.md says what each means).
GapReason = Literal[
    # recorded in the file, by the sampler or by `storage.coins`
    "daemon_down",  # no obd process was collecting
    "disconnected",  # the live stream was down at the slot
    "not_synced",  # connected, but no consistent book yet
    "checksum",  # the exchange's checksum proved the kept book wrong: resyncing
    "rate_limited",  # the exchange refused (429/418)
    "exchange_error",  # the exchange failed (5xx, maintenance, an error answer)
    "not_listed",  # the exchange no longer lists the symbol
    "stale",  # the feed gave no sign of life long after the slot
    "late",  # the slot passed while obd could not look at it (loop stalled)
    "removed",  # the coin was removed and later added again
    "storage_full",  # the book could not be kept: writes were failing and the queue was full
    # computed when a range is read, never stored
    "not_collected",  # before the coin was first added
    "pending",  # collection has not reached the slot yet
    "missing",  # no snapshot and no recorded reason (a history request)
]
GAP_REASONS: tuple[GapReason, ...] = get_args(GapReason)


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
    capture: str  # "ws", "rest", "synthetic" or "backfill:<provider>[:<origin>]"
    seq: int | None = None  # the exchange's update id / sequence of the book (null if none)


class Coin(msgspec.Struct, frozen=True):
    """A coin the daemon collects (or collected): one exchange symbol at one cadence
    (a row of the `series` table; `id` is what the code calls `coin_id`)."""

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
    history_only: bool = False  # registered by `obd backfill`: never collected live


class Gap(msgspec.Struct, frozen=True, array_like=True):
    """Slots [start, end) of a coin without a snapshot, and why."""

    start: int
    end: int
    # A GapReason, typed `str` on the wire: a client that validates against the schema
    # keeps working when a later obd adds a reason (the MCP/JSON schema has no enum).
    reason: str
