"""Reads from the file on worker threads, each with its own connection, off the event loop."""

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import apsw
import msgspec

from obd.model import Coin, Gap, Level, Snapshot
from obd.storage import codec, dicts
from obd.storage.connect import open_reader
from obd.storage.summary import COLUMNS

T = TypeVar("T")
R = TypeVar("R")

READ_THREADS = 4

_COIN_COLUMNS = (
    "id, exchange, symbol, interval_ms, interval, depth, active, synthetic, added_ts, "
    "tick_size, lot_size"
)
_COIN_COLUMN_SETS: "weakref.WeakKeyDictionary[apsw.Connection, str]" = weakref.WeakKeyDictionary()


def _coin_columns(conn: apsw.Connection) -> str:
    """The columns a Coin is read from; files before `history_only` (read-only copies,
    which cannot be migrated) read it as 0."""
    columns = _COIN_COLUMN_SETS.get(conn)
    if columns is None:
        names = {row[1] for row in conn.execute("PRAGMA table_info(series)")}
        extra = "history_only" if "history_only" in names else "0 AS history_only"
        columns = _COIN_COLUMN_SETS[conn] = f"{_COIN_COLUMNS}, {extra}"
    return columns


class Reader:
    """Runs read queries in a small thread pool; each thread keeps one connection."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="obd-read")

    async def run(self, query: Callable[..., T], *args: Any) -> T:
        """`query(conn, *args)` on a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, query, args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def book_pages(
        self, coin: Coin, start: int, end: int, size: int
    ) -> AsyncGenerator[list[Snapshot], None]:
        """`book_pages` on the worker threads, the next page read while the caller works
        on this one. Close it (`contextlib.aclosing`) when stopping early."""
        steps = pages(
            lambda low: books(self._connection(), coin, low, end, size), start, end, size, _ts
        )
        return self._ahead(steps)

    async def _ahead(self, steps: Iterator[T]) -> AsyncGenerator[T, None]:
        # Each step runs on whichever worker is free, with that thread's connection; the
        # next is asked for only once the previous one is done, so they never overlap.
        loop = asyncio.get_running_loop()
        ahead = loop.run_in_executor(self._pool, next, steps, None)
        try:
            while (item := await ahead) is not None:
                ahead = loop.run_in_executor(self._pool, next, steps, None)
                yield item
        finally:
            ahead.cancel()

    def _call(self, query: Callable[..., T], args: tuple[Any, ...]) -> T:
        return query(self._connection(), *args)

    def _connection(self) -> apsw.Connection:
        """This worker thread's connection, opened on its first query."""
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = open_reader(self._path)
            with self._lock:
                self._connections.append(conn)
        return conn


class CoinStats(msgspec.Struct, frozen=True):
    first_ts: int | None
    last_ts: int | None
    count: int


# -- queries: plain functions of a connection, so the CLI and tests can call them too --


def coins(conn: apsw.Connection, active_only: bool = True) -> list[Coin]:
    """Active coins, or every series ever collected (a coin re-added at another interval
    is a series per interval), by exchange and symbol, the active series first."""
    where = "WHERE active = 1" if active_only else ""
    rows = conn.execute(
        f"SELECT {_coin_columns(conn)} FROM series {where} "
        "ORDER BY exchange, symbol, active DESC, id DESC"
    )
    return [_coin(row) for row in rows]


def coins_with_stats(
    conn: apsw.Connection, active_only: bool = True
) -> list[tuple[Coin, CoinStats]]:
    """`coins` with each one's `stats`, in one query where the file keeps them."""
    if not _stats_kept(conn):
        return [(coin, stats(conn, coin.id)) for coin in coins(conn, active_only)]
    where = "WHERE active = 1" if active_only else ""
    rows = conn.execute(
        f"SELECT {_coin_columns(conn)}, first_ts, last_ts, snapshots FROM series {where} "
        "ORDER BY exchange, symbol, active DESC, id DESC"
    )
    return [(_coin(row), CoinStats(*row[-3:])) for row in rows]


def coin(
    conn: apsw.Connection, exchange: str, symbol: str, interval_ms: int | None = None
) -> Coin | None:
    """The series of a coin at `interval_ms`; without one, the active series, else the
    one collected last (docs/FORMAT.md: a series is exchange, symbol and interval)."""
    if interval_ms is not None:
        row = conn.execute(
            f"SELECT {_coin_columns(conn)} FROM series "
            "WHERE exchange = ? AND symbol = ? AND interval_ms = ?",
            (exchange, symbol, interval_ms),
        ).fetchone()
        return _coin(row) if row else None
    latest = "coalesce(last_ts, added_ts)" if _stats_kept(conn) else "added_ts"
    row = conn.execute(
        f"SELECT {_coin_columns(conn)} FROM series WHERE exchange = ? AND symbol = ? "
        f"ORDER BY active DESC, {latest} DESC, id DESC LIMIT 1",
        (exchange, symbol),
    ).fetchone()
    return _coin(row) if row else None


