"""Reading copies of the database file for research: no daemon, no config.

`open(path)` opens one file read-only; `open([path, ...])` opens shards (files of the
same collection, say one per month or per machine) as one dataset: series are merged by
(exchange, symbol, interval) and their rows by ts, a ts held by several shards taken once (from
the first shard listed). Everything streams: ranges are read `CHUNK` snapshots a query,
so memory stays flat however long the range. docs/RESEARCH.md has shapes and examples.
"""

import builtins
import heapq
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import apsw
import msgspec
import numpy as np
import numpy.typing as npt

from obd.errors import NotFound, StoreError
from obd.model import Coin, Gap, Snapshot
from obd.research.instants import When, to_ms
from obd.storage import codec, reader, schema
from obd.storage.connect import open_reader
from obd.times import format_interval, parse_interval

__all__ = ["CHUNK", "Arrays", "Dataset", "SeriesInfo", "When", "open"]

CHUNK = 512  # snapshots a query: ~10 MB of Python objects at 100 levels a side
T = TypeVar("T")
_END_OF_TIME = 2**62  # ms: past any stored ts, and an SQLite integer

DataFrameKind = Literal["polars", "pandas"]  # which DataFrame library


class SeriesInfo(msgspec.Struct, frozen=True):
    """One series, (exchange, symbol, interval), and its coverage over all shards: a
    coin re-added at another interval is a series per interval."""

    exchange: str
    symbol: str
    interval_ms: int
    interval: str  # as the user spelled it when adding the coin ("1s")
    active: bool  # collected when the (newest) shard was copied
    depth: int  # levels a side kept (the largest over the shards)
    synthetic: bool
    first_ts: int | None
    last_ts: int | None
    count: int  # snapshots, each ts counted once


class Arrays(msgspec.Struct, frozen=True):
    """A range as dense arrays; T snapshots, L levels a side, best level first.

    `bids`/`asks` are float64 (T, L, 2): [..., 0] the price, [..., 1] the size, NaN
    where the book had fewer than L levels on that side; `bid_mask`/`ask_mask` are bool
    (T, L), True where the level exists; `ts` is int64 (T,), ms, ascending.
    """

    ts: npt.NDArray[np.int64]
    bids: npt.NDArray[np.float64]
    asks: npt.NDArray[np.float64]
    bid_mask: npt.NDArray[np.bool_]
    ask_mask: npt.NDArray[np.bool_]


