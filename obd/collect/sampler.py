"""One coin's sampler: it stores the book as it stood at every slot (or a gap, and why).

A coin with interval I owns the slots T = k*I (UTC ms). At T the sampler stores
the newest consistent book received at or before T (point in time: nothing
received after T leaks into slot T). A slot it cannot serve becomes a recorded
gap with the reason, never a copied-forward book.

A book is only as good as the feed behind it: a connection can die silently,
and a quiet book looks the same until the next sign of life. So slot T is
decided once the feed has spoken after T (a change, or a plugin's heartbeat: the
same book yielded again when the connection proved alive), or has failed; a
failure counts from just after the feed's last sign of life, so no slot after it
is served from a book that may have gone stale.

Where the plugin has no live feed (`watch` raised `NoLiveStream`), or the live
feed is down at T, the sampler asks the plugin for a REST snapshot at T instead
(`FetchesBooks.fetch_book`): the first answer to a request sent at or after T
that arrives within the slot's REST window, stored with capture "rest" and its
honest `received_ts` (after T).
"""

import asyncio
import collections

import structlog

from obd.collect.backoff import Backoff
from obd.collect.clock import WALL, Clock
from obd.errors import FeedError, NoLiveStream, NotFound, ObdError, RateLimited
from obd.exchanges import Exchanges
from obd.model import Book, Coin, GapReason
from obd.plugin import Exchange, FetchesBooks
from obd.storage.writer import GapIn, RetractIn, SnapshotIn, Writer
from obd.times import slot_at_or_after

log = structlog.get_logger("obd.collect")

RING = 4_096  # entries kept per coin at most (normally a handful: see _Timeline)
SETTLE_S = 60.0  # a slot waits this long for the feed to speak after it, then is "stale"
# A REST answer belongs to slot T only if it arrives by T + min(interval, this): later
# it describes a different moment. 30 s leaves room for a rate-limited exchange to
# serve a few hundred coins one after another.
REST_WINDOW_MS = 30_000
_NO_REST: tuple[GapReason, ...] = ("not_listed", "late")  # gap reasons a REST snapshot cannot cure


class _Mark:
    """A timeline entry that says 'from here on there was no usable book', and why."""

    __slots__ = ("reason",)

    def __init__(self, reason: GapReason) -> None:
        self.reason = reason


class _Timeline:
    """What one coin's feed said and when (received µs, oldest first): books, and marks
    saying it was down from then on. Keeps only what undecided slots can still need:
    the newest entry at or before the next slot, and everything after it."""

    def __init__(self, clock: Clock = WALL) -> None:
        self._entries: collections.deque[tuple[int, Book | _Mark]] = collections.deque(maxlen=RING)
        self._changed = asyncio.Event()
        self._next_slot_us = 0
        self._clock = clock

    def add(self, book: Book) -> None:
        self._append(self._clock.now_us(), book)

    def mark(self, reason: GapReason, since_us: int | None = None) -> None:
        """The feed failed. When it died is unknown: from just after its last sign of
        life (if that was a book; a feed already down changes reason now), or, where
        the plugin says its books were unverifiable since `since_us`, from then on:
        what was heard after that proves nothing."""
        at_us = self._clock.now_us()
        if self._entries and not isinstance(self._entries[-1][1], _Mark):
            at_us = min(at_us, self._entries[-1][0] + 1)
        if since_us is not None:
            at_us = min(at_us, since_us + 1)
            while self._entries and self._entries[-1][0] >= at_us:
                self._entries.pop()
        self._append(at_us, _Mark(reason))

    def _append(self, at_us: int, entry: Book | _Mark) -> None:
        if at_us <= self._next_slot_us:
            self._entries.clear()  # the newest entry before the next slot supersedes all
        self._entries.append((at_us, entry))
        self._changed.set()

    def settled(self, at_us: int) -> bool:
        """Whether the feed has said what it will about `at_us`: it spoke after it, or
        it is down (a mark is the newest entry)."""
        if not self._entries:
            return False
        last_us, last = self._entries[-1]
        return last_us > at_us or isinstance(last, _Mark)

    async def settle(self, at_us: int, limit_s: float) -> bool:
        """Wait until `settled(at_us)`; False if `limit_s` passed first."""
        try:
            async with asyncio.timeout(limit_s):
                while not self.settled(at_us):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def at(self, at_us: int) -> tuple[int, Book] | GapReason:
        """The newest book received at or before `at_us`, or the reason there is none."""
        if not self._entries or self._entries[0][0] > at_us:
            return "late"  # everything as old as the slot has left the ring
        for received_us, entry in reversed(self._entries):
            if received_us <= at_us:
                return entry.reason if isinstance(entry, _Mark) else (received_us, entry)
        return "late"

    def advance(self, next_slot_us: int) -> None:
        """Slots before `next_slot_us` are decided: drop what only they needed."""
        self._next_slot_us = next_slot_us
        while len(self._entries) > 1 and self._entries[1][0] <= next_slot_us:
            self._entries.popleft()


