"""Coinbase Advanced Trade (`coinbase`): the public `level2` channel and the REST that
ccxt 4.5.90 calls without API keys (ccxt/coinbase.py, ccxt/pro/coinbase.py).

- `load_markets`: `fetch_currencies` (`/v2/currencies`, `/v2/currencies/crypto`,
  `/v2/exchange-rates`), then `fetch_markets_v3`: `/api/v3/brokerage/market/products`
  and `...?product_type=FUTURE` (the public "market" endpoints: `usePrivate` is off);
  all under `urls.api.rest`. Order book: `/api/v3/brokerage/market/product_book`
  (`{"pricebook": {"bids": [{"price", "size"}], ...}}`); time: `/v2/time`.
- websocket `urls.api.ws`, no auth: `{"type": "subscribe", "product_ids": [...],
  "channel": "level2"}` answered by an `l2_data` message with a `snapshot` event of the
  whole book per product, then a `subscriptions` message listing what the connection
  now has (ccxt needs `events[0].subscriptions`; an empty one ends an unsubscribe).
- every message carries `sequence_num`, counted over the whole connection from 0.
  That numbering cannot be the recording's (another connection, other subscriptions),
  so it is the one change made to recorded frames: each connection counts its own,
  and a frame lost to a drop fault still uses up its number, as a message lost on
  the wire does. ccxt ignores `sequence_num`; obd's check (plugins.d/ccxt/
  check_coinbase.py) does not.
- no checksum (faults: "sequence" only); pings are websocket protocol pings.
"""

import json
import re
import time
import weakref
from datetime import UTC, datetime
from typing import Any

from tests.emulator.replay.levels import Levels
from tests.emulator.replay.recording import Recording, WsEntry
from tests.emulator.replay.venue import Book, Conn, Fault, Frame, RestReply, RestRequest, Venue

__all__ = ["create"]

_SEQUENCE = re.compile(r'"sequence_num":(\d+)')
_SNAPSHOT_TIME = "1970-01-01T00:00:00Z"
_NAMES = {"BTC": "Bitcoin", "ETH": "Ethereum", "USD": "US Dollar", "EUR": "Euro"}
_FIAT = ("USD", "EUR", "GBP")


class _Product:
    """One served product: its listing and its true book."""

    def __init__(self, product_id: str, listing: dict[str, Any] | None) -> None:
        self.id = product_id
        self.base, self.quote = product_id.split("-")
        self.symbol = f"{self.base}/{self.quote}"
        self.listing = listing or _listing(product_id)
        self.book = Levels()
        self.seq: int | None = None  # the recorded sequence_num of its last change
        self.timestamp = _SNAPSHOT_TIME  # `timestamp` of the last frame that changed it
        self.trading = True


