"""Binance spot (`binance`), USD-M (`binanceusdm`) and COIN-M (`binancecoinm`) futures.

What ccxt 4.5 does, and so what is served (ccxt/pro/binance.py, ccxt/binance.py):
- markets from `/api/v3/exchangeInfo`, `/fapi/v1/exchangeInfo`, `/dapi/v1/exchangeInfo`
  (its `options.fetchMarkets.types` picks which; spot is limited to `spot` here);
- websockets at `urls.api.ws.<spot|linear|inverse>` + "/<stream index>"; ccxt tells
  spot connections by "/stream" in the URL and rewrites a linear URL ending in
  "/ws" to ".../public/ws", so spot is `/stream/ws`, USD-M `/fstream/public/ws`,
  COIN-M `/dstream/ws`;
- `{"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": N}` answered
  `{"result": null, "id": N}`, after which ccxt takes a REST snapshot
  (`/depth?symbol=&limit=`, `lastUpdateId`, futures also `E`, `T`) and chains the
  diffs: spot `U == previous u + 1`, futures `pu == previous u`.

Recorded frames are combined-stream envelopes (`{"stream", "data"}`); the raw `/ws`
endpoints ccxt uses send the event alone, so the `data` value is sent, its bytes cut
out of the recorded text unchanged. Futures recordings are `@depth@0ms`; a
subscriber to `@100ms` gets the same frames (more often than Binance would send:
harmless to ccxt, which chains on ids). `exchanges_config` asks ccxt for the
recorded rate (`watchOrderBookRate`).

Header `markets` (optional) gives each id's `base`, `quote`, `tick`, `lot` and, for
COIN-M, `contract_size`; else they are guessed from the id.
"""

import json
import re
import time
from typing import Any
from urllib.parse import urlparse

from tests.emulator.replay.levels import Levels
from tests.emulator.replay.recording import Recording, WsEntry
from tests.emulator.replay.venue import Book, Conn, Fault, Frame, RestReply, RestRequest, Venue

__all__ = ["create"]

