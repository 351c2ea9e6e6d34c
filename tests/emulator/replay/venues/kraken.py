"""Kraken spot (`kraken`): the WebSocket v2 `book` channel, as ccxt 4.5.90 watches it.

What ccxt does, and so what is served (ccxt/kraken.py, ccxt/pro/kraken.py):
- `load_markets`: `GET /0/public/Assets` (currencies first: XXBT -> BTC), then
  `GET /0/public/AssetPairs` (`status` "online" is active; `pair_decimals` and
  `lot_decimals` are the precisions); the REST book is `GET /0/public/Depth?pair=ID
  &count=N` (levels `[price, volume, time]`), and `/0/public/Time` the clock;
- the websocket is `urls.api.ws.publicV2` (`/v2`): on connect a `status` frame; ccxt
  sends `{"method": "subscribe", "params": {"channel": "book", "symbol": [S], "depth":
  D}, "req_id": N}`, gets one ack a symbol and then a snapshot (synthesised here from
  the true book), then the recorded `update` frames byte for byte; `{"method": "ping"}`
  is answered `{"method": "pong", ...}` (ccxt's keepalive counts those).
- A second subscribe to a book the socket already streams is refused ("Already
  subscribed", the error ccxt maps): resyncing needs an unsubscribe first.
- Only the recorded depth is served byte for byte; another depth is refused
  ("Subscription depth not supported"), as is an unknown or delisted pair.

Faults: "checksum" (the frame's checksum moved by one). Kraken v2 book frames carry no
sequence number, so a "sequence" fault cannot be expressed; a dropped frame shows only
through the checksum of a later one.
"""

import json
import time
from typing import Any
from urllib.parse import urlparse

from tests.emulator.replay import kraken_wire as wire
from tests.emulator.replay.levels import Levels
from tests.emulator.replay.recording import Recording, WsEntry
from tests.emulator.replay.venue import Book, Conn, Fault, Frame, RestReply, RestRequest, Venue

__all__ = ["create"]

_HEARTBEAT = '{"channel":"heartbeat"}'
_SIZE_ZERO = "0"


class _Market:
    """One recorded pair: its listing (from the recorded AssetPairs) and true book."""

    def __init__(self, market_id: str, info: dict[str, Any], symbol: str) -> None:
        self.id, self.info, self.symbol = market_id, info, symbol
        self.book = Levels()
        self.time_ms: int | None = None  # the timestamp of the last update applied
        self.listed = True


