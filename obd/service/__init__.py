"""The service layer: what HTTP, WebSocket, MCP and the CLI call. None of them reaches lower.

Arguments arrive as users typed them (strings from a query, JSON values); each is
checked here once, and errors name the argument. What the service hands out
(`clients`, a `HistoryStream`) is all a transport gets of the store.
"""

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec

from obd.auth.clients import Clients
from obd.collect import Collector
from obd.config import MAX_DEPTH, History
from obd.errors import BadRequest, ConfigError, Conflict, Forbidden, NotFound, ObdError
from obd.exchanges import Exchanges
from obd.history.registry import PLUGIN, Providers
from obd.model import Coin, Snapshot
from obd.plugin import Availability, FetchesHistory
from obd.service import markets as discovery
from obd.service.backfill import BackfillReport, Progress, backfill_range, horizon, probe_gaps
from obd.service.backfill_limits import BackfillMeter
from obd.service.coverage import Coverage, coverage
from obd.service.grid import MAX_BUCKETS, Grid, grid
from obd.service.history import DEFAULT_CHUNK, MAX_CHUNK, Allowance, HistoryStream
from obd.service.markets import ExchangeView, MarketPage, MarketView
from obd.storage import coins as coin_writes
from obd.storage import reader
from obd.storage.reader import Reader, SummaryRow
from obd.storage.space import Space, space
from obd.storage.writer import Writer
from obd.times import (
    format_interval,
    is_digits,
    now_ms,
    parse_interval,
    parse_time,
    slot_at_or_after,
)

__all__ = [
    "BOOKS_PATH",
    "BackfillReport",
    "BookCount",
    "CoinView",
    "Coverage",
    "ExchangeView",
    "FeedStats",
    "Grid",
    "Health",
    "HistoryStream",
    "Liveness",
    "MarketPage",
    "MarketView",
    "Page",
    "Service",
    "Stats",
    "SummaryPage",
    "SummaryRow",
    "books_link",
    "vet_coin",
]

T = TypeVar("T")
R = TypeVar("R")

MAX_MARKETS = 1_000  # markets in one list_markets page
MAX_PAGE = 1_000  # snapshots per page: ~3 MB of JSON at 100 levels a side
DEFAULT_PAGE = 100
STREAM_CHUNK = 256  # snapshots read per step when streaming a range
LOW_DISK_BYTES = 1024 * 1024 * 1024  # `[storage] low_disk_mib`'s default
# Book reads (decode, and the transport's encode) running at once on worker threads;
# the rest wait their turn without holding a thread. Decoding holds the GIL the event
# loop needs to take books off the feeds: more at once would not serve faster on a
# small machine, only make every slot's book older (issue 14).
SERVE_CONCURRENCY = 2

_EXCHANGE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_SYMBOL = re.compile(r"[^\s\x00-\x1f]{1,100}")


class CoinView(msgspec.Struct, frozen=True):
    exchange: str
    symbol: str
    interval: str
    interval_ms: int
    depth: int
    status: str
    synthetic: bool
    first_ts: int | None
    last_ts: int | None
    count: int


class Page(msgspec.Struct, frozen=True):
    items: list[Snapshot]
    next: str | None


class SummaryPage(msgspec.Struct, frozen=True):
    rows: list[SummaryRow]
    next_start: int | None  # where the next call resumes; None: the range is done


class BookCount(msgspec.Struct, frozen=True):
    start: int
    end: int
    count: int


class Health(msgspec.Struct, frozen=True):
    status: str  # "ok" or "degraded"
    writer_backlog: int
    writer_error: str | None
    coins: list[dict[str, Any]]
    disk_free_bytes: int | None = None  # on the database's filesystem
    warnings: list[str] = msgspec.field(default_factory=list)  # never a failure by itself


class Liveness(msgspec.Struct, frozen=True):
    status: str  # "ok" or "failing": the writer cannot commit
    writer_backlog: int
    writer_error: str | None
    disk_free_bytes: int | None = None  # on the database's filesystem
    warnings: list[str] = msgspec.field(default_factory=list)  # low disk: not "failing"