_REST_PATHS = {  # ccxt binance `urls.api` REST keys -> the path each has on Binance
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
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
_WS_PATHS = {"spot": "/stream/ws", "linear": "/fstream/ws", "inverse": "/dstream/ws"}
_DATA = re.compile(r'^\{"stream":"[^"]*","data":(.*)\}$', re.DOTALL)
_FIRST_ID = re.compile(r'"U":(\d+)')
_PREVIOUS_ID = re.compile(r'"pu":(\d+)')


class _Flavour:
    """What differs between the three Binance markets."""

    def __init__(self, kind: str, prefix: str, ws_type: str, types: list[str]) -> None:
        self.kind, self.prefix, self.ws_type, self.types = kind, prefix, ws_type, types


_FLAVOURS = {
    "binance": _Flavour("spot", "/api/v3", "spot", ["spot"]),
    "binanceusdm": _Flavour("linear", "/fapi/v1", "linear", ["linear"]),
    "binancecoinm": _Flavour("inverse", "/dapi/v1", "inverse", ["inverse"]),
}


class _Market:
    """One recorded symbol: its listing and its true book."""

    def __init__(self, market_id: str, info: dict[str, Any], kind: str) -> None:
        self.id = market_id
        base, quote = _split(market_id)
        self.base = str(info.get("base", base))
        self.quote = str(info.get("quote", quote))
        self.tick = str(info.get("tick", "0.01"))
        self.lot = str(info.get("lot", "1" if kind == "inverse" else "0.001"))
        self.contract_size = int(info.get("contract_size", 100))
        self.symbol = _symbol(self.base, self.quote, kind)
        self.book = Levels()
        self.last_id: int | None = None  # `u` of the last change (REST `lastUpdateId`)
        self.event_ms: int | None = None  # `E` of the last change
        self.transact_ms: int | None = None  # `T` (futures)
        self.trading = True


class BinanceVenue:
    """A recording of one Binance market served as that market (see the module doc)."""

    faults: frozenset[Fault] = frozenset({"sequence"})  # no checksum on Binance books

    def __init__(self, recording: Recording, exchange_id: str) -> None:
        self.exchange_id = exchange_id
        self._flavour = _FLAVOURS[exchange_id]
        infos: dict[str, Any] = recording.header.meta.get("markets", {})
        ids = [str(i) for i in recording.header.config.get("l2_book", [])]
        self._markets = {i: _Market(i, infos.get(i, {}), self._flavour.kind) for i in ids}
        self._by_symbol = {m.symbol: m for m in self._markets.values()}
        self._by_stream = {i.lower(): m for i, m in self._markets.items()}
        self._payload: tuple[int, str] = (0, "")  # (line, event text) of the last frame
        for http in recording.http:
            self._snapshot(http.url, http.data)

    def _snapshot(self, url: str, data: str) -> None:
        """A recorded REST depth answer seeds that symbol's true book."""
        query = dict(p.split("=", 1) for p in urlparse(url).query.split("&") if "=" in p)
        market = self._markets.get(query.get("symbol", ""))
        if market is None or not urlparse(url).path.endswith("/depth"):
            return
        body = json.loads(data)
        market.book.reset(body["bids"], body["asks"])
        market.last_id = int(body["lastUpdateId"])
        market.event_ms, market.transact_ms = body.get("E"), body.get("T")

    # -- the seam --

    def symbols(self) -> list[str]:
        return [m.symbol for m in self._markets.values()]

    def exchanges_config(self, base_url: str) -> dict[str, Any]:
        ws = base_url.replace("http://", "ws://")
        api: dict[str, Any] = {key: base_url + path for key, path in _REST_PATHS.items()}
        api["ws"] = {
            key: ws + _WS_PATHS[kind]
            for key, kind in [
                ("spot", "spot"),
                ("margin", "spot"),
                ("linear", "linear"),
                ("inverse", "inverse"),
                ("stock", "spot"),
                ("option", "linear"),
                ("optionMarket", "linear"),
                ("optionPrivate", "linear"),
                ("papi", "linear"),
            ]
        }
        api["ws"]["ws-api"] = {kind: ws + _WS_PATHS[kind] for kind in _WS_PATHS}
        options: dict[str, Any] = {"fetchMarkets": {"types": self._flavour.types}}
        if self._flavour.kind != "spot":
            options["watchOrderBookRate"] = "0"  # the futures recordings are @depth@0ms
        return {"urls": {"api": api}, "options": options}

    def rest(self, request: RestRequest) -> RestReply | None:
        prefix, path = self._flavour.prefix, request.path
        if path == f"{prefix}/exchangeInfo":
            return _json(self._exchange_info())
        if path == f"{prefix}/depth":
            return self._depth(request.query)
        if path == f"{prefix}/ping":
            return _json({})
        if path == f"{prefix}/time":
            return _json({"serverTime": _now_ms()})
        if path.startswith("/sapi/v1/") and path.endswith(("getall", "allPairs")):
            return _json([])  # listings ccxt asks for when API keys are set
        return None

    def rest_error(self, status: int, retry_after_s: int) -> RestReply:
        if status == 429:
            body = {"code": -1003, "msg": "Too much request weight used; IP banned until later."}
            return RestReply(429, json.dumps(body), headers={"Retry-After": str(retry_after_s)})
        page = "<html><head><title>503 Service Unavailable</title></head><body>busy</body></html>"
        return RestReply(status, page, content_type="text/html")

    def on_open(self, conn: Conn) -> list[Frame]:
        return []

    def on_message(self, conn: Conn, data: Frame) -> list[Frame]:
        try:
            request = json.loads(data)
            method, streams = request.get("method"), request.get("params") or []
        except (ValueError, AttributeError):
            return [json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None})]
        kept: set[str] = conn.state.setdefault("streams", set())
        if method == "SUBSCRIBE":
            kept.update(streams)
        elif method == "UNSUBSCRIBE":
            kept.difference_update(streams)
        elif method == "LIST_SUBSCRIPTIONS":
            return [json.dumps({"result": sorted(kept), "id": request.get("id")})]
        else:
            error = {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}
            return [json.dumps({"error": error, "id": request.get("id")})]
        conn.symbols = {
            market.symbol
            for stream in kept
            if "@depth" in stream and (market := self._by_stream.get(stream.split("@")[0]))
        }
        return [json.dumps({"result": None, "id": request.get("id")})]

    def apply(self, entry: WsEntry) -> list[str]:
        match = _DATA.match(entry.data)
        payload = match.group(1) if match else entry.data
        event = json.loads(payload)
        market = self._markets.get(event.get("s", "")) if isinstance(event, dict) else None
        if market is None or event.get("e") != "depthUpdate":
            return []
        market.book.update(event["b"], event["a"])
        market.last_id, market.event_ms = int(event["u"]), event.get("E")
        market.transact_ms = event.get("T")
        self._payload = (entry.line, payload)
        return [market.symbol]

    def frame_for(self, conn: Conn, entry: WsEntry, symbols: list[str]) -> Frame | None:
        if not symbols or symbols[0] not in conn.symbols or self._payload[0] != entry.line:
            return None
        return self._payload[1]

    def fault(self, kind: Fault, symbol: str, frame: Frame) -> Frame | None:
        """A skipped update id: spot's `U` (must be previous u + 1), futures' `pu` (must
        be previous u), moved on by one; the changes themselves are all there."""
        if kind != "sequence" or not isinstance(frame, str):
            return None
        pattern = _FIRST_ID if self._flavour.kind == "spot" else _PREVIOUS_ID
        found = pattern.search(frame)
        if found is None:
            return None
        moved = int(found.group(1)) + (1 if self._flavour.kind == "spot" else -1)
        name = "U" if self._flavour.kind == "spot" else "pu"
        return frame[: found.start()] + f'"{name}":{moved}' + frame[found.end() :]

    def delist(self, symbol: str) -> None:
        self._by_symbol[symbol].trading = False

    def book(self, symbol: str, depth: int | None = None) -> Book:
        market = self._by_symbol[symbol]
        bids, asks = market.book.bids.top(depth), market.book.asks.top(depth)
        return Book(bids, asks, seq=market.last_id, ts_ms=market.event_ms)

    # -- REST bodies --

    def _depth(self, query: dict[str, str]) -> RestReply:
        market = self._markets.get(query.get("symbol", ""))
        if market is None or not market.trading:
            return RestReply(400, json.dumps({"code": -1121, "msg": "Invalid symbol."}))
        try:
            limit = int(query.get("limit", "100" if self._flavour.kind == "spot" else "500"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= (5000 if self._flavour.kind == "spot" else 1000):
            body = {"code": -1102, "msg": "Mandatory parameter 'limit' was not sent or invalid."}
            return RestReply(400, json.dumps(body))
        answer: dict[str, Any] = {"lastUpdateId": market.last_id}
        if self._flavour.kind != "spot":
            answer["E"], answer["T"] = market.event_ms, market.transact_ms
        if self._flavour.kind == "inverse":
            answer["symbol"], answer["pair"] = market.id, market.id.split("_")[0]
        answer["bids"] = [list(level) for level in market.book.bids.top(limit)]
        answer["asks"] = [list(level) for level in market.book.asks.top(limit)]
        return RestReply(200, json.dumps(answer))

    def _exchange_info(self) -> dict[str, Any]:
        listing = {"spot": _spot_info, "linear": _linear_info, "inverse": _inverse_info}
        shape = listing[self._flavour.kind]
        info: dict[str, Any] = {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [shape(m) for m in self._markets.values()],
        }
        return info


def _spot_info(market: _Market) -> dict[str, Any]:
    return {
        "symbol": market.id,
        "status": "TRADING" if market.trading else "BREAK",
        "baseAsset": market.base,
        "baseAssetPrecision": 8,
        "quoteAsset": market.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": _filters(market, "9000"),
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }


def _linear_info(market: _Market) -> dict[str, Any]:
    return {
        "symbol": market.id,
        "pair": market.id,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING" if market.trading else "SETTLING",
        "baseAsset": market.base,
        "quoteAsset": market.quote,
        "marginAsset": market.quote,
        "pricePrecision": _decimals(market.tick),
        "quantityPrecision": _decimals(market.lot),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "filters": _filters(market, "1000"),
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def _inverse_info(market: _Market) -> dict[str, Any]:
    return {
        "symbol": market.id,
        "pair": market.id.split("_")[0],
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1597042800000,
        "contractStatus": "TRADING" if market.trading else "SETTLING",
        "contractSize": market.contract_size,
        "marginAsset": market.base,
        "baseAsset": market.base,
        "quoteAsset": market.quote,
        "pricePrecision": _decimals(market.tick),
        "quantityPrecision": _decimals(market.lot),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "filters": _filters(market, "1000000"),
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def _filters(market: _Market, max_qty: str) -> list[dict[str, Any]]:
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": market.tick,
            "maxPrice": "4529764",
            "tickSize": market.tick,
        },
        {"filterType": "LOT_SIZE", "minQty": market.lot, "maxQty": max_qty, "stepSize": market.lot},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": market.lot,
            "maxQty": max_qty,
            "stepSize": market.lot,
        },
    ]


def _split(market_id: str) -> tuple[str, str]:
    """("BTC", "USDT") from "BTCUSDT"; ("BTC", "USD") from "BTCUSD_PERP"."""
    pair = market_id.split("_")[0]
    for quote in ("USDT", "USDC", "FDUSD", "BUSD", "USD", "BTC", "ETH"):
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    return pair[:-3], pair[-3:]


def _symbol(base: str, quote: str, kind: str) -> str:
    if kind == "spot":
        return f"{base}/{quote}"
    return f"{base}/{quote}:{quote if kind == 'linear' else base}"


def _decimals(step: str) -> int:
    return len(step.partition(".")[2].rstrip("0")) if "." in step else 0


def _json(body: Any) -> RestReply:
    return RestReply(200, json.dumps(body))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def create(recording: Recording, exchange_id: str) -> Venue:
    if exchange_id not in _FLAVOURS:
        raise ValueError(f"the binance venue serves {sorted(_FLAVOURS)}, not {exchange_id!r}")
    return BinanceVenue(recording, exchange_id)
