"""Every place obd reaches into ccxt beyond its documented API, in one module.

ccxt.pro gives a caller one book per `watch_order_book` await and neither reports
frames nor reconnects, so obd looks underneath: the exchange's `orderbooks` and
websocket `clients`, each client's `subscriptions`, `handle_message`,
`last_message_at`, `connectionEstablished`, and the exchange's `fetch`,
`fetch_rest_order_book_safe` and `handle_message` (each client's decoded-frame
callback) methods it wraps. docs/EXCHANGES.md lists
the ccxt versions these were checked against; a ccxt upgrade is checked here first.
"""

import asyncio
import functools
import importlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from . import check_kraken
from .books import Edges, edges
from .checks import CHECKS
from .options import CcxtOptions, ccxt_config
from .watcher import Watcher

# Exchanges whose socket refuses a second subscribe to a book it already streams, and
# for which ccxt has no un_watch_order_book: the frame that unsubscribes one book.
_UNSUBSCRIBE: dict[str, Callable[[str, int | None], Any]] = {
    "kraken": check_kraken.unsubscribe,
}


def open_exchange(
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
    instance = _instrumented(cls)(ccxt_config(options))
    instance._obd_snapshots = {}
    instance._obd_before_request = before_request
    instance._obd_after_error = after_error
    return ccxt, instance


@functools.cache
def _instrumented(cls: Any) -> Any:
    """`cls` with three hooks: every HTTP request first asks obd (which refuses while the
    exchange has told it to back off), the edges of each REST snapshot a websocket
    book is built from are noted (for the range guard), and each decoded frame, once
    ccxt applied it, goes through the exchange's integrity check (`checks`)."""

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
        self._obd_snapshots[symbol] = edges(book, limit)
        return book

    def handle_message(self: Any, client: Any, message: Any) -> Any:
        # Every decoded frame of every client, from its first: a check that follows a
        # sequence must see the snapshot, which arrives before any watcher attaches.
        try:
            handled = cls.handle_message(self, client, message)
        except KeyError as exc:
            # ccxt looks up the book of every update it gets; one obd threw away to
            # resync (and unsubscribed: kraken) has none until its new snapshot, and
            # the raise would end the socket's receive loop (every symbol on it).
            # Only that case is dropped.
            forgotten = getattr(client, "_obd_forgotten", ())
            symbol = exc.args[0] if exc.args else None
            if symbol not in forgotten or symbol in self.orderbooks:
                raise
            return None
        check = CHECKS.get(self.id)
        if check is not None:
            watchers = getattr(client, "_obd_watchers", None) or {}
            for symbol, error in check(message, self.orderbooks).items():
                watcher = watchers.get(symbol)
                if watcher is not None:  # else the check fails the book's next frame too
                    watcher.fail(error)
        return handled

    hooks = {
        "fetch": fetch,
        "fetch_rest_order_book_safe": fetch_rest_order_book_safe,
        "handle_message": handle_message,
    }
    return type(cls.__name__, (cls,), hooks)


def book(exchange: Any, symbol: str) -> Any:
    """ccxt's live book object for `symbol`, or None."""
    return exchange.orderbooks.get(symbol)


def trimmed(exchange: Any, symbol: str) -> Any:
    """ccxt's book cut to its limit, as ccxt does before it returns one."""
    current = exchange.orderbooks[symbol]
    current.limit()
    return current


def snapshot_edges(exchange: Any, symbol: str) -> Edges | None:
    """The edges of the REST snapshot the symbol's websocket book was built from."""
    found: Edges | None = exchange._obd_snapshots.get(symbol)
    return found


@functools.lru_cache(maxsize=4096)
def _names(key: object, symbol: str) -> bool:
    """Whether a ccxt subscription key ("orderbook::BTC/USDT", "...::BTC/USDT,ETH/USDT",
    kraken's "orderbook@BTC/USD")
    is about `symbol`, and not merely about a longer one ("BTC/USDT:USDT")."""
    return re.search(rf"(^|[:,@]){re.escape(symbol)}($|,)", str(key)) is not None


def connections(exchange: Any, symbol: str) -> list[Any]:
    """The websocket clients carrying this symbol's subscription."""
    return [
        client
        for client in list((exchange.clients or {}).values())
        if any(_names(key, symbol) for key in list(client.subscriptions))
    ]


def attach(exchange: Any, exchange_id: str, watcher: Watcher) -> bool:
    """Have the frames of the symbol's connection wake its watcher (hooking each client
    once). False if the connection it listened to is gone (ccxt dropped a closed or
    failed client)."""
    attached = watcher.client
    if attached is not None:
        return bool(exchange.clients.get(attached.url) is attached)
    for client in connections(exchange, watcher.symbol):
        watchers: dict[str, Watcher] | None = getattr(client, "_obd_watchers", None)
        if watchers is None:
            watchers = client._obd_watchers = {}
            client.handle_message = _woken(client.handle_message, watchers, exchange)
        watchers[watcher.symbol] = watcher
        watcher.client = client
    return True


def detach(exchange: Any, watcher: Watcher) -> None:
    for client in list((exchange.clients or {}).values()):
        watchers = getattr(client, "_obd_watchers", None) or {}
        if watchers.get(watcher.symbol) is watcher:
            del watchers[watcher.symbol]


def _woken(
    handle: Callable[[Any], None], watchers: dict[str, Watcher], exchange: Any
) -> Callable[[Any], None]:
    """A client's frame handler that, after ccxt's, tells the watchers of its symbols."""

    def handle_message(message: Any) -> None:
        handle(message)
        for watcher in list(watchers.values()):
            watcher.on_frame(exchange.orderbooks)

    return handle_message


def silence_s(exchange: Any, symbol: str) -> float:
    """Seconds since the symbol's connection last heard anything (0 if not connected)."""
    heard = [
        client.last_message_at or client.connectionEstablished or 0
        for client in connections(exchange, symbol)
    ]
    if not heard or not max(heard):
        return 0.0
    return float(exchange.milliseconds() - max(heard)) / 1000


def drop_connection(exchange: Any, symbol: str) -> list[Awaitable[Any]]:
    """Forget a dead connection at once; returns the close handshakes, which can take
    their time in the background."""
    closing = []
    for client in connections(exchange, symbol):
        exchange.clients.pop(client.url, None)
        closing.append(client.close())
    exchange.orderbooks.pop(symbol, None)
    return closing


def unsubscribes(exchange: Any) -> bool:
    """Whether obd knows how to unsubscribe one book on this exchange's socket."""
    return exchange.id in _UNSUBSCRIBE


# ccxt ids whose exchange sends a book snapshot only for a new subscription: ccxt
# (4.5.90, pro/okx.py) unsubscribes first a book channel it marked "resync". Forgetting
# the subscription instead makes ccxt subscribe again on a live channel, which OKX
# acknowledges without a snapshot: the book would never come back.
_RESYNC_MARKED = frozenset({"okx"})


def forget(exchange: Any, symbol: str) -> None:
    """Make ccxt resubscribe and take a new snapshot at the next watch (what ccxt
    itself does after a sequence gap). Where the socket refuses a second subscribe to
    a book it streams (kraken), the book is unsubscribed first; until the new snapshot,
    its frames are kept from ccxt (see `_instrumented`)."""
    exchange.orderbooks.pop(symbol, None)
    marks = exchange.id in _RESYNC_MARKED
    unsubscribe = _UNSUBSCRIBE.get(exchange.id)
    for client in connections(exchange, symbol):
        keys = [key for key in list(client.subscriptions) if _names(key, symbol)]
        if unsubscribe is not None:
            limits = [(client.subscriptions[key] or {}).get("limit") for key in keys]
            message = unsubscribe(symbol, next((x for x in limits if x is not None), None))
            sending = asyncio.ensure_future(client.send(message))
            sending.add_done_callback(lambda done: done.cancelled() or done.exception())
            forgotten: set[str] = client.__dict__.setdefault("_obd_forgotten", set())
            forgotten.add(symbol)
        for key in keys:
            if marks and str(key).startswith(("book", "bbo")):
                client.subscriptions[key] = "resync"
            else:
                del client.subscriptions[key]


def retry_after_s(exchange: Any) -> float | None:
    """The last HTTP answer's Retry-After, in seconds, if it had one."""
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