def _coin(row: Any) -> Coin:
    (id_, exchange, symbol, interval_ms, interval, depth, active, synthetic, added_ts) = row[:9]
    return Coin(
        id=id_,
        exchange=exchange,
        symbol=symbol,
        interval_ms=interval_ms,
        interval=interval,
        depth=depth,
        active=bool(active),
        synthetic=bool(synthetic),
        added_ts=added_ts,
        tick_size=row[9],
        lot_size=row[10],
        history_only=bool(row[11]),
    )


def stats(conn: apsw.Connection, coin_id: int) -> CoinStats:
    """Count and first/last ts: kept on the series row since schema 4 (O(1)); a
    read-only copy of an older file (which cannot be migrated) counts its rows."""
    if _stats_kept(conn):
        row = conn.execute(
            "SELECT first_ts, last_ts, snapshots FROM series WHERE id = ?", (coin_id,)
        ).fetchone()
        if row is None:
            return CoinStats(first_ts=None, last_ts=None, count=0)
    else:
        row = conn.execute(
            "SELECT min(ts), max(ts), count(*) FROM snapshots WHERE series = ?", (coin_id,)
        ).fetchone()
    assert row is not None
    return CoinStats(first_ts=row[0], last_ts=row[1], count=row[2])


def last_ts(conn: apsw.Connection, coin_id: int) -> int | None:
    return stats(conn, coin_id).last_ts if _stats_kept(conn) else _max_ts(conn, coin_id)


def _max_ts(conn: apsw.Connection, coin_id: int) -> int | None:
    row = conn.execute("SELECT max(ts) FROM snapshots WHERE series = ?", (coin_id,)).fetchone()
    return None if row is None else row[0]


def _rows(conn: apsw.Connection) -> str:
    """Where the summary rows are: the table, since schema 4 (counting through the
    `snapshots` view would look up every row's book), else the old `snapshots` table."""
    return "snapshot_rows" if _stats_kept(conn) else "snapshots"


_STATS_KEPT: "weakref.WeakKeyDictionary[apsw.Connection, bool]" = weakref.WeakKeyDictionary()
_STATS_SCHEMA = 4  # the schema version from which `series` keeps its stats


def _stats_kept(conn: apsw.Connection) -> bool:
    """Whether the file keeps per-series stats (schema 4 on); remembered once true."""
    if _STATS_KEPT.get(conn):
        return True
    row = conn.execute("PRAGMA user_version").fetchone()
    kept = row is not None and int(row[0]) >= _STATS_SCHEMA
    if kept:
        _STATS_KEPT[conn] = True
    return kept


_SNAPSHOT_COLUMNS: "weakref.WeakKeyDictionary[apsw.Connection, str]" = weakref.WeakKeyDictionary()


def _snapshot_columns(conn: apsw.Connection) -> str:
    """The columns a Snapshot is read from. Files written before schema 3 (read-only
    copies, which cannot be migrated) have no `seq`: it reads as NULL there."""
    columns = _SNAPSHOT_COLUMNS.get(conn)
    if columns is None:
        names = {row[1] for row in conn.execute("PRAGMA table_info(snapshots)")}
        seq = "seq" if "seq" in names else "NULL AS seq"
        columns = _SNAPSHOT_COLUMNS[conn] = (
            f"ts, exchange_ts, received_ts, capture, {seq}, codec, book"
        )
    return columns


def books(conn: apsw.Connection, coin: Coin, start: int, end: int, limit: int) -> list[Snapshot]:
    """Snapshots of `coin` with start <= ts < end, oldest first, at most `limit`."""
    return _snapshots(conn, coin, book_rows(conn, coin.id, start, end, limit))


_STORED_SUMMARY = "".join(f", {name}" for name in COLUMNS)


def book_rows(
    conn: apsw.Connection, coin_id: int, start: int, end: int, limit: int, *, summary: bool = False
) -> list[tuple[Any, ...]]:
    """The undecoded rows (ts, exchange_ts, received_ts, capture, seq, codec, book) of
    `books`: for callers that decode them as arrays (`codec.decode_many`). With
    `summary`, each row goes on with its stored summary columns (`summary.COLUMNS`)."""
    columns = _snapshot_columns(conn) + (_STORED_SUMMARY if summary else "")
    return conn.execute(
        f"SELECT {columns} FROM snapshots "
        "WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?",
        (coin_id, start, end, limit),
    ).fetchall()


