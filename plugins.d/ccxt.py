"""`ccxt`: one plugin for every exchange ccxt knows (binance, kraken, okx, bybit, ...).

Live books come from ccxt.pro's `watch_order_book` where the exchange has a
websocket order book; where it has none (or `live = false`), `watch` raises
`NoLiveStream` and the kernel takes a REST snapshot (`fetch_book`) at each slot.

ccxt neither reconnects nor backs off, so obd does: the kernel's sampler retries
with capped, jittered backoff, and this module adds what only it can see:
- a hook on each websocket client's frames: a change to a watched book is
  yielded the moment ccxt applied it (ccxt applies diffs it has no waiter to
  tell about), and a frame that changed nothing (a pong, another symbol's diff)
  re-yields the same book as a heartbeat, which lets the kernel tell a quiet book
  from a dead feed;
- a staleness watchdog on the websocket: no frame at all (not even a pong to
  ccxt's pings) for `stale_after_s` means the connection is dead, so it is torn
  down; a quiet but healthy book keeps answering pings and never trips it;
- a range guard: a book kept from a REST snapshot plus diffs is complete only
  between the snapshot's deepest levels; if the touch walks past them the top
  `depth` levels are no longer known, so it resyncs instead of serving them;
- an exchange-wide pause after a 429, so one coin's refusal is not answered by
  every other coin of that exchange asking again;
- ccxt's errors mapped to obd's (`RateLimited`, `NotSynced`, `Disconnected`,
  `ExchangeError`, `NotFound`), which the kernel records as gap reasons.

ccxt costs ~1.5 s and ~110 MiB to import and cannot load one exchange alone, so
it is imported only when a ccxt exchange is first used, in a worker thread so
the event loop keeps serving. This module must not import it at module level.
"""

import asyncio
import functools
import importlib
import importlib.util
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from obd.errors import (
    Disconnected,
    ExchangeError,
    HistoryNotAvailable,
    NoLiveStream,
    NotFound,
    NotSynced,
    ObdError,
    RateLimited,
)
from obd.model import Book, Level
from obd.plugin import Availability, PluginSpec

__all__ = ["PLUGIN", "CcxtExchange", "CcxtOptions", "create"]

T = TypeVar("T")
Seconds = Annotated[float, msgspec.Meta(gt=0)]
_ID = re.compile(r"[a-z][a-z0-9]{1,40}")
_TICK_S = 1.0  # how often each watch looks at its connection and the listing
_HEARTBEAT_S = 0.2  # a quiet book is re-confirmed at most this often (frames permitting)
# ccxt reports errors only to a pending watch_order_book call; changes reach obd by its
# own frame hook, so that call is renewed at most this often (it costs as much as a diff)
_REARM_S = 0.5
_MESSAGE_CHARS = 300  # of an exchange's error text kept (a 503 can be a whole HTML page)


class CcxtOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """`[exchanges.<id>]` for an exchange served by ccxt. Every key is optional."""

    options: dict[str, Any] = {}  # ccxt `options`, merged over obd's defaults
    urls: dict[str, Any] = {}  # ccxt `urls` overrides, deep-merged (testnets, emulators)
    live: bool = True  # false: REST snapshots at each slot even where a websocket exists
    timeout_s: Seconds = 10.0  # each REST request and websocket connect
    rate_limit_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None  # ccxt `rateLimit`
    cooldown_s: Seconds = 10.0  # exchange-wide pause after a 429 that names no Retry-After
    markets_ttl_s: Seconds = 3600.0  # listings are reloaded this often (delistings, halts)
    ping_interval_s: Seconds = 10.0  # websocket pings (ccxt `keepAlive`)
    stale_after_s: Seconds = 30.0  # no frame for this long: the connection is dead
    depth_limits: list[int] | None = None  # depths the REST book endpoint accepts
    ws_depth_limits: list[int] | None = None  # depths `watch_order_book` accepts
    api_key: str | None = None  # optional; public market data needs none
    secret: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never show credentials, whoever prints this
        hidden = {"api_key", "secret", "password"}
        shown = (
            f"{name}={'***' if name in hidden else repr(getattr(self, name))}"
            for name in self.__struct_fields__
            if getattr(self, name) not in (None, {})
        )
        return f"CcxtOptions({', '.join(shown)})"