class CoinbaseVenue:
    """A Coinbase `level2` recording served as Coinbase serves it (see the module doc)."""

    faults: frozenset[Fault] = frozenset({"sequence"})  # Coinbase books have no checksum

    def __init__(self, recording: Recording, exchange_id: str) -> None:
        self.exchange_id = exchange_id
        listed = _recorded_listing(recording)
        ids = [str(i) for i in recording.header.config.get("l2_book", [])]
        self._products = {i: _Product(i, listed.get(i)) for i in ids}
        self._by_symbol = {p.symbol: p for p in self._products.values()}
        self._conns: weakref.WeakSet[Conn] = weakref.WeakSet()
        self._timestamp = _SNAPSHOT_TIME  # of the last recorded frame applied
        # the last recorded frame applied: (line, product id or channel, text)
        self._last: tuple[int, str, str] = (0, "", "")
        self._faulted: Conn | None = None  # the connection `frame_for` last answered
        self._settled = 0  # the last frame whose drops were counted

    # -- the seam --

    def symbols(self) -> list[str]:
        return [p.symbol for p in self._products.values()]

    def exchanges_config(self, base_url: str) -> dict[str, Any]:
        ws = base_url.replace("http://", "ws://") + "/ws"
        return {"urls": {"api": {"rest": base_url, "ws": ws}}, "options": {}}

    def rest(self, request: RestRequest) -> RestReply | None:
        path, query = request.path, request.query
        if path == "/api/v3/brokerage/market/products":
            if query.get("product_type", "SPOT") != "SPOT":
                return _json({"products": [], "num_products": 0})
            products = [self._listed(p) for p in self._products.values()]
            return _json({"products": products, "num_products": len(products)})
        if path == "/api/v3/brokerage/market/product_book":
            return self._product_book(query)
        if path == "/v2/currencies":
            return _json({"data": [_fiat(c) for c in self._currencies() if c in _FIAT]})
        if path == "/v2/currencies/crypto":
            return _json({"data": [_crypto(c) for c in self._currencies() if c not in _FIAT]})
        if path == "/v2/exchange-rates":
            rates = {c: "1" for c in self._currencies()}
            return _json({"data": {"currency": "USD", "rates": rates}})
        if path == "/v2/time":
            return _json({"data": {"iso": _iso(time.time_ns()), "epoch": int(time.time())}})
        if path == "/api/v3/brokerage/time":
            now_ms = time.time_ns() // 1_000_000
            iso = _iso(now_ms * 1_000_000)
            return _json(
                {"iso": iso, "epochSeconds": str(now_ms // 1000), "epochMillis": str(now_ms)}
            )
        return None

    def rest_error(self, status: int, retry_after_s: int) -> RestReply:
        if status == 429:
            body = {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}
            return RestReply(429, json.dumps(body), headers={"Retry-After": str(retry_after_s)})
        return RestReply(
            status,
            "upstream connect error or disconnect/reset before headers",
            content_type="text/plain",
        )

    def on_open(self, conn: Conn) -> list[Frame]:
        self._conns.add(conn)
        conn.state.update(seq=0, channels={}, line=0)
        return []

    def on_message(self, conn: Conn, data: Frame) -> list[Frame]:
        self._settle_drops()  # before the numbers of this answer are taken
        try:
            request = json.loads(data)
            kind, channel = request["type"], request["channel"]
            ids = [str(i) for i in request.get("product_ids") or []]
        except (ValueError, KeyError, TypeError):
            return [_error("malformed request")]
        if kind not in ("subscribe", "unsubscribe") or channel not in ("level2", "heartbeats"):
            return [_error(f"Failure to {kind} to channel {channel!r}")]
        unknown = [i for i in ids if i not in self._products or not self._products[i].trading]
        if unknown:
            return [_error(f"Failure to subscribe: unknown product ids {unknown}")]
        channels: dict[str, list[str]] = conn.state["channels"]
        had = channels.setdefault(channel, [])
        out: list[Frame] = []
        if kind == "subscribe":
            channels[channel] = had + [i for i in ids if i not in had]
            if channel == "level2":
                out += [self._message(conn, "l2_data", [self._snapshot(i)]) for i in ids]
        else:
            channels[channel] = [i for i in had if i not in ids]
        channels = conn.state["channels"] = {n: kept for n, kept in channels.items() if kept}
        conn.state["line"] = self._last[0]  # a snapshot just sent holds every frame so far
        conn.symbols = {self._products[i].symbol for i in channels.get("level2", [])}
        out.append(self._message(conn, "subscriptions", [{"subscriptions": dict(channels)}]))
        return out

    def apply(self, entry: WsEntry) -> list[str]:
        self._settle_drops()
        message = json.loads(entry.data)
        channel = message.get("channel")
        self._timestamp = message.get("timestamp", self._timestamp)
        if channel != "l2_data":
            self._last = (entry.line, channel or "", entry.data)
            return []
        touched = []
        for event in message.get("events", []):
            product = self._products.get(event.get("product_id"))
            if product is None:
                continue
            changes: dict[str, list[list[str]]] = {"bid": [], "offer": []}
            for update in event.get("updates", []):
                changes[update["side"]].append([update["price_level"], update["new_quantity"]])
            if event.get("type") == "snapshot":
                product.book.reset(changes["bid"], changes["offer"])
            else:
                product.book.update(changes["bid"], changes["offer"])
            product.seq, product.timestamp = message.get("sequence_num"), self._timestamp
            touched.append(product)
        # (the recordings hold one product a message, as Coinbase sends them)
        self._last = (entry.line, touched[0].id if touched else "", entry.data)
        return [p.symbol for p in touched]

    def frame_for(self, conn: Conn, entry: WsEntry, symbols: list[str]) -> Frame | None:
        line, about, text = self._last
        if line != entry.line:
            return None
        if about in self._products:
            subscribed = about in conn.state["channels"].get("level2", [])
            if not subscribed or self._products[about].symbol not in symbols:
                return None
            conn.state["line"] = line
        elif about not in conn.state["channels"]:  # heartbeats, or a channel not served
            return None
        self._faulted = conn
        return self._renumbered(conn, text)

    def fault(self, kind: Fault, symbol: str, frame: Frame) -> Frame | None:
        """One message skipped: this frame's `sequence_num` one past what it would be,
        and the connection's count moved on with it (its content is all there)."""
        conn = self._faulted
        if kind != "sequence" or not isinstance(frame, str) or conn is None:
            return None
        found = _SEQUENCE.search(frame)
        if found is None:
            return None
        conn.state["seq"] += 1
        moved = f'"sequence_num":{int(found.group(1)) + 1}'
        return frame[: found.start()] + moved + frame[found.end() :]

    def delist(self, symbol: str) -> None:
        self._by_symbol[symbol].trading = False

    def book(self, symbol: str, depth: int | None = None) -> Book:
        product = self._by_symbol[symbol]
        bids, asks = product.book.bids.top(depth), product.book.asks.top(depth)
        return Book(bids, asks, seq=product.seq, ts_ms=_ms(product.timestamp))

    # -- helpers --

    def _settle_drops(self) -> None:
        """The last book frame, if a subscriber did not get it (a drop fault), still
        used up a number on that subscriber's connection: Coinbase counts messages
        sent, and the next one shows the gap."""
        line, about, _ = self._last
        product = self._products.get(about)
        if product is None or not product.trading or self._settled == line:
            return
        self._settled = line
        for conn in list(self._conns):
            if about in conn.state["channels"].get("level2", []) and conn.state["line"] != line:
                conn.state["seq"] += 1

    def _renumbered(self, conn: Conn, text: str) -> str:
        number = conn.state["seq"]
        conn.state["seq"] = number + 1
        return _SEQUENCE.sub(f'"sequence_num":{number}', text, count=1)

    def _message(self, conn: Conn, channel: str, events: list[Any]) -> str:
        number = conn.state["seq"]
        conn.state["seq"] = number + 1
        message = {
            "channel": channel,
            "client_id": "",
            "timestamp": self._timestamp,
            "sequence_num": number,
            "events": events,
        }
        return json.dumps(message, separators=(",", ":"))

    def _snapshot(self, product_id: str) -> dict[str, Any]:
        """The whole true book as the `snapshot` event a subscribe is answered with."""
        book = self._products[product_id].book
        updates = [
            {"side": side, "event_time": _SNAPSHOT_TIME, "price_level": p, "new_quantity": q}
            for side, levels in (("bid", book.bids.top()), ("offer", book.asks.top()))
            for p, q in levels
        ]
        return {"type": "snapshot", "product_id": product_id, "updates": updates}

    def _product_book(self, query: dict[str, str]) -> RestReply:
        product = self._products.get(query.get("product_id", ""))
        if product is None or not product.trading:
            body = {
                "error": "NOT_FOUND",
                "error_details": "ProductID is invalid",
                "message": "ProductID is invalid",
            }
            return RestReply(404, json.dumps(body))
        try:
            limit: int | None = int(query["limit"]) if "limit" in query else None
        except ValueError:
            return RestReply(400, json.dumps({"error": "INVALID_ARGUMENT", "message": "limit"}))
        bids, asks = product.book.bids.top(limit), product.book.asks.top(limit)
        pricebook = {
            "product_id": product.id,
            "bids": [{"price": p, "size": q} for p, q in bids],
            "asks": [{"price": p, "size": q} for p, q in asks],
            "time": product.timestamp,
        }
        return _json({"pricebook": pricebook})

    def _listed(self, product: _Product) -> dict[str, Any]:
        listing = dict(product.listing)
        if not product.trading:
            listing.update(status="delisted", trading_disabled=True, is_disabled=True)
        return listing

    def _currencies(self) -> list[str]:
        codes = {c for p in self._products.values() for c in (p.base, p.quote)}
        return sorted(codes)


def _recorded_listing(recording: Recording) -> dict[str, dict[str, Any]]:
    """The products of a recorded products listing, by id (the listing is then served)."""
    for http in recording.http:
        if http.url.split("?")[0].endswith("/brokerage/market/products"):
            return {p["product_id"]: p for p in json.loads(http.data).get("products", [])}
    return {}


def _listing(product_id: str) -> dict[str, Any]:
    base, quote = product_id.split("-")
    return {
        "product_id": product_id,
        "base_increment": "0.00000001",
        "quote_increment": "0.01",
        "price_increment": "0.01",
        "quote_min_size": "1",
        "base_min_size": "0.00000001",
        "base_max_size": "10000",
        "base_name": _NAMES.get(base, base),
        "quote_name": _NAMES.get(quote, quote),
        "status": "online",
        "trading_disabled": False,
        "is_disabled": False,
        "product_type": "SPOT",
        "base_currency_id": base,
        "quote_currency_id": quote,
        "alias": "",
        "alias_to": [],
        "display_name": product_id,
    }


def _fiat(code: str) -> dict[str, Any]:
    return {"id": code, "name": _NAMES.get(code, code), "min_size": "0.01"}


def _crypto(code: str) -> dict[str, Any]:
    return {
        "asset_id": f"00000000-0000-0000-0000-{sum(map(ord, code)):012d}",
        "code": code,
        "name": _NAMES.get(code, code),
        "color": "#0052FF",
        "sort_index": "100",
        "exponent": 8,
        "type": "crypto",
        "address_regex": "^.+$",
    }


def _iso(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def _ms(timestamp: str) -> int | None:
    """ "2024-08-08T23:54:14.206652067Z" in epoch ms (as ccxt's parse8601 reads it)."""
    if timestamp == _SNAPSHOT_TIME:
        return None
    stamp, _, fraction = timestamp.rstrip("Z").partition(".")
    seconds = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return int(seconds) * 1000 + int((fraction + "000")[:3])


def _error(why: str) -> str:
    return json.dumps({"type": "error", "message": why})


def _json(body: Any) -> RestReply:
    return RestReply(200, json.dumps(body))


def create(recording: Recording, exchange_id: str) -> Venue:
    if exchange_id != "coinbase":
        raise ValueError(f"the coinbase venue serves 'coinbase', not {exchange_id!r}")
    return CoinbaseVenue(recording, exchange_id)