def book_row_pages(
    conn: apsw.Connection, coin_id: int, start: int, end: int, size: int, *, summary: bool = False
) -> Iterator[list[tuple[Any, ...]]]:
    """`book_rows` of [start, end), `size` a query (`pages`)."""
    return pages(
        lambda low: book_rows(conn, coin_id, low, end, size, summary=summary),
        start,
        end,
        size,
        lambda row: int(row[0]),
    )


def _snapshots(conn: apsw.Connection, coin: Coin, rows: list[Any]) -> list[Snapshot]:
    """`book_rows` as Snapshots, their blobs decoded as one batch."""
    books = decode_rows(conn, [(row[5], row[6]) for row in rows]).books()
    exchange, symbol = coin.exchange, coin.symbol
    return [
        Snapshot(exchange, symbol, row[0], row[1], row[2], bids, asks, row[3], row[4])
        for row, (bids, asks) in zip(rows, books, strict=True)
    ]


def pages(
    fetch: Callable[[int], list[R]], start: int, end: int, size: int, ts: Callable[[R], int]
) -> Iterator[list[R]]:
    """[start, end) in pages of at most `size` rows, oldest first: `fetch(low)` reads the
    rows with low <= ts < end, and each page resumes just after the last ts seen (keyset
    paging), so no query rescans what an earlier one read. The one range reader: the
    service, history and research page through it."""
    while start < end:
        rows = fetch(start)
        if rows:
            yield rows
        if len(rows) < size:
            return
        start = ts(rows[-1]) + 1


def book_pages(
    conn: apsw.Connection, coin: Coin, start: int, end: int, size: int
) -> Iterator[list[Snapshot]]:
    """Snapshots of [start, end), `size` a query (`pages`)."""
    return pages(lambda low: books(conn, coin, low, end, size), start, end, size, _ts)


def _ts(snapshot: Snapshot) -> int:
    return snapshot.ts


def latest(conn: apsw.Connection, coin: Coin) -> Snapshot | None:
    row = conn.execute(
        f"SELECT {_snapshot_columns(conn)} FROM snapshots "
        "WHERE series = ? ORDER BY ts DESC LIMIT 1",
        (coin.id,),
    ).fetchone()
    return _snapshots(conn, coin, [row])[0] if row else None


def decode_rows(conn: apsw.Connection, rows: list[tuple[int, bytes]]) -> codec.Levels:
    """(codec, blob) pairs read from `conn` decoded as one batch, with the file's models."""
    return codec.decode_many(rows, dicts.resolver(conn))


class SummaryRow(msgspec.Struct, frozen=True, omit_defaults=True):
    """A snapshot as its plain summary columns (docs/FORMAT.md), plus the top levels if asked."""

    ts: int
    best_bid: float | None
    best_ask: float | None
    mid: float | None
    spread_bps: float | None
    bid_size_10: float
    ask_size_10: float
    imbalance_10: float | None
    bids: list[Level] | None = None
    asks: list[Level] | None = None


_SUMMARY_COLUMNS = ", ".join(
    name for name in SummaryRow.__struct_fields__ if name not in ("bids", "asks")
)
# Every column of a snapshot but its blob: what research's summary frames show.
PLAIN_COLUMNS = ("ts", "exchange_ts", "received_ts", "capture", *COLUMNS)


