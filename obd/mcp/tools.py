"""The MCP tool set, the same over stdio (`obd mcp`) and HTTP (`/mcp`).

Each tool is one call into the service layer; its docstring is the description an
agent reads. Argument and result shapes live in `obd.mcp.shapes`.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations

from obd.auth import Authenticator, require
from obd.errors import BadRequest, Forbidden, NotFound, ObdError, TooManyRequests, Unavailable
from obd.mcp import downloads
from obd.mcp.shapes import (
    DEFAULT_HISTORY_ROWS,
    DEFAULT_LATEST_LEVELS,
    DEFAULT_MARKETS,
    MAX_COINS,
    MAX_EXCHANGES,
    MAX_GAPS,
    AddedCoin,
    BackfillArg,
    Backfilled,
    CoinList,
    CoverageResult,
    DepthArg,
    Download,
    EveryArg,
    ExchangeArg,
    ExchangeList,
    FormatArg,
    History,
    HistoryLevels,
    HistoryLimit,
    IntervalArg,
    Latest,
    LatestLevels,
    MarketList,
    MarketsLimit,
    OffsetArg,
    OptionalTime,
    PathArg,
    QueryArg,
    RemovedCoin,
    SymbolArg,
    TimeArg,
    coin_entry,
    compact,
    row_cap,
)
from obd.plugin import Availability
from obd.research import sinks as download
from obd.service import BookCount, Service, books_link
from obd.times import iso

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
MAX_WHY = 500  # characters of the providers' reasons in one answer
STDIO_CLIENT = "mcp-stdio"  # who back-fills over stdio, for the meters: the local user
A = TypeVar("A", History, Download)
ANNOTATIONS = {
    "add_coin": ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
    ),
    "remove_coin": ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
    ),
    "check_availability": ToolAnnotations(read_only_hint=True, open_world_hint=True),
    "list_coins": _READ,
    "get_latest": _READ,
    # Reads, unless asked to back-fill: that stores what history providers (an archive,
    # a peer obd, the exchange) serve, so neither is read-only nor closed-world.
    "get_history": ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
    ),
    "download_history": ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
    ),
    "coverage": _READ,
    "list_markets": ToolAnnotations(read_only_hint=True, open_world_hint=True),
    "list_exchanges": _READ,
}
NAMES = tuple(ANNOTATIONS)
TITLES = {
    "add_coin": "Start collecting a coin",
    "remove_coin": "Stop collecting a coin",
    "check_availability": "Check an exchange lists a symbol",
    "list_coins": "List collected coins",
    "get_latest": "Latest order book",
    "get_history": "Order-book history (compact rows)",
    "download_history": "Download complete order books",
    "coverage": "Coverage and gaps",
    "list_markets": "List an exchange's markets",
    "list_exchanges": "List exchanges",
}


class Tools:
    """The tools over one service. Over stdio download_history writes files under
    `download_dir`. Over HTTP (`authenticator` given) it answers with a link instead, and
    add/remove need the `write` scope of the caller's token."""

    def __init__(
        self,
        service: Service,
        *,
        download_dir: Path | None = None,
        daemon_running: Callable[[], bool] = lambda: False,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.service = service
        self.download_dir = download_dir or Path("downloads")
        self.over_http = authenticator is not None
        self._daemon_running = daemon_running
        self._authenticator = authenticator

    async def add_coin(
        self,
        exchange: ExchangeArg,
        symbol: SymbolArg,
        ctx: Context,
        interval: IntervalArg = None,
        depth: DepthArg = None,
    ) -> AddedCoin:
        """Start collecting a coin's order book: one snapshot of the L2 book every
        `interval`, aligned to the clock (UTC), `depth` levels a side, kept losslessly.
        Checks first that the exchange lists the symbol. Adding a coin that is already
        collected the same way changes nothing (created=false). Snapshots show up after
        one interval: then call get_latest, get_history or coverage."""
        await self._require(ctx, "write")
        coin, created = await self.service.add_coin(exchange, symbol, interval, depth)
        collecting = self._collecting()
        note = _collection_note(created, collecting)
        return AddedCoin(coin=coin, created=created, collecting=collecting, note=note)

    async def remove_coin(
        self, exchange: ExchangeArg, symbol: SymbolArg, ctx: Context
    ) -> RemovedCoin:
        """Stop collecting a coin. Its stored snapshots stay readable (get_history,
        download_history); add_coin resumes it later, the pause recorded as a gap."""
        await self._require(ctx, "write")
        coin = await self.service.remove_coin(exchange, symbol)
        return RemovedCoin(coin=coin, note="collection stops within about a second; data is kept")

    async def check_availability(self, exchange: ExchangeArg, symbol: SymbolArg) -> Availability:
        """Ask the exchange whether it lists a symbol obd can collect. Returns
        available (and the price tick and size lot when known), or available=false with
        the reason. Call add_coin next to collect it."""
        return await self.service.availability(exchange, symbol)

    async def list_coins(self) -> CoinList:
        """The coins obd collects: interval, depth, status, and the stored range
        (first_ts, last_ts in ms and ISO 8601, count of snapshots), and whether any
        process collects right now (`collecting`; status 'idle' when none does).
        Start here to find what data exists and the times to pass to get_history."""
        coins = await self.service.list_coins()
        collecting = self._collecting()
        note = None if collecting or not coins else _collection_note(True, False)
        return CoinList(
            coins=[coin_entry(coin, collecting) for coin in coins[:MAX_COINS]],
            truncated=len(coins) > MAX_COINS,
            collecting=collecting,
            note=note,
        )

    async def get_latest(
        self, exchange: ExchangeArg, symbol: SymbolArg, levels: LatestLevels = None
    ) -> Latest:
        """The most recent stored snapshot of a collected coin: bids best (highest)
        first, asks best (lowest) first, each [price, size] exactly as the exchange gave
        them, cut to `levels` a side. `ts` is the slot (ms) it belongs to, `ts_iso` the
        same in ISO 8601."""
        snapshot = await self.service.latest(exchange, symbol)
        top = DEFAULT_LATEST_LEVELS if levels is None else levels
        fields = msgspec.structs.asdict(snapshot)
        fields.update(bids=snapshot.bids[:top], asks=snapshot.asks[:top])
        return Latest(**fields, ts_iso=iso(snapshot.ts))

    async def get_history(
        self,
        exchange: ExchangeArg,
        symbol: SymbolArg,
        start: TimeArg,
        end: TimeArg,
        ctx: Context,
        limit: HistoryLimit = None,
        levels: HistoryLevels = None,
        every: EveryArg = None,
        backfill: BackfillArg = False,
    ) -> History:
        """Compact rows of stored snapshots with start <= ts < end, oldest first: ts
        (ms; ts_iso the same in ISO 8601), best_bid, best_ask, mid, spread_bps (basis
        points), bid_size_10 / ask_size_10 (size summed over the 10 best levels, base
        units) and imbalance_10 ((bid - ask) / (bid + ask) of those sizes, -1 to 1).
        At most 200 rows a call: pass `every` (e.g. '1h') to sample a long range with
        one row per bucket, continue from `next_start`, or use download_history for
        complete books. With backfill=true, holes in the range are first filled from
        obd's history providers (the answer says how many rows, and which gaps remain
        and why)."""
        filled = await self._backfill(ctx, exchange, symbol, start, end) if backfill else None
        wanted = DEFAULT_HISTORY_ROWS if limit is None else limit
        top = levels or 0
        cap = min(wanted, row_cap(top))
        page = await self.service.summaries(exchange, symbol, start, end, cap, every, top)
        note = None
        if page.next_start is not None:
            note = (
                f"more rows in the range: call again with start={page.next_start}, pass "
                "`every` to sample it, or use download_history for everything"
            )
            if cap < wanted:
                note += f" (with levels={top} a call returns at most {cap} rows)"
        answer = History(
            rows=[compact(row) for row in page.rows],
            truncated=page.next_start is not None,
            next_start=page.next_start,
            note=note,
        )
        return _with(answer, filled)

    async def download_history(
        self,
        exchange: ExchangeArg,
        symbol: SymbolArg,
        start: TimeArg,
        end: TimeArg,
        format: FormatArg,
        ctx: Context,
        path: PathArg = None,
        backfill: BackfillArg = False,
    ) -> Download:
        """Complete, lossless snapshots of a range (start <= ts < end) for analysis
        outside this conversation. Over stdio (`obd mcp`): writes a parquet, csv or ndjson
        file under obd's download directory and returns its path (count and size too).
        Over HTTP (/mcp): serves format='ndjson' only, as a url of obd's /v1/books
        endpoint streaming the range (fetch it with the same Authorization header);
        for parquet or csv files use `obd mcp` or `obd export` on the server.
        With backfill=true, holes in the range are first filled from obd's history
        providers (the answer says how many rows, and which gaps remain and why)."""
        if self.over_http:
            _http_only_ndjson(format, path)
        filled = await self._backfill(ctx, exchange, symbol, start, end) if backfill else None
        counted = await self.service.count_books(exchange, symbol, start, end)
        if counted.count == 0:
            why = "" if filled is None or not filled.unfilled_why else f" ({filled.unfilled_why})"
            raise NotFound(
                f"start/end: no snapshots of {symbol} on {exchange} in [{counted.start}, "
                f"{counted.end}){why}; coverage shows what is stored"
            )
        if self.over_http:
            return _with(self._link(ctx, str(exchange), str(symbol), counted), filled)
        download.check_format(format)
        safe = re.sub(r"[^A-Za-z0-9._-]", "-", f"{exchange}_{symbol}")
        default_name = f"{safe}_{counted.start}_{counted.end}.{format}"
        target = downloads.target(self.download_dir, path, default_name)
        chunks = await self.service.stream_books(exchange, symbol, counted.start, counted.end)
        written = await download.write(chunks, target, format)
        answer = Download(
            format=format,
            count=written,
            start=counted.start,
            end=counted.end,
            start_iso=iso(counted.start),
            end_iso=iso(counted.end),
            path=str(target),
            size_bytes=target.stat().st_size,
        )
        return _with(answer, filled)

    async def coverage(
        self,
        exchange: ExchangeArg,
        symbol: SymbolArg,
        start: OptionalTime = None,
        end: OptionalTime = None,
        sources: bool = False,
        fillable: bool = False,
    ) -> CoverageResult:
        """How complete a coin's data is over [start, end) (default: since it was added,
        until now): slots expected at its interval, snapshots present, and the gaps
        with their reason (daemon_down, disconnected, not_synced, removed, pending, ...).
        Shows at most 100 gaps; narrow the range to see the rest. `providers` names the
        history providers a back-fill asks to fill gaps (obd backfill, WebSocket
        history, get_history and download_history with backfill=true); `sources` =
        true also lists where the present slots came from (live capture or which
        back-fill); `fillable` = true says per gap (the first 20) which provider could
        fill it, or why none could."""
        found = await self.service.coverage(
            exchange, symbol, start, end, sources=sources, fillable=fillable
        )
        return CoverageResult(
            start=found.start,
            end=found.end,
            start_iso=iso(found.start),
            end_iso=iso(found.end),
            interval_ms=found.interval_ms,
            expected=found.expected,
            present=found.present,
            gaps=found.gaps[:MAX_GAPS],
            gaps_total=len(found.gaps),
            truncated=len(found.gaps) > MAX_GAPS,
            providers=found.providers or [],
            sources=None if found.sources is None else found.sources[:MAX_GAPS],
            fillable=found.fillable,
        )

    async def list_markets(
        self,
        exchange: ExchangeArg,
        query: QueryArg = None,
        limit: MarketsLimit = None,
        offset: OffsetArg = None,
    ) -> MarketList:
        """The markets (symbols) an exchange lists, exact and base matches first: symbol,
        base, quote, type (spot, swap, future, option), active (trading now) and
        collected (obd has it already). Filter with `query` ('BTC', '/USDC'); page with
        `offset`. Pass a symbol from here to check_availability or add_coin."""
        wanted = DEFAULT_MARKETS if limit is None else limit
        page = await self.service.list_markets(exchange, query, wanted, offset)
        return MarketList(
            exchange=page.exchange,
            markets=page.markets,
            total=page.total,
            truncated=page.next_offset is not None,
            next_offset=page.next_offset,
        )

    async def list_exchanges(self) -> ExchangeList:
        """The exchange ids obd can collect from (pass one as `exchange` to the other
        tools): the plugin serving each, synthetic=true for made-up data (the 'sim'
        test market), and how many coins obd collects there."""
        found = await self.service.list_exchanges()
        return ExchangeList(exchanges=found[:MAX_EXCHANGES], truncated=len(found) > MAX_EXCHANGES)

    # -- helpers --

    def _collecting(self) -> bool:
        return self.service.collecting or self._daemon_running()

    async def _require(self, ctx: Context, scope: str) -> None:
        if self._authenticator is None:
            return  # stdio: whoever can open the database file may change it
        headers = ctx.headers or {}
        require(await self._authenticator.authenticate(headers.get("authorization")), scope)

    async def _backfill(
        self, ctx: Context, exchange: str, symbol: str, start: int | str, end: int | str
    ) -> Backfilled:
        """Fill the holes of [start, end) from the history providers as the WebSocket's
        history does: the same stream, with one allowance a call counted against the
        caller in the daemon's meters."""
        client = await self._backfiller(ctx)
        allowance = self.service.backfill_allowance(client)
        stream = await self.service.holes(exchange, symbol, start, end, allowance)
        try:
            await stream.fill()
        except TooManyRequests as exc:
            raise TooManyRequests(
                f"backfill: stopped after {stream.backfilled} row(s) back-filled and stored; {exc}",
                exc.retry_after_s,
            ) from None
        why = stream.backfill_error
        return Backfilled(
            backfilled=stream.backfilled,
            gaps=stream.gaps[:MAX_GAPS],
            gaps_truncated=stream.gaps_truncated or len(stream.gaps) > MAX_GAPS,
            unfilled_why=None if why is None else why[:MAX_WHY],
        )

    async def _backfiller(self, ctx: Context) -> str:
        """Who back-fills, as the meters count clients, once it is known they may: over
        HTTP a token holding `write` (its subject; auth off: the caller's address)."""
        if self._authenticator is None:
            return STDIO_CLIENT  # whoever can open the database file may write it
        headers = ctx.headers or {}
        principal = await self._authenticator.authenticate(headers.get("authorization"))
        if "write" not in principal.scopes:
            held = ", ".join(sorted(principal.scopes)) or "none"
            raise Forbidden(
                "backfill: back-filling stores rows fetched from the history providers, "
                f"so it needs the 'write' scope (this token has: {held}); call without "
                "backfill to read what is stored"
            )
        if principal.subject != "anonymous":
            return principal.subject
        client = getattr(ctx.request_context.request, "client", None)
        return str(client[0]) if client else "?"

    def _link(self, ctx: Context, exchange: str, symbol: str, counted: BookCount) -> Download:
        link = books_link(exchange, symbol, counted.start, counted.end)
        # The Host the client reached us by (already checked against the allowed hosts).
        host = (ctx.headers or {}).get("host")
        url = f"http://{host}{link}" if host else link
        return Download(
            format="ndjson",
            count=counted.count,
            start=counted.start,
            end=counted.end,
            start_iso=iso(counted.start),
            end_iso=iso(counted.end),
            url=url,
        )


def _with(answer: A, filled: Backfilled | None) -> A:
    """`answer` saying what a back-fill before it did, if one ran."""
    if filled is None:
        return answer
    return msgspec.structs.replace(answer, **msgspec.structs.asdict(filled))


def _http_only_ndjson(form: str, path: str | None) -> None:
    """Over HTTP the file is the client's to write: say so up front, never substitute.
    (Parquet keeps its index at the end of the file, so /v1/books cannot stream it in
    flat memory; `obd export` writes it on the server.)"""
    if form != "ndjson":
        raise BadRequest(
            f"format: over HTTP download_history serves ndjson only (a link to "
            f"GET /v1/books?format=ndjson); for a {form} file run `obd mcp` or `obd export`"
        )
    if path is not None:
        raise BadRequest("path: over HTTP nothing is written on the server; omit path, fetch url")


def _collection_note(created: bool, collecting: bool) -> str:
    if not created:
        return "already collected with this interval and depth; nothing changed"
    if collecting:
        return "collection starts within about a second; the first snapshot lands at the next slot"
    return (
        "no obd daemon is collecting into this database now: collection starts when "
        "`obd run` (or `obd mcp --collect`) runs"
    )


_HINTS: dict[type[ObdError], dict[str, str]] = {
    NotFound: {
        "add_coin": "check_availability says whether the exchange lists a symbol",
        "check_availability": "",
        "list_markets": "",
        "*": "list_coins shows what is collected and stored; add_coin starts collecting",
    },
    Unavailable: {"*": "the exchange could not be reached; try again in a minute"},
    BadRequest: {"*": ""},
}


def explain(tool: str, exc: ObdError) -> str:
    """The error message an agent reads, with what to try next."""
    for kind, hints in _HINTS.items():
        if isinstance(exc, kind):
            hint = hints.get(tool, hints.get("*", ""))
            return f"{exc}; {hint}" if hint else str(exc)
    return str(exc)
