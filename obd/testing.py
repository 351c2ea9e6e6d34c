"""The plugin contract as one test suite that every exchange plugin runs: `sim`, `ccxt`
(against the Binance emulator) and any third-party plugin, as litestream runs one
suite over every replica client. One entry point, `check_plugin`; with pytest:

    from obd.testing import CHECKS, check_plugin

    @pytest.mark.parametrize("check", CHECKS)
    def test_contract(check: str) -> None:
        check_plugin(PLUGIN, "myexchange", "BTC/USDT", options={...}, only=[check])

Each check builds a fresh instance (options checked as `obd check` checks them),
talks to it on its own event loop, and closes it. A failure is a `ContractViolation`
(an AssertionError) saying what the plugin did and what the contract wants. No
pytest import here: any runner will do.
"""

import asyncio
import contextlib
import inspect
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import msgspec

from obd.errors import ConfigError, HistoryNotAvailable, NoLiveStream, NotFound, ObdError
from obd.model import Book
from obd.plugin import Availability, Exchange, FetchesBooks, FetchesHistory, PluginSpec

__all__ = ["CHECKS", "ContractViolation", "Target", "assert_consistent", "check_plugin"]

_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_UNKNOWN_KEY = "obd_contract_unknown_key"
HISTORY_SLOTS = 10  # slots of history asked for (1 s apart), ending now


class ContractViolation(AssertionError):
    """The plugin broke the contract; the message says how."""


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """What the suite runs against: a plugin, an exchange id it serves, a symbol that
    id lists and one it does not, and the `[exchanges.<id>]` table to build it with."""

    plugin: PluginSpec
    exchange_id: str
    symbol: str
    unlisted: str = "ZZZNOTLISTED/USDT"
    options: dict[str, Any] | None = None
    depth: int = 10
    timeout_s: float = 30.0  # each check, all of it


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


def assert_consistent(book: object, *, at_most: int | None = None, what: str = "book") -> None:
    """A consistent L2 book: `Book`, finite positive prices and sizes, bids strictly
    descending, asks strictly ascending, not crossed; at most `at_most` levels a side."""
    _expect(isinstance(book, Book), f"{what}: expected an obd.plugin.Book, got {book!r:.80}")
    assert isinstance(book, Book)
    for side, levels, sign in (("bids", book.bids, -1), ("asks", book.asks, 1)):
        _expect(at_most is None or len(levels) <= at_most, f"{what}: {side} over {at_most} levels")
        for index, level in enumerate(levels):
            _expect(len(level) == 2, f"{what}: {side}[{index}] is not (price, size)")
            price = level[0]
            _expect(
                all(isinstance(v, float | int) and math.isfinite(v) and v > 0 for v in level),
                f"{what}: {side}[{index}] = {level!r}: price and size must be positive numbers",
            )
            if index:
                before = levels[index - 1][0]
                _expect(
                    (price - before) * sign > 0,
                    f"{what}: {side} not best first at level {index} ({before} then {price})",
                )
    if book.bids and book.asks:
        _expect(book.bids[0][0] < book.asks[0][0], f"{what}: crossed ({book.bids[0]} >= asks)")
    for name in ("exchange_ts", "received_ts"):
        value = getattr(book, name)
        _expect(value is None or isinstance(value, int), f"{what}: {name} must be int ms or None")


async def _first(books: AsyncIterator[Any], count: int) -> list[Any]:
    taken: list[Any] = []
    async for item in books:
        taken.append(item)
        if len(taken) == count:
            break
    closing = getattr(books, "aclose", None)
    if closing is not None:
        await closing()
    return taken


# -- the checks: each gets the target and a fresh instance -----------------------------


async def _spec(target: Target, exchange: Exchange) -> None:
    plugin, exchange_id = target.plugin, target.exchange_id
    _expect(isinstance(plugin, PluginSpec), "PLUGIN must be an obd.plugin.PluginSpec")
    _expect(_ID.fullmatch(plugin.name), f"name {plugin.name!r}: a lower-case exchange id")
    serves = plugin.name == exchange_id or (
        plugin.serves is not None and plugin.serves(exchange_id)
    )
    _expect(serves, f"{plugin.name} does not serve {exchange_id!r} (name or serves())")
    if plugin.options is not None:
        config = plugin.options.__struct_config__
        _expect(config.forbid_unknown_fields, "options: use forbid_unknown_fields=True")
        _expect(config.frozen, "options: use frozen=True")
        plugin.options_for(exchange_id, {})  # every key has a default
        try:
            plugin.options_for(exchange_id, {_UNKNOWN_KEY: 1})
        except ConfigError as exc:
            _expect(
                str(exc) == f"exchanges.{exchange_id}.{_UNKNOWN_KEY}: unknown key",
                f"an unknown option gave {exc}",
            )
        else:
            raise ContractViolation("an unknown option key was accepted")
    _expect(isinstance(exchange.synthetic, bool), "synthetic must be a bool")
    for name in ("check_availability", "close"):
        _expect(inspect.iscoroutinefunction(getattr(exchange, name, None)), f"{name}: an async def")
    _expect(callable(getattr(exchange, "watch", None)), "watch: missing")
    if isinstance(exchange, FetchesBooks):
        _expect(inspect.iscoroutinefunction(exchange.fetch_book), "fetch_book: an async def")


async def _availability(target: Target, exchange: Exchange) -> None:
    listed = await exchange.check_availability(target.symbol)
    _expect(isinstance(listed, Availability), "check_availability must return Availability")
    _expect(listed.available, f"{target.symbol}: not available ({listed.reason})")
    for name in ("tick_size", "lot_size"):
        value = getattr(listed, name)
        _expect(value is None or value > 0, f"{name} must be positive or None, got {value}")
    unlisted = await exchange.check_availability(target.unlisted)
    _expect(not unlisted.available, f"{target.unlisted}: said to be available")
    _expect(unlisted.reason, f"{target.unlisted}: not available, but no reason given")


