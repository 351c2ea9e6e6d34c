"""The `sim` exchange: a seeded, deterministic, synthetic (made-up) market.

A book is a pure function of (seed, symbol, time), computed in O(levels) for any
time, past or future, so live books and history agree exactly and tests can
predict them:

- mid: log price = log(typical price) + a sum of value-noise octaves (periods
  250 ms to ~48 days, each linear between hash-seeded anchors, amplitude ∝
  sqrt(period)). Its moves have the listing's daily volatility at every scale
  from a second to weeks, like a random walk, yet it stays bounded (typically
  within a factor of 2 of the typical price), so deep bids stay above zero.
- touch: best bid and ask around the mid, 1 tick apart for majors, a few ticks
  for the others.
- levels: walking tick by tick away from the touch. Each price's randomness
  (empty or not, size) is a hash of (price, side, refresh epoch), so an order
  resting at a price keeps its size for a while (less near the touch), as in a
  real book, and the first N levels never depend on how many were asked for.

The randomness comes from stable hashes (blake2b for keys, splitmix64 for the
rest), never Python's `hash()`, which is salted per process.
"""

import asyncio
import collections
import functools
import hashlib
import itertools
import math
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from statistics import NormalDist
from typing import Annotated

import msgspec
import numpy as np
from numpy.typing import NDArray

from obd.plugin import Availability, BadRequest, Book, Level, Market, NotFound, PluginSpec

__all__ = ["MAX_DEPTH", "PLUGIN", "SimExchange", "SimOptions", "create"]

MAX_DEPTH = 1000  # levels a side the sim can give
_HISTORY_BATCH = 64  # books computed together (and between yields to the loop) in fetch_history
_AHEAD_BOOKS = 4  # books watch computes in one batch: two seconds' worth at most
_SLOT_GRID_MS = 1_000  # obd's slots are whole seconds: watch delivers the updates they see

_OCTAVE_BASE_MS = 250  # the finest octave's period
_OCTAVES = 25  # periods 250 ms * 2**k: the coarsest is ~48 days
_OCTAVE_GAIN = 0.51  # makes the variance of a move over t ~ daily_vol**2 * t (measured)
_MS_PER_DAY = 86_400_000
_MAX_TICKS = 16 * MAX_DEPTH  # prices scanned a side at most (gaps make ~1.8 per level)
_NEAR_TICKS = 8  # no walls this close to the touch
# Odd multipliers below 2**63: they multiply int64 arrays, which wrap silently.
_PRICE_MUL = 0x5851F42D4C957F2D
_EPOCH_MUL = 0x14057B7EF767814F
_PHASE_MUL = 0x9E3779B1
_GOLDEN64 = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads consecutive integers


class SimOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[exchanges.sim]`: the same seed gives the same market, everywhere, forever."""

    seed: int = 0
    update_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 100  # how often the book changes


class _Listing(msgspec.Struct, frozen=True):
    """One listed instrument's character."""

    price: float  # typical price, quote units
    tick: str  # price grid, a power of ten as a decimal string
    lot: str  # size grid, likewise
    daily_vol: float  # standard deviation of a day's log return
    touch_size: float  # typical size at the best level, base units
    spreads: tuple[int, ...]  # spread in ticks, drawn uniformly from these 16
    gaps: float  # share of empty prices far from the touch: more where the tick is finer


_TIGHT = (1,) * 15 + (2,)  # majors: nearly always one tick
_WIDE = (1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 8)

# Roughly Binance's grids and prices in 2024.
_LISTINGS: dict[str, _Listing] = {
    # symbol: (price, tick, lot, daily_vol, touch_size, spreads, gaps)
    "BTC/USDT": _Listing(65_000.0, "0.01", "0.00001", 0.030, 0.4, _TIGHT, 0.45),
    "ETH/USDT": _Listing(3_200.0, "0.01", "0.0001", 0.040, 6.0, _TIGHT, 0.40),
    "SOL/USDT": _Listing(150.0, "0.01", "0.001", 0.055, 60.0, _WIDE, 0.20),
    "BNB/USDT": _Listing(580.0, "0.01", "0.001", 0.035, 8.0, _WIDE, 0.30),
    "XRP/USDT": _Listing(0.55, "0.0001", "0.1", 0.045, 12_000.0, _WIDE, 0.08),
    "DOGE/USDT": _Listing(0.12, "0.00001", "1", 0.060, 60_000.0, _WIDE, 0.12),
    "ADA/USDT": _Listing(0.45, "0.0001", "0.1", 0.050, 15_000.0, _WIDE, 0.08),
    "LTC/USDT": _Listing(80.0, "0.01", "0.001", 0.045, 40.0, _WIDE, 0.12),
}


def _size_noise() -> NDArray[np.float64]:
    """65536 size multipliers that 16 random bits pick from: the high byte a lognormal
    quantile (or, for 4 in 256, a large resting wall), the low byte a ±10% jitter."""
    normal = NormalDist(0.0, 0.7)
    coarse = [math.exp(normal.inv_cdf((i + 0.5) / 256)) for i in range(252)]
    coarse += [8.0, 12.0, 18.0, 30.0]
    jitter = 0.9 + np.arange(256) * (0.2 / 256)
    return np.outer(coarse, jitter).ravel()


_SIZE_NOISE = _size_noise()
_DISTANCE = np.arange(_MAX_TICKS, dtype=np.int64)  # of a price from the touch, in ticks


def _profile() -> NDArray[np.float64]:
    """Typical size by distance from the touch, in touch sizes: growing away from it.

    Far out it grows in steps of half an octave of distance, so an order resting
    there keeps its exact size while the mid wanders, as in a real book.
    """
    d = _DISTANCE.astype(np.float64)
    stepped = np.where(d < 8, d, np.exp2(np.floor(2 * np.log2(np.maximum(d, 1))) / 2))
    return np.asarray((1 + stepped / 16) ** 0.6)


_PROFILE = _profile()
# The most a size can be, by distance: 4 typical sizes near the touch (no walls there).
_SIZE_CAP = np.where(_DISTANCE < _NEAR_TICKS, 4.0 * _PROFILE, np.inf)
# Resting size turns over faster near the touch than deep in the book.
_REFRESH_MS = np.select(
    [_DISTANCE < 16, _DISTANCE < 32, _DISTANCE < 64], [400, 1_000, 3_000], 10_000
).astype(np.int64)


class _Layout(msgspec.Struct, frozen=True):
    """Per-distance constants for `ticks` candidate prices a side, bids then asks."""

    offsets: NDArray[np.int64]  # from the best bid (asks: plus the spread)
    side: NDArray[np.int64]  # tells a bid from an ask at the same price
    refresh_ms: NDArray[np.int64]
    gap_below: NDArray[np.uint64]


@functools.cache
def _layout(ticks: int, gaps: float) -> _Layout:
    d = _DISTANCE[:ticks]
    # A price is empty when its random byte is below this: never at the touch, more
    # often further out, up to `gaps` of the prices.
    gap_below = np.round(256 * np.minimum(gaps, 0.015 * np.maximum(0, d - 2))).astype(np.uint64)
    return _Layout(
        offsets=np.concatenate((-d, d)),
        side=np.repeat(np.array([0, _GOLDEN64 >> 1], np.int64), ticks),
        refresh_ms=np.tile(_REFRESH_MS[:ticks], 2),
        gap_below=np.tile(gap_below, 2),
    )


def _mix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finalizer, elementwise: a stable, well-spread 64-bit hash."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _decimals(step: str) -> int:
    """Grid step "0.001" -> 1000: a grid value k / 1000 is exact as a float."""
    sign, digits, exponent = Decimal(step).normalize().as_tuple()
    if sign or digits != (1,) or not isinstance(exponent, int) or exponent > 0:
        raise ValueError(f"grid step {step!r} is not one of 1, 0.1, 0.01, ...")
    return int(10**-exponent)


class _Market(msgspec.Struct, frozen=True):
    """A listing made concrete for one seed: everything a book needs, precomputed."""

    listing: _Listing
    tick_den: int  # price = ticks / tick_den
    lot_den: int  # size = lots / lot_den
    log_price_ticks: float  # log of the typical price in ticks
    periods_ms: NDArray[np.int64]  # of the octaves
    offsets_ms: NDArray[np.int64]  # so the octaves' anchors never line up
    amplitudes: NDArray[np.float64]  # of the octaves' anchors (twice, see _touch)
    amplitude_sum: float
    keys: NDArray[np.uint64]  # the octaves' keys twice (both anchors), then the spread's
    level_key: int  # below 2**62
    touch_lots: float  # typical size at the touch, in lots


def _make_market(seed: int, symbol: str, listing: _Listing) -> _Market:
    root = hashlib.blake2b(f"{seed}\x00{symbol}".encode(), person=b"obd-sim").digest()
    # 64-bit keys: one per octave, then the spread's and the levels' (64 bytes a digest)
    stream = b"".join(hashlib.blake2b(bytes([i]), key=root).digest() for i in range(4))
    keys = np.frombuffer(stream[: 8 * (_OCTAVES + 2)], "<u8").astype(np.uint64)
    periods_ms = _OCTAVE_BASE_MS << np.arange(_OCTAVES, dtype=np.int64)
    vol_per_ms = listing.daily_vol / math.sqrt(_MS_PER_DAY)
    # uniform anchors in [-1, 1) have variance 1/3: sqrt(3) makes it 1
    amplitudes = _OCTAVE_GAIN * math.sqrt(3.0) * vol_per_ms * np.sqrt(periods_ms)
    tick_den, lot_den = _decimals(listing.tick), _decimals(listing.lot)
    return _Market(
        listing=listing,
        tick_den=tick_den,
        lot_den=lot_den,
        log_price_ticks=math.log(listing.price * tick_den),
        periods_ms=periods_ms,
        offsets_ms=(keys[:_OCTAVES] % periods_ms.astype(np.uint64)).astype(np.int64),
        amplitudes=2.0 * amplitudes,
        amplitude_sum=float(amplitudes.sum()),
        keys=np.concatenate((keys[:_OCTAVES], keys[:_OCTAVES], keys[_OCTAVES:-1])),
        level_key=int(keys[-1]) >> 2,
        touch_lots=listing.touch_size * lot_den,
    )


def _touches(market: _Market, us: NDArray[np.int64]) -> list[tuple[int, int]]:
    """(best bid's tick index, spread in ticks) at each time of `us`: O(octaves), any time."""
    u = us[:, None]
    q, r = np.divmod(u + market.offsets_ms, market.periods_ms)
    steps = np.concatenate((q, q + 1, u), axis=1).astype(np.uint64)
    uniform = (_mix64(market.keys + steps * _GOLDEN64) >> 11) * 2.0**-53
    a0, a1 = uniform[:, :_OCTAVES], uniform[:, _OCTAVES:-1]
    # each octave: linear between its anchors, mapped from [0, 1) to [-1, 1)
    moves = a0 + (a1 - a0) * (r / market.periods_ms)
    spreads = market.listing.spreads
    picks = (uniform[:, -1] * len(spreads)).astype(np.int64).tolist()
    touches = []
    for move, pick in zip(moves, picks, strict=True):
        # A row copied out is summed exactly as a lone book's (one BLAS dot each): a
        # book never depends on the batch it was computed in.
        log_move = float(market.amplitudes @ move.copy())
        mid_ticks = math.exp(market.log_price_ticks + log_move - market.amplitude_sum)
        spread = spreads[pick]
        touches.append((math.floor(mid_ticks - spread / 2), spread))
    return touches


class _Scan(msgspec.Struct, frozen=True):
    prices: NDArray[np.int64]  # tick indexes scanned per book, bids then asks
    bits: NDArray[np.uint64]  # their random bits
    bids: list[NDArray[np.intp]]  # per book, positions of the filled ones, touch first
    asks: list[NDArray[np.intp]]


def _scan(
    market: _Market, us: NDArray[np.int64], touches: list[tuple[int, int]], depth: int
) -> _Scan:
    """Which prices near each touch hold an order at each time of `us`, and their bits.

    A price's bits depend only on (price, side, refresh epoch), never on how many
    prices are scanned: that is what makes a shallow book a prefix of a deep one (and
    a book the same whichever batch it was scanned with).
    """
    best = np.array([bid for bid, _ in touches], np.int64)[:, None]
    spread = np.array([spread for _, spread in touches], np.int64)[:, None]
    ticks = min(2 * depth + 32, _MAX_TICKS)
    while True:
        layout = _layout(ticks, market.listing.gaps)
        n = layout.offsets + best
        n[:, ticks:] += spread
        # each price refreshes at its own phase, so the book changes a little at a time
        phase_ms = (n * _PHASE_MUL) % layout.refresh_ms
        epoch = (us[:, None] + phase_ms) // layout.refresh_ms
        key = n * _PRICE_MUL + epoch * _EPOCH_MUL + layout.side + market.level_key
        bits = _mix64(key.view(np.uint64))
        # the bids may reach price zero: nothing there or below
        filled = ((bits & 255) >= layout.gap_below) & (n > 0)
        bids = [np.flatnonzero(row[:ticks])[:depth] for row in filled]
        asks = [np.flatnonzero(row[ticks:])[:depth] + ticks for row in filled]
        done = all(
            (len(b) == depth or bid < ticks) and len(a) == depth
            for b, a, (bid, _) in zip(bids, asks, touches, strict=True)
        )
        if done or ticks == _MAX_TICKS:
            return _Scan(n, bits, bids, asks)
        ticks = min(2 * ticks, _MAX_TICKS)


def _levels(market: _Market, scan: _Scan) -> list[tuple[list[Level], list[Level]]]:
    """Sizes for the filled prices, and each book's sides as exact decimal floats."""
    half = scan.prices.shape[1] // 2
    counts = [(len(b), len(a)) for b, a in zip(scan.bids, scan.asks, strict=True)]
    pairs = zip(scan.bids, scan.asks, strict=True)
    chosen = np.concatenate([np.concatenate(pair) for pair in pairs])
    rows = np.repeat(np.arange(len(counts)), [b + a for b, a in counts])
    distance = np.where(chosen < half, chosen, chosen - half)
    noise = _SIZE_NOISE[(scan.bits[rows, chosen] >> 8) & 0xFFFF]
    typical = np.minimum(_PROFILE[distance] * noise, _SIZE_CAP[distance])
    lots = np.maximum(np.floor(typical * market.touch_lots), 1.0)
    # k / 10**d is the float nearest that decimal, so repr() shows no float noise
    levels = zip(
        (scan.prices[rows, chosen] / market.tick_den).tolist(),
        (lots / market.lot_den).tolist(),
        strict=True,
    )
    return [
        (list(itertools.islice(levels, b)), list(itertools.islice(levels, a))) for b, a in counts
    ]


def _books(market: _Market, updates: list[int], depth: int) -> list[Book]:
    """The books at update times `updates`, computed together: a batch costs about what
    one book does (the work is a few dozen NumPy calls, whatever their length)."""
    us = np.array(updates, np.int64)
    sides = _levels(market, _scan(market, us, _touches(market, us), depth))
    return [
        Book(bids=bids, asks=asks, exchange_ts=u)
        for u, (bids, asks) in zip(updates, sides, strict=True)
    ]


class SimExchange:
    """The synthetic market one exchange id serves."""

    synthetic = True

    def __init__(self, exchange_id: str, options: SimOptions) -> None:
        self.exchange_id = exchange_id
        self.update_ms = options.update_ms
        self._markets = {s: _make_market(options.seed, s, lst) for s, lst in _LISTINGS.items()}

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            raise NotFound(self._not_listed(symbol))
        return market

    def _not_listed(self, symbol: str) -> str:
        return f"{symbol} is not listed on {self.exchange_id}"

    async def check_availability(self, symbol: str) -> Availability:
        market = self._markets.get(symbol)
        if market is None:
            return Availability(False, reason=self._not_listed(symbol))
        return Availability(True, tick_size=1 / market.tick_den, lot_size=1 / market.lot_den)

    async def list_markets(self) -> list[Market]:
        """Every listing: spot, always trading."""
        pairs = [(symbol, *symbol.split("/")) for symbol in self._markets]
        return [Market(symbol, base, quote, "spot", True) for symbol, base, quote in pairs]

    def book_at(self, symbol: str, ts_ms: int, depth: int = MAX_DEPTH) -> Book:
        """The book as it stood at `ts_ms`: as of the last update at or before it."""
        return self.books_at(symbol, [ts_ms], depth)[0]

    def books_at(self, symbol: str, times_ms: list[int], depth: int = MAX_DEPTH) -> list[Book]:
        """`book_at` for each of `times_ms`, computed as one batch (far cheaper)."""
        if depth < 1:
            raise BadRequest(f"depth must be at least 1, got {depth}")
        market = self._market(symbol)
        updates = [ts - ts % self.update_ms for ts in times_ms]
        return _books(market, updates, min(depth, MAX_DEPTH))

    async def watch(self, symbol: str, depth: int) -> AsyncIterator[Book]:
        """The current book now, then, as the wall clock reaches them, the updates a slot
        can see: around each whole second, the last update before it and the first at or
        after it.

        obd's slots fall on whole seconds (intervals are whole seconds), and slot T
        stores the newest book received at or before T once the feed has spoken after
        T: those two updates are all any slot can see. The book still changes every
        `update_ms` (`book_at`, history); the updates in between would only wake the
        daemon for nothing (8 of 10 a second at the default 100 ms). Yields only the
        newest update when the consumer fell behind. The next few books are computed in
        one batch right after a yield (a batch costs about what one book does).
        """
        self._market(symbol)
        step = self.update_ms
        coming: collections.deque[Book] = collections.deque()
        last = None
        while True:
            now_ms = time.time_ns() // 1_000_000
            u = now_ms - now_ms % step
            due = u if last is None else _seen_after(last, step)
            if u < due:
                # Not yet (or woke a hair early: the loop's clock is not the wall clock;
                # or the wall clock stepped back): never repeat a book or go back in time.
                await asyncio.sleep(min(due - now_ms, _SLOT_GRID_MS) / 1000)
                continue
            last = u  # the update due, or a newer one if the consumer was late
            while coming and _update(coming[0]) < u:
                coming.popleft()  # updates the consumer was too late for
            if not coming or _update(coming[0]) != u:
                coming = self._batch(symbol, u, depth)
            yield coming.popleft()
            if not coming:
                coming = self._batch(symbol, _seen_after(u, step), depth)

    def _batch(self, symbol: str, first: int, depth: int) -> collections.deque[Book]:
        """The books of `first` and the next seen updates after it, `_AHEAD_BOOKS` in all."""
        updates = [first]
        while len(updates) < _AHEAD_BOOKS:
            updates.append(_seen_after(updates[-1], self.update_ms))
        return collections.deque(self.books_at(symbol, updates, depth))

    async def fetch_history(
        self, symbol: str, start_ms: int, end_ms: int, interval_ms: int, depth: int
    ) -> AsyncIterator[tuple[int, Book]]:
        """`(slot, book_at(slot))` for slots k*interval_ms in [start_ms, end_ms), up to now."""
        self._market(symbol)
        if interval_ms < 1:
            raise BadRequest(f"interval_ms must be positive, got {interval_ms}")
        end_ms = min(end_ms, time.time_ns() // 1_000_000 + 1)  # never the future
        first = -(-start_ms // interval_ms) * interval_ms
        slots = range(first, end_ms, interval_ms)
        for at in range(0, len(slots), _HISTORY_BATCH):
            batch = list(slots[at : at + _HISTORY_BATCH])
            for slot, book in zip(batch, self.books_at(symbol, batch, depth), strict=True):
                yield slot, book
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Nothing to release: the market is computed, not connected to."""


def _seen_after(after_ms: int, step_ms: int) -> int:
    """The first update after `after_ms` that a slot can see: the last one before a whole
    second, or the first at or after one (with `step_ms` >= 1 s, every update)."""
    update = after_ms + step_ms
    while not (
        update // _SLOT_GRID_MS * _SLOT_GRID_MS > update - step_ms  # first at/after a second
        or (update + step_ms) // _SLOT_GRID_MS * _SLOT_GRID_MS > update  # last before one
    ):
        update += step_ms
    return update


def _update(book: Book) -> int:
    assert book.exchange_ts is not None  # the sim's books always carry their update time
    return book.exchange_ts


def create(exchange_id: str, options: SimOptions | None) -> SimExchange:
    """The plugin's factory: `options` None means the defaults (checked by their type)."""
    return SimExchange(exchange_id, options or SimOptions())


PLUGIN = PluginSpec(
    name="sim",
    factory=create,
    options=SimOptions,
    description=(
        "Synthetic market: made-up, seeded, deterministic order books (not real data),"
        " with history, for demos and tests."
    ),
)
