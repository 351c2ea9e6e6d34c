"""Hyperliquid perpetuals (`hyperliquid`): the `l2Book` channel, whole books only.

What ccxt 4.5 does, and so what is served (ccxt/pro/hyperliquid.py, ccxt/hyperliquid.py):
- every REST call is `POST {urls.api.public}/info` with a JSON body naming its `type`;
  `load_markets` asks `spotMeta` (currencies), then `spotMetaAndAssetCtxs`,
  `metaAndAssetCtxs` and `perpDexs` (the markets: spot, perpetuals, HIP-3 dexes; a
  perpetual's ccxt id is its index in `universe`, its `coin` its `name`, and
  `isDelisted: true` makes it inactive); `fetch_order_book` asks `l2Book` for a coin
  and reads `{"coin", "time", "levels": [bids, asks]}` (`px`, `sz`, `n` strings);
- one websocket at `urls.api.ws.public`; `{"method": "subscribe", "subscription":
  {"type": "l2Book", "coin": "BTC"}}` is acked with a `subscriptionResponse` echoing
  the subscription, then the coin's whole book comes at once and again on every
  change (`{"channel": "l2Book", "data": {"coin", "time", "levels"}}`); ccxt resets
  its book to each frame. There is no sequence number and no checksum, so there is
  no frame fault to make (`faults` is empty): a dropped frame is healed by the next;
- a second subscribe to the same coin is refused with `{"channel": "error", "data":
  "Already subscribed: ..."}`, which ccxt ignores; `{"method": "ping"}` is answered
  `{"channel": "pong"}` (ccxt's keep-alive; a stall silences it).

The recording's header `config.l2_book` lists the coins: perpetuals by name (`BTC`,
served as `BTC/USDC:USDC`) and spot pairs by `@<index>` (ccxt's market id; served as
base/USDC, `UBTC` read as `BTC` as ccxt does for Hyperliquid's "Unit" tokens). Its
`http` entries seed the listings (`metaAndAssetCtxs`: each perpetual's `szDecimals`;
`spotMetaAndAssetCtxs`: the spot pairs and their tokens) and the books before the
first frame (`l2Book` answers). A delisted perpetual is flagged `isDelisted`; a
delisted spot pair leaves the spot listing.
"""

import json
from typing import Any

from tests.emulator.replay.recording import Recording, WsEntry
from tests.emulator.replay.venue import Book, Conn, Fault, Frame, RestReply, RestRequest, Venue

__all__ = ["create"]

