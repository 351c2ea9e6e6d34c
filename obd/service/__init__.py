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
from obd.errors import BadRequest, Forbidden, NotFound
from obd.exchanges import Exchanges
from obd.model import Coin, Snapshot
from obd.plugin import Availability
from obd.service import markets as discovery
from obd.service.coverage import Coverage, coverage
from obd.service.history import DEFAULT_CHUNK, MAX_CHUNK, Allowance, HistoryStream
from obd.service.markets import ExchangeView, MarketPage, MarketView
from obd.storage import coins as coin_writes
from obd.storage import reader
from obd.storage.reader import Reader, SummaryRow
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
    "BookCount",
    "CoinView",
    "Coverage",
    "ExchangeView",
    "FeedStats",
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


class Liveness(msgspec.Struct, frozen=True):
    status: str  # "ok" or "failing": the writer cannot commit
    writer_backlog: int
    writer_error: str | None


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
    ) -> None:
        self._exchanges = exchanges
        self._reader = read
        self._writer = writer
        self._collector = collector  # None where this process does not collect
        self._default_interval = default_interval
        self._default_depth = default_depth
        self._history_limits = history or History()
        self.clients = Clients(read, writer)
        self._serving = asyncio.Semaphore(SERVE_CONCURRENCY)

    @property
    def collecting(self) -> bool:
        """Whether this process collects (a daemon on the same file may, when not)."""
        return self._collector is not None

    # -- coins --

    async def list_coins(self) -> list[CoinView]:
        return [await self._view(coin) for coin in await self._reader.run(reader.coins)]

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
    ) -> Page:
        return await self.books_as(_same, exchange, symbol, start, end, limit, cursor)

    async def books_as(
        self,
        encode: Callable[[Page], T],
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
        limit: object = None,
        cursor: object = None,
    ) -> T:
        """`books`, passed through `encode` on the worker thread that read it: a page of
        deep books is as costly to encode as to decode, and neither belongs on the loop."""
        coin = await self._coin(exchange, symbol)
        begin, stop = _range(start, end)
        size = _bounded("limit", limit, 1, MAX_PAGE, DEFAULT_PAGE)
        if cursor is not None:
            begin = _cursor_ts(cursor, begin, stop)
        return await self._serve(_page, coin, begin, stop, size, encode)

    async def stream_books(
        self, exchange: object, symbol: object, start: object = None, end: object = None
    ) -> AsyncIterator[list[Snapshot]]:
        """The whole range in chunks, oldest first; memory stays flat however long it is."""
        return await self.stream_books_as(_same, exchange, symbol, start, end)

    async def stream_books_as(
        self,
        encode: Callable[[list[Snapshot]], T],
        exchange: object,
        symbol: object,
        start: object = None,
        end: object = None,
    ) -> AsyncIterator[T]:
        """`stream_books`, each chunk passed through `encode` on the worker thread that
        read it."""
        coin = await self._coin(exchange, symbol)
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
    ) -> SummaryPage:
        """Summary columns of a range without decoding blobs (unless `levels` asks for the
        top of each book); `every` keeps the first snapshot of each such bucket."""
        coin = await self._coin(exchange, symbol)
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
        self, exchange: object, symbol: object, start: object = None, end: object = None
    ) -> BookCount:
        """How many snapshots `books`/`stream_books` would give for the same arguments."""
        coin = await self._coin(exchange, symbol)
        begin, stop = _range(start, end)
        found = await self._reader.run(reader.count, coin.id, begin, stop)
        return BookCount(start=begin, end=stop, count=found)

    async def latest(self, exchange: object, symbol: object) -> Snapshot:
        coin = await self._coin(exchange, symbol)
        snapshot = await self._serve(reader.latest, coin)
        if snapshot is None:
            raise NotFound(f"no snapshot of {coin.symbol} on {coin.exchange} yet")
        return snapshot

    async def coverage(
        self, exchange: object, symbol: object, start: object = None, end: object = None
    ) -> Coverage:
        coin = await self._coin(exchange, symbol)
        now = now_ms()
        begin = slot_at_or_after(coin.added_ts + 1, coin.interval_ms)
        if start is not None:
            begin = parse_time(start, "start")
        stop = now if end is None else parse_time(end, "end")
        if begin >= stop and (start is not None and end is not None):
            raise BadRequest("start: must be before end")
        return await self._reader.run(coverage, coin, begin, max(begin, min(stop, now)), now)

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
        return HistoryStream(
            coin,
            begin,
            stop,
            size,
            read=self._reader,
            writer=self._writer,
            source=self._exchanges.get(coin.exchange),
            plugin=self._exchanges.plugins.spec_for(coin.exchange).name,
            backfill=backfill,
            pages=self._book_pages,
        )

    def backfill_allowance(self) -> Allowance:
        """What one client (a WebSocket connection) may back-fill, from `[history]`."""
        limits = self._history_limits
        return Allowance(limits.backfill_rows_per_request, limits.backfill_rows_per_connection)

    async def _ensure_collected(self, exchange_id: str, symbol_name: str, may_add: bool) -> Coin:
        coin = await self._reader.run(reader.coin, exchange_id, symbol_name)
        if coin is not None and coin.active:
            return coin
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
        return Liveness(
            status="failing" if error else "ok",
            writer_backlog=self._writer.backlog,
            writer_error=error,
        )

    async def health(self) -> Health:
        coins = []
        stale = False
        now = now_ms()
        for coin in await self._reader.run(reader.coins):
            last = await self._reader.run(reader.last_ts, coin.id)
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
        return Health(
            status="degraded" if stale or error else "ok",
            writer_backlog=self._writer.backlog,
            writer_error=error,
            coins=coins,
        )

    def stats(self) -> Stats:
        writer, path = self._writer, self._writer.path
        samplers = None if self._collector is None else self._collector.samplers()
        return Stats(
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

    async def _coin(self, exchange: object, symbol: object) -> Coin:
        exchange_id, symbol_name = _exchange(exchange), _symbol(symbol)
        coin = await self._reader.run(reader.coin, exchange_id, symbol_name)
        if coin is None:
            self._exchanges.plugins.spec_for(exchange_id)  # unknown exchange: say that instead
            raise NotFound(f"{symbol_name} on {exchange_id} is not collected (add it first)")
        return coin

    async def _view(self, coin: Coin) -> CoinView:
        stats = await self._reader.run(reader.stats, coin.id)
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
