"""`CcxtExchange`: one exchange id served through one shared ccxt instance."""

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from obd.plugin import (
    Availability,
    Book,
    Disconnected,
    ExchangeError,
    Market,
    NoLiveStream,
    NotFound,
    NotSynced,
    ObdError,
    RateLimited,
)

from . import internals
from .books import Range, now_ms, to_book, version
from .errors import is_rate_limit, mapped
from .options import UNSUBSCRIBE_TO_RESYNC, CcxtOptions, accepted, depths, unwatch_params
from .watcher import Watcher

T = TypeVar("T")
_TICK_S = 1.0  # how often each watch looks at its connection and the listing
# ccxt reports errors only to a pending watch_order_book call; changes reach obd by its
# own frame hook, so that call is renewed at most this often (it costs as much as a diff)
_REARM_S = 0.5


class CcxtExchange:
    """One exchange id served through one shared ccxt instance, whatever the coin count.

    It has `fetch_book` (REST) but no `fetch_history`: exchanges keep no order-book
    history, and obd never synthesises one (or uses candles); the kernel says so."""

    synthetic = False

    def __init__(self, exchange_id: str, options: CcxtOptions) -> None:
        self.exchange_id = exchange_id
        self.options = options
        self._depths = depths(exchange_id, options)
        self._ccxt: Any = None  # the ccxt module, once imported
        self._exchange: Any = None
        self._opening = asyncio.Lock()
        self._loading = asyncio.Lock()
        self._markets_at = -math.inf  # monotonic time of the last good load_markets
        self._cool_until = 0.0  # monotonic: no REST before this (after a 429)
        self._closing: set[asyncio.Task[Any]] = set()
        self._watchers: set[Watcher] = set()
        self._ticker: asyncio.Future[None] | None = None

    # -- the contract --

    async def check_availability(self, symbol: str) -> Availability:
        return self._availability(await self._markets(), symbol)

    def _availability(self, markets: dict[str, Any], symbol: str) -> Availability:
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

    async def list_markets(self) -> list[Market]:
        """ccxt's loaded markets (reloaded every `markets_ttl_s`), in ccxt's words."""
        return [
            Market(
                symbol=symbol,
                base=str(market.get("base") or ""),
                quote=str(market.get("quote") or ""),
                type=str(market.get("type") or "spot"),
                active=market.get("active") is not False,  # ccxt's None: not known, listed
            )
            for symbol, market in (await self._markets()).items()
        ]

    async def watch(self, symbol: str, depth: int) -> AsyncIterator[Book]:
        """Books from the websocket: each change, and the same book again when the
        connection proves alive without a change (a heartbeat: the kernel needs it to
        tell a quiet book from a dead feed). Raises when the feed breaks, goes silent,
        fails an integrity check or walks out of the range its snapshot covered; the
        kernel then retries."""
        exchange = await self._client()
        if not self.options.live or not exchange.has.get("watchOrderBook"):
            why = "live = false" if not self.options.live else "ccxt has no websocket book"
            raise NoLiveStream(f"{self.exchange_id}: {why}; REST snapshots at each slot")
        await self._require_listed(symbol)
        self._check_cooldown()
        limit = accepted(self._depths.ws, depth * self._depths.ws_margin)
        covered, watcher = Range(), Watcher(symbol)
        book: Book | None = None
        pending: asyncio.Future[Any] | None = None
        armed_s = -math.inf
        self._watching(watcher)
        try:
            while True:
                if pending is None and time.monotonic() - armed_s >= _REARM_S:
                    update = exchange.watch_order_book(symbol, limit)  # (re)subscribes
                    shielded = _shielded(update)
                    pending, armed_s = asyncio.ensure_future(self._call(shielded)), time.monotonic()
                    pending.add_done_callback(lambda _: watcher.wake.set())
                if pending is not None and pending.done():
                    if pending.cancelled():  # ccxt closed the connection under it
                        raise Disconnected(f"{self.exchange_id} connection closed; reconnecting")
                    try:
                        watcher.source = pending.result()
                    except NotSynced as exc:  # ccxt found a sequence gap at this frame
                        watcher.unverified(exc)
                        raise
                    pending = None
                if not internals.attach(exchange, self.exchange_id, watcher):
                    raise Disconnected(f"{self.exchange_id} connection closed; reconnecting")
                if watcher.failure is not None:  # a frame proved the book wrong
                    if pending is not None:  # the unsubscribe below would reject it
                        pending.cancel()
                        pending = None
                    await self._resync(exchange, symbol, limit)
                    raise watcher.failure
                current = internals.book(exchange, symbol)
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
            self._unwatch_later(exchange, symbol, limit)
            raise
        finally:
            if pending is not None:
                pending.cancel()
            self._watchers.discard(watcher)
            internals.detach(exchange, watcher)

    def _read(
        self, exchange: Any, watcher: Watcher, covered: Range, depth: int, limit: int
    ) -> Book:
        """ccxt's current book as obd's, unless it walked out of its snapshot's range."""
        current = internals.trimmed(exchange, watcher.symbol)
        snapshot = internals.snapshot_edges(exchange, watcher.symbol)
        if not covered.covers(current, snapshot, depth, limit):
            internals.forget(exchange, watcher.symbol)
            raise NotSynced(f"{watcher.symbol} on {self.exchange_id} moved past its snapshot")
        watcher.version, watcher.heard = version(current), False
        return to_book(current, depth, now_ms())

    async def fetch_book(self, symbol: str, depth: int) -> Book:
        exchange = await self._client()
        self._check_cooldown()
        await self._require_listed(symbol)
        limit = accepted(self._depths.rest, depth)
        raw = await self._call(exchange.fetch_order_book(symbol, limit))
        return to_book(raw, depth, now_ms())

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
                            internals.open_exchange,
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
                await self._call(_shielded(exchange.load_markets(reload=bool(exchange.markets))))
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
        silent_s = internals.silence_s(exchange, symbol)
        if silent_s > self.options.stale_after_s:
            for closing in internals.drop_connection(exchange, symbol):
                self._background(closing)
            raise Disconnected(f"no message from {self.exchange_id} for {silent_s:.0f} s")
        # The listing is read as it stands and reloaded in the background. A watch that
        # awaited the reload yielded no book meanwhile, so its slots got a stale one:
        # the reload queues in ccxt's rate limiter behind a resync's depth call (~0.5 s
        # after a weight-10 snapshot on Binance USD-M), and a big exchangeInfo takes
        # seconds to fetch and parse.
        self._reload_markets_later()
        listed = self._availability(exchange.markets or {}, symbol)
        if not listed.available:
            raise NotFound(listed.reason or f"{symbol} is not listed on {self.exchange_id}")

    def _reload_markets_later(self) -> None:
        """Start reloading the listing if it is due and no reload is under way."""
        due = time.monotonic() - self._markets_at >= self.options.markets_ttl_s
        if due and not self._loading.locked():
            self._background(self._markets())

    def _watching(self, watcher: Watcher) -> None:
        """Tick this watcher every `_TICK_S` (one timer per exchange, not one per wait)."""
        self._watchers.add(watcher)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while self._watchers:
            await asyncio.sleep(_TICK_S)
            for watcher in list(self._watchers):
                watcher.tick()

    def _unwatch_later(self, exchange: Any, symbol: str, limit: int) -> None:
        """Unsubscribe in the background (where ccxt can): the caller is being cancelled.
        Where ccxt cannot but obd knows the exchange's unsubscribe frame (kraken), obd
        sends it, or the socket would stream the book for as long as it stays open."""
        if not internals.connections(exchange, symbol):
            return
        if not exchange.has.get("unWatchOrderBook"):
            if internals.unsubscribes(exchange):
                internals.forget(exchange, symbol)
            return
        unwatch = exchange.un_watch_order_book(symbol, unwatch_params(self.exchange_id, limit))
        self._background(asyncio.wait_for(unwatch, self.options.timeout_s))

    async def _resync(self, exchange: Any, symbol: str, limit: int) -> None:
        """Throw the book away, so that the next watch starts from a fresh snapshot.
        Where only a new subscription brings one (`UNSUBSCRIBE_TO_RESYNC`), unsubscribe
        first; ccxt resolves that on the exchange's ack, after which no frame of the
        old subscription can follow. If the exchange does not answer, the connection
        is dropped (its other books resubscribe on a new one)."""
        if self.exchange_id in UNSUBSCRIBE_TO_RESYNC and internals.connections(exchange, symbol):
            unwatch = exchange.un_watch_order_book(symbol, unwatch_params(self.exchange_id, limit))
            try:
                await asyncio.wait_for(unwatch, self.options.timeout_s)
            except (TimeoutError, OSError, self._ccxt.BaseError):  # start over, connected anew
                for closing in internals.drop_connection(exchange, symbol):
                    self._background(closing)
        internals.forget(exchange, symbol)

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

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
        """ccxt's error as obd's; a 429 also pauses every request to this exchange."""
        wait_s = 0.0
        if is_rate_limit(self._ccxt, exc):
            wait_s = internals.retry_after_s(self._exchange) or self.options.cooldown_s
            self._cool_until = max(self._cool_until, time.monotonic() + wait_s)
        return mapped(self._ccxt, exc, self.exchange_id, wait_s)


def _shielded(work: Awaitable[T]) -> Awaitable[T]:
    """A ccxt call, safe to abandon: it may be awaiting a task every coin of the exchange
    awaits (ccxt's shared `markets_loading`: every watch call and listing check waits on
    a reload under way), and cancelling it there would cancel all of theirs with it (a
    watch then reads as a closed connection). Abandoned, it ends on its own: a watch at
    the book's next frame, a reload when its requests are answered."""
    inner = asyncio.ensure_future(work)
    inner.add_done_callback(lambda done: done.cancelled() or done.exception())
    return asyncio.shield(inner)
