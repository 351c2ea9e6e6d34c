"""Collection: one sampler per coin, each storing the book as it stood at every slot.

A coin with interval I owns the slots T = k*I (UTC ms). At T the sampler stores
the newest consistent book received at or before T (point in time: nothing
received after T leaks into slot T). A slot it cannot serve becomes a recorded
gap with the reason, never a copied-forward book.
"""

import asyncio
import collections
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from obd.backoff import Backoff
from obd.errors import NotFound, ObdError
from obd.exchanges import Exchanges
from obd.model import Book, Coin
from obd.plugin import Exchange
from obd.storage import reader
from obd.storage.connect import open_reader
from obd.storage.writer import GapIn, SnapshotIn, Writer
from obd.times import now_ms, slot_at_or_after

log = structlog.get_logger("obd.collector")

RING = 64  # recent books kept per coin: covers the loop waking a few seconds late
POLL_S = 0.5  # how often the coins table is checked for changes by other processes


def _now_us() -> int:
    return time.time_ns() // 1_000


class _Mark:
    """A ring entry that says 'from here on there was no usable book', and why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Sampler:
    """Keeps one coin's live book and stores it (or a gap) at every slot."""

    def __init__(self, coin: Coin, exchanges: Exchanges, writer: Writer, started_ms: int) -> None:
        self.coin = coin
        self.state = "starting"
        self.last_error: str | None = None
        self.failures = 0  # times the live stream broke
        self._capture = "stream"
        self._exchanges = exchanges
        self._writer = writer
        self._started_ms = started_ms
        # (received µs, book or mark), oldest first
        self._ring: collections.deque[tuple[int, Book | _Mark]] = collections.deque(maxlen=RING)
        self._log = log.bind(exchange=coin.exchange, symbol=coin.symbol)

    async def run(self, accounted_until: int | None) -> None:
        first = slot_at_or_after(now_ms() + 1, self.coin.interval_ms)
        await self._record_missed(accounted_until, first)
        self._ring.append((_now_us(), _Mark("not_synced")))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch(), name=f"watch {self.coin.exchange} {self.coin.symbol}")
            tasks.create_task(
                self._slots(first), name=f"slots {self.coin.exchange} {self.coin.symbol}"
            )

    async def _record_missed(self, accounted_until: int | None, first: int) -> None:
        """Slots between the last accounted one and the first this run will see: before
        this daemon started they are `daemon_down`; after, collection was `not_synced`."""
        interval = self.coin.interval_ms
        start = accounted_until or slot_at_or_after(self.coin.added_ts + 1, interval)
        boundary = min(max(slot_at_or_after(self._started_ms, interval), start), first)
        for begin, end, reason in (
            (start, boundary, "daemon_down"),
            (boundary, first, "not_synced"),
        ):
            if begin < end:
                await self._writer.put(GapIn(self.coin.id, begin, end, reason))

    async def _watch(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._follow(self._exchanges.get(self.coin.exchange), backoff)
                reason, error = "disconnected", "stream ended"
            except NotFound as exc:  # delisted: the plugin says the symbol is gone
                reason, error = "not_listed", str(exc)
            except ObdError as exc:  # the plugin is missing or misconfigured
                reason, error = "exchange_error", str(exc)
            except Exception as exc:  # the one broad except: logged, counted, retried
                reason, error = "disconnected", f"{type(exc).__name__}: {exc}"
            self._ring.append((_now_us(), _Mark(reason)))
            self.state, self.last_error = reason, error
            self.failures += 1
            pause_s = backoff.next_pause_s()
            self._log.warning(
                "stream_down", reason=reason, error=error, retry_in_s=round(pause_s, 2)
            )
            await asyncio.sleep(pause_s)

    async def _follow(self, exchange: Exchange, backoff: Backoff) -> None:
        self._capture = "synthetic" if exchange.synthetic else "stream"
        async for book in exchange.watch(self.coin.symbol, self.coin.depth):
            self._ring.append((_now_us(), book))
            if self.state != "live":
                self.state, self.last_error = "live", None
                backoff.reset()

    async def _slots(self, first: int) -> None:
        slot = first
        while True:
            await _sleep_until_us(slot * 1000)
            await self._take(slot)
            slot += self.coin.interval_ms

    async def _take(self, slot: int) -> None:
        found = self._book_at(slot * 1000)
        if isinstance(found, str):
            await self._writer.put(GapIn(self.coin.id, slot, slot + self.coin.interval_ms, found))
            return
        received_us, book = found
        received_ts = book.received_ts or received_us // 1000
        snapshot = SnapshotIn(
            self.coin, slot, _cut(book, self.coin.depth), received_ts, self._capture
        )
        await self._writer.put(snapshot)

    def _book_at(self, at_us: int) -> tuple[int, Book] | str:
        """The newest book received at or before `at_us`, or the reason there is none."""
        if not self._ring or self._ring[0][0] > at_us:
            return "late"  # everything as old as the slot has left the ring
        for received_us, entry in reversed(self._ring):
            if received_us <= at_us:
                return entry.reason if isinstance(entry, _Mark) else (received_us, entry)
        return "late"


async def _sleep_until_us(at_us: int) -> None:
    """Sleep until wall-clock time `at_us`; loop timers run on a coarser monotonic
    clock and may fire a hair early, so check and top up."""
    while (left_us := at_us - _now_us()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
        await asyncio.sleep(max(left_us / 1e6, 0.0005))


def _cut(book: Book, depth: int) -> Book:
    if len(book.bids) <= depth and len(book.asks) <= depth:
        return book
    return Book(book.bids[:depth], book.asks[:depth], book.exchange_ts, book.received_ts)


class Collector:
    """Runs a sampler for every active coin in the file, following changes to it."""

    def __init__(self, exchanges: Exchanges, writer: Writer, started_ms: int) -> None:
        self.exchanges = exchanges
        self._writer = writer
        self._started_ms = started_ms
        self._samplers: dict[int, tuple[Sampler, asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="obd-coins")
        self._conn: Any = None

    def wake(self) -> None:
        """Look at the coins table now (this process changed it)."""
        self._wake.set()

    def sampler(self, series: int) -> Sampler | None:
        entry = self._samplers.get(series)
        return entry[0] if entry else None

    async def run(self) -> None:
        seen = -1
        try:
            async with asyncio.TaskGroup() as tasks:
                while True:
                    version = await self._in_thread(self._data_version)
                    if version != seen or self._wake.is_set():
                        self._wake.clear()
                        seen = version
                        await self._reconcile(tasks)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_S)
        finally:
            self._thread.shutdown(wait=False)

    async def _reconcile(self, tasks: asyncio.TaskGroup) -> None:
        wanted = {coin.id: coin for coin in await self._in_thread(self._active_coins)}
        for series, (sampler, task) in list(self._samplers.items()):
            if wanted.get(series) != sampler.coin:
                task.cancel()
                del self._samplers[series]
                log.info("coin_stopped", exchange=sampler.coin.exchange, symbol=sampler.coin.symbol)
        for series, coin in wanted.items():
            if series not in self._samplers:
                until = await self._in_thread(reader.accounted_until, self._connection(), coin)
                sampler = Sampler(coin, self.exchanges, self._writer, self._started_ms)
                name = f"sampler {coin.exchange} {coin.symbol}"
                self._samplers[series] = (sampler, tasks.create_task(sampler.run(until), name=name))
                log.info(
                    "coin_started",
                    exchange=coin.exchange,
                    symbol=coin.symbol,
                    interval_ms=coin.interval_ms,
                    depth=coin.depth,
                )

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = open_reader(self._writer.path)
        return self._conn

    def _data_version(self) -> int:
        return reader.data_version(self._connection())

    def _active_coins(self) -> list[Coin]:
        return reader.coins(self._connection())

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