class FeedStats(msgspec.Struct, frozen=True):
    """A collected coin's live feed, as this process samples it."""

    exchange: str
    symbol: str
    live: bool
    failures: int  # times its live feed broke
    slot_lag_s: float  # how late its last slot was taken


class Stats(msgspec.Struct, frozen=True):
    """What this process reports of itself (/metrics), without reading the file."""

    writer_backlog: int  # rows waiting for the writer
    rows_written: int
    writer_failing: bool
    last_batch_s: float  # how long the last commit took
    database_bytes: int
    wal_bytes: int
    coins: list[FeedStats] | None  # None: this process does not collect
    disk_free_bytes: int | None = None  # on the database's filesystem; None: unknown
    disk_low: bool = False  # under `[storage] low_disk_mib`


BOOKS_PATH = "/v1/books"


def books_link(exchange: str, symbol: str, start: int, end: int) -> str:
    """The path and query of `GET /v1/books` streaming [start, end) as NDJSON: the one
    way a range is handed to a client as a link (MCP's download_history over HTTP)."""
    query = {"exchange": exchange, "symbol": symbol, "start": start, "end": end}
    return f"{BOOKS_PATH}?{urlencode({**query, 'format': 'ndjson'})}"


class Service:
    """The use cases over one store. `clients` administers OAuth clients."""

    def __init__(
        self,
        exchanges: Exchanges,
        read: Reader,
        writer: Writer,
        collector: Collector | None = None,
        *,
        default_interval: str | int = "5m",
        default_depth: int = 100,
        history: History | None = None,
        low_disk_bytes: int = LOW_DISK_BYTES,
        providers: Providers | None = None,
    ) -> None:
        self._exchanges = exchanges
        self._providers = providers or Providers(history or History(), exchanges)
        self._reader = read
        self._writer = writer
        self._collector = collector  # None where this process does not collect
        self._default_interval = default_interval
        self._default_depth = default_depth
        self._history_limits = history or History()
        self._low_disk_bytes = low_disk_bytes
        self._backfill_meter = BackfillMeter(self._history_limits)
        self.clients = Clients(read, writer)
        self._serving = asyncio.Semaphore(SERVE_CONCURRENCY)

    @property
    def collecting(self) -> bool:
        """Whether this process collects (a daemon on the same file may, when not)."""
        return self._collector is not None

    # -- coins --

    async def list_coins(self, removed: object = None) -> list[CoinView]:
        """The coins collected, and series registered for history only; with `removed`,
        every series ever collected too (a coin re-added at another interval is one
        series per interval), status `removed`."""
        every = _flag("removed", removed)
        found = await self._reader.run(reader.coins_with_stats, False)
        return [
            self._view_of(coin, stats)
            for coin, stats in found
            if every or coin.active or coin.history_only
        ]

    async def availability(self, exchange: object, symbol: object) -> Availability:
        exchange_id, symbol_name = _exchange(exchange), _symbol(symbol)
        return await self._exchanges.get(exchange_id).check_availability(symbol_name)

    async def add_coin(
        self, exchange: object, symbol: object, interval: object = None, depth: object = None
    ) -> tuple[CoinView, bool]:
        """(coin, created); checks the exchange lists the symbol first (404 if not)."""
        want = await vet_coin(
            self._exchanges,
            exchange,
            symbol,
            self._default_interval if interval is None else interval,
            self._default_depth if depth is None else depth,
        )
        now = now_ms()
        coin, created = await self._writer.call(lambda conn: coin_writes.add_coin(conn, want, now))
        self._wake_collector()
        return await self._view(coin), created

    async def remove_coin(self, exchange: object, symbol: object) -> CoinView:
        exchange_id, symbol_name = _exchange(exchange), _symbol(symbol)
        coin = await self._writer.call(
            lambda conn: coin_writes.remove_coin(conn, exchange_id, symbol_name)
        )
        self._wake_collector()
        return await self._view(coin)

    # -- discovery --

    async def list_exchanges(self) -> list[ExchangeView]:
        """Every exchange id obd can collect from, with how many coins it collects there."""
        counts: dict[str, int] = {}
        for coin in await self._reader.run(reader.coins):
            counts[coin.exchange] = counts.get(coin.exchange, 0) + coin.active
        return discovery.exchange_views(self._exchanges, counts)

    async def list_markets(
        self, exchange: object, query: object = None, limit: object = None, offset: object = None
    ) -> MarketPage:
        """The markets an exchange lists, filtered by `query` (a substring of the symbol)."""
        exchange_id = _exchange(exchange)
        if query is not None and (not isinstance(query, str) or len(query) > 100):
            raise BadRequest(
                f"query: expected a short text like 'BTC' or 'BTC/USDT', got {query!r:.60}"
            )
        size = _bounded("limit", limit, 1, MAX_MARKETS, DEFAULT_PAGE)
        skip = _bounded("offset", offset, 0, 10**6, 0)
        collected = {
            coin.symbol
            for coin in await self._reader.run(reader.coins)
            if coin.exchange == exchange_id and coin.active
        }
        return await discovery.markets(self._exchanges, exchange_id, query, size, skip, collected)

    # -- books --

    async def books(
        self,
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        limit: object = None,
        cursor: object = None,
        interval: object = None,
    ) -> Page:
        return await self.books_as(_same, exchange, symbol, start, end, limit, cursor, interval)

    async def books_as(
        self,
        encode: Callable[[Page], T],
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        limit: object = None,
        cursor: object = None,
        interval: object = None,
    ) -> T:
        """`books`, passed through `encode` on the worker thread that read it: a page of
        deep books is as costly to encode as to decode, and neither belongs on the loop."""
        coin = await self._coin(exchange, symbol, interval)
        begin, stop = _range(start, end)
        size = _bounded("limit", limit, 1, MAX_PAGE, DEFAULT_PAGE)
        if cursor is not None:
            begin = _cursor_ts(cursor, begin, stop)
        return await self._serve(_page, coin, begin, stop, size, encode)

    async def stream_books(
        self,
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        interval: object = None,
    ) -> AsyncIterator[list[Snapshot]]:
        """The whole range in chunks, oldest first; memory stays flat however long it is."""
        return await self.stream_books_as(_same, exchange, symbol, start, end, interval)

    async def stream_books_as(
        self,
        encode: Callable[[list[Snapshot]], T],
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        interval: object = None,
    ) -> AsyncIterator[T]:
        """`stream_books`, each chunk passed through `encode` on the worker thread that
        read it."""
        coin = await self._coin(exchange, symbol, interval)
        begin, stop = _range(start, end)
        return self._stream(coin, begin, stop, encode)

    async def _stream(
        self,
        coin: Coin,
        start: int,
        end: int,
        encode: Callable[[list[Snapshot]], T],
        size: int = STREAM_CHUNK,
    ) -> AsyncGenerator[T, None]:
        # The next chunk is read while this one goes out (keyset paging, as `reader.pages`).
        ahead = asyncio.ensure_future(self._serve(_chunk, coin, start, end, size, encode))
        try:
            while True:
                encoded, last_ts, count = await ahead
                if count < size or last_ts + 1 >= end:
                    if count:
                        yield encoded
                    return
                following = self._serve(_chunk, coin, last_ts + 1, end, size, encode)
                ahead = asyncio.ensure_future(following)
                yield encoded
        finally:
            ahead.cancel()

    def _book_pages(
        self, coin: Coin, start: int, end: int, size: int
    ) -> AsyncGenerator[list[Snapshot], None]:
        """`Reader.book_pages`, within the bound on book reads (a history stream's)."""
        return self._stream(coin, start, end, _same, size)

    async def offload(self, work: Callable[..., R], *args: Any) -> R:
        """`work(*args)` (an encode of books) on a worker thread, within the same bound as
        book reads."""
        return await self._serve(_call, work, *args)

    async def _serve(self, query: Callable[..., R], *args: Any) -> R:
        """A book read on a worker thread, at most SERVE_CONCURRENCY at once."""
        async with self._serving:
            return await self._reader.run(query, *args)

    async def summaries(
        self,
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        limit: object = None,
        every: object = None,
        levels: object = None,
        interval: object = None,
    ) -> SummaryPage:
        """Summary columns of a range without decoding blobs (unless `levels` asks for the
        top of each book); `every` keeps the first snapshot of each such bucket."""
        coin = await self._coin(exchange, symbol, interval)
        begin, stop = _range(start, end)
        size = _bounded("limit", limit, 1, MAX_PAGE, DEFAULT_PAGE)
        every_ms = None if every is None else parse_interval(every, "every")
        top = _bounded("levels", levels, 0, MAX_DEPTH, 0)
        rows = await self._reader.run(
            reader.summaries, coin.id, begin, stop, size + 1, every_ms, top
        )
        if len(rows) <= size:
            return SummaryPage(rows=rows, next_start=None)
        return SummaryPage(rows=rows[:size], next_start=rows[size].ts)

    async def count_books(
        self,
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        interval: object = None,
    ) -> BookCount:
        """How many snapshots `books`/`stream_books` would give for the same arguments."""
        coin = await self._coin(exchange, symbol, interval)
        begin, stop = _range(start, end)
        found = await self._reader.run(reader.count, coin.id, begin, stop)
        return BookCount(start=begin, end=stop, count=found)

    async def latest(self, exchange: object, symbol: object, interval: object = None) -> Snapshot:
        coin = await self._coin(exchange, symbol, interval)
        snapshot = await self._serve(reader.latest, coin)
        if snapshot is None:
            raise NotFound(f"no snapshot of {coin.symbol} on {coin.exchange} yet")
        return snapshot

    async def coverage(
        self,
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        sources: object = None,
        fillable: object = None,
        *,
        interval: object = None,
    ) -> Coverage:
        """Slots present and gaps; with `sources`, where the present ones came from; with
        `fillable`, which provider could fill each gap (asked, not fetched)."""
        coin = await self._coin(exchange, symbol, interval)
        by_capture = _flag("sources", sources)
        probe = _flag("fillable", fillable)
        now = now_ms()
        begin = slot_at_or_after(coin.added_ts + 1, coin.interval_ms)
        if start is not None:
            begin = parse_time(start, "start")
        stop = now if end is None else parse_time(end, "end")
        if begin >= stop and (start is not None and end is not None):
            raise BadRequest("start: must be before end")
        found = await self._reader.run(
            coverage, coin, begin, max(begin, min(stop, now)), now, by_capture
        )
        found = msgspec.structs.replace(found, providers=self._providers.names_for(coin.exchange))
        if probe:
            final = await self._reader.run(horizon, coin)
            sources_for = self._providers.for_exchange(coin.exchange)
            probed = await probe_gaps(coin, found.gaps, sources_for, final)
            found = msgspec.structs.replace(found, fillable=probed)
        return found

    async def coverage_grid(
        self,
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        bucket: object = None,
    ) -> Grid:
        """`coverage` cut into `bucket`s (default 1h), each with its expected and present
        slots and the slots of each gap reason, from the gap ledger (`service/grid.py`)."""
        coin = await self._coin(exchange, symbol)
        now = now_ms()
        size = 3_600_000 if bucket is None else parse_interval(bucket, "bucket")
        begin = slot_at_or_after(coin.added_ts + 1, coin.interval_ms)
        if start is not None:
            begin = parse_time(start, "start")
        stop = now if end is None else parse_time(end, "end")
        if begin >= stop and (start is not None and end is not None):
            raise BadRequest("start: must be before end")
        stop = max(begin, min(stop, now))
        count = -(-stop // size) - begin // size
        if count > MAX_BUCKETS:
            raise BadRequest(
                f"bucket: {count} buckets of {format_interval(size)} in the range, at most "
                f"{MAX_BUCKETS}; ask for a larger bucket or a shorter range"
            )
        found = await self._reader.run(grid, coin, begin, stop, size, now)
        return msgspec.structs.replace(
            found,
            backfill=self._fetches_history(coin.exchange),
            providers=self._providers.names_for(coin.exchange),
        )

    def _fetches_history(self, exchange: str) -> bool:
        """Whether a back-fill of this exchange has a source to ask: a configured history
        provider (an archive, a peer), or the `plugin` one where the plugin serves history."""
        for name in self._providers.names_for(exchange):
            if name != PLUGIN:
                return True
            try:
                if isinstance(self._exchanges.get(exchange), FetchesHistory):
                    return True
            except ObdError:  # its plugin is gone or failed to load: it cannot fetch
                continue
        return False

    # -- live feed and history (WebSocket, MCP) --

    async def collected(self, exchange: object, symbol: object) -> Coin:
        """The coin if it is being collected, as a live subscription needs; else NotFound."""
        coin = await self._coin(exchange, symbol)
        if not coin.active:
            raise NotFound(f"{coin.symbol} on {coin.exchange} is not being collected (add it)")
        return coin

    async def history(
        self,
        exchange: object,
        symbol: object,
        start: object,
        end: object,
        chunk: object = None,
        *,
        may_add: bool = True,
        backfill: Allowance | None = None,
    ) -> HistoryStream:
        """[start, end) of a coin, stored and back-filled within `backfill` (None: stored rows
        only; see `obd.service.history`): makes sure the coin is collected first, adding it
        if `may_add` (Forbidden otherwise)."""
        exchange_id, symbol_name = _exchange(exchange), _symbol(symbol)
        for name, value in (("start", start), ("end", end)):
            if value is None:
                raise BadRequest(f"{name}: required")
        begin, stop = _range(start, end)
        size = _bounded("chunk", chunk, 1, MAX_CHUNK, DEFAULT_CHUNK)
        coin = await self._ensure_collected(exchange_id, symbol_name, may_add)
        return self._history_stream(coin, begin, stop, size, backfill)

    async def holes(
        self, exchange: object, symbol: object, start: object, end: object, backfill: Allowance
    ) -> HistoryStream:
        """[start, end) of a stored series (collected or not; never added), for
        `HistoryStream.fill` to back-fill its holes within `backfill` as `history` would:
        MCP's get_history and download_history with backfill=true, before they read."""
        coin = await self._coin(exchange, symbol)
        begin, stop = _range(start, end)
        return self._history_stream(coin, begin, stop, DEFAULT_CHUNK, backfill)

    def _history_stream(
        self, coin: Coin, begin: int, stop: int, size: int, backfill: Allowance | None
    ) -> HistoryStream:
        """[begin, stop) of `coin`, its holes offered to the exchange's history providers
        within `backfill`, stored rows read within the bound on book reads."""
        return HistoryStream(
            coin,
            begin,
            stop,
            size,
            read=self._reader,
            writer=self._writer,
            providers=self._providers.for_exchange(coin.exchange),
            backfill=backfill,
            pages=self._book_pages,
        )

    async def backfill(
        self,
        exchange: object,
        symbol: object,
        start: object,
        end: object,
        *,
        interval: object = None,
        depth: object = None,
        provider: object = None,
        progress: Progress | None = None,
    ) -> BackfillReport:
        """Fill [start, end) of a series from its history providers (or just `provider`),
        resumably. A series not in the file is registered for history only: no live
        availability check (its exchange may be unreachable), never collected."""
        exchange_id, symbol_name = _exchange(exchange), _symbol(symbol)
        for name, value in (("start", start), ("end", end)):
            if value is None:
                raise BadRequest(f"{name}: required")
        begin, stop = _range(start, end)
        coin = await self._reader.run(reader.coin, exchange_id, symbol_name)
        if coin is None:
            want = _history_series(
                exchange_id,
                symbol_name,
                self._default_interval if interval is None else interval,
                self._default_depth if depth is None else depth,
                self._synthetic(exchange_id),
            )
            now = now_ms()
            coin = await self._writer.call(
                lambda conn: coin_writes.register_history_only(conn, want, now)
            )
        else:
            _same_series(coin, interval, depth)
        only = None
        if provider is not None:
            if not isinstance(provider, str) or not provider:
                raise BadRequest(f"provider: expected a provider name, got {provider!r:.60}")
            only = provider
        try:
            sources = self._providers.for_exchange(coin.exchange, only)
        except ConfigError as exc:
            raise BadRequest(f"provider: {exc}") from None
        return await backfill_range(
            coin, begin, stop, sources, self._reader, self._writer, progress
        )

    def _synthetic(self, exchange_id: str) -> bool:
        """Whether an exchange's data is made up, asked without reaching the exchange: a
        plugin of that very name is built (cheap) and says; an exchange served by a
        generic plugin, or by none (history only), is a real one."""
        try:
            spec = self._exchanges.plugins.spec_for(exchange_id)
            return spec.name == exchange_id and self._exchanges.get(exchange_id).synthetic
        except ObdError:
            return False

    def backfill_allowance(self, client: str) -> Allowance:
        """What one connection of `client` (a token's subject, or an address) may
        back-fill, from `[history]`: its own caps, and the daemon's shared meters."""
        limits = self._history_limits
        return Allowance(
            limits.backfill_rows_per_request,
            limits.backfill_rows_per_connection,
            self._backfill_meter,
            client,
        )

    async def _ensure_collected(self, exchange_id: str, symbol_name: str, may_add: bool) -> Coin:
        coin = await self._reader.run(reader.coin, exchange_id, symbol_name)
        if coin is not None and (coin.active or coin.history_only):
            return coin  # a history-only series is served as stored, never collected
        if not may_add:
            raise Forbidden(
                f"{symbol_name} on {exchange_id} is not collected; "
                "adding it needs the 'write' scope"
            )
        # A removed coin comes back at the cadence and depth its stored rows have.
        interval, depth = (coin.interval, coin.depth) if coin is not None else (None, None)
        await self.add_coin(exchange_id, symbol_name, interval, depth)
        coin = await self._reader.run(reader.coin, exchange_id, symbol_name)
        assert coin is not None
        return coin

    # -- health --

    def liveness(self) -> Liveness:
        """Whether the process works (it answered, so its loop turns; its writer commits);
        stale coins are readiness (`health`), never a reason to restart."""
        error = self._writer.failing
        disk = self._space()
        return Liveness(
            status="failing" if error else "ok",
            writer_backlog=self._writer.backlog,
            writer_error=error,
            disk_free_bytes=disk.free_bytes,
            warnings=[disk.warning] if disk.warning else [],
        )

    def _space(self) -> Space:
        return space(self._writer.path, self._low_disk_bytes)

    async def health(self) -> Health:
        coins = []
        stale = False
        now = now_ms()
        for coin, counts in await self._reader.run(reader.coins_with_stats):
            last = counts.last_ts
            since = max(last or 0, coin.added_ts)
            fresh = now - since <= 3 * coin.interval_ms + 30_000
            stale = stale or not fresh
            coins.append(
                {
                    "exchange": coin.exchange,
                    "symbol": coin.symbol,
                    "status": self._status(coin),
                    "last_ts": last,
                    "age_ms": None if last is None else now - last,
                    "fresh": fresh,
                }
            )
        error = self._writer.failing
        disk = self._space()
        return Health(
            status="degraded" if stale or error else "ok",
            writer_backlog=self._writer.backlog,
            writer_error=error,
            coins=coins,
            disk_free_bytes=disk.free_bytes,
            warnings=[disk.warning] if disk.warning else [],
        )

    def stats(self) -> Stats:
        writer, path = self._writer, self._writer.path
        samplers = None if self._collector is None else self._collector.samplers()
        disk = self._space()
        return Stats(
            disk_free_bytes=disk.free_bytes,
            disk_low=disk.low,
            writer_backlog=writer.backlog,
            rows_written=writer.rows_written,
            writer_failing=writer.failing is not None,
            last_batch_s=writer.last_batch_s,
            database_bytes=_size(path),
            wal_bytes=_size(path.with_name(path.name + "-wal")),
            coins=None
            if samplers is None
            else [
                FeedStats(
                    exchange=s.coin.exchange,
                    symbol=s.coin.symbol,
                    live=s.state == "live",
                    failures=s.failures,
                    slot_lag_s=s.last_lag_s,
                )
                for s in samplers
            ],
        )

    # -- helpers --

    async def _coin(self, exchange: object, symbol: object, interval: object = None) -> Coin:
        """The series a read names: at `interval` if given, else the coin's active series,
        else the one collected last (a coin re-added at another interval has several)."""
        exchange_id, symbol_name = _exchange(exchange), _symbol(symbol)
        interval_ms = None if interval is None else parse_interval(interval)
        coin = await self._reader.run(reader.coin, exchange_id, symbol_name, interval_ms)
        if coin is None:
            self._exchanges.plugins.spec_for(exchange_id)  # unknown exchange: say that instead
            if interval_ms is not None:
                raise NotFound(
                    f"{symbol_name} on {exchange_id} was never collected every "
                    f"{format_interval(interval_ms)}"
                )
            raise NotFound(f"{symbol_name} on {exchange_id} is not collected (add it first)")
        return coin

    async def _view(self, coin: Coin) -> CoinView:
        return self._view_of(coin, await self._reader.run(reader.stats, coin.id))

    def _view_of(self, coin: Coin, stats: reader.CoinStats) -> CoinView:
        return CoinView(
            exchange=coin.exchange,
            symbol=coin.symbol,
            interval=coin.interval,
            interval_ms=coin.interval_ms,
            depth=coin.depth,
            status=self._status(coin),
            synthetic=coin.synthetic,
            first_ts=stats.first_ts,
            last_ts=stats.last_ts,
            count=stats.count,
        )

    def _status(self, coin: Coin) -> str:
        if coin.history_only:
            return "history-only"
        if not coin.active:
            return "removed"
        if self._collector is None:
            return "active"  # this process does not collect; a daemon on the file may
        sampler = self._collector.sampler(coin.id)
        return sampler.state if sampler else "starting"

    def _wake_collector(self) -> None:
        if self._collector is not None:
            self._collector.wake()


async def vet_coin(
    exchanges: Exchanges, exchange: object, symbol: object, interval: object, depth: object
) -> coin_writes.CoinRequest:
    """What adding a coin writes, once its arguments are valid and the exchange lists
    the symbol (NotFound if not): `add_coin`, `obd run`'s `[[coins]]` and `obd check`."""
    exchange_id, symbol_name = _exchange(exchange), _symbol(symbol)
    interval_ms = parse_interval(interval)
    levels = _bounded("depth", depth, 1, MAX_DEPTH)
    source = exchanges.get(exchange_id)
    listed = await source.check_availability(symbol_name)
    if not listed.available:
        raise NotFound(listed.reason or f"{symbol_name} is not listed on {exchange_id}")
    return coin_writes.CoinRequest(
        exchange=exchange_id,
        symbol=symbol_name,
        interval_ms=interval_ms,
        interval=interval if isinstance(interval, str) else format_interval(interval_ms),
        depth=levels,
        synthetic=source.synthetic,
        tick_size=listed.tick_size,
        lot_size=listed.lot_size,
    )


def _history_series(
    exchange: str, symbol: str, interval: object, depth: object, synthetic: bool
) -> coin_writes.CoinRequest:
    interval_ms = parse_interval(interval)
    return coin_writes.CoinRequest(
        exchange=exchange,
        symbol=symbol,
        interval_ms=interval_ms,
        interval=interval if isinstance(interval, str) else format_interval(interval_ms),
        depth=_bounded("depth", depth, 1, MAX_DEPTH),
        synthetic=synthetic,
    )


def _same_series(coin: Coin, interval: object, depth: object) -> None:
    """A back-fill of a series in the file takes its interval and depth."""
    if interval is not None and parse_interval(interval) != coin.interval_ms:
        raise Conflict(
            f"interval: {coin.symbol} on {coin.exchange} is stored every {coin.interval}; "
            "back-fill it at that interval (or leave --interval out)"
        )
    if depth is not None and _bounded("depth", depth, 1, MAX_DEPTH) != coin.depth:
        raise Conflict(
            f"depth: {coin.symbol} on {coin.exchange} is stored at depth {coin.depth}; "
            "back-fill it at that depth (or leave --depth out)"
        )


def _same(value: T) -> T:
    return value


def _call(_conn: object, work: Callable[..., R], *args: Any) -> R:
    return work(*args)


def _page(conn: Any, coin: Coin, start: int, end: int, size: int, encode: Callable[[Page], T]) -> T:
    items = reader.books(conn, coin, start, end, size + 1)
    if len(items) <= size:
        return encode(Page(items=items, next=None))
    return encode(Page(items=items[:size], next=_encode_cursor(items[size].ts)))


def _chunk(
    conn: Any,
    coin: Coin,
    start: int,
    end: int,
    size: int,
    encode: Callable[[list[Snapshot]], T],
) -> tuple[T, int, int]:
    """(encoded, last ts, rows) of the next `size` rows from `start`."""
    rows = reader.books(conn, coin, start, end, size)
    return encode(rows), rows[-1].ts if rows else start, len(rows)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _exchange(value: object) -> str:
    if value is None or value == "":
        raise BadRequest("exchange: required")
    if not isinstance(value, str) or not _EXCHANGE_ID.fullmatch(value):
        raise BadRequest(
            f"exchange: expected a lower-case exchange id like 'binance', got {value!r:.60}"
        )
    return value


def _symbol(value: object) -> str:
    if value is None or value == "":
        raise BadRequest("symbol: required")
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise BadRequest(f"symbol: expected a unified symbol like 'BTC/USDT', got {value!r:.60}")
    return value


def _flag(name: str, value: object) -> bool:
    """A yes/no argument: a JSON boolean, or `true`/`false`/`1`/`0` in a query."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise BadRequest(f"{name}: expected true or false, got {value!r:.60}")


def _bounded(name: str, value: object, lo: int, hi: int, default: int | None = None) -> int:
    """An integer argument (or its decimal string) in [lo, hi]; the error names it."""
    if value is None and default is not None:
        return default
    if isinstance(value, str) and is_digits(value) and len(value) < 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"{name}: expected an integer from {lo} to {hi}, got {value!r:.60}")
    return value


def _range(start: object, end: object) -> tuple[int, int]:
    begin = 0 if start is None else parse_time(start, "start")
    stop = now_ms() + 1 if end is None else parse_time(end, "end")
    if begin >= stop:
        raise BadRequest("start: must be before end")
    return begin, stop


_CURSOR_PREFIX = b"obd1:"


def _encode_cursor(ts: int) -> str:
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + str(ts).encode()).decode().rstrip("=")


def _cursor_ts(cursor: object, begin: int, stop: int) -> int:
    """The ts a cursor resumes at; it must lie inside the requested range."""
    malformed = BadRequest("cursor: malformed; pass the `next` value of the previous page")
    if not isinstance(cursor, str) or len(cursor) > 64:
        raise malformed
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, binascii.Error):
        raise malformed from None
    digits = raw.removeprefix(_CURSOR_PREFIX)
    if digits == raw or not (digits.isascii() and digits.isdigit()):
        raise malformed
    ts = int(digits)
    if not begin <= ts < stop:
        raise BadRequest("cursor: does not belong to this range")
    return ts
