"""The `sim` plugin: deterministic books on the grid, live and history agreeing."""

import asyncio
import itertools
import math
import random
import statistics
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obd.errors import BadRequest, ConfigError, NotFound
from obd.model import Book
from obd.plugin import Availability, PluginSpec
from tests.conftest import load_plugin


def _load() -> ModuleType:
    return load_plugin("sim")


sim = _load()

T0 = 1_720_000_000_000  # 2024-07-03, ms
YEAR_2100 = 4_102_444_800_000
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "DOGE/USDT"]
GRID = {"BTC/USDT": ("0.01", "0.00001"), "DOGE/USDT": ("0.00001", "1")}


def _exchange(**options: Any) -> Any:
    return sim.create("sim", sim.SimOptions(**options))


EXCHANGE = _exchange(seed=3)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _take(books: AsyncIterator[Any], count: int) -> list[Any]:
    taken = []
    async for item in books:
        taken.append(item)
        if len(taken) == count:
            break
    return taken


def _ts(book: Book) -> int:
    assert book.exchange_ts is not None
    return book.exchange_ts


def _decimals(value: float) -> int:
    exponent = Decimal(repr(value)).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _assert_valid(book: Book, availability: Availability, depth: int) -> None:
    assert availability.tick_size is not None
    assert availability.lot_size is not None
    tick_decimals = _decimals(availability.tick_size)
    lot_decimals = _decimals(availability.lot_size)
    assert len(book.bids) == len(book.asks) == depth
    bid_prices = [price for price, _ in book.bids]
    ask_prices = [price for price, _ in book.asks]
    assert all(a > b for a, b in itertools.pairwise(bid_prices))
    assert all(a < b for a, b in itertools.pairwise(ask_prices))
    assert 0 < bid_prices[0] < ask_prices[0]
    for price, size in book.bids + book.asks:
        # repr() shows at most the grid's decimals: exact decimals, no float noise
        assert _decimals(price) <= tick_decimals, price
        assert _decimals(size) <= lot_decimals, size
        assert size > 0


def test_plugin_spec_says_synthetic() -> None:
    assert isinstance(sim.PLUGIN, PluginSpec)
    assert sim.PLUGIN.name == "sim"
    assert sim.PLUGIN.options is sim.SimOptions
    assert "synthetic" in sim.PLUGIN.description.lower()
    exchange = sim.PLUGIN.factory("sim", None)
    assert isinstance(exchange, sim.SimExchange)
    assert exchange.synthetic is True
    assert exchange.update_ms == 100


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT", "DOGE/USDT"])
def test_listed(symbol: str) -> None:
    availability = asyncio.run(EXCHANGE.check_availability(symbol))
    assert availability.available
    assert availability.reason is None
    if symbol in GRID:
        tick, lot = GRID[symbol]
        assert (availability.tick_size, availability.lot_size) == (float(tick), float(lot))


def test_not_listed() -> None:
    availability = asyncio.run(EXCHANGE.check_availability("ZZZNOTLISTED/USDT"))
    assert availability == Availability(False, reason="ZZZNOTLISTED/USDT is not listed on sim")


def test_not_listed_raises_everywhere() -> None:
    symbol = "ZZZNOTLISTED/USDT"
    with pytest.raises(NotFound, match="not listed"):
        EXCHANGE.book_at(symbol, T0)
    with pytest.raises(NotFound, match="not listed"):
        asyncio.run(_take(EXCHANGE.watch(symbol, 10), 1))
    with pytest.raises(NotFound, match="not listed"):
        asyncio.run(_take(EXCHANGE.fetch_history(symbol, T0, T0 + 1000, 1000, 10), 1))


def test_same_seed_same_market() -> None:
    one, two = _exchange(seed=11), _exchange(seed=11)
    for symbol in SYMBOLS:
        for ts in (0, T0, T0 + 123_456, YEAR_2100):
            assert one.book_at(symbol, ts, 50) == two.book_at(symbol, ts, 50)


def test_other_seed_other_market() -> None:
    one, two = _exchange(seed=1), _exchange(seed=2)
    assert one.book_at("BTC/USDT", T0, 50) != two.book_at("BTC/USDT", T0, 50)


