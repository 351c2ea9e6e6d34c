"""An exchange emulator that speaks Binance spot's market-data protocol on 127.0.0.1,
well enough that the unmodified ccxt drives it:

- REST: `GET /api/v3/exchangeInfo` (real filters, TRADING/BREAK status),
  `GET /api/v3/depth?symbol=&limit=` (with `lastUpdateId`), `/api/v3/ping`,
  `/api/v3/time`, and empty currency and margin listings under `/sapi/v1` (ccxt
  asks for them when API keys are set). Errors as Binance sends them: `{"code", "msg"}` JSON
  (429 with -1003 and Retry-After, 400 with -1121 for an unknown symbol) or an
  HTML 503 page.
- Websocket `/stream/ws[/<n>]` (ccxt appends a stream index; it recognises spot
  connections by "/stream" in the URL): `SUBSCRIBE`/`UNSUBSCRIBE` with
  `{"result": null, "id": N}` replies, then `<sym>@depth@100ms` diff frames
  `{"e": "depthUpdate", "E", "s", "U", "u", "b", "a"}` with `U == previous u + 1`,
  and pongs to pings (answered by hand, so a stalled connection can stop them).

Controls (thread-safe, for tests): drop every socket, answer the next REST calls
with 429/503, pause the books (quiet but healthy), stall the open sockets
(nothing, not even pongs), skip update ids, delist a symbol. Every request and
every event is recorded; `book_at` says what a book was at any instant.
"""

import asyncio
import json
import threading
import time
from typing import Any

from aiohttp import WSMsgType, web

from tests.emulator.book import Market, seed_book

# ccxt 4.5 binance `urls["api"]` REST keys -> the path each has on the real exchange.
# Every one is pointed at the emulator, so nothing can reach binance.com.
REST_PATHS = {
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}
WS_KEYS = (
    "spot",
    "margin",
    "linear",
    "inverse",
    "stock",
    "option",
    "optionMarket",
    "optionPrivate",
    "papi",
)
WS_API_KEYS = ("spot", "linear", "inverse")
ACCEPTED_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)
_HTML_503 = "<html><head><title>503 Service Unavailable</title></head><body>busy</body></html>"


class _Socket:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.streams: set[str] = set()
        self.stalled = False


