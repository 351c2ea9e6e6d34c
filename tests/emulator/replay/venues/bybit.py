"""Bybit v5 spot on the replay server: `orderbook.{depth}.{symbol}` (a snapshot on
subscribe, then deltas numbered by `u`), app-level `{"op": "ping"}`, and the REST
market endpoints ccxt's `load_markets`, `fetch_order_book` and `fetch_time` call.

What ccxt 4.5.90 sends and expects (ccxt/pro/bybit.py, ccxt/async_support/bybit.py):
- `load_markets` asks `/v5/market/instruments-info` for `category=spot`, `linear` and
  `inverse` (each twice: once more with `status=PreLaunch`) and `option` once per
  base coin in its options; only spot is served, the rest are empty lists;
- `watch_order_book(symbol, limit)` sends `{"op": "subscribe", "req_id": N, "args":
  ["orderbook.<limit>.<id>"]}` on the spot URL and resolves on the first book frame;
  the ack only has to look like one (`"op": "subscribe"`);
- Bybit refuses a batch naming a topic already subscribed on the connection
  (`"success": false, "ret_msg": "error:already subscribed,topic:..."`), and sends a
  snapshot only after a subscribe: a client that wants a fresh one unsubscribes first;
- ccxt pings `{"req_id": N, "op": "ping"}` every `keepAlive` ms and takes any message
  with `"ret_msg": "pong"` as the pong.

Only the recorded depth is served (the recording's `channel`, `orderbook.200`); a
subscribe to another depth is refused with a message saying so. Bybit has no
checksum on this topic, so the only frame fault is "sequence" (a delta whose `u`
skips one).
"""

import json
import time
from decimal import Decimal
from typing import Any

from tests.emulator.replay.recording import Recording, WsEntry
from tests.emulator.replay.venue import Book, Conn, Fault, Frame, RestReply, RestRequest

__all__ = ["BybitVenue", "create"]

_CONN_ID = "e2b0c4f6-obd-replay"  # Bybit names each connection in its replies
_SPOT_LIMIT = 200  # /v5/market/orderbook serves at most this many levels on spot
_CATEGORIES = ("spot", "linear", "inverse", "option")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Side:
    """One side of a book as the wire strings, keyed by exact price."""

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.levels: dict[Decimal, tuple[str, str]] = {}

    def update(self, changes: list[list[str]]) -> None:
        for price, size in changes:
            if Decimal(size) == 0:
                self.levels.pop(Decimal(price), None)
            else:
                self.levels[Decimal(price)] = (price, size)

    def top(self, depth: int | None) -> list[tuple[str, str]]:
        keys = sorted(self.levels, reverse=self.descending)[:depth]
        return [self.levels[key] for key in keys]


class _Market:
    """One recorded symbol: its listing and its true book as replayed so far."""

    def __init__(self, market_id: str, spec: dict[str, Any]) -> None:
        self.id = market_id
        self.spec = spec
        self.symbol = f"{spec['base']}/{spec['quote']}"
        self.bids, self.asks = _Side(descending=True), _Side(descending=False)
        self.u: int | None = None  # None until the recorded snapshot was applied
        self.seq = 0
        self.ts_ms = 0
        self.cts_ms = 0
        self.listed = True

    def apply(self, kind: str, ts_ms: int, cts_ms: int, data: dict[str, Any]) -> None:
        if kind == "snapshot":
            self.bids.levels.clear()
            self.asks.levels.clear()
        self.bids.update(data.get("b", []))
        self.asks.update(data.get("a", []))
        self.u, self.seq, self.ts_ms, self.cts_ms = data["u"], data["seq"], ts_ms, cts_ms

    def levels(self, depth: int | None) -> dict[str, Any]:
        return {"s": self.id, "b": self.bids.top(depth), "a": self.asks.top(depth)}