def summaries(
    conn: apsw.Connection,
    coin_id: int,
    start: int,
    end: int,
    limit: int,
    every_ms: int | None = None,
    levels: int = 0,
) -> list[SummaryRow]:
    """Summary rows with start <= ts < end, oldest first, at most `limit`. Blobs are
    decoded only when `levels` > 0. With `every_ms`, the first row of each
    `every_ms`-aligned bucket: one index seek per row, so a year at 1 s costs no
    more than an hour (a GROUP BY would scan every row in the range)."""
    columns = _SUMMARY_COLUMNS + (", codec, book" if levels else "")
    query = (
        f"SELECT {columns} FROM snapshots WHERE series = ? AND ts >= ? AND ts < ? "
        "ORDER BY ts LIMIT ?"
    )
    if every_ms is None:
        table: list[Any] = conn.execute(query, (coin_id, start, end, limit)).fetchall()
        if not levels:
            return [SummaryRow(*row) for row in table]
        books = decode_rows(conn, [(row[-2], row[-1]) for row in table]).books()
        return [_with_levels(row, book, levels) for row, book in zip(table, books, strict=True)]
    rows: list[SummaryRow] = []
    while len(rows) < limit and start < end:
        found = conn.execute(query, (coin_id, start, end, 1)).fetchone()
        if found is None:
            break
        rows.append(_summary(conn, found, levels))
        start = (found[0] // every_ms + 1) * every_ms
    return rows


def _summary(conn: apsw.Connection, row: Any, levels: int) -> SummaryRow:
    if not levels:
        return SummaryRow(*row)
    return _with_levels(row, decode_rows(conn, [(row[-2], row[-1])]).books()[0], levels)


def _with_levels(row: Any, book: tuple[list[Level], list[Level]], levels: int) -> SummaryRow:
    plain = SummaryRow(*row[:-2])
    return msgspec.structs.replace(plain, bids=book[0][:levels], asks=book[1][:levels])


def plain_pages(
    conn: apsw.Connection, coin_id: int, start: int, end: int, size: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of PLAIN_COLUMNS with start <= ts < end, oldest first, `size` a query."""
    query = (
        f"SELECT {', '.join(PLAIN_COLUMNS)} FROM snapshots "
        "WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?"
    )

    def fetch(low: int) -> list[tuple[Any, ...]]:
        return conn.execute(query, (coin_id, low, end, size)).fetchall()

    return pages(fetch, start, end, size, lambda row: int(row[0]))


def count(conn: apsw.Connection, coin_id: int, start: int, end: int) -> int:
    """Snapshots with start <= ts < end: the kept count when the range holds the whole
    series (coverage and exports of everything stay O(1)), else the rows counted."""
    if _stats_kept(conn):
        kept = stats(conn, coin_id)
        if kept.first_ts is None:
            return 0
        if start <= kept.first_ts and kept.last_ts is not None and kept.last_ts < end:
            return kept.count
    row = conn.execute(
        f"SELECT count(*) FROM {_rows(conn)} WHERE series = ? AND ts >= ? AND ts < ?",
        (coin_id, start, end),
    ).fetchone()
    return int(row[0]) if row else 0


def runs(
    conn: apsw.Connection, coin_id: int, start: int, end: int, interval_ms: int
) -> list[tuple[int, int]]:
    """[first, last + interval) of each run of consecutive stored slots in [start, end),
    oldest first (rows off the slot grid are not slots)."""
    rows = conn.execute(
        f"SELECT min(ts), max(ts) FROM (SELECT ts, ts - ? * row_number() OVER (ORDER BY ts) "
        f"AS island FROM {_rows(conn)} WHERE series = ? AND ts >= ? AND ts < ? AND ts % ? = 0) "
        "GROUP BY island ORDER BY 1",
        (interval_ms, coin_id, start, end, interval_ms),
    ).fetchall()
    out: list[tuple[int, int]] = []
    for first, last in rows:
        assert isinstance(first, int)
        assert isinstance(last, int)
        out.append((first, last + interval_ms))
    return out


def gaps(conn: apsw.Connection, coin_id: int, start: int, end: int) -> list[Gap]:
    """Recorded gaps overlapping [start, end), clipped to it, oldest first."""
    rows = conn.execute(
        "SELECT max(start_ts, ?), min(end_ts, ?), reason FROM gaps "
        "WHERE series = ? AND start_ts < ? AND end_ts > ? ORDER BY start_ts",
        (start, end, coin_id, end, start),
    )
    return [Gap(start=row[0], end=row[1], reason=row[2]) for row in rows]


def accounted_until(conn: apsw.Connection, coin: Coin) -> int | None:
    """The end of the last slot that is a snapshot or a recorded gap (None: nothing yet).
    Two index seeks: gaps never overlap, so the last one by start ends last."""
    last = last_ts(conn, coin.id)
    gap_end = conn.execute(
        "SELECT end_ts FROM gaps WHERE series = ? ORDER BY start_ts DESC LIMIT 1", (coin.id,)
    ).fetchone()
    ends = [
        *([last + coin.interval_ms] if last is not None else []),
        *([gap_end[0]] if gap_end and gap_end[0] is not None else []),
    ]
    return max(ends) if ends else None


def data_version(conn: apsw.Connection) -> int:
    """Changes whenever another connection (process) commits to the file."""
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0]) if row else 0


def capture_runs(
    conn: apsw.Connection, coin_id: int, start: int, end: int, interval_ms: int, limit: int
) -> list[tuple[int, int, str]]:
    """(first, last + interval, capture) of each run of consecutive stored slots in
    [start, end) with one capture, oldest first, at most `limit`: where the rows came
    from (live, REST, which back-fill). Reads every row's capture: asked for, not default."""
    rows = conn.execute(
        "SELECT min(ts), max(ts), capture FROM (SELECT ts, capture, ts / ? - row_number() "
        "OVER (PARTITION BY capture ORDER BY ts) AS island FROM snapshots "
        "WHERE series = ? AND ts >= ? AND ts < ? AND ts % ? = 0) "
        "GROUP BY capture, island ORDER BY 1 LIMIT ?",
        (interval_ms, coin_id, start, end, interval_ms, limit),
    ).fetchall()
    out: list[tuple[int, int, str]] = []
    for first, last, capture in rows:
        assert isinstance(first, int)
        assert isinstance(last, int)
        out.append((first, last + interval_ms, str(capture)))
    return out