class KrakenVenue:
    """A Kraken v2 recording served as Kraken (see the module doc)."""

    faults: frozenset[Fault] = frozenset({"checksum"})

    def __init__(self, recording: Recording, exchange_id: str) -> None:
        self.exchange_id = exchange_id
        config = recording.header.config
        self.depth = int(config.get("depth", 10))
        ids = recording.header.meta.get("markets", {})
        self._assets: dict[str, Any] = {}
        self._pairs: dict[str, Any] = {}
        for http in recording.http:
            path = urlparse(http.url).path
            if path.endswith("/Assets"):
                self._assets = json.loads(http.data)["result"]
            elif path.endswith("/AssetPairs"):
                self._pairs = json.loads(http.data)["result"]
        self._markets: dict[str, _Market] = {}
        for symbol in config.get("l2_book", []):
            market_id = ids[symbol]["id"]
            self._markets[symbol] = _Market(market_id, self._pairs[market_id], symbol)
        self._by_id = {m.id: m for m in self._markets.values()}
        for http in recording.http:  # a recorded REST book seeds the true book
            if urlparse(http.url).path.endswith("/Depth"):
                self._seed(json.loads(http.data)["result"])
        self._connections = 0

    def _seed(self, result: dict[str, Any]) -> None:
        for market_id, book in result.items():
            market = self._by_id.get(market_id)
            if market is not None:
                bids = [level[:2] for level in book["bids"][: self.depth]]
                market.book.reset(bids, [level[:2] for level in book["asks"][: self.depth]])

    # -- the seam --

    def symbols(self) -> list[str]:
        return list(self._markets)

    def exchanges_config(self, base_url: str) -> dict[str, Any]:
        ws = base_url.replace("http://", "ws://")
        socket = {
            key: ws + ("/v2" if key.endswith("V2") else "")
            for key in ("public", "private", "privateV2", "publicV2", "beta", "beta-private")
        }
        api = {
            "public": base_url,
            "private": base_url,
            "zendesk": base_url + "/zendesk",
            "ws": socket,
        }
        return {"urls": {"api": api}, "options": {}}

    def rest(self, request: RestRequest) -> RestReply | None:
        path = request.path
        if path == "/0/public/Assets":
            return _ok(self._assets)
        if path == "/0/public/AssetPairs":
            listed = {m.id: m.info for m in self._markets.values() if m.listed}
            return _ok(
                {k: v for k, v in self._pairs.items() if k in listed or k not in self._by_id}
            )
        if path == "/0/public/Depth":
            return self._depth(request.query)
        if path == "/0/public/Time":
            now_s = time.time()
            return _ok(
                {
                    "unixtime": int(now_s),
                    "rfc1123": time.strftime("%a, %d %b %y %H:%M:%S +0000", time.gmtime(now_s)),
                }
            )
        if path == "/0/public/SystemStatus":
            return _ok({"status": "online", "timestamp": wire.timestamp(time.time() * 1000)})
        return None

    def rest_error(self, status: int, retry_after_s: int) -> RestReply:
        if status == 429:
            return RestReply(429, json.dumps({"error": ["EGeneral:Too many requests"]}))
        return RestReply(status, json.dumps({"error": ["EService:Unavailable"]}))

    def on_open(self, conn: Conn) -> list[Frame]:
        self._connections += 1
        status = {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "version": "2.0.10",
                    "system": "online",
                    "api_version": "v2",
                    "connection_id": 11869713914442381321 + self._connections,
                }
            ],
        }
        return [_compact(status)]

    def on_message(self, conn: Conn, data: Frame) -> list[Frame]:
        received = _now()
        try:
            request = json.loads(data)
            method = request.get("method")
        except (ValueError, AttributeError):
            return [
                _compact(
                    {
                        "error": "Malformed request",
                        "success": False,
                        "time_in": received,
                        "time_out": _now(),
                    }
                )
            ]
        req_id = request.get("req_id")
        if method == "ping":
            return [
                _compact(
                    {"method": "pong", **_req(req_id), "time_in": received, "time_out": _now()}
                )
            ]
        if method not in ("subscribe", "unsubscribe"):
            return [_error(method, req_id, f"Method not found: {method}", received)]
        params = request.get("params") or {}
        if params.get("channel") != "book":
            return [_error(method, req_id, "Channel not supported by this emulator", received)]
        symbols = params.get("symbol")
        if not isinstance(symbols, list):
            return [_error(method, req_id, "Symbol field must be an array", received)]
        depth = params.get("depth", 10)
        out: list[Frame] = []
        for symbol in symbols:
            if method == "subscribe":
                out += self._subscribe(conn, symbol, depth, req_id, received)
            else:
                out += self._unsubscribe(conn, symbol, depth, req_id, received)
        return out

    def _subscribe(
        self, conn: Conn, symbol: str, depth: Any, req_id: Any, received: str
    ) -> list[Frame]:
        market = self._markets.get(symbol)
        if market is None or not market.listed:
            return [
                _error(
                    "subscribe", req_id, f"Currency pair not supported {symbol}", received, symbol
                )
            ]
        if depth != self.depth:
            why = f"Subscription depth not supported (this recording serves depth {self.depth})"
            return [_error("subscribe", req_id, why, received, symbol)]
        if symbol in conn.symbols:
            return [_error("subscribe", req_id, "Already subscribed", received, symbol)]
        conn.symbols.add(symbol)
        result = {"channel": "book", "depth": depth, "snapshot": True, "symbol": symbol}
        ack = {
            "method": "subscribe",
            **_req(req_id),
            "result": result,
            "success": True,
            "time_in": received,
            "time_out": _now(),
        }
        bids, asks = market.book.bids.top(self.depth), market.book.asks.top(self.depth)
        snapshot = wire.frame(
            "snapshot", symbol, bids, asks, wire.checksum(asks, bids), market.time_ms
        )
        return [_compact(ack), snapshot]

    def _unsubscribe(
        self, conn: Conn, symbol: str, depth: Any, req_id: Any, received: str
    ) -> list[Frame]:
        if symbol not in conn.symbols:
            return [_error("unsubscribe", req_id, "Subscription Not Found", received, symbol)]
        conn.symbols.discard(symbol)
        result = {"channel": "book", "depth": depth, "symbol": symbol}
        return [
            _compact(
                {
                    "method": "unsubscribe",
                    **_req(req_id),
                    "result": result,
                    "success": True,
                    "time_in": received,
                    "time_out": _now(),
                }
            )
        ]

    def apply(self, entry: WsEntry) -> list[str]:
        if not entry.data.startswith('{"channel":"book"'):
            return []  # status, heartbeat, recorded acks
        message = json.loads(entry.data, parse_float=str, parse_int=str)
        concerned = []
        for item in message["data"]:
            market = self._markets.get(item["symbol"])
            if market is None:
                continue
            bids = [[level["price"], level["qty"]] for level in item["bids"]]
            asks = [[level["price"], level["qty"]] for level in item["asks"]]
            if message["type"] == "snapshot":
                market.book.reset(bids, asks)
            else:
                market.book.update(bids, asks)
            self._truncate(market.book)
            if "timestamp" in item:
                market.time_ms = _ms(item["timestamp"])
            concerned.append(market.symbol)
        return concerned

    def _truncate(self, book: Levels) -> None:
        """What a client does after each frame: levels below the depth are forgotten (no
        zero size comes for a level merely pushed out)."""
        if len(book.bids) > self.depth or len(book.asks) > self.depth:
            book.reset(
                [list(x) for x in book.bids.top(self.depth)],
                [list(x) for x in book.asks.top(self.depth)],
            )

    def frame_for(self, conn: Conn, entry: WsEntry, symbols: list[str]) -> Frame | None:
        if entry.data == _HEARTBEAT:
            return entry.data if conn.symbols else None
        if symbols and symbols[0] in conn.symbols:
            return entry.data
        return None

    def fault(self, kind: Fault, symbol: str, frame: Frame) -> Frame | None:
        """A checksum that does not match the book (moved by one); the levels are intact."""
        if kind != "checksum" or not isinstance(frame, str):
            return None
        head, found, tail = frame.partition('"checksum":')
        if not found:
            return None
        digits = len(tail) - len(tail.lstrip("0123456789"))
        wrong = (int(tail[:digits]) + 1) % 2**32
        return f"{head}{found}{wrong}{tail[digits:]}"

    def delist(self, symbol: str) -> None:
        self._markets[symbol].listed = False

    def book(self, symbol: str, depth: int | None = None) -> Book:
        market = self._markets[symbol]
        return Book(market.book.bids.top(depth), market.book.asks.top(depth), None, market.time_ms)

    # -- REST bodies --

    def _depth(self, query: dict[str, str]) -> RestReply:
        market = self._by_id.get(query.get("pair", "")) or self._by_wsname(query.get("pair", ""))
        if market is None or not market.listed:
            return _errors(["EQuery:Unknown asset pair"])
        try:
            count = int(query.get("count", "100"))
        except ValueError:
            return _errors(["EGeneral:Invalid arguments:count"])
        unix_s = int((market.time_ms or 0) / 1000)
        levels = {
            side: [
                [price, size, unix_s]
                for price, size in getattr(market.book, side).top(max(count, 1))
            ]
            for side in ("asks", "bids")
        }
        return _ok({market.id: levels})

    def _by_wsname(self, pair: str) -> _Market | None:
        return next((m for m in self._markets.values() if m.info.get("altname") == pair), None)


def _ok(result: Any) -> RestReply:
    return RestReply(200, json.dumps({"error": [], "result": result}))


def _errors(errors: list[str]) -> RestReply:
    return RestReply(200, json.dumps({"error": errors}))  # Kraken answers errors with 200


def _error(method: Any, req_id: Any, why: str, received: str, symbol: str | None = None) -> str:
    body: dict[str, Any] = {"error": why, "method": method, **_req(req_id), "success": False}
    if symbol is not None:
        body["symbol"] = symbol
    return _compact({**body, "time_in": received, "time_out": _now()})


def _req(req_id: Any) -> dict[str, Any]:
    return {} if req_id is None else {"req_id": req_id}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _now() -> str:
    return wire.timestamp(time.time() * 1000)


def _ms(stamp: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def create(recording: Recording, exchange_id: str) -> Venue:
    return KrakenVenue(recording, exchange_id)