class Sampler:
    """Keeps one coin's live book and stores it (or a gap) at every slot."""

    def __init__(
        self,
        coin: Coin,
        exchanges: Exchanges,
        writer: Writer,
        started_ms: int,
        clock: Clock = WALL,
    ) -> None:
        self.coin = coin
        self.state = "starting"
        self.last_error: str | None = None
        self.failures = 0  # times the live stream broke
        self.last_lag_s = 0.0  # how late the last slot was looked at
        self._capture = "ws"
        self._polling = False  # no live feed: every slot is a REST snapshot
        self._exchanges = exchanges
        self._writer = writer
        self._started_ms = started_ms
        self._clock = clock
        self._timeline = _Timeline(clock)
        self._log = log.bind(exchange=coin.exchange, symbol=coin.symbol)

    async def run(self, accounted_until: int | None) -> None:
        first = slot_at_or_after(self._now_ms() + 1, self.coin.interval_ms)
        await self._record_missed(accounted_until, first)
        self._timeline.mark("not_synced")
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
        missed: tuple[tuple[int, int, GapReason], ...] = (
            (start, boundary, "daemon_down"),
            (boundary, first, "not_synced"),
        )
        for begin, end, reason in missed:
            if begin < end:
                await self._writer.put(GapIn(self.coin.id, begin, end, reason))

    async def _watch(self) -> None:
        backoff = Backoff()
        reason: GapReason
        while True:
            unverified_since_ms: int | None = None
            try:
                await self._follow(self._exchanges.get(self.coin.exchange), backoff)
                reason, error, floor_s = "disconnected", "stream ended", 0.0
            except NoLiveStream as exc:
                self._polling, self.state = True, "polling"
                self._log.info("polling", why=str(exc))
                return
            except Exception as exc:  # the one broad except: logged, counted, retried
                reason, error, floor_s = _diagnose(exc)
                if isinstance(exc, FeedError):
                    unverified_since_ms = exc.unverified_since_ms
            if unverified_since_ms is None:
                self._timeline.mark(reason)
            else:  # undecided slots first, then the stored ones
                self._timeline.mark(reason, unverified_since_ms * 1000)
                await self._retract(unverified_since_ms, reason)
            self.state, self.last_error = reason, error
            self.failures += 1
            pause_s = max(backoff.next_pause_s(), floor_s)
            self._log.warning(
                "stream_down", reason=reason, error=error, retry_in_s=round(pause_s, 2)
            )
            await asyncio.sleep(pause_s)

    async def _retract(self, since_ms: int, reason: GapReason) -> None:
        """The plugin found, at a book's next frame, that a frame was lost some time
        after `since_ms`: the live snapshots stored for later slots may hold the book
        as it stood before the loss. They become gaps (the live feed has shown them)."""
        until = self._now_ms()
        if since_ms < until:
            self._log.warning("unverified", since_ms=since_ms, until_ms=until, reason=reason)
            interval = self.coin.interval_ms
            await self._writer.put(RetractIn(self.coin.id, since_ms, until, reason, interval))

    async def _follow(self, exchange: Exchange, backoff: Backoff) -> None:
        self._capture = "synthetic" if exchange.synthetic else "ws"
        async for book in exchange.watch(self.coin.symbol, self.coin.depth):
            self._timeline.add(book)
            if self.state != "live":
                self.state, self.last_error = "live", None
                backoff.reset()

    async def _slots(self, first: int) -> None:
        slot = first
        while True:
            self._timeline.advance(slot * 1000)
            await self._clock.sleep_until_us(slot * 1000)
            if await self._timeline.settle(slot * 1000, SETTLE_S):
                await self._take(slot)
            else:  # the feed neither changed, nor proved alive, nor failed
                await self._writer.put(
                    GapIn(self.coin.id, slot, slot + self.coin.interval_ms, "stale")
                )
            slot += self.coin.interval_ms

    async def _take(self, slot: int) -> None:
        self.last_lag_s = max(0.0, self._now_ms() / 1000 - slot / 1000)
        found = self._timeline.at(slot * 1000)
        if isinstance(found, tuple):
            received_us, book = found
            received_ts = book.received_ts or received_us // 1000
            await self._store(slot, book, received_ts, self._capture)
        elif (rest := self._rest_source(found)) is not None:
            await self._take_rest(rest, slot, found)
        else:
            await self._writer.put(GapIn(self.coin.id, slot, slot + self.coin.interval_ms, found))

    def _now_ms(self) -> int:
        return self._clock.now_us() // 1000

    async def _store(self, slot: int, book: Book, received_ts: int, capture: str) -> None:
        cut = _cut(book, self.coin.depth)
        await self._writer.put(SnapshotIn(self.coin, slot, cut, received_ts, capture))

    def _rest_source(self, reason: GapReason) -> FetchesBooks | None:
        """The plugin, if a REST snapshot can stand in for the live book at this slot."""
        if reason in _NO_REST:
            return None
        try:
            exchange = self._exchanges.get(self.coin.exchange)
        except ObdError:
            return None
        return exchange if isinstance(exchange, FetchesBooks) else None

    async def _take_rest(self, exchange: FetchesBooks, slot: int, reason: GapReason) -> None:
        """Slot T from a REST snapshot: the first answer to a request sent at or after T
        that arrives by T + the REST window; errors are retried with backoff until then.
        It is the book a little after T, not at T: `received_ts` says when."""
        deadline_s = (slot + min(self.coin.interval_ms, REST_WINDOW_MS)) / 1000
        pauses = Backoff(base_s=0.1, cap_s=5.0)
        while (left_s := deadline_s - self._now_ms() / 1000) > 0:
            try:
                async with asyncio.timeout(left_s):
                    book = await exchange.fetch_book(self.coin.symbol, self.coin.depth)
            except TimeoutError:
                break  # no answer within the window: keep the last reason
            except Exception as exc:  # mapped to a gap reason; retried within the window
                reason, error, floor_s = _diagnose(exc)
                self.last_error = error
                self._log.warning("rest_failed", reason=reason, error=error)
                if reason in _NO_REST:
                    break
                pause_s = max(pauses.next_pause_s(), floor_s)
                await asyncio.sleep(max(0.0, min(pause_s, deadline_s - self._now_ms() / 1000)))
                continue
            if self._polling:
                self.state, self.last_error = "polling", None
            await self._store(slot, book, book.received_ts or self._now_ms(), "rest")
            return
        if self._polling:
            self.state = reason
        await self._writer.put(GapIn(self.coin.id, slot, slot + self.coin.interval_ms, reason))


def _diagnose(exc: Exception) -> tuple[GapReason, str, float]:
    """(gap reason, message, least pause before retrying in s) for a plugin's error."""
    if isinstance(exc, NotFound):  # delisted: the plugin says the symbol is gone
        return "not_listed", str(exc), 0.0
    if isinstance(exc, RateLimited):
        return exc.gap_reason, str(exc), exc.retry_after_s or 0.0
    if isinstance(exc, FeedError):
        return exc.gap_reason, str(exc), 0.0
    if isinstance(exc, ObdError):  # the plugin is missing or misconfigured
        return "exchange_error", str(exc), 0.0
    return "disconnected", f"{type(exc).__name__}: {exc}", 0.0


def _cut(book: Book, depth: int) -> Book:
    if len(book.bids) <= depth and len(book.asks) <= depth:
        return book
    return Book(book.bids[:depth], book.asks[:depth], book.exchange_ts, book.received_ts, book.seq)
