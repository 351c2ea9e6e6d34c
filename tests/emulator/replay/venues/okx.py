"""OKX v5 spot (`okx`): the public `books` channel, its REST book and listings.

What ccxt 4.5 does, and so what is served (ccxt/okx.py, ccxt/pro/okx.py):
- `load_markets` asks `GET /api/v5/public/instruments?instType=` SPOT, FUTURES, SWAP
  and OPTION (the last once per `uly`, BTC-USD and ETH-USD), all at `urls.api.rest`;
  SPOT lists the recorded instruments, the others are empty. No time or currency call
  without API keys. `fetch_order_book` is `GET /api/v5/market/books?instId=&sz=`
  (`books-full` above 400);
- websockets at `urls.api.ws` + "/public"; `watch_order_book(symbol, limit)` picks the
  channel from the limit (None or 400: `books`; 1: `bbo-tbt`; <= 5: `books5`; 50:
  `books50-l2-tbt`, which needs a login): only `books` is served, the others answer
  OKX's error 60018, as does an unknown or delisted instrument;
- `{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}` is answered
  `{"event":"subscribe","arg":{...},"connId":...}` and then a `snapshot` of the top 400
  levels, synthesised from the true book (seqId: the last applied frame's, prevSeqId
  -1, OKX's checksum), so the recorded `update` frames that follow chain onto it;
  each is sent byte for byte. A subscribe for a channel the connection already has is
  acknowledged without a new snapshot (OKX sends one only for a new subscription;
  ccxt 4.5.90's own resync unsubscribes first); `unsubscribe` is acknowledged and stops
  the frames;
- keepalive is text: ccxt sends "ping" and wants "pong" (OKX has no protocol pings).

The recording's own `snapshot` frames (answers to the recorder's subscribe) reset the
true book and reach only a client that subscribed before the book existed; acks and
pongs in it reach no one. Faults: "checksum" (the frame's checksum off by one bit) and
"sequence" (prevSeqId moved on by one: an update was skipped).
"""

import json
import re
import time
import zlib
from typing import Any

from tests.emulator.replay.okx_wire import LEVELS, WireBook, book_frame
from tests.emulator.replay.recording import Recording, WsEntry
from tests.emulator.replay.venue import Book, Conn, Fault, Frame, RestReply, RestRequest, Venue

__all__ = ["create"]

_CHANNEL = "books"
_INSTRUMENT_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
_CHECKSUM = re.compile(r'"checksum":(-?\d+)')
_PREVIOUS = re.compile(r'"prevSeqId":(-?\d+)')
# instId -> (tick, lot, minimum size) for what the header does not say (OKX's own)
_KNOWN = {"BTC-USDT": ("0.1", "0.00000001", "0.00001"), "ETH-USDT": ("0.01", "0.000001", "0.0001")}


class _Market:
    """One recorded instrument: its listing and its true book."""

    def __init__(self, inst_id: str, info: dict[str, Any]) -> None:
        self.id = inst_id
        self.base, self.quote = inst_id.split("-")[:2]
        self.symbol = f"{self.base}/{self.quote}"
        tick, lot, minimum = _KNOWN.get(inst_id, ("0.01", "0.0001", "0.0001"))
        self.tick, self.lot = str(info.get("tickSz", tick)), str(info.get("lotSz", lot))
        self.minimum = str(info.get("minSz", minimum))
        self.book = WireBook()
        self.live = True

    def listing(self) -> dict[str, Any]:
        return {
            "alias": "", "baseCcy": self.base, "category": "1", "ctMult": "", "ctType": "",
            "ctVal": "", "ctValCcy": "", "expTime": "", "instFamily": "", "instId": self.id,
            "instType": "SPOT", "lever": "10", "listTime": "1548133413000",
            "lotSz": self.lot, "maxLmtSz": "9999999999", "maxMktSz": "1000000",
            "minSz": self.minimum, "optType": "", "quoteCcy": self.quote, "settleCcy": "",
            "state": "live" if self.live else "suspend", "stk": "", "tickSz": self.tick,
            "uly": "",
        }  # fmt: skip