@settings(max_examples=60, deadline=None)
@given(
    symbol=st.sampled_from(SYMBOLS),
    ts=st.integers(0, YEAR_2100),
    depth=st.sampled_from([1, 7, 100, 1000]),
)
def test_books_are_valid_at_any_time(symbol: str, ts: int, depth: int) -> None:
    book = EXCHANGE.book_at(symbol, ts, depth)
    assert book.exchange_ts == ts - ts % 100
    assert book.received_ts is None
    _assert_valid(book, asyncio.run(EXCHANGE.check_availability(symbol)), depth)


@settings(max_examples=40, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), ts=st.integers(0, YEAR_2100))
def test_shallow_book_is_a_prefix_of_a_deep_one(symbol: str, ts: int) -> None:
    deep = EXCHANGE.book_at(symbol, ts, 1000)
    for depth in (1, 20, 100):
        book = EXCHANGE.book_at(symbol, ts, depth)
        assert (book.bids, book.asks) == (deep.bids[:depth], deep.asks[:depth])


def test_deep_bids_never_reach_price_zero() -> None:
    """The mid is bounded by its octaves' amplitudes: even at the lowest it can go,
    every listing has room below for 1000 bids (plus the empty prices between)."""
    for market in EXCHANGE._markets.values():
        lowest_mid_ticks = math.exp(market.log_price_ticks - market.amplitude_sum)
        assert lowest_mid_ticks > 1.2 * sim.MAX_DEPTH / (1 - market.listing.gaps)


def test_book_is_the_last_update_at_or_before() -> None:
    assert EXCHANGE.book_at("ETH/USDT", T0 + 99, 20) == EXCHANGE.book_at("ETH/USDT", T0, 20)
    assert EXCHANGE.book_at("ETH/USDT", T0 + 100, 20).exchange_ts == T0 + 100
    slow = _exchange(seed=3, update_ms=60_000)
    minute = T0 - T0 % 60_000
    assert slow.book_at("ETH/USDT", minute + 59_999, 5).exchange_ts == minute


def test_depth_is_capped_and_checked() -> None:
    book = EXCHANGE.book_at("SOL/USDT", T0, 5000)
    assert len(book.bids) == len(book.asks) == sim.MAX_DEPTH
    with pytest.raises(BadRequest, match="depth"):
        EXCHANGE.book_at("SOL/USDT", T0, 0)


def test_books_look_like_a_market() -> None:
    rng = random.Random(5)
    spreads, gaps, walls = [], 0, 0
    for _ in range(30):
        book = EXCHANGE.book_at("BTC/USDT", rng.randrange(T0, YEAR_2100), 1000)
        spreads.append(round((book.asks[0][0] - book.bids[0][0]) * 100))
        gaps += round((book.bids[0][0] - book.bids[-1][0]) * 100) - 999
        sizes = [size for _, size in book.bids]
        median = statistics.median(sizes)
        walls += sum(size > 6 * median for size in sizes)
        assert statistics.mean(sizes[:10]) < statistics.mean(sizes[-100:])  # deeper is bigger
    assert statistics.mode(spreads) == 1  # a major: one tick, mostly
    assert gaps > 0
    assert walls > 0


def test_mid_moves_like_a_random_walk() -> None:
    """Day-over-day log returns have about the listing's daily volatility (3% for BTC)."""
    rng = random.Random(9)

    def mid(ts: int) -> float:
        book = EXCHANGE.book_at("BTC/USDT", ts, 1)
        return float(book.bids[0][0] + book.asks[0][0]) / 2

    day_ms = 86_400_000
    returns = []
    for _ in range(300):
        ts = rng.randrange(T0, YEAR_2100)
        returns.append(math.log(mid(ts + day_ms) / mid(ts)))
    assert 0.02 < statistics.pstdev(returns) < 0.045


def test_watch_yields_the_updates_slots_see_aligned_and_never_ahead() -> None:
    """After the first book, around each whole second (where every slot falls): the
    last update before it and the first at or after it, so a slot's book (the newest
    received at or before it) and the sign of life that decides it are what a feed
    of every update would give."""
    exchange = _exchange(seed=3, update_ms=10)

    async def run() -> list[tuple[Book, int]]:
        received = []
        async for book in exchange.watch("BTC/USDT", 20):
            received.append((book, _now_ms()))
            if len(received) == 6:
                break
        return received

    received = asyncio.run(run())
    stamps = [_ts(book) for book, _ in received]
    assert all(stamp % 10 == 0 for stamp in stamps)
    assert stamps == sorted(set(stamps))
    assert all(stamp % 1000 in (990, 0) for stamp in stamps[1:])
    for before, after in itertools.pairwise(stamps[1:]):
        if before % 1000 == 990:  # the last update before a second, then the one at it
            assert after == before + 10
    for book, now_ms in received:
        assert _ts(book) <= now_ms
        assert book.received_ts is None
        assert book == exchange.book_at("BTC/USDT", _ts(book), 20)


