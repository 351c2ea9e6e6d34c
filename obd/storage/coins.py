"""Writes to the coins (series) table: the source of truth for what is collected.

Plain functions of a connection, called inside a transaction (the daemon's writer
thread, or a CLI process). Other processes notice through `PRAGMA data_version`.
"""

import apsw
import msgspec

from obd.errors import Conflict, NotFound
from obd.model import Coin
from obd.storage import reader
from obd.storage.writer import record_gap
from obd.times import format_interval, slot_at_or_after


class CoinRequest(msgspec.Struct, frozen=True):
    exchange: str
    symbol: str
    interval_ms: int
    interval: str
    depth: int
    synthetic: bool
    tick_size: float | None = None
    lot_size: float | None = None


def add_coin(conn: apsw.Connection, want: CoinRequest, now: int) -> tuple[Coin, bool]:
    """(coin, created). A series is (exchange, symbol, interval) and at most one series
    of a coin is active: re-adding a removed coin at its old interval resumes that
    series, recording the slots it was not collected as a `removed` gap (every slot stays
    accounted for); at a new interval it starts a new series, and the old ones stay as
    they were, readable and listed as removed."""
    active = reader.coin(conn, want.exchange, want.symbol)
    if active is not None and active.active:
        if (active.interval_ms, active.depth) != (want.interval_ms, want.depth):
            raise Conflict(
                f"{want.symbol} on {want.exchange} is already collected every "
                f"{format_interval(active.interval_ms)} at depth {active.depth}; "
                "remove it first to change that"
            )
        return active, False
    existing = reader.coin(conn, want.exchange, want.symbol, want.interval_ms)
    if existing is None:
        _insert(conn, want, now, collected=True)
    elif existing.history_only:
        # Collected from now on: what came before is history (back-filled or not collected).
        conn.execute(
            "UPDATE series SET active = 1, history_only = 0, added_ts = ?, depth = ?, "
            "synthetic = ?, tick_size = coalesce(?, tick_size), "
            "lot_size = coalesce(?, lot_size) WHERE id = ?",
            (now, want.depth, want.synthetic, want.tick_size, want.lot_size, existing.id),
        )
    else:
        until = reader.accounted_until(conn, existing)
        if until is not None:
            record_gap(conn, existing.id, until, slot_at_or_after(now, want.interval_ms), "removed")
        conn.execute(
            "UPDATE series SET active = 1, interval = ?, depth = ?, "
            "tick_size = coalesce(?, tick_size), lot_size = coalesce(?, lot_size) WHERE id = ?",
            (want.interval, want.depth, want.tick_size, want.lot_size, existing.id),
        )
    coin = reader.coin(conn, want.exchange, want.symbol, want.interval_ms)
    assert coin is not None
    return coin, True


def remove_coin(conn: apsw.Connection, exchange: str, symbol: str) -> Coin:
    """Stop collecting; every stored snapshot and gap is kept."""
    coin = reader.coin(conn, exchange, symbol)
    if coin is None or not coin.active:
        raise NotFound(f"{symbol} on {exchange} is not being collected")
    conn.execute("UPDATE series SET active = 0 WHERE id = ?", (coin.id,))
    return msgspec.structs.replace(coin, active=False)


def register_history_only(conn: apsw.Connection, want: CoinRequest, now: int) -> Coin:
    """The series `obd backfill` fills: an existing one as it is, else a new one marked
    history-only (not collected, no availability asked: its exchange may be offline)."""
    existing = reader.coin(conn, want.exchange, want.symbol)
    if existing is not None:
        return existing
    _insert(conn, want, now, collected=False)
    coin = reader.coin(conn, want.exchange, want.symbol, want.interval_ms)
    assert coin is not None
    return coin


def _insert(conn: apsw.Connection, want: CoinRequest, now: int, *, collected: bool) -> None:
    """A new series: collected (active) from now on, or registered for history only.
    `history_only` is named only when set: it defaults to 0, and files from before it
    (schema 4) still take a collected series."""
    columns = "exchange, symbol, interval_ms, interval, depth, active, synthetic, added_ts, "
    columns += "tick_size, lot_size" + ("" if collected else ", history_only")
    values = (
        want.exchange,
        want.symbol,
        want.interval_ms,
        want.interval,
        want.depth,
        collected,
        want.synthetic,
        now,
        want.tick_size,
        want.lot_size,
        *(() if collected else (True,)),
    )
    marks = ", ".join("?" * len(values))
    conn.execute(f"INSERT INTO series ({columns}) VALUES ({marks})", values)