async def _watch(target: Target, exchange: Exchange) -> None:
    try:
        books = await _first(exchange.watch(target.symbol, target.depth), 2)
    except NoLiveStream:
        _expect(isinstance(exchange, FetchesBooks), "NoLiveStream without fetch_book")
        return
    _expect(len(books) == 2, "watch ended without raising")
    for index, book in enumerate(books):
        assert_consistent(book, what=f"watch book {index}")


async def _watch_unlisted(target: Target, exchange: Exchange) -> None:
    try:
        await _first(exchange.watch(target.unlisted, target.depth), 1)
    except NotFound:
        return
    except NoLiveStream:
        return  # no live feed at all: fetch_book says it (the fetch_book check)
    raise ContractViolation(f"watch({target.unlisted!r}) must raise NotFound")


async def _watch_cancel(target: Target, exchange: Exchange) -> None:
    """The kernel cancels a watch when a coin is removed: it must end, not swallow it."""
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in exchange.watch(target.symbol, target.depth):
            first.set()

    task = asyncio.create_task(consume(), name="contract watch")
    waiting = asyncio.create_task(first.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():  # it raised before yielding: NoLiveStream is the only good reason
        _expect(isinstance(task.exception(), NoLiveStream), f"watch failed: {task.exception()!r}")
        return
    task.cancel()
    await asyncio.wait([task])
    _expect(task.cancelled(), "a cancelled watch must end cancelled (re-raise CancelledError)")


async def _fetch_book(target: Target, exchange: Exchange) -> None:
    if not isinstance(exchange, FetchesBooks):
        return  # optional
    before = time.time_ns() // 1_000_000
    book = await exchange.fetch_book(target.symbol, target.depth)
    after = time.time_ns() // 1_000_000
    assert_consistent(book, at_most=target.depth, what="fetch_book")
    received = book.received_ts
    _expect(
        received is not None and before <= received <= after,
        f"fetch_book: received_ts {received} must be when the answer came ({before}..{after})",
    )
    try:
        await exchange.fetch_book(target.unlisted, target.depth)
    except NotFound:
        return
    raise ContractViolation(f"fetch_book({target.unlisted!r}) must raise NotFound")


async def _history(target: Target, exchange: Exchange) -> None:
    if not isinstance(exchange, FetchesHistory):
        return  # optional: the kernel answers "history not available" itself
    interval = 1_000
    end = time.time_ns() // 1_000_000 // interval * interval
    start = end - HISTORY_SLOTS * interval
    try:
        rows = await _first(
            exchange.fetch_history(target.symbol, start, end, interval, target.depth), 10**6
        )
    except HistoryNotAvailable:
        return
    slots = [slot for slot, _ in rows]
    _expect(slots == sorted(set(slots)), "fetch_history: slots must ascend, each once")
    for slot, book in rows:
        _expect(start <= slot < end and slot % interval == 0, f"slot {slot}: off the range")
        assert_consistent(book, what=f"history at {slot}")
    try:
        await _first(exchange.fetch_history(target.unlisted, start, end, interval, 1), 1)
    except (NotFound, HistoryNotAvailable):
        return
    raise ContractViolation(f"fetch_history({target.unlisted!r}): NotFound or no history")


async def _close(target: Target, exchange: Exchange) -> None:
    """After `close`, nothing of the plugin's is left running on the loop."""
    await exchange.check_availability(target.symbol)  # open whatever it opens
    with contextlib.suppress(NoLiveStream):
        await _first(exchange.watch(target.symbol, target.depth), 1)
    await exchange.close()
    for _ in range(3):
        await asyncio.sleep(0)  # let cancelled tasks finish
    left = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    _expect(not left, f"close left tasks running: {left}")


_CHECKS: dict[str, Callable[[Target, Exchange], Awaitable[None]]] = {
    "spec": _spec,
    "availability": _availability,
    "watch": _watch,
    "watch_unlisted": _watch_unlisted,
    "watch_cancel": _watch_cancel,
    "fetch_book": _fetch_book,
    "history": _history,
    "close": _close,
}
CHECKS = tuple(_CHECKS)


def check_plugin(
    plugin: PluginSpec,
    exchange_id: str,
    symbol: str,
    *,
    options: dict[str, Any] | None = None,
    unlisted: str = "ZZZNOTLISTED/USDT",
    depth: int = 10,
    timeout_s: float = 30.0,
    only: Iterable[str] | None = None,
) -> None:
    """Run the contract's checks (all, or `only` those named in CHECKS) on `plugin`
    serving `exchange_id`; raises ContractViolation (or the plugin's own error) on the
    first that fails."""
    target = Target(
        plugin=plugin,
        exchange_id=exchange_id,
        symbol=symbol,
        unlisted=unlisted,
        options=options,
        depth=depth,
        timeout_s=timeout_s,
    )
    for name in CHECKS if only is None else only:
        asyncio.run(_run(name, _CHECKS[name], target))


async def _run(
    name: str, check: Callable[[Target, Exchange], Awaitable[None]], target: Target
) -> None:
    exchange = target.plugin.build(target.exchange_id, target.options)
    try:
        async with asyncio.timeout(target.timeout_s):
            await check(target, exchange)
    except TimeoutError:
        raise ContractViolation(f"{name}: no answer within {target.timeout_s} s") from None
    except ObdError as exc:
        raise ContractViolation(f"{name}: unexpected {type(exc).__name__}: {exc}") from exc
    finally:
        if check is not _close:
            await exchange.close()