class _Shard:
    """One file, opened read-only, with its series by (exchange, symbol)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StoreError(f"database {path} does not exist")
        self.path = path
        self.conn = open_reader(path, read_only=True, immutable=_frozen(path))
        try:
            self.version = _check_schema(self.conn, path)
            coins = reader.coins(self.conn, active_only=False)
        except BaseException:
            self.conn.close()
            raise
        self.coins: dict[tuple[str, str], list[Coin]] = {}
        for coin in coins:  # the active series first, then the newest
            self.coins.setdefault((coin.exchange, coin.symbol), []).append(coin)


def _frozen(path: Path) -> bool:
    """A copy no writer is at (no `-wal` beside it) in a directory this process cannot
    write to (a read-only mount, another user's): SQLite could not create the `-shm` a
    WAL-mode file needs, so it is read as immutable instead."""
    wal = path.with_name(path.name + "-wal")
    return not wal.exists() and not os.access(path.parent, os.W_OK)


def _check_schema(conn: apsw.Connection, path: Path) -> int:
    """The file's schema version; StoreError for a newer obd's file or not obd's."""
    version = schema.known_version(conn)
    if version == 0 or not schema.is_obd_file(conn):
        raise StoreError(f"database {path} is not an obd file")
    return version


def open(paths: str | Path | Sequence[str | Path]) -> "Dataset":
    """One file, or several shards as one dataset, read-only. Close it (or use `with`)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    return Dataset([Path(path) for path in paths])


class Dataset:
    """Read-only view of one or more database files; not for sharing between threads."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise StoreError("open: no database file given")
        self._shards: list[_Shard] = []
        try:
            for path in paths:
                self._shards.append(_Shard(path))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for shard in self._shards:
            shard.conn.close()

    # -- what is there ----------------------------------------------------------------

    def series(self) -> list[SeriesInfo]:
        """Every series of any shard, by exchange, symbol and interval, with its
        coverage (O(1) a series: files of schema 4 on keep the counts)."""
        return [self._info(*key) for key in self.series_keys()]

    def series_keys(self) -> list[tuple[str, str, int]]:
        """Every (exchange, symbol, interval_ms) of any shard, sorted; cheaper than `series`."""
        return sorted(
            {
                (coin.exchange, coin.symbol, coin.interval_ms)
                for shard in self._shards
                for coins in shard.coins.values()
                for coin in coins
            }
        )

    def pairs(self) -> list[tuple[str, str]]:
        """Every (exchange, symbol) of any shard, sorted; cheaper than `series`."""
        return sorted({key for shard in self._shards for key in shard.coins})

    def span(
        self, exchange: str, symbol: str, interval: str | int | None = None
    ) -> tuple[int, int] | None:
        """(first ts, last ts) over the shards, from the primary key alone; None if empty."""
        ends = [
            row
            for shard, coin in self._holding(exchange, symbol, interval)
            for row in shard.conn.execute(
                "SELECT min(ts), max(ts) FROM snapshots WHERE series = ?", (coin.id,)
            )
            if row[0] is not None
        ]
        return (min(e[0] for e in ends), max(e[1] for e in ends)) if ends else None

    @property
    def schema_version(self) -> int:
        """The file's schema version (`PRAGMA user_version`; the newest of several)."""
        return max(shard.version for shard in self._shards)

    def gaps(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        *,
        interval: str | int | None = None,
    ) -> list[Gap]:
        """Recorded gaps overlapping [start, end), clipped to it, oldest first. With
        several files, each file's gaps (the same one once): a slot one file misses and
        another holds is listed."""
        low, high = _bounds(start, end)
        found = {
            gap
            for shard, coin in self._holding(exchange, symbol, interval)
            for gap in reader.gaps(shard.conn, coin.id, low, high)
        }
        return sorted(found, key=lambda gap: (gap.start, gap.end, gap.reason))

    def info(self, exchange: str, symbol: str, *, interval: str | int | None = None) -> SeriesInfo:
        """One series' `SeriesInfo` (NotFound if no file holds it)."""
        _, coin = self._holding(exchange, symbol, interval)[0]
        return self._info(exchange, symbol, coin.interval_ms)

    def _info(self, exchange: str, symbol: str, interval_ms: int) -> SeriesInfo:
        held = self._holding(exchange, symbol, interval_ms)
        stats = [reader.stats(shard.conn, coin.id) for shard, coin in held]
        firsts = [s.first_ts for s in stats if s.first_ts is not None]
        lasts = [s.last_ts for s in stats if s.last_ts is not None]
        coin = held[0][1]
        return SeriesInfo(
            exchange=exchange,
            symbol=symbol,
            interval_ms=interval_ms,
            interval=coin.interval,
            active=held[-1][1].active,
            depth=max(c.depth for _, c in held),
            synthetic=coin.synthetic,
            first_ts=min(firsts, default=None),
            last_ts=max(lasts, default=None),
            count=self._count(held, stats),
        )

    def _count(self, held: list[tuple[_Shard, Coin]], stats: list[reader.CoinStats]) -> int:
        spans = sorted((s.first_ts, s.last_ts or 0) for s in stats if s.first_ts is not None)
        disjoint = all(a[1] < b[0] for a, b in itertools.pairwise(spans))
        if disjoint:
            return sum(s.count for s in stats)
        # Overlapping shards: count distinct ts by merging the keys (no blob is decoded).
        keys = [_ts_only(shard.conn, coin.id) for shard, coin in held]
        return sum(1 for _ in _distinct(heapq.merge(*keys), lambda ts: ts))

    def _holding(
        self, exchange: str, symbol: str, interval: str | int | None = None
    ) -> list[tuple[_Shard, Coin]]:
        """The shards holding a series and its row in each. Without `interval`: the
        coin's active series (in the last shard listed that has one), else the one
        collected last."""
        found = [
            (s, s.coins[(exchange, symbol)]) for s in self._shards if (exchange, symbol) in s.coins
        ]
        if not found:
            raise NotFound(f"no series {symbol} on {exchange} in {self._names()}")
        interval_ms = (
            self._default_interval(found) if interval is None else parse_interval(interval)
        )
        held = [
            (shard, coin)
            for shard, coins in found
            for coin in coins
            if coin.interval_ms == interval_ms
        ]
        if not held:
            raise NotFound(
                f"no series {symbol} on {exchange} every {format_interval(interval_ms)} "
                f"in {self._names()}"
            )
        return held

    @staticmethod
    def _default_interval(found: list[tuple["_Shard", list[Coin]]]) -> int:
        active = [coins[0] for _, coins in found if coins[0].active]
        if active:
            return active[-1].interval_ms
        latest = [
            (reader.stats(shard.conn, coin.id).last_ts or coin.added_ts, coin.interval_ms)
            for shard, coins in found
            for coin in coins
        ]
        return max(latest)[1]

    def _names(self) -> str:
        return ", ".join(str(shard.path) for shard in self._shards)

    # -- snapshots --------------------------------------------------------------------

    def snapshots(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        *,
        interval: str | int | None = None,
    ) -> Iterator[Snapshot]:
        """Snapshots with start <= ts < end, oldest first. Times as obd.research.instants
        takes them (ms, ISO 8601, `now`/`-6h`, datetime, date); None: unbounded."""
        for chunk in self.chunks(exchange, symbol, start, end, interval=interval):
            yield from chunk

    def chunks(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        size: int = CHUNK,
        *,
        interval: str | int | None = None,
    ) -> Iterator[list[Snapshot]]:
        """The same snapshots, `size` at a time (the last list shorter)."""
        low, high = _bounds(start, end)
        streams = [
            reader.book_pages(shard.conn, coin, low, high, size)
            for shard, coin in self._holding(exchange, symbol, interval)
        ]
        if len(streams) == 1:
            yield from streams[0]
            return
        merged = heapq.merge(*(_flat(stream) for stream in streams), key=lambda s: s.ts)
        out: list[Snapshot] = []
        for snapshot in _distinct(merged, lambda s: s.ts):
            out.append(snapshot)
            if len(out) == size:
                yield out
                out = []
        if out:
            yield out

    def count(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        *,
        interval: str | int | None = None,
    ) -> int:
        """At least as many as `snapshots` yields: ts held by several shards count each time."""
        low, high = _bounds(start, end)
        held = self._holding(exchange, symbol, interval)
        return sum(reader.count(shard.conn, coin.id, low, high) for shard, coin in held)

    # -- arrays and frames ------------------------------------------------------------

    def to_numpy(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        levels: int | None = None,
        *,
        interval: str | int | None = None,
    ) -> Arrays:
        """The range as dense `Arrays`; `levels` a side (default: the series' depth)."""
        start, end = to_ms(start, "start"), to_ms(end, "end")  # once: `now` means one time
        depth = levels if levels is not None else self._depth(exchange, symbol, interval)
        bound = self.count(exchange, symbol, start, end, interval=interval)  # preallocate
        ts = np.empty(bound, dtype=np.int64)
        books = np.full((2, bound, depth, 2), np.nan, dtype=np.float64)
        mask = np.zeros((2, bound, depth), dtype=np.bool_)
        n = 0
        for rows, decoded in self.decoded(exchange, symbol, start, end, interval=interval):
            ts[n : n + len(rows)] = [row[0] for row in rows]
            _fill_dense(decoded, books[:, n : n + len(rows)], mask[:, n : n + len(rows)])
            n += len(rows)
        return Arrays(ts[:n], books[0, :n], books[1, :n], mask[0, :n], mask[1, :n])

    def decoded(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        size: int = CHUNK,
        *,
        interval: str | int | None = None,
        summary: bool = False,
    ) -> Iterator[tuple[list[tuple[Any, ...]], codec.Levels]]:
        """The range `size` snapshots at a time as (rows, levels): the rows
        (ts, exchange_ts, received_ts, capture, seq, codec, book), followed with
        `summary` by the stored summary columns (`obd.storage.summary.COLUMNS`), and
        their books decoded as arrays (`codec.Levels`), with no Python object per level."""
        low, high = _bounds(start, end)
        # A book's size model is a row of its own file: each batch comes from one shard.
        streams = [
            _tagged(
                shard.conn,
                reader.book_row_pages(shard.conn, coin.id, low, high, size, summary=summary),
            )
            for shard, coin in self._holding(exchange, symbol, interval)
        ]
        batches = streams[0] if len(streams) == 1 else _runs(_merged(streams), size)
        for tagged in batches:
            conn, rows = tagged[0][1], [row for _, _, row in tagged]
            yield rows, reader.decode_rows(conn, [(row[5], row[6]) for row in rows])

    def _depth(self, exchange: str, symbol: str, interval: str | int | None = None) -> int:
        return max(coin.depth for _, coin in self._holding(exchange, symbol, interval))

    def to_polars(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        levels: int | None = None,
        *,
        interval: str | int | None = None,
    ) -> Any:
        """polars DataFrame, one row per level: ts, side, level, price, size."""
        from obd.research import frames  # polars/pandas only when asked for

        return frames.levels(
            self.decoded(exchange, symbol, start, end, interval=interval), levels, "polars"
        )

    def to_pandas(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        levels: int | None = None,
        *,
        interval: str | int | None = None,
    ) -> Any:
        """pandas DataFrame in the layout of `to_polars`."""
        from obd.research import frames

        return frames.levels(
            self.decoded(exchange, symbol, start, end, interval=interval), levels, "pandas"
        )

    def summary(
        self,
        exchange: str,
        symbol: str,
        start: When = None,
        end: When = None,
        frame: DataFrameKind = "polars",
        *,
        interval: str | int | None = None,
    ) -> Any:
        """The plain summary columns of the range as a DataFrame; no blob is decoded."""
        from obd.research import frames

        low, high = _bounds(start, end)
        streams = [
            _flat(reader.plain_pages(shard.conn, coin.id, low, high, CHUNK))
            for shard, coin in self._holding(exchange, symbol, interval)
        ]
        rows: Iterable[tuple[Any, ...]] = (
            streams[0]
            if len(streams) == 1
            else _distinct(heapq.merge(*streams, key=lambda row: row[0]), lambda row: row[0])
        )
        return frames.summary(rows, frame)


def _bounds(start: When, end: When) -> tuple[int, int]:
    """[start, end) in ms (obd.research.instants has the forms); None is unbounded."""
    low, high = to_ms(start, "start"), to_ms(end, "end")
    return (0 if low is None else low), (_END_OF_TIME if high is None else high)


def _fill_dense(
    decoded: codec.Levels, books: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]
) -> None:
    """Each book's first levels into books[side, row, level, (price, size)] and mask."""
    depth = books.shape[2]
    first_bids, first_asks = int(decoded.n_bids[0]), int(decoded.n_asks[0])
    if (decoded.n_bids == first_bids).all() and (decoded.n_asks == first_asks).all():
        width = first_bids + first_asks  # every book as deep: the usual case, no scatter
        for side, (start, count) in enumerate(((0, first_bids), (first_bids, first_asks))):
            kept = min(count, depth)
            for column, values in enumerate((decoded.prices, decoded.sizes)):
                if kept:
                    rows = values.reshape(-1, width)[:, start : start + kept]
                    books[side, :, :kept, column] = rows
            mask[side, :, :kept] = True
        return
    counts = decoded.counts()
    book = np.repeat(np.arange(len(counts)), counts)
    level = np.arange(len(book)) - np.repeat(decoded.offsets[:-1], counts)
    n_bids = np.repeat(decoded.n_bids, counts)
    is_ask = level >= n_bids
    level -= np.where(is_ask, n_bids, 0)
    keep = level < depth
    at = (is_ask[keep].view(np.uint8), book[keep], level[keep])
    books[(*at, 0)] = decoded.prices[keep]
    books[(*at, 1)] = decoded.sizes[keep]
    mask[at] = True