@pytest.mark.parametrize("step", [10, 100, 300, 700, 1000, 1500, 60_000])
def test_watch_delivers_exactly_the_updates_around_each_second(step: int) -> None:
    updates = range(0, 120_000, step)
    seconds = range(1000, 120_000 - step, 1000)
    seen = {max(u for u in updates if u < s) for s in seconds}
    seen |= {min(u for u in updates if u >= s) for s in seconds}
    delivered = [0]
    while (after := sim._seen_after(delivered[-1], step)) < max(seen) + 1:
        delivered.append(after)
    assert set(delivered[1:]) == {u for u in seen if u > 0}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(SYMBOLS),
    st.lists(st.integers(T0, YEAR_2100), min_size=1, max_size=12),
    st.sampled_from([1, 7, 100, 1000]),
)
def test_a_batch_of_books_is_each_book_alone(symbol: str, times: list[int], depth: int) -> None:
    """`watch` and `fetch_history` compute books in batches: a book never depends on
    the batch it was computed in (bit for bit, as `book_at` gives it)."""
    books = EXCHANGE.books_at(symbol, times, depth)
    assert books == [EXCHANGE.book_at(symbol, ts, depth) for ts in times]
    updates = [times[0] + 100 * k for k in range(10)]  # consecutive updates
    assert EXCHANGE.books_at(symbol, updates, depth) == [
        EXCHANGE.book_at(symbol, ts, depth) for ts in updates
    ]


def test_watch_skips_to_the_newest_when_late() -> None:
    exchange = _exchange(seed=3, update_ms=10)

    async def run() -> tuple[Book, Book, int]:
        books = exchange.watch("DOGE/USDT", 5)
        first = await anext(books)
        await asyncio.sleep(0.08)  # eight updates pass unread
        second = await anext(books)
        now_ms = _now_ms()
        await books.aclose()
        return first, second, now_ms

    first, second, now_ms = asyncio.run(run())
    assert _ts(first) + 70 <= _ts(second) <= now_ms


def test_history_is_book_at_for_each_slot() -> None:
    slots = asyncio.run(
        _take(EXCHANGE.fetch_history("XRP/USDT", T0 + 1, T0 + 10_000, 1000, 20), 100)
    )
    assert [slot for slot, _ in slots] == list(range(T0 + 1000, T0 + 10_000, 1000))
    for slot, book in slots:
        assert book == EXCHANGE.book_at("XRP/USDT", slot, 20)


def test_history_stops_at_now() -> None:
    start_ms = _now_ms() // 1000 * 1000 - 5000
    end_ms = start_ms + 3_600_000
    slots = asyncio.run(_take(EXCHANGE.fetch_history("BTC/USDT", start_ms, end_ms, 1000, 5), 99))
    now_ms = _now_ms()
    assert 6 <= len(slots) <= 8
    assert all(slot <= now_ms and _ts(book) <= now_ms for slot, book in slots)


def test_history_lets_the_loop_run() -> None:
    async def run() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = ticks
        await _take(EXCHANGE.fetch_history("ETH/USDT", T0, T0 + 600_000, 1000, 1), 600)
        task.cancel()
        return ticks - start

    assert asyncio.run(run()) >= 2


@pytest.mark.parametrize("update_ms", [0, 9, 60_001])
def test_bad_update_ms(update_ms: int) -> None:
    """The options' type carries the range, so `obd check` refuses it as `run` does."""
    with pytest.raises(ConfigError, match=r"^exchanges\.sim\.update_ms: Expected `int` [<>]="):
        sim.PLUGIN.build("sim", {"update_ms": update_ms})


def test_unknown_option() -> None:
    with pytest.raises(ConfigError, match=r"^exchanges\.sim\.seeed: unknown key$"):
        sim.PLUGIN.build("sim", {"seeed": 1})


def test_close() -> None:
    asyncio.run(_exchange().close())