class OkxVenue:
    """A recording of OKX `books` frames served as OKX v5 (see the module doc)."""

    faults: frozenset[Fault] = frozenset({"checksum", "sequence"})

    def __init__(self, recording: Recording, exchange_id: str) -> None:
        self.exchange_id = exchange_id
        ids = [str(i) for i in recording.header.config.get("l2_book", [])]
        infos = _listed(recording)
        self._markets = {i: _Market(i, infos.get(i, {})) for i in ids}
        self._by_symbol = {m.symbol: m for m in self._markets.values()}
        self._last: tuple[int, str] = (0, "")  # (line, action) of the frame last applied

    def symbols(self) -> list[str]:
        return [m.symbol for m in self._markets.values()]

    def exchanges_config(self, base_url: str) -> dict[str, Any]:
        ws = base_url.replace("http://", "ws://") + "/ws/v5"
        urls = {"rest": base_url, "ws": ws}
        return {"urls": {"api": urls, "test": urls}, "options": {}}

    # -- REST --

    def rest(self, request: RestRequest) -> RestReply | None:
        path, query = request.path, request.query
        if path == "/api/v5/public/instruments":
            kind = query.get("instType", "")
            if kind not in _INSTRUMENT_TYPES:
                return _error(400, "51000", "Parameter instType error")
            rows = [m.listing() for m in self._markets.values()] if kind == "SPOT" else []
            return _ok(rows)
        if path in ("/api/v5/market/books", "/api/v5/market/books-full"):
            return self._rest_book(query, 400 if path.endswith("books") else 5000)
        if path == "/api/v5/public/time":
            return _ok([{"ts": str(time.time_ns() // 1_000_000)}])
        return None

    def rest_error(self, status: int, retry_after_s: int) -> RestReply:
        if status == 429:
            return _error(429, "50011", "Too Many Requests")
        return _error(503, "50001", "Service temporarily unavailable. Please try again later")

    def _rest_book(self, query: dict[str, str], most: int) -> RestReply:
        market = self._markets.get(query.get("instId", ""))
        if market is None or not market.live:
            return _error(400, "51001", "Instrument ID does not exist")
        try:
            size = int(query.get("sz", "1"))
        except ValueError:
            size = 0
        if not 1 <= size <= most:
            return _error(400, "51000", "Parameter sz error")
        bids, asks = market.book.sorted(min(size, LEVELS))
        data = {
            "asks": [[p, s, "0", n] for p, s, n in asks],
            "bids": [[p, s, "0", n] for p, s, n in bids],
            "ts": str(market.book.ts_ms or time.time_ns() // 1_000_000),
        }
        return _ok([data])

    # -- websocket --

    def on_open(self, conn: Conn) -> list[Frame]:
        conn.state["conn_id"] = f"{zlib.crc32(conn.id.encode()):08x}"
        conn.state["waiting"] = set()  # subscribed before the book existed
        return []

    def on_message(self, conn: Conn, data: Frame) -> list[Frame]:
        text = data.decode() if isinstance(data, bytes) else data
        if text == "ping":
            return ["pong"]
        try:
            request = json.loads(text)
            op, args = request["op"], list(request["args"])
        except (ValueError, KeyError, TypeError):
            return [self._event(conn, "error", code="60012", msg=f"Illegal request: {text}")]
        if op not in ("subscribe", "unsubscribe"):
            return [self._event(conn, "error", code="60012", msg=f"Illegal request: {text}")]
        out: list[Frame] = []
        for arg in args:
            market = self._markets.get(str(arg.get("instId")))
            if arg.get("channel") != _CHANNEL or market is None or not market.live:
                why = f"Wrong URL or channel:{arg.get('channel')},instId:{arg.get('instId')} "
                out.append(self._event(conn, "error", code="60018", msg=why + "doesn't exist"))
                continue
            out.append(self._event(conn, op, arg={"channel": _CHANNEL, "instId": market.id}))
            out += self._subscribe(conn, market) if op == "subscribe" else []
            if op == "unsubscribe":
                conn.symbols.discard(market.symbol)
                conn.state["waiting"].discard(market.symbol)
        return out

    def _subscribe(self, conn: Conn, market: _Market) -> list[Frame]:
        if market.symbol in conn.symbols:
            return []  # already subscribed: OKX sends no second snapshot
        conn.symbols.add(market.symbol)
        if market.book.seq is None:  # nothing replayed yet: the recorded snapshot will do
            conn.state["waiting"].add(market.symbol)
            return []
        bids, asks = market.book.sorted(LEVELS)
        ts_ms = market.book.ts_ms or 0
        check = market.book.checksum()
        return [book_frame(market.id, "snapshot", bids, asks, ts_ms, check, -1, market.book.seq)]

    def _event(self, conn: Conn, event: str, **fields: Any) -> str:
        body = {"event": event, **fields, "connId": conn.state.get("conn_id", "00000000")}
        return json.dumps(body, separators=(",", ":"))

    def apply(self, entry: WsEntry) -> list[str]:
        if not entry.data.startswith("{"):
            return []  # "pong"
        message = json.loads(entry.data)
        arg, action = message.get("arg") or {}, message.get("action")
        market = self._markets.get(str(arg.get("instId")))
        if market is None or arg.get("channel") != _CHANNEL or action not in ("snapshot", "update"):
            return []  # acks, errors, other channels
        for data in message.get("data", []):
            market.book.apply(data, snapshot=action == "snapshot")
        self._last = (entry.line, action)
        return [market.symbol]

    def frame_for(self, conn: Conn, entry: WsEntry, symbols: list[str]) -> Frame | None:
        line, action = self._last
        if not symbols or line != entry.line or symbols[0] not in conn.symbols:
            return None
        waiting: set[str] = conn.state.setdefault("waiting", set())
        if action == "snapshot":  # only for a subscriber the book did not exist for yet
            if symbols[0] not in waiting:
                return None
            waiting.discard(symbols[0])
            return entry.data
        return None if symbols[0] in waiting else entry.data

    def fault(self, kind: Fault, symbol: str, frame: Frame) -> Frame | None:
        """A checksum with its lowest bit flipped, or a prevSeqId moved on by one."""
        if not isinstance(frame, str) or '"action":"update"' not in frame:
            return None
        found = (_CHECKSUM if kind == "checksum" else _PREVIOUS).search(frame)
        if found is None:
            return None
        value = int(found.group(1))
        moved = value ^ 1 if kind == "checksum" else value + 1
        name = "checksum" if kind == "checksum" else "prevSeqId"
        return frame[: found.start()] + f'"{name}":{moved}' + frame[found.end() :]

    def delist(self, symbol: str) -> None:
        self._by_symbol[symbol].live = False

    def book(self, symbol: str, depth: int | None = None) -> Book:
        book = self._by_symbol[symbol].book
        bids, asks = book.sorted(depth)
        return Book(
            [(p, s) for p, s, _ in bids], [(p, s) for p, s, _ in asks], book.seq, book.ts_ms
        )


def _listed(recording: Recording) -> dict[str, dict[str, Any]]:
    """Tick and lot sizes from a recorded SPOT instruments answer, if there is one."""
    found: dict[str, dict[str, Any]] = {}
    for http in recording.http:
        if "/public/instruments" in http.url:
            for row in json.loads(http.data).get("data", []):
                found[str(row.get("instId"))] = row
    return found


def _ok(data: list[Any]) -> RestReply:
    return RestReply(200, json.dumps({"code": "0", "msg": "", "data": data}))


def _error(status: int, code: str, msg: str) -> RestReply:
    return RestReply(status, json.dumps({"code": code, "msg": msg, "data": []}))


def create(recording: Recording, exchange_id: str) -> Venue:
    return OkxVenue(recording, exchange_id)