class Emulator:
    """The emulated exchange, served from its own thread and event loop."""

    def __init__(
        self,
        *,
        extra_symbols: int = 0,
        update_ms: int = 100,
        quiet_ms: int = 0,
        align_ms: int = 1000,
        record: bool = True,
        seed: int = 0,
    ) -> None:
        self.update_ms, self.quiet_ms, self.align_ms = update_ms, quiet_ms, align_ms
        btc, eth = seed_book("btcusdt"), seed_book("ethusdt")
        listings = [("BTC", btc, "0.00001"), ("ETH", eth, "0.0001"), ("BNB", eth, "0.001")]
        listings += [(f"C{i:03d}", btc, "0.00001") for i in range(extra_symbols)]
        self.markets = {
            f"{base}USDT": Market(
                f"{base}USDT", base, "USDT", book, lot=lot, rng_seed=seed, record=record
            )
            for base, book, lot in listings
        }
        self.lock = threading.Lock()  # guards the markets between the two threads
        self.requests: list[tuple[str, int, int]] = []  # (path, status, ms) of REST calls
        self.events = 0  # book changes made (sent or skipped)
        self.frames_sent = 0  # diff frames written to subscribed sockets
        self.subscribes = 0
        self.unsubscribes = 0
        self.connections = 0
        self.paused = False
        self._errors: list[int] = []  # statuses for the next REST calls
        self._sockets: set[_Socket] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="emulator", daemon=True)
        self.port = 0

    # -- lifecycle --

    def start(self) -> "Emulator":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("emulator did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ccxt_urls(self) -> dict[str, Any]:
        """ccxt binance `urls` pointing every REST and websocket key here."""
        ws = f"ws://127.0.0.1:{self.port}/stream/ws"
        api: dict[str, Any] = {key: self.url + path for key, path in REST_PATHS.items()}
        api["ws"] = {key: ws for key in WS_KEYS}
        api["ws"]["ws-api"] = {key: ws for key in WS_API_KEYS}
        return {"api": api}

    # -- controls --

    def drop_sockets(self) -> None:
        """Close every websocket, as an exchange does at its 24 h limit or a restart."""
        self._call(self._drop())

    def rest_errors(self, *statuses: int) -> None:
        """Answer the next depth calls with these statuses (429 or 503), one each."""
        with self.lock:
            self._errors = list(statuses)

    def pause(self, paused: bool = True) -> None:
        """Books stop changing (no frames) while connections stay healthy (pongs)."""
        with self.lock:
            self.paused = paused

    def stall(self) -> None:
        """The open sockets go silent: no events, no pongs (a half-open connection)."""
        with self.lock:
            for socket in self._sockets:
                socket.stalled = True

    def skip_ids(self, symbol: str = "BTCUSDT") -> None:
        """The next update of `symbol` never reaches the wire: a sequence gap."""
        with self.lock:
            self.markets[symbol].skip_next = True

    def delist(self, symbol: str) -> None:
        """Halt `symbol`: status BREAK, no more diffs, depth answers -1121."""
        with self.lock:
            self.markets[symbol].status = "BREAK"

    def book_at(self, symbol: str, ts_ms: int, depth: int) -> dict[str, list[list[float]]]:
        with self.lock:
            bids, asks = self.markets[symbol].book_at(ts_ms, depth)
        return {"bids": bids, "asks": asks}

    def change_times(self, symbol: str, start_ms: int, end_ms: int) -> list[int]:
        """When `symbol`'s book changed in [start_ms, end_ms]."""
        with self.lock:
            return [e.ts for e in self.markets[symbol].history if start_ms <= e.ts <= end_ms]

    def unexpected_requests(self) -> list[str]:
        with self.lock:
            return [path for path, status, _ in self.requests if status == 404]

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "start() the emulator first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- serving --

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        for listing in ("capital/config/getall", "margin/allPairs", "margin/isolated/allPairs"):
            app.router.add_get(f"/sapi/v1/{listing}", self._nothing)  # asked when keys are set
        app.router.add_get("/stream/ws", self._websocket)
        app.router.add_get("/stream/ws/{index}", self._websocket)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        ticking = asyncio.create_task(self._tick())
        self._ready.set()
        await self._stop.wait()
        ticking.cancel()
        await self._drop()
        await runner.cleanup()

    def _record(self, request: web.Request, status: int) -> None:
        with self.lock:
            self.requests.append((request.path, status, _now_ms()))

    def _injected(self, request: web.Request) -> web.Response | None:
        with self.lock:
            status = self._errors.pop(0) if self._errors else None
        if status is None:
            return None
        self._record(request, status)
        if status == 429:
            body = {"code": -1003, "msg": "Too much request weight used; IP banned until later."}
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        return web.Response(text=_HTML_503, status=status, content_type="text/html")

    async def _exchange_info(self, request: web.Request) -> web.Response:
        self._record(request, 200)
        with self.lock:
            symbols = [_symbol_info(market) for market in self.markets.values()]
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": _now_ms(),
                "rateLimits": [
                    {
                        "rateLimitType": "REQUEST_WEIGHT",
                        "interval": "MINUTE",
                        "intervalNum": 1,
                        "limit": 6000,
                    },
                    {
                        "rateLimitType": "RAW_REQUESTS",
                        "interval": "MINUTE",
                        "intervalNum": 5,
                        "limit": 61000,
                    },
                ],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    async def _depth(self, request: web.Request) -> web.Response:
        if (error := self._injected(request)) is not None:
            return error
        symbol = request.query.get("symbol", "")
        limit = int(request.query.get("limit", "100"))
        with self.lock:
            market = self.markets.get(symbol)
            listed = market is not None and market.status == "TRADING"
            body = market.depth(min(limit, 5000)) if market is not None and listed else None
        if body is None:
            self._record(request, 400)
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        self._record(request, 200)
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _nothing(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": _now_ms()})

    async def _unknown(self, request: web.Request) -> web.Response:
        self._record(request, 404)
        return web.json_response({"code": -1, "msg": "not emulated"}, status=404)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False)
        await ws.prepare(request)
        socket = _Socket(ws)
        with self.lock:
            self._sockets.add(socket)
            self.connections += 1
        try:
            async for message in ws:
                await self._on_message(socket, message)
        finally:
            with self.lock:
                self._sockets.discard(socket)
        return ws

    async def _on_message(self, socket: _Socket, message: Any) -> None:
        if message.type == WSMsgType.PING:
            if not socket.stalled:
                await socket.ws.pong(message.data)
        elif message.type == WSMsgType.TEXT:
            request = json.loads(message.data)
            method, streams = request.get("method"), request.get("params") or []
            with self.lock:
                if method == "SUBSCRIBE":
                    socket.streams.update(streams)
                    self.subscribes += 1
                elif method == "UNSUBSCRIBE":
                    socket.streams.difference_update(streams)
                    self.unsubscribes += 1
            if not socket.stalled:
                await socket.ws.send_str(json.dumps({"result": None, "id": request.get("id")}))

    async def _drop(self) -> None:
        with self.lock:
            sockets = list(self._sockets)
        for socket in sockets:
            await socket.ws.close(code=1001, message=b"going away")

    async def _tick(self) -> None:
        """Every `update_ms` (half a step off the clock grid, so no change ever lands on
        a slot boundary), each trading book changes and the change goes out. No change
        happens in the last `quiet_ms` before each multiple of `align_ms`, so a client a
        few ms behind still has the slot's book in time."""
        step = self.update_ms
        while True:
            now = _now_ms()
            await asyncio.sleep((step - (now - step // 2) % step) / 1000)
            now = _now_ms()
            if self.quiet_ms and now % self.align_ms >= self.align_ms - self.quiet_ms:
                continue
            frames = self._evolve(now)
            await self._send(frames)

    def _evolve(self, now: int) -> list[tuple[str, str]]:
        frames = []
        with self.lock:
            if self.paused:
                return []
            for market in self.markets.values():
                if market.status != "TRADING":
                    continue
                stream = market.symbol.lower() + "@depth"
                for event in market.evolve(now):
                    self.events += 1
                    if event.sent:
                        frames.append((stream, json.dumps(market.message(event))))
        return frames

    async def _send(self, frames: list[tuple[str, str]]) -> None:
        with self.lock:
            sockets = [s for s in self._sockets if not s.stalled and s.streams]
        for socket in sockets:
            wanted = {
                name.rsplit("@", 1)[0] if name.endswith("ms") else name for name in socket.streams
            }
            for stream, frame in frames:
                if stream in wanted and not socket.ws.closed:
                    await socket.ws.send_str(frame)
                    self.frames_sent += 1


def _symbol_info(market: Market) -> dict[str, Any]:
    """One `exchangeInfo` symbol, shaped and filtered like Binance's."""
    return {
        "symbol": market.symbol,
        "status": market.status,
        "baseAsset": market.base,
        "baseAssetPrecision": 8,
        "quoteAsset": market.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _e8(market.tick),
                "maxPrice": "1000000.00000000",
                "tickSize": _e8(market.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _e8(market.lot),
                "maxQty": "9000.00000000",
                "stepSize": _e8(market.lot),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100.00000000",
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _e8(step: str) -> str:
    whole, _, fraction = step.partition(".")
    return f"{whole}.{fraction:0<8}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