class _Depths(msgspec.Struct, frozen=True):
    """What an exchange's book endpoints accept; None: any number up to its maximum."""

    rest: tuple[int, ...] | None = None
    ws: tuple[int, ...] | None = None
    # A websocket book kept from a REST snapshot plus diffs (binance) is asked for
    # this many times the depth stored, so the touch can wander before it resyncs.
    ws_margin: int = 1


_BINANCE = (5, 10, 20, 50, 100, 500, 1000, 5000)
_KNOWN_DEPTHS = {
    "binance": _Depths(rest=_BINANCE, ws=_BINANCE, ws_margin=4),
    "binanceus": _Depths(rest=_BINANCE, ws=_BINANCE, ws_margin=4),
    "kraken": _Depths(ws=(10, 25, 100, 500, 1000)),
    "okx": _Depths(ws=(5, 400)),
    "bybit": _Depths(ws=(1, 50, 200, 1000)),
}


def _accepted(choices: tuple[int, ...] | None, want: int) -> int:
    """The smallest accepted depth that covers `want` (else the largest there is)."""
    if not choices:
        return want
    return min((c for c in choices if c >= want), default=max(choices))


class _Edges(msgspec.Struct, frozen=True):
    """The deepest bid and ask of a REST snapshot (None: it held the whole side)."""

    low: float | None
    high: float | None


def _edges(book: Any, limit: int | None) -> _Edges:
    bids, asks = book["bids"], book["asks"]
    if limit is None:
        return _Edges(None, None)
    return _Edges(
        low=bids[-1][0] if len(bids) >= limit else None,
        high=asks[-1][0] if len(asks) >= limit else None,
    )


class _Range:
    """The price range a diff-kept book is complete in: between its snapshot's deepest
    levels, narrowed whenever ccxt trims the book to its limit. Levels outside were
    never seen, so the top `depth` are right only while they all lie inside."""

    def __init__(self) -> None:
        self.snapshot: _Edges | None = None
        self.low: float | None = None
        self.high: float | None = None

    def covers(self, book: Any, snapshot: _Edges | None, depth: int, limit: int) -> bool:
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


def _book(raw: Any, depth: int, received_ts: int) -> Book:
    """A ccxt order book (levels `[price, amount, ...]`, floats) as obd's Book."""
    bids: list[Level] = [(level[0], level[1]) for level in raw["bids"][:depth]]
    asks: list[Level] = [(level[0], level[1]) for level in raw["asks"][:depth]]  # copies:
    # ccxt updates its levels in place
    return Book(bids, asks, exchange_ts=raw.get("timestamp"), received_ts=received_ts)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@functools.cache
def _ccxt_root() -> Path | None:
    """Where the ccxt package lives, found without importing it."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def serves(exchange_id: str) -> bool:
    """Whether ccxt has an exchange with this id (a file check: nothing imported)."""
    root = _ccxt_root()
    return bool(
        root
        and _ID.fullmatch(exchange_id)
        and (root / "async_support" / f"{exchange_id}.py").is_file()
    )


def _config(options: CcxtOptions) -> dict[str, Any]:
    """The ccxt constructor's config: obd's defaults, then the user's `[exchanges.<id>]`."""
    ccxt_options: dict[str, Any] = {
        # ccxt retries a failed snapshot at once, 3 times: obd retries with backoff
        "watchOrderBook": {"maxRetries": 1},
    }
    _merge(ccxt_options, options.options)
    config: dict[str, Any] = {
        "enableRateLimit": True,  # ccxt spaces requests by each endpoint's weight
        "timeout": int(options.timeout_s * 1000),
        "options": ccxt_options,
        "urls": options.urls,
        "streaming": {"keepAlive": int(options.ping_interval_s * 1000), "maxPingPongMisses": 2},
    }
    if options.rate_limit_ms is not None:
        config["rateLimit"] = options.rate_limit_ms
    credentials = {"apiKey": options.api_key, "secret": options.secret}
    credentials["password"] = options.password
    config.update({key: value for key, value in credentials.items() if value is not None})
    return config


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _open(
    exchange_id: str,
    options: CcxtOptions,
    before_request: Callable[[], None],
    after_error: Callable[[Exception], object],
) -> tuple[Any, Any]:
    """(the ccxt module, an exchange instance); runs in a worker thread (slow imports)."""
    ccxt = importlib.import_module("ccxt")
    pro = importlib.import_module("ccxt.pro")
    cls = getattr(pro, exchange_id, None)
    if cls is None:  # no websocket support in ccxt for this exchange: REST only
        cls = getattr(importlib.import_module("ccxt.async_support"), exchange_id)
    instance = _instrumented(cls)(_config(options))
    instance._obd_snapshots = {}
    instance._obd_before_request = before_request
    instance._obd_after_error = after_error
    return ccxt, instance