def _merged(streams: list[Iterator[list[tuple[Any, ...]]]]) -> Iterator[tuple[Any, ...]]:
    """Rows of several shards by ts, each ts once (the first shard listed wins)."""
    merged = heapq.merge(*(_flat(stream) for stream in streams), key=lambda row: row[0])
    return _distinct(merged, lambda row: row[0])


def _tagged(
    conn: apsw.Connection, pages: Iterator[list[tuple[Any, ...]]]
) -> Iterator[list[tuple[int, apsw.Connection, tuple[Any, ...]]]]:
    """Each page's rows as (ts, the shard's connection, row)."""
    for rows in pages:
        yield [(row[0], conn, row) for row in rows]


def _runs(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """`_tagged` rows in batches of at most `size`, each from one connection."""
    for _, run in itertools.groupby(items, key=lambda item: id(item[1])):
        yield from _batches(run, size)


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _flat(chunks: Iterator[list[T]]) -> Iterator[T]:
    for chunk in chunks:
        yield from chunk


def _ts_only(conn: apsw.Connection, coin_id: int) -> Iterator[int]:
    for (ts,) in conn.execute("SELECT ts FROM snapshots WHERE series = ? ORDER BY ts", (coin_id,)):
        yield ts


def _distinct(items: Iterable[Any], key: Any) -> Iterator[Any]:
    """Items of an ordered stream, each key once (the first: shards listed first win)."""
    last: object = builtins.object()
    for item in items:
        k = key(item)
        if k != last:
            last = k
            yield item
