"""The sampler's slot logic on a clock the test moves: point in time to the µs, every
slot a snapshot or a gap with a reason, no waiting for real seconds. The store is a
real SQLite file behind the real writer; the exchange is a scripted plugin."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from obd.collect.sampler import Sampler, _Timeline
from obd.errors import ChecksumFailed, Disconnected, HistoryNotAvailable, NotFound
from obd.exchanges import Exchanges
from obd.exchanges.discovery import Found, Plugins
from obd.model import Book, Coin
from obd.plugin import Availability, PluginSpec
from obd.storage import coins, reader
from obd.storage.coins import CoinRequest
from obd.storage.connect import open_reader
from obd.storage.writer import Writer

S = 1_000_000  # µs a second
T0 = 1_800_000_000 * S  # a whole second, in µs
A = Book([(100.0, 1.0)], [(101.0, 1.0)], seq=1)
B = Book([(100.5, 2.0)], [(101.0, 1.0)], seq=2)
C = Book([(99.5, 3.0)], [(100.0, 4.0)], seq=3)


class ManualClock:
    """Wall time that moves only when the test says so."""

    def __init__(self, now_us: int) -> None:
        self.now = now_us
        self._moved = asyncio.Condition()

    def now_us(self) -> int:
        return self.now

    async def sleep_until_us(self, at_us: int) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self.now >= at_us)

    async def to(self, at_us: int) -> None:
        """Move to `at_us` and let every task run until it waits again."""
        async with self._moved:
            self.now = at_us
            self._moved.notify_all()
        for _ in range(20):
            await asyncio.sleep(0)


class Scripted:
    """An exchange whose feed the test writes: books, or an error to raise."""

    synthetic = False

    def __init__(self) -> None:
        self.feed: asyncio.Queue[Book | Exception] = asyncio.Queue()

    async def check_availability(self, symbol: str) -> Availability:
        return Availability(True)

    async def watch(self, symbol: str, depth: int) -> AsyncIterator[Book]:
        while True:
            item = await self.feed.get()
            if isinstance(item, Exception):
                raise item
            yield item

    async def fetch_history(
        self, symbol: str, start_ms: int, end_ms: int, interval_ms: int, depth: int
    ) -> AsyncIterator[tuple[int, Book]]:
        raise HistoryNotAvailable("scripted")
        yield  # pragma: no cover

    async def close(self) -> None:
        pass


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "obd.sqlite"
        self.clock = ManualClock(T0 + S // 2)
        self.exchange = Scripted()
        spec = PluginSpec(name="scripted", factory=lambda _id, _options: self.exchange)
        self.exchanges = Exchanges(Plugins([Found("scripted", "test", spec=spec)]), {})
        self.writer = Writer(self.path)
        self.coin: Coin

    async def __aenter__(self) -> "Rig":
        await self.writer.open()
        self._writing = asyncio.create_task(self.writer.run())
        request = CoinRequest("scripted", "X/Y", 1000, "1s", 10, False)
        self.coin, _ = await self.writer.call(
            lambda conn: coins.add_coin(conn, request, now=T0 // 1000 - 5000)
        )
        started_ms = self.clock.now // 1000
        sampler = Sampler(self.coin, self.exchanges, self.writer, started_ms, self.clock)
        self._sampling = asyncio.create_task(sampler.run(accounted_until=T0 // 1000 - 3000))
        await self.clock.to(self.clock.now)
        return self

    async def push(self, at_us: int, item: Book | Exception) -> None:
        await self.clock.to(at_us)
        await self.exchange.feed.put(item)
        await self.clock.to(at_us)

    async def __aexit__(self, *_: object) -> None:
        self._sampling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._sampling
        await self.writer.stop()
        await self._writing
        await self.writer.close()

    def stored(self) -> tuple[dict[int, Book], list[tuple[int, int, str]]]:
        conn = open_reader(self.path)
        try:
            snapshots = reader.books(conn, self.coin, 0, 2**62, 1000)
            gaps = conn.execute(
                "SELECT start_ts, end_ts, reason FROM gaps ORDER BY start_ts"
            ).fetchall()
        finally:
            conn.close()
        books = {s.ts: Book(s.bids, s.asks, s.exchange_ts, s.received_ts, s.seq) for s in snapshots}
        return books, [tuple(gap) for gap in gaps]


def _ms(at_us: int) -> int:
    return at_us // 1000


def _run(tmp_path: Path, script: Callable[[Rig], Awaitable[None]]) -> Rig:
    async def go() -> Rig:
        async with Rig(tmp_path) as rig:
            await script(rig)
        return rig

    return asyncio.run(go())


def test_each_slot_takes_the_newest_book_received_at_or_before_it(tmp_path: Path) -> None:
    async def script(rig: Rig) -> None:
        await rig.push(T0 + S // 2 + 10, A)
        await rig.push(T0 + S, B)  # at the slot itself: still in it
        await rig.push(T0 + S + 1, C)  # 1 µs late: the next slot's, and it settles slot 1
        await rig.clock.to(T0 + 2 * S)
        await rig.push(T0 + 2 * S + 5, C)  # the feed spoke after slot 2
        await rig.clock.to(T0 + 2 * S + 10)

    books, gaps = _run(tmp_path, script).stored()
    assert [books[_ms(T0 + S)].seq, books[_ms(T0 + 2 * S)].seq] == [B.seq, C.seq]
    assert books[_ms(T0 + S)].received_ts == _ms(T0 + S)
    # the daemon started half way through slot T0: down from the last accounted slot
    # up to its first slot
    assert gaps == [(_ms(T0) - 3000, _ms(T0 + S), "daemon_down")]


def test_a_slot_waits_for_the_feed_to_speak_and_a_failure_is_a_gap(tmp_path: Path) -> None:
    async def script(rig: Rig) -> None:
        await rig.push(T0 + S // 2 + 10, A)
        await rig.clock.to(T0 + S)  # nothing after the slot yet: undecided
        books, _ = rig.stored()
        assert _ms(T0 + S) not in books
        # The feed dies: it is down from just after its last sign of life, so slot 1
        # (after that sign) is a gap, not A copied forward.
        await rig.push(T0 + S + 200, Disconnected("gone"))
        await rig.clock.to(T0 + 2 * S + 1)

    books, gaps = _run(tmp_path, script).stored()
    assert _ms(T0 + S) not in books
    assert gaps[-1][0] == _ms(T0 + S)
    assert gaps[-1][2] == "disconnected"


def test_a_loss_found_late_retracts_what_was_stored_since_the_last_verified_frame(
    tmp_path: Path,
) -> None:
    """A frame lost after A's arrival shows only at the book's next frame; meanwhile
    heartbeats (other symbols' frames) let slots 1 and 2 be stored with A. When the
    plugin says so (`unverified_since_ms`), those slots become gaps: never a wrong
    book in the file. Slot 3's decision waits no longer: it is the same gap."""

    async def script(rig: Rig) -> None:
        await rig.push(T0 + S // 2 + 10, A)  # A arrives, verified by its own frame
        await rig.push(T0 + S + 5, A)  # heartbeat: slot 1 stored with A
        await rig.push(T0 + 2 * S + 5, A)  # heartbeat: slot 2 stored with A
        for _ in range(200):  # the writer commits on its own thread
            if len(rig.stored()[0]) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(rig.stored()[0]) == [_ms(T0 + S), _ms(T0 + 2 * S)]
        lost = ChecksumFailed("BTC book CRC mismatch")
        lost.unverified_since_ms = _ms(T0 + S // 2 + 10)
        await rig.push(T0 + 2 * S + 400, lost)
        await rig.clock.to(T0 + 3 * S + 1)

    books, gaps = _run(tmp_path, script).stored()
    assert books == {}
    assert gaps[-1] == (_ms(T0 + S), _ms(T0 + 4 * S), "checksum")


def test_a_delisted_symbol_is_not_listed(tmp_path: Path) -> None:
    async def script(rig: Rig) -> None:
        await rig.push(T0 + S // 2 + 10, NotFound("X/Y is gone"))
        await rig.clock.to(T0 + S + 1)

    _, gaps = _run(tmp_path, script).stored()
    assert gaps[-1] == (_ms(T0 + S), _ms(T0 + 2 * S), "not_listed")


def test_timeline_is_point_in_time_and_forgets_what_no_slot_needs() -> None:
    clock = ManualClock(T0)
    timeline = _Timeline(clock)
    assert timeline.at(T0) == "late"  # nothing as old as the slot
    timeline.mark("not_synced")
    clock.now = T0 + 10
    timeline.add(A)
    clock.now = T0 + 20
    timeline.add(B)
    assert timeline.at(T0 + 5) == "not_synced"
    assert timeline.at(T0 + 10) == (T0 + 10, A)
    assert timeline.at(T0 + 19) == (T0 + 10, A)
    assert timeline.settled(T0 + 19)
    assert not timeline.settled(T0 + 20)
    timeline.advance(T0 + 30)  # slots before T0 + 30 are decided: only B can matter
    assert timeline.at(T0 + 30) == (T0 + 20, B)
    assert timeline.at(T0 + 15) == "late"
    clock.now = T0 + 40
    timeline.mark("disconnected")  # down from just after its last sign of life
    assert timeline.at(T0 + 21) == "disconnected"
    assert timeline.settled(T0 + 1000)  # a feed that is down has said all it will