@functools.cache
def _instrumented(cls: Any) -> Any:
    """`cls` with two hooks: every HTTP request first asks obd (which refuses while the
    exchange has told it to back off), and the edges of each REST snapshot a websocket
    book is built from are noted (for the range guard)."""

    async def fetch(
        self: Any, url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        self._obd_before_request()
        try:
            return await cls.fetch(self, url, method, headers, body)
        except Exception as exc:
            # Note a 429 here, where it happens: ccxt's own snapshot retries would
            # otherwise hammer on before the error ever reaches obd.
            self._obd_after_error(exc)
            raise

    async def fetch_rest_order_book_safe(
        self: Any, symbol: str, limit: int | None = None, params: Any = None
    ) -> Any:
        book = await cls.fetch_rest_order_book_safe(self, symbol, limit, params or {})
        self._obd_snapshots[symbol] = _edges(book, limit)
        return book

    hooks = {"fetch": fetch, "fetch_rest_order_book_safe": fetch_rest_order_book_safe}
    return type(cls.__name__, (cls,), hooks)


@functools.lru_cache(maxsize=4096)
def _names(key: object, symbol: str) -> bool:
    """Whether a ccxt subscription key ("orderbook::BTC/USDT", "...::BTC/USDT,ETH/USDT")
    is about `symbol`, and not merely about a longer one ("BTC/USDT:USDT")."""
    return re.search(rf"(^|[:,]){re.escape(symbol)}($|,)", str(key)) is not None


def _version(book: Any) -> tuple[Any, Any]:
    return book.get("nonce"), book.get("timestamp")


class _Watcher:
    """One watched symbol, woken by every frame of its connection that matters: at once
    when ccxt changed its book (ccxt applies diffs it has no waiter to tell, and a
    change noticed late would be stamped late), and at most every `_HEARTBEAT_S` when
    the connection merely spoke (the heartbeat that proves a quiet book current)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.source: Any = None  # ccxt's book object, once a watch returned it
        self.version: tuple[Any, Any] = (None, None)  # of the book last yielded
        self.wake = asyncio.Event()
        self.client: Any = None  # the ccxt websocket client it listens to
        self.heard = False  # a frame arrived since the last yield
        self.ticked = False  # time to look at the connection and the listing
        self._woken_s = 0.0

    def tick(self) -> None:
        self.ticked = True
        self.wake.set()

    def changed(self, current: Any) -> bool:
        """Whether ccxt's book differs from the one last yielded (always, if it keeps
        neither a nonce nor a timestamp)."""
        version = _version(current)
        return current is not self.source or version != self.version or version == (None, None)

    def on_frame(self, books: dict[str, Any]) -> None:
        current = books.get(self.symbol)
        changed = current is not None and self.changed(current)
        now_s = time.monotonic()
        if changed or now_s - self._woken_s >= _HEARTBEAT_S:
            self._woken_s = now_s
            self.heard = True
            self.wake.set()


class CcxtExchange:
    """One exchange id served through one shared ccxt instance, whatever the coin count."""

    synthetic = False

    def __init__(self, exchange_id: str, options: CcxtOptions) -> None:
        self.exchange_id = exchange_id
        self.options = options
        known = _KNOWN_DEPTHS.get(exchange_id, _Depths())
        self._depths = _Depths(
            rest=tuple(options.depth_limits) if options.depth_limits else known.rest,
            ws=tuple(options.ws_depth_limits) if options.ws_depth_limits else known.ws,
            ws_margin=known.ws_margin,
        )
        self._ccxt: Any = None  # the ccxt module, once imported
        self._exchange: Any = None
        self._opening = asyncio.Lock()
        self._loading = asyncio.Lock()
        self._markets_at = -math.inf  # monotonic time of the last good load_markets
        self._cool_until = 0.0  # monotonic: no REST before this (after a 429)
        self._closing: set[asyncio.Task[Any]] = set()
        self._watchers: set[_Watcher] = set()
        self._ticker: asyncio.Future[None] | None = None

    # -- the contract --

    async def check_availability(self, symbol: str) -> Availability:
        markets = await self._markets()
        market = markets.get(symbol)
        if market is None:
            return Availability(False, reason=f"{symbol} is not listed on {self.exchange_id}")
        if market.get("active") is False:
            status = (market.get("info") or {}).get("status") or "inactive"
            reason = f"{symbol} is not trading on {self.exchange_id} (status {status})"
            return Availability(False, reason=reason)
        return Availability(
            True, tick_size=self._step(market, "price"), lot_size=self._step(market, "amount")
        )

    async def watch(self, symbol: str, depth: int) -> AsyncIterator[Book]:
        """Books from the websocket: each change, and the same book again when the
        connection proves alive without a change (a heartbeat: the kernel needs it to
        tell a quiet book from a dead feed). Raises when the feed breaks, goes silent
        or walks out of the range its snapshot covered; the kernel then retries."""
        exchange = await self._client()
        if not self.options.live or not exchange.has.get("watchOrderBook"):
            why = "live = false" if not self.options.live else "ccxt has no websocket book"
            raise NoLiveStream(f"{self.exchange_id}: {why}; REST snapshots at each slot")
        await self._require_listed(symbol)
        self._check_cooldown()
        limit = _accepted(self._depths.ws, depth * self._depths.ws_margin)
        covered, watcher = _Range(), _Watcher(symbol)
        book: Book | None = None
        pending: asyncio.Future[Any] | None = None
        armed_s = -math.inf
        self._watching(watcher)
        try:
            while True:
                if pending is None and time.monotonic() - armed_s >= _REARM_S:
                    update = exchange.watch_order_book(symbol, limit)  # (re)subscribes
                    pending, armed_s = asyncio.ensure_future(self._call(update)), time.monotonic()
                    pending.add_done_callback(lambda _: watcher.wake.set())
                if pending is not None and pending.done():
                    if pending.cancelled():  # ccxt closed the connection under it
                        raise Disconnected(f"{self.exchange_id} connection closed; reconnecting")
                    watcher.source, pending = pending.result(), None
                self._attach(exchange, watcher)
                current = exchange.orderbooks.get(symbol)
                if watcher.source is not None and current is watcher.source:  # in sync
                    if book is None or watcher.changed(current):
                        book = self._read(exchange, watcher, covered, depth, limit)
                        yield book
                    elif watcher.heard:
                        watcher.heard = False
                        yield book  # the connection spoke; the book stands
                await watcher.wake.wait()
                watcher.wake.clear()
                if watcher.ticked:
                    watcher.ticked = False
                    await self._inspect(exchange, symbol)
        except (asyncio.CancelledError, GeneratorExit):  # the coin is no longer collected
            self._unwatch_later(exchange, symbol)
            raise
        finally:
            if pending is not None:
                pending.cancel()
            self._detach(exchange, watcher)

    def _read(
        self, exchange: Any, watcher: _Watcher, covered: _Range, depth: int, limit: int
    ) -> Book:
        """ccxt's current book as obd's, unless it walked out of its snapshot's range."""
        current = exchange.orderbooks[watcher.symbol]
        current.limit()  # as ccxt does before it returns a book
        if not covered.covers(current, exchange._obd_snapshots.get(watcher.symbol), depth, limit):
            self._forget(exchange, watcher.symbol)
            raise NotSynced(f"{watcher.symbol} on {self.exchange_id} moved past its snapshot")
        watcher.version, watcher.heard = _version(current), False
        return _book(current, depth, _now_ms())

    async def fetch_book(self, symbol: str, depth: int) -> Book:
        exchange = await self._client()
        self._check_cooldown()
        await self._require_listed(symbol)
        limit = _accepted(self._depths.rest, depth)
        raw = await self._call(exchange.fetch_order_book(symbol, limit))
        return _book(raw, depth, _now_ms())

    async def fetch_history(
        self, symbol: str, start_ms: int, end_ms: int, interval_ms: int, depth: int
    ) -> AsyncIterator[tuple[int, Book]]:
        """Exchanges keep no order-book history; obd never synthesises one (or uses candles)."""
        raise HistoryNotAvailable(f"history not available from {self.exchange_id}")
        yield  # an async generator, like the contract says  # pragma: no cover

    async def close(self) -> None:
        if self._exchange is not None:
            exchange, self._exchange = self._exchange, None
            await exchange.close()
        for task in [*self._closing, self._ticker]:
            if task is not None:
                task.cancel()

    # -- the ccxt instance and its markets --

    async def _client(self) -> Any:
        if self._exchange is None:
            async with self._opening:
                if self._exchange is None:
                    try:
                        opened = await asyncio.to_thread(
                            _open,
                            self.exchange_id,
                            self.options,
                            self._check_cooldown,
                            self._mapped,
                        )
                    except (ImportError, AttributeError) as exc:
                        raise ExchangeError(f"{self.exchange_id}: ccxt unusable: {exc}") from exc
                    self._ccxt, self._exchange = opened
        return self._exchange

    async def _markets(self) -> dict[str, Any]:
        """ccxt's markets, reloaded every `markets_ttl_s`; a failed reload keeps the old
        listing (and is retried within a minute) rather than stopping every coin."""
        exchange = await self._client()
        async with self._loading:
            age_s = time.monotonic() - self._markets_at
            if exchange.markets and age_s < self.options.markets_ttl_s:
                return exchange.markets  # type: ignore[no-any-return]
            try:
                await self._call(exchange.load_markets(reload=bool(exchange.markets)))
                self._markets_at = time.monotonic()
            except ObdError:
                if not exchange.markets:
                    raise
                retry_in_s = min(60.0, self.options.markets_ttl_s)
                self._markets_at = time.monotonic() - self.options.markets_ttl_s + retry_in_s
            return exchange.markets  # type: ignore[no-any-return]

    async def _require_listed(self, symbol: str) -> None:
        listed = await self.check_availability(symbol)
        if not listed.available:
            raise NotFound(listed.reason or f"{symbol} is not listed on {self.exchange_id}")

    def _step(self, market: dict[str, Any], what: str) -> float | None:
        """The market's tick (price) or lot (amount) size, if ccxt knows it as a step."""
        value = (market.get("precision") or {}).get(what)
        if value is None:
            return None
        mode = self._exchange.precisionMode
        if mode == self._ccxt.TICK_SIZE:
            return float(value)
        if mode == self._ccxt.DECIMAL_PLACES:
            return float(10.0 ** -int(value))
        return None  # significant digits: no fixed step

    # -- the websocket --

    async def _inspect(self, exchange: Any, symbol: str) -> None:
        """Once a tick: a silent connection is dead; a delisted symbol's stream just goes
        quiet, so the listing says why."""
        silent_s = self._silence_s(exchange, symbol)
        if silent_s > self.options.stale_after_s:
            self._drop_connection(exchange, symbol)
            raise Disconnected(f"no message from {self.exchange_id} for {silent_s:.0f} s")
        await self._require_listed(symbol)

    def _watching(self, watcher: _Watcher) -> None:
        """Tick this watcher every `_TICK_S` (one timer per exchange, not one per wait)."""
        self._watchers.add(watcher)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while self._watchers:
            await asyncio.sleep(_TICK_S)
            for watcher in list(self._watchers):
                watcher.tick()

    def _attach(self, exchange: Any, watcher: _Watcher) -> None:
        """Have the frames of the symbol's connection wake its watcher (once per client);
        raise if that connection is gone (ccxt dropped a closed or failed client)."""
        attached = watcher.client
        if attached is not None and exchange.clients.get(attached.url) is attached:
            return  # still the symbol's connection (the common case: every update)
        if attached is not None:
            raise Disconnected(f"{self.exchange_id} connection closed; reconnecting")
        for client in self._connections(exchange, watcher.symbol):
            watchers: dict[str, _Watcher] | None = getattr(client, "_obd_watchers", None)
            if watchers is None:
                watchers = client._obd_watchers = {}
                client.handle_message = _woken(client.handle_message, watchers, exchange)
            watchers[watcher.symbol] = watcher
            watcher.client = client

    def _detach(self, exchange: Any, watcher: _Watcher) -> None:
        self._watchers.discard(watcher)
        for client in list((exchange.clients or {}).values()):
            watchers = getattr(client, "_obd_watchers", None) or {}
            if watchers.get(watcher.symbol) is watcher:
                del watchers[watcher.symbol]

    @staticmethod
    def _connections(exchange: Any, symbol: str) -> list[Any]:
        """The websocket clients carrying this symbol's subscription."""
        return [
            client
            for client in list((exchange.clients or {}).values())
            if any(_names(key, symbol) for key in list(client.subscriptions))
        ]

    def _silence_s(self, exchange: Any, symbol: str) -> float:
        """Seconds since the symbol's connection last heard anything (0 if not connected)."""
        heard = [
            client.last_message_at or client.connectionEstablished or 0
            for client in self._connections(exchange, symbol)
        ]
        if not heard or not max(heard):
            return 0.0
        return float(exchange.milliseconds() - max(heard)) / 1000

    def _unwatch_later(self, exchange: Any, symbol: str) -> None:
        """Unsubscribe in the background (where ccxt can): the caller is being cancelled."""
        if not exchange.has.get("unWatchOrderBook") or not self._connections(exchange, symbol):
            return
        unwatch = exchange.un_watch_order_book(symbol)
        self._background(asyncio.wait_for(unwatch, self.options.timeout_s))

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _drop_connection(self, exchange: Any, symbol: str) -> None:
        """Forget a dead connection at once; its close handshake can take its time."""
        for client in self._connections(exchange, symbol):
            exchange.clients.pop(client.url, None)
            self._background(client.close())
        exchange.orderbooks.pop(symbol, None)

    @classmethod
    def _forget(cls, exchange: Any, symbol: str) -> None:
        """Make ccxt resubscribe and take a new snapshot at the next watch (what ccxt
        itself does after a sequence gap)."""
        exchange.orderbooks.pop(symbol, None)
        for client in cls._connections(exchange, symbol):
            for key in [key for key in list(client.subscriptions) if _names(key, symbol)]:
                del client.subscriptions[key]

    # -- errors and rate limits --

    def _check_cooldown(self) -> None:
        left_s = self._cool_until - time.monotonic()
        if left_s > 0:
            raise RateLimited(f"{self.exchange_id} asked obd to slow down; pausing", left_s)

    async def _call(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except ObdError:
            raise
        except Exception as exc:
            raise self._mapped(exc) from exc

    def _mapped(self, exc: Exception) -> Exception:
        """ccxt's error as obd's: the kernel turns it into a gap reason and a retry."""
        ccxt, name = self._ccxt, self.exchange_id
        text = str(exc)[:_MESSAGE_CHARS] or type(exc).__name__
        if ccxt is None or not isinstance(exc, ccxt.BaseError):
            if isinstance(exc, (OSError, TimeoutError)):
                return Disconnected(f"{name}: {type(exc).__name__}: {text}")
            return exc
        if isinstance(exc, ccxt.BadSymbol):
            return NotFound(f"{name}: {text}")
        if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            wait_s = self._retry_after_s() or self.options.cooldown_s
            self._cool_until = max(self._cool_until, time.monotonic() + wait_s)
            return RateLimited(f"{name} is rate limiting obd: {text}", wait_s)
        if isinstance(exc, ccxt.InvalidNonce):  # ChecksumError included: a sequence gap
            return NotSynced(f"{name} book lost its sequence: {text}")
        if isinstance(exc, ccxt.RequestTimeout):
            return Disconnected(f"{name} did not answer in time: {text}")
        if isinstance(exc, ccxt.ExchangeNotAvailable) and exc.__cause__ is None:
            return ExchangeError(f"{name} is not available: {text}")  # a 5xx answer
        if isinstance(exc, ccxt.NetworkError):
            return Disconnected(f"{name} unreachable: {text}")
        return ExchangeError(f"{name}: {text}")

    def _retry_after_s(self) -> float | None:
        headers = getattr(self._exchange, "last_response_headers", None) or {}
        value = headers.get("Retry-After") or headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


def _woken(
    handle: Callable[[Any], None], watchers: dict[str, _Watcher], exchange: Any
) -> Callable[[Any], None]:
    """A client's frame handler that, after ccxt's, tells the watchers of its symbols."""

    def handle_message(message: Any) -> None:
        handle(message)
        for watcher in list(watchers.values()):
            watcher.on_frame(exchange.orderbooks)

    return handle_message


def create(exchange_id: str, options: CcxtOptions | None) -> CcxtExchange:
    """The plugin's factory; ccxt itself is imported at first use, not here."""
    return CcxtExchange(exchange_id, options or CcxtOptions())


PLUGIN = PluginSpec(
    name="ccxt",
    factory=create,
    options=CcxtOptions,
    serves=serves,
    description=(
        "Real exchanges through ccxt: live books over websockets (ccxt.pro), REST"
        " snapshots where there is none. Serves every ccxt exchange id."
    ),
)
