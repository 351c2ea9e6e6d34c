"""One emulated symbol: an order book seeded from a recorded Binance snapshot that
evolves by seeded random changes near the touch, and remembers every change so a
test can ask what the book was at any instant.

Prices and sizes are integers in units of 1e-8 (Binance spot prints both with 8
decimals), so the strings on the wire are exact and float(wire) is what ccxt and
obd keep: the test compares floats parsed from the same strings, bit for bit.
"""

import bisect
import json
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"
UNIT = 10**8  # wire values have 8 decimals
MIN_LEVELS = 200  # a side never thins below this (removals stop)

Side = dict[int, int]  # price units -> size units
Change = tuple[int, int]  # (price units, size units); size 0 removes the level


def units(text: str) -> int:
    return int(Decimal(text) * UNIT)


def wire(value: int) -> str:
    """Units as Binance prints them: '61837.63000000'."""
    return f"{value // UNIT}.{value % UNIT:08d}"


def seed_book(name: str) -> dict[str, Any]:
    """A recorded `/api/v3/depth?limit=1000` answer from tests/data."""
    data: dict[str, Any] = json.loads((DATA / f"emulator_{name}_depth1000.json").read_text())
    return data


class Event:
    """One depthUpdate: the update ids it spans and what changed, at time `ts` (ms)."""

    __slots__ = ("asks", "bids", "first", "last", "sent", "ts")

    def __init__(self, ts: int, first: int, last: int, bids: list[Change], asks: list[Change]):
        self.ts, self.first, self.last = ts, first, last
        self.bids, self.asks = bids, asks
        self.sent = True  # False: withheld from the wire (a skipped update id)


class Market:
    """A listed symbol's book, its evolution and its history."""

    def __init__(
        self,
        symbol: str,
        base: str,
        quote: str,
        seed: dict[str, Any],
        *,
        tick: str = "0.01",
        lot: str = "0.00001",
        rng_seed: int = 0,
        record: bool = True,
    ) -> None:
        self.symbol, self.base, self.quote = symbol, base, quote
        self.tick, self.lot = tick, lot
        self.tick_units, self.lot_units = units(tick), units(lot)
        self.status = "TRADING"
        self.skip_next = False
        self.bids: Side = {units(p): units(q) for p, q in seed["bids"]}
        self.asks: Side = {units(p): units(q) for p, q in seed["asks"]}
        self._bid_prices = sorted(self.bids)  # ascending: best bid last
        self._ask_prices = sorted(self.asks)  # ascending: best ask first
        self.update_id = int(seed["lastUpdateId"])
        self._initial = (dict(self.bids), dict(self.asks))
        self.history: list[Event] = []
        self._record = record
        self._rng = random.Random(f"{rng_seed}:{symbol}")

    # -- what the wire shows --

    def depth(self, limit: int) -> dict[str, Any]:
        """The `/api/v3/depth` answer: the top `limit` levels a side, now."""
        bids = [[wire(p), wire(self.bids[p])] for p in reversed(self._bid_prices[-limit:])]
        asks = [[wire(p), wire(self.asks[p])] for p in self._ask_prices[:limit]]
        return {"lastUpdateId": self.update_id, "bids": bids, "asks": asks}

    def message(self, event: Event) -> dict[str, Any]:
        """The diff-depth stream frame of `event`."""
        return {
            "e": "depthUpdate",
            "E": event.ts,
            "s": self.symbol,
            "U": event.first,
            "u": event.last,
            "b": [[wire(p), wire(q)] for p, q in event.bids],
            "a": [[wire(p), wire(q)] for p, q in event.asks],
        }

    # -- evolution --

    def evolve(self, ts: int) -> list[Event]:
        """This tick's events (one, or two when an update id is to be skipped: the first
        changes the book but never reaches the wire)."""
        events = [self._event(ts)]
        if self.skip_next:
            self.skip_next = False
            events[0].sent = False
            events.append(self._event(ts))
        return events

    def _event(self, ts: int) -> Event:
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for _ in range(self._rng.randint(1, 4)):
            is_bid = self._rng.random() < 0.5
            price, size = self._change(is_bid)
            self._apply(is_bid, price, size)
            (bids if is_bid else asks)[price] = size
        first = self.update_id + 1
        self.update_id += len(bids) + len(asks)
        event = Event(ts, first, self.update_id, sorted(bids.items()), sorted(asks.items()))
        if self._record:
            self.history.append(event)
        return event

    def _change(self, is_bid: bool) -> Change:
        """A random change near the touch: resize, remove, or add (inside the spread too)."""
        rng, prices = self._rng, self._bid_prices if is_bid else self._ask_prices
        rank = min(int(rng.expovariate(1 / 6)), len(prices) - 1)
        at = prices[-1 - rank] if is_bid else prices[rank]
        roll = rng.random()
        if roll < 0.5 or (roll < 0.75 and len(prices) <= MIN_LEVELS):
            return at, self._size()
        if roll < 0.75:
            return at, 0
        best_bid, best_ask = self._bid_prices[-1], self._ask_prices[0]
        step = rng.randint(-1, 12) * self.tick_units  # -1: one tick inside the spread
        price = best_bid - step if is_bid else best_ask + step
        if not best_bid - 200 * self.tick_units < price < best_ask + 200 * self.tick_units:
            price = at
        if (is_bid and price >= best_ask) or (not is_bid and price <= best_bid):
            price = at  # never cross the book
        return price, self._size()

    def _size(self) -> int:
        lots = max(1, int(self._rng.lognormvariate(5.0, 1.5)))
        return lots * self.lot_units

    def _apply(self, is_bid: bool, price: int, size: int) -> None:
        side, prices = (self.bids, self._bid_prices) if is_bid else (self.asks, self._ask_prices)
        if size == 0:
            if price in side:
                del side[price]
                prices.pop(bisect.bisect_left(prices, price))
            return
        if price not in side:
            bisect.insort(prices, price)
        side[price] = size

    # -- history --

    def book_at(self, ts: int, depth: int) -> tuple[list[list[float]], list[list[float]]]:
        """The book as it stood at `ts` (ms): after every change with time <= ts, as
        floats parsed from the wire strings (what a client keeps)."""
        bids, asks = dict(self._initial[0]), dict(self._initial[1])
        for event in self._events_until(ts):
            for side, changes in ((bids, event.bids), (asks, event.asks)):
                for price, size in changes:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
        return _floats(sorted(bids, reverse=True)[:depth], bids), _floats(
            sorted(asks)[:depth], asks
        )

    def _events_until(self, ts: int) -> Iterator[Event]:
        for event in list(self.history):
            if event.ts > ts:
                return
            yield event


def _floats(prices: list[int], side: Side) -> list[list[float]]:
    return [[float(wire(p)), float(wire(side[p]))] for p in prices]