class BybitVenue:
    """Bybit v5 spot, driven by one recording (see the module doc)."""

    faults: frozenset[Fault] = frozenset({"sequence"})

    def __init__(self, recording: Recording, exchange_id: str) -> None:
        self.exchange_id = exchange_id
        header = recording.header
        specs: dict[str, Any] = header.meta.get("markets") or {}
        ids: list[str] = header.config.get("l2_book") or list(specs)
        missing = [market_id for market_id in ids if market_id not in specs]
        if missing:
            raise ValueError(f"{recording.path}: header lacks markets for {missing}")
        self._markets = {market_id: _Market(market_id, specs[market_id]) for market_id in ids}
        self._by_symbol = {market.symbol: market for market in self._markets.values()}
        channel = str(header.meta.get("channel") or "orderbook.200")
        self._depth = int(channel.rsplit(".", 1)[1])

    # -- listing and REST --

    def symbols(self) -> list[str]:
        return [market.symbol for market in self._markets.values()]

    def exchanges_config(self, base_url: str) -> dict[str, Any]:
        ws = "ws" + base_url.removeprefix("http")
        public = {category: f"{ws}/v5/public/{category}" for category in _CATEGORIES}
        private = f"{ws}/v5/private"
        rest = {name: base_url for name in ("spot", "futures", "v2", "public", "private")}
        return {
            "options": {},  # every market type is asked for; the ones not served are empty
            "urls": {
                "api": {
                    **rest,
                    "ws": {
                        "public": public,
                        "private": {
                            "spot": {"unified": private, "nonUnified": private},
                            "contract": private,
                            "usdc": private,
                            "trade": f"{ws}/v5/trade",
                        },
                    },
                }
            },
        }

    def rest(self, request: RestRequest) -> RestReply | None:
        query = request.query
        if request.path == "/v5/market/time":
            now_ns = time.time_ns()
            result = {"timeSecond": str(now_ns // 10**9), "timeNano": str(now_ns)}
            return self._ok(result)
        if request.path == "/v5/market/instruments-info":
            return self._ok(self._instruments(query.get("category", "")))
        if request.path == "/v5/market/orderbook":
            return self._order_book(query)
        return None

    def _instruments(self, category: str) -> dict[str, Any]:
        if category != "spot":
            return {"category": category, "list": []}  # not emulated: nothing listed
        return {"category": "spot", "list": [self._instrument(m) for m in self._markets.values()]}

    @staticmethod
    def _instrument(market: _Market) -> dict[str, Any]:
        spec = market.spec
        return {
            "symbol": market.id,
            "baseCoin": spec["base"],
            "quoteCoin": spec["quote"],
            "innovation": "0",
            "status": "Trading" if market.listed else "Closed",
            "marginTrading": "utaOnly",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": spec["lot"],
                "quotePrecision": "0.00000001",
                "minOrderQty": spec.get("min_qty", spec["lot"]),
                "maxOrderQty": spec.get("max_qty", "1000000"),
                "minOrderAmt": "1",
                "maxOrderAmt": "4000000",
            },
            "priceFilter": {"tickSize": spec["tick"]},
        }

    def _order_book(self, query: dict[str, str]) -> RestReply:
        market = self._markets.get(query.get("symbol", ""))
        if query.get("category") != "spot" or market is None or not market.listed:
            return self._error(10001, "params error: symbol invalid")
        limit = min(int(query.get("limit") or 1), _SPOT_LIMIT)
        result = {
            **market.levels(limit),
            "ts": market.ts_ms,
            "u": market.u or 0,
            "seq": market.seq,
            "cts": market.cts_ms,
        }
        return self._ok(result)

    @staticmethod
    def _ok(result: dict[str, Any]) -> RestReply:
        body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}}
        return RestReply(200, _json({**body, "time": time.time_ns() // 1_000_000}))

    @staticmethod
    def _error(code: int, message: str, status: int = 200) -> RestReply:
        body = {"retCode": code, "retMsg": message, "result": {}, "retExtInfo": {}}
        return RestReply(status, _json({**body, "time": time.time_ns() // 1_000_000}))

    def rest_error(self, status: int, retry_after_s: int) -> RestReply:
        if status == 429:
            return self._error(10006, "Too many visits!", status)
        return self._error(10016, "Service Unavailable", status)

    # -- the websocket --

    def on_open(self, conn: Conn) -> list[Frame]:
        conn.state["topics"] = set()
        return []  # Bybit says nothing until asked

    def on_message(self, conn: Conn, data: Frame) -> list[Frame]:
        try:
            message = json.loads(data)
            op, req_id = message.get("op"), message.get("req_id", "")
        except (ValueError, AttributeError):
            return [self._reply("", "", False, "error:request not json")]
        if op == "ping":
            return [self._reply("ping", req_id, True, "pong")]
        topics = message.get("args") or []
        if op == "subscribe":
            return self._subscribe(conn, req_id, topics)
        if op == "unsubscribe":
            subscribed: set[str] = conn.state.setdefault("topics", set())
            subscribed.difference_update(topics)  # another depth's topic stays subscribed
            conn.symbols = {self._markets[t.rsplit(".", 1)[1]].symbol for t in subscribed}
            return [self._reply("unsubscribe", req_id, True, "")]
        return [self._reply(str(op or ""), req_id, False, f"error:invalid op {op}")]

    def _subscribe(self, conn: Conn, req_id: Any, topics: list[str]) -> list[Frame]:
        subscribed: set[str] = conn.state.setdefault("topics", set())
        for topic in topics:  # Bybit refuses the whole batch for one bad topic
            why = self._refusal(topic, subscribed)
            if why is not None:
                return [self._reply("subscribe", req_id, False, f"{why},topic:{topic}")]
        frames: list[Frame] = [self._reply("subscribe", req_id, True, "")]
        for topic in topics:
            subscribed.add(topic)
            market = self._markets[topic.rsplit(".", 1)[1]]
            conn.symbols.add(market.symbol)
            if market.u is not None:  # else the recorded snapshot is still to come
                frames.append(self._snapshot(topic, market))
        return frames

    def _refusal(self, topic: str, subscribed: set[str]) -> str | None:
        parts = topic.split(".")
        if len(parts) != 3 or parts[0] != "orderbook":
            return "error:handler not found"
        market = self._markets.get(parts[2])
        if market is None or not market.listed:
            return "error:handler not found"
        if parts[1] != str(self._depth):
            return f"error:the replay recorded orderbook.{self._depth} only"
        if topic in subscribed:
            return "error:already subscribed"
        return None

    def _snapshot(self, topic: str, market: _Market) -> str:
        data = {**market.levels(self._depth), "u": market.u, "seq": market.seq}
        frame = {"topic": topic, "type": "snapshot", "ts": market.ts_ms, "data": data}
        return _json({**frame, "cts": market.cts_ms})

    @staticmethod
    def _reply(op: str, req_id: Any, success: bool, message: str) -> str:
        reply = {"success": success, "ret_msg": message, "conn_id": _CONN_ID}
        return _json({**reply, "req_id": str(req_id), "op": op})

    def apply(self, entry: WsEntry) -> list[str]:
        message = json.loads(entry.data)
        topic = message.get("topic") if isinstance(message, dict) else None
        if not isinstance(topic, str) or not topic.startswith("orderbook."):
            return []  # an ack or a pong the recorder got
        data = message["data"]
        market = self._markets[data["s"]]
        ts_ms = int(message["ts"])
        market.apply(message["type"], ts_ms, int(message.get("cts", ts_ms)), data)
        return [market.symbol]

    def frame_for(self, conn: Conn, entry: WsEntry, symbols: list[str]) -> Frame | None:
        if any(symbol in conn.symbols for symbol in symbols):
            return entry.data  # byte for byte: one connection carries every topic
        return None

    def fault(self, kind: Fault, symbol: str, frame: Frame) -> Frame | None:
        if kind != "sequence":
            return None  # no checksum on Bybit's book topic
        message = json.loads(frame)
        if message.get("type") != "delta":
            return None  # a snapshot resets the numbering anyway
        message["data"]["u"] += 1  # as if the delta before it had been lost
        return _json(message)

    def delist(self, symbol: str) -> None:
        self._by_symbol[symbol].listed = False

    def book(self, symbol: str, depth: int | None = None) -> Book:
        market = self._by_symbol[symbol]
        return Book(
            bids=market.bids.top(depth),
            asks=market.asks.top(depth),
            seq=market.u,
            ts_ms=market.ts_ms or None,
        )


def create(recording: Recording, exchange_id: str) -> BybitVenue:
    return BybitVenue(recording, exchange_id)