_QUOTE = "USDC"
_USDC = {  # spotMeta's USDC token, as Hyperliquid lists it (token 0, the quote of spot)
    "name": "USDC",
    "szDecimals": 8,
    "weiDecimals": 8,
    "index": 0,
    "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054",
    "isCanonical": True,
    "evmContract": None,
    "fullName": None,
}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Coin:
    """One perpetual: its listing and its true book (the last whole book received)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.symbol = f"{name}/{_QUOTE}:{_QUOTE}"  # a spot pair's is set by its listing
        self.sz_decimals = 4
        self.spot: dict[str, Any] | None = None  # a spot pair's universe entry
        self.levels: list[list[dict[str, Any]]] = [[], []]
        self.time_ms: int | None = None
        self.delisted = False

    def take(self, data: dict[str, Any]) -> None:
        self.levels, self.time_ms = data["levels"], data.get("time")

    def data(self) -> dict[str, Any]:
        return {"coin": self.name, "time": self.time_ms, "levels": self.levels}

    def mid(self) -> str | None:
        bids, asks = self.levels
        if not bids or not asks:
            return None
        return str((float(bids[0]["px"]) + float(asks[0]["px"])) / 2)


class HyperliquidVenue:
    """A recording of Hyperliquid `l2Book` frames served as Hyperliquid (module doc)."""

    faults: frozenset[Fault] = frozenset()  # no checksum, no sequence: nothing to corrupt

    def __init__(self, recording: Recording, exchange_id: str) -> None:
        self.exchange_id = exchange_id
        names = [str(name) for name in recording.header.config.get("l2_book", [])]
        self._coins = {name: _Coin(name) for name in names}
        self._tokens: list[dict[str, Any]] = [_USDC]
        for http in recording.http:
            self._seed(http.data)
        for coin in self._coins.values():
            if coin.name.startswith("@") and coin.spot is None:
                raise ValueError(f"spot pair {coin.name} is not in the recording's spot listing")
        self._by_symbol = {coin.symbol: coin for coin in self._coins.values()}

    def _seed(self, data: str) -> None:
        body = json.loads(data)
        if isinstance(body, dict) and body.get("coin") in self._coins:  # an l2Book answer
            self._coins[body["coin"]].take(body)
        elif isinstance(body, list) and body and isinstance(body[0], dict):  # a listing
            listing = body[0]
            if "tokens" in listing:  # spotMetaAndAssetCtxs
                self._tokens = listing["tokens"]
            for entry in listing.get("universe", []):
                coin = self._coins.get(entry.get("name"))
                if coin is None:
                    continue
                if "tokens" in listing:
                    base = self._tokens[entry["tokens"][0]]
                    coin.spot, coin.sz_decimals = entry, int(base["szDecimals"])
                    coin.symbol = f"{_code(base)}/{_QUOTE}"
                else:
                    coin.sz_decimals = int(entry["szDecimals"])

    # -- the seam --

    def symbols(self) -> list[str]:
        return list(self._by_symbol)

    def exchanges_config(self, base_url: str) -> dict[str, Any]:
        ws = {"public": base_url.replace("http://", "ws://") + "/ws"}
        rest = {"public": base_url, "private": base_url}
        return {"urls": {"api": {**rest, "ws": ws}, "test": {**rest, "ws": ws}}}

    def rest(self, request: RestRequest) -> RestReply | None:
        if request.method != "POST" or request.path != "/info":
            return None
        try:
            body = json.loads(request.body)
            kind = body["type"]
        except (ValueError, KeyError, TypeError):
            return RestReply(422, "Failed to deserialize the JSON body into the target type")
        if kind == "meta":
            return _json(self._meta())
        if kind == "metaAndAssetCtxs" and not body.get("dex"):
            return _json([self._meta(), [self._context(coin) for coin in self._perps()]])
        if kind == "spotMeta":
            return _json(self._spot_meta())
        if kind == "spotMetaAndAssetCtxs":
            return _json([self._spot_meta(), self._spot_contexts()])
        if kind == "perpDexs":
            return _json([None])  # the first dex (null) is Hyperliquid's own; no HIP-3 dexes
        if kind == "l2Book":
            coin = self._coins.get(str(body.get("coin")))
            if coin is None or coin.delisted:
                return _json(None)  # what Hyperliquid answers for a coin it has no book of
            return _json(coin.data())
        return None

    def rest_error(self, status: int, retry_after_s: int) -> RestReply:
        # A text body: a JSON one with an "error" key would be raised by ccxt's
        # hyperliquid.handle_errors as a plain ExchangeError before the status is read.
        if status == 429:
            return RestReply(429, "Too many requests", content_type="text/plain")
        return RestReply(status, "Service Unavailable", content_type="text/plain")

    def on_open(self, conn: Conn) -> list[Frame]:
        return []

    def on_message(self, conn: Conn, data: Frame) -> list[Frame]:
        try:
            request = json.loads(data)
            method = request.get("method")
        except (ValueError, AttributeError):
            request, method = None, None
        if method == "ping":
            return [_dumps({"channel": "pong"})]
        subscription = request.get("subscription") if method else None
        if method not in ("subscribe", "unsubscribe") or not isinstance(subscription, dict):
            why = f"Error parsing JSON into valid websocket request: {data!s:.200}"
            return [_dumps({"channel": "error", "data": why})]
        coin = self._coins.get(str(subscription.get("coin")))
        if subscription.get("type") != "l2Book" or coin is None:
            return [
                _dumps({"channel": "error", "data": f"Invalid subscription {_dumps(subscription)}"})
            ]
        subscribed = coin.symbol in conn.symbols
        if (method == "subscribe") == subscribed:
            state = "subscribed" if subscribed else "unsubscribed"
            return [
                _dumps({"channel": "error", "data": f"Already {state}: {_dumps(subscription)}"})
            ]
        echoed = {"nSigFigs": None, "mantissa": None, **subscription}
        reply = _dumps(
            {"channel": "subscriptionResponse", "data": {"method": method, "subscription": echoed}}
        )
        if method == "unsubscribe":
            conn.symbols.discard(coin.symbol)
            return [reply]
        conn.symbols.add(coin.symbol)
        if coin.time_ms is None or coin.delisted:
            return [reply]
        # Hyperliquid sends the whole current book right after the ack: the frame last
        # received again (same `time`), as the book has not changed since.
        return [reply, _dumps({"channel": "l2Book", "data": coin.data()})]

    def apply(self, entry: WsEntry) -> list[str]:
        message = json.loads(entry.data)
        if not isinstance(message, dict) or message.get("channel") != "l2Book":
            return []  # a pong, a subscription ack
        coin = self._coins.get(message["data"].get("coin"))
        if coin is None:
            return []
        coin.take(message["data"])
        return [coin.symbol]

    def frame_for(self, conn: Conn, entry: WsEntry, symbols: list[str]) -> Frame | None:
        if not symbols or symbols[0] not in conn.symbols:
            return None
        return entry.data  # byte for byte: the frame is the whole book

    def fault(self, kind: Fault, symbol: str, frame: Frame) -> Frame | None:
        return None  # nothing in an l2Book frame can prove it wrong

    def delist(self, symbol: str) -> None:
        self._by_symbol[symbol].delisted = True

    def book(self, symbol: str, depth: int | None = None) -> Book:
        coin = self._by_symbol[symbol]
        bids, asks = ([(lv["px"], lv["sz"]) for lv in side[:depth]] for side in coin.levels)
        return Book(bids, asks, seq=None, ts_ms=coin.time_ms)

    # -- REST bodies --

    def _perps(self) -> list[_Coin]:
        return [coin for coin in self._coins.values() if coin.spot is None]

    def _spot_meta(self) -> dict[str, Any]:
        listed = [c.spot for c in self._coins.values() if c.spot is not None and not c.delisted]
        return {"universe": listed, "tokens": self._tokens}

    def _spot_contexts(self) -> list[dict[str, Any]]:
        """Indexed by pair index, as Hyperliquid (and ccxt reading them) index them."""
        contexts: list[dict[str, Any]] = []
        for coin in self._coins.values():
            if coin.spot is not None:
                index = int(coin.spot["index"])
                contexts += [{}] * (index + 1 - len(contexts))
                contexts[index] = {"coin": coin.name, **self._context(coin)}
        return contexts

    def _meta(self) -> dict[str, Any]:
        universe = []
        for coin in self._perps():
            entry: dict[str, Any] = {
                "szDecimals": coin.sz_decimals,
                "name": coin.name,
                "maxLeverage": 40,
                "marginTableId": 56,
            }
            if coin.delisted:
                entry["isDelisted"] = True
            universe.append(entry)
        return {"universe": universe, "marginTables": [], "collateralToken": 0}

    def _context(self, coin: _Coin) -> dict[str, Any]:
        mid = coin.mid()
        return {
            "funding": "0.0000125",
            "openInterest": "1000.0",
            "prevDayPx": mid,
            "dayNtlVlm": "0.0",
            "premium": "0.0",
            "oraclePx": mid,
            "markPx": mid,
            "midPx": mid,
            "impactPxs": [mid, mid] if mid else None,
            "dayBaseVlm": "0.0",
        }


def _code(token: dict[str, Any]) -> str:
    """A spot token's ccxt code: Hyperliquid's wrapped "Unit" tokens (UBTC: "Unit
    Bitcoin") are the coin itself, as ccxt's `spotCurrencyMapping` has it."""
    name = str(token["name"])
    if str(token.get("fullName") or "").startswith("Unit ") and name.startswith("U"):
        return name[1:]
    return name


def _json(body: Any) -> RestReply:
    return RestReply(200, _dumps(body))


def create(recording: Recording, exchange_id: str) -> Venue:
    if exchange_id != "hyperliquid":
        raise ValueError(f"the hyperliquid venue serves 'hyperliquid', not {exchange_id!r}")
    return HyperliquidVenue(recording, exchange_id)
