"""A full disk, for real: SQLite's `max_page_count` on the writer's connection (or a
file size limit) makes "database or disk is full" real without root. Memory stays
bounded, every slot is a snapshot or a `storage_full` gap, and writing resumes."""

import asyncio
import random
import resource
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from obd.errors import Unavailable
from obd.model import Book
from obd.storage import coins, reader
from obd.storage.coins import CoinRequest
from obd.storage.connect import open_reader
from obd.storage.writer import SnapshotIn, Writer

DEPTH = 1000
_random = random.Random(17)
# Random sizes: a book that compresses to nothing would fit in a page's slack.
BOOK = Book(
    bids=[(100.0 - i / 100, _random.random()) for i in range(DEPTH)],
    asks=[(101.0 + i / 100, _random.random()) for i in range(DEPTH)],
)
REQUEST = CoinRequest("sim", "BTC/USDT", 1000, "1s", DEPTH, True)
SLOTS = 100
QUEUE_BYTES = 4 * (512 + 112 * 2 * DEPTH)  # four books of this depth, as the writer counts


async def _until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 (the writer has no event for this)
            await asyncio.sleep(0.02)


def test_books_past_the_queue_bound_become_storage_full_gaps(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"

    async def scenario() -> int:
        writer = Writer(path, queue_bytes=QUEUE_BYTES)
        await writer.open()
        running = asyncio.create_task(writer.run())
        coin, _ = await writer.call(lambda conn: coins.add_coin(conn, REQUEST, now=0))
        pages = await writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        await writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
        most = 0
        async with asyncio.timeout(2):  # never waits on the failing writer
            for n in range(SLOTS):
                await writer.put(SnapshotIn(coin, 1000 * (n + 1), BOOK, 1000 * n, "synthetic"))
                most = max(most, writer.queued_bytes)
        await _until(lambda: writer.failing is not None)
        assert "full" in (writer.failing or ""), writer.failing
        # Space returns: the writer's own connection may grow again (and is idle between
        # retries), and what waited is committed without a restart.
        conn = writer._conn
        assert conn is not None
        await asyncio.to_thread(conn.execute, "PRAGMA max_page_count = 1073741823")
        await _until(lambda: writer.failing is None and writer.backlog == 0)
        await writer.stop()
        await running
        await writer.close()
        assert writer.queued_bytes == 0
        return most

    most = asyncio.run(scenario())
    assert most <= QUEUE_BYTES + SLOTS * 512  # books within the bound; gap rows are small
    conn = open_reader(path)
    coin = reader.coin(conn, "sim", "BTC/USDT")
    assert coin is not None
    books = [s.ts for s in reader.books(conn, coin, 0, 10**6, 1000)]
    gaps = reader.gaps(conn, coin.id, 0, 10**6)
    assert books == [1000, 2000, 3000, 4000]
    assert [(g.start, g.end, g.reason) for g in gaps] == [
        (5000, 1000 * (SLOTS + 1), "storage_full")
    ]


def test_a_failing_checkpoint_is_retried_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"

    async def scenario() -> None:
        writer = Writer(path)
        await writer.open()
        running = asyncio.create_task(writer.run())
        coin, _ = await writer.call(lambda conn: coins.add_coin(conn, REQUEST, now=0))
        for n in range(50):
            await writer.put(SnapshotIn(coin, 1000 * (n + 1), BOOK, 1000 * n, "synthetic"))
        await _until(lambda: writer.backlog == 0 and writer.rows_written == 50)
        checkpoints = asyncio.create_task(writer.checkpoint_every(0.05))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # No file may grow past the main file's size: the checkpoint cannot copy the WAL in.
        resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 4096, hard))
        try:
            await _until(lambda: (writer.failing or "").startswith("checkpoint:"))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert not checkpoints.done()  # still running: it backs off and tries again
        await _until(lambda: writer.failing is None)
        checkpoints.cancel()
        await writer.stop()
        await running
        await writer.close()

    asyncio.run(scenario())
    conn = open_reader(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 50


def test_stop_during_an_outage_does_not_wait_for_space(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"

    async def scenario() -> None:
        writer = Writer(path)
        await writer.open()
        running = asyncio.create_task(writer.run())
        coin, _ = await writer.call(lambda conn: coins.add_coin(conn, REQUEST, now=0))
        pages = await writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        await writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
        for n in range(5):
            await writer.put(SnapshotIn(coin, 1000 * (n + 1), BOOK, 999, "synthetic"))
        await _until(lambda: writer.failing is not None)
        async with asyncio.timeout(5):  # the retry pause is cut short; the rows are logged
            await writer.stop()
            await running
            await writer.close()

    asyncio.run(scenario())
    assert isinstance(apsw.sqlitelibversion(), str)


def test_a_call_that_meets_a_full_disk_is_unavailable(tmp_path: Path) -> None:
    """Adding a coin or back-filling on a full disk is the caller's 503, not a crash."""

    async def scenario() -> None:
        writer = Writer(tmp_path / "obd.sqlite")
        await writer.open()
        running = asyncio.create_task(writer.run())
        pages = await writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        await writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
        with pytest.raises(Unavailable, match="storage: database or disk is full"):
            await writer.call(
                lambda conn: conn.execute(
                    "CREATE TABLE big (x); INSERT INTO big VALUES (zeroblob(1e6))"
                )
            )
        await writer.stop()
        await running
        await writer.close()

    asyncio.run(scenario())


def test_calls_are_refused_at_once_while_commits_are_retried(tmp_path: Path) -> None:
    """A write call (add a coin, back-fill) would queue behind a batch whose commit is
    retried through a full disk; it is refused at once with a time to retry instead,
    and one already waiting is withdrawn and never runs (issue 17)."""
    ran: list[str] = []

    async def scenario() -> None:
        writer = Writer(tmp_path / "obd.sqlite")
        await writer.open()
        running = asyncio.create_task(writer.run())
        coin, _ = await writer.call(lambda conn: coins.add_coin(conn, REQUEST, now=0))
        pages = await writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        await writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
        for n in range(3):
            await writer.put(SnapshotIn(coin, 1000 * (n + 1), BOOK, 999, "synthetic"))
        # Queued behind the books, before their commit fails: withdrawn when it does.
        with pytest.raises(Unavailable) as waiting:
            await writer.call(lambda conn: ran.append("queued before"))
        assert waiting.value.retry_after_s == 5
        assert writer.failing is not None
        # Asked during the outage: refused before it is queued.
        with pytest.raises(Unavailable, match="storage cannot take writes now") as refused:
            await writer.call(lambda conn: ran.append("asked during"))
        assert "full" in str(refused.value)
        # Space returns: the books are committed, the withdrawn calls never run.
        conn = writer._conn
        assert conn is not None
        await asyncio.to_thread(conn.execute, "PRAGMA max_page_count = 1073741823")
        await _until(lambda: writer.failing is None and writer.backlog == 0)
        assert await writer.call(lambda conn: "after") == "after"
        await writer.stop()
        await running
        await writer.close()

    asyncio.run(scenario())
    assert ran == []
