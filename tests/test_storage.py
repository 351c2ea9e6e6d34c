"""The store on a real SQLite file: schema, writer batching, gaps, coins."""

import asyncio
from pathlib import Path

import apsw
import msgspec
import pytest

from obd.errors import Conflict, NotFound, StoreError
from obd.model import Book, Snapshot
from obd.service.coverage import coverage
from obd.storage import coins, reader, schema
from obd.storage.coins import CoinRequest
from obd.storage.connect import open_reader, open_writer
from obd.storage.writer import GapIn, SnapshotIn, Writer, record_gap
from tests.ws_support import prefill

BOOK = Book(bids=[(100.5, 1.25), (100.0, 3.0)], asks=[(101.0, 0.5)], exchange_ts=990)


def _request(**changes: object) -> CoinRequest:
    fields = {
        "exchange": "sim",
        "symbol": "BTC/USDT",
        "interval_ms": 1000,
        "interval": "1s",
        "depth": 10,
        "synthetic": True,
        **changes,
    }
    return CoinRequest(**fields)  # type: ignore[arg-type]


def test_new_file_is_wal_with_current_schema(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(conn, 0)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert conn.execute("PRAGMA page_size").fetchone()[0] == schema.PAGE_SIZE
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert meta["format"] == schema.FORMAT_NAME
    schema.migrate(conn, 0)  # idempotent


def test_newer_or_foreign_files_are_refused(tmp_path: Path) -> None:
    newer = open_writer(tmp_path / "newer.sqlite")
    newer.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer"):
        schema.migrate(newer, 0)
    foreign = open_writer(tmp_path / "foreign.sqlite")
    foreign.execute("CREATE TABLE other (x)")
    with pytest.raises(StoreError, match="not obd's"):
        schema.migrate(foreign, 0)


def test_gaps_merge_when_they_touch_with_the_same_reason(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(conn, 0)
    coin, _ = coins.add_coin(conn, _request(), now=0)
    for start in range(1000, 5000, 1000):
        record_gap(conn, coin.id, start, start + 1000, "disconnected")
    record_gap(conn, coin.id, 5000, 6000, "not_synced")
    record_gap(conn, coin.id, 6000, 6000, "empty ranges are ignored")
    gaps = reader.gaps(conn, coin.id, 0, 10_000)
    assert [(g.start, g.end, g.reason) for g in gaps] == [
        (1000, 5000, "disconnected"),
        (5000, 6000, "not_synced"),
    ]
    clipped = reader.gaps(conn, coin.id, 2000, 3000)
    assert [(g.start, g.end, g.reason) for g in clipped] == [(2000, 3000, "disconnected")]
    assert reader.accounted_until(conn, coin) == 6000


def test_coins_add_conflict_remove_and_readd(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(conn, 0)
    coin, created = coins.add_coin(conn, _request(), now=500)
    assert created
    assert coins.add_coin(conn, _request(), now=600) == (coin, False)
    with pytest.raises(Conflict, match="already collected"):
        coins.add_coin(conn, _request(interval_ms=5000, interval="5s"), now=700)
    record_gap(conn, coin.id, 1000, 2000, "not_synced")
    coins.remove_coin(conn, "sim", "BTC/USDT")
    with pytest.raises(NotFound):
        coins.remove_coin(conn, "sim", "BTC/USDT")
    assert reader.coins(conn) == []
    again, created = coins.add_coin(conn, _request(), now=10_500)
    assert created
    assert again.active
    assert again.id == coin.id
    # The slots it was not collected are accounted for as `removed`.
    assert [(g.start, g.end, g.reason) for g in reader.gaps(conn, coin.id, 0, 20_000)] == [
        (1000, 2000, "not_synced"),
        (2000, 11_000, "removed"),
    ]


def test_writer_commits_then_tells_listeners_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"

    async def scenario() -> list[Snapshot]:
        writer = Writer(path)
        await writer.open()
        heard: list[Snapshot] = []
        writer.on_commit(heard.extend)
        running = asyncio.create_task(writer.run())
        coin, _ = await writer.call(lambda conn: coins.add_coin(conn, _request(), now=0))
        for ts in (1000, 2000, 2000):  # the duplicate slot keeps the first book
            await writer.put(SnapshotIn(coin, ts, BOOK, received_ts=ts - 5, capture="synthetic"))
        await writer.put(GapIn(coin.id, 3000, 4000, "disconnected"))
        await writer.stop()
        await running
        await writer.close()
        return heard

    heard = asyncio.run(scenario())
    assert [s.ts for s in heard] == [1000, 2000]
    conn = open_reader(path)
    coin = reader.coin(conn, "sim", "BTC/USDT")
    assert coin is not None
    stored = reader.books(conn, coin, 0, 10_000, 10)
    assert msgspec.json.encode(stored) == msgspec.json.encode(heard)
    assert [list(level) for level in stored[0].bids] == [[100.5, 1.25], [100.0, 3.0]]
    row = conn.execute(
        "SELECT best_bid, best_ask, mid, bid_levels, ask_levels, crossed FROM snapshots LIMIT 1"
    ).fetchone()
    assert row == (100.5, 101.0, 100.75, 2, 1, 0)
    assert msgspec.json.encode(reader.latest(conn, coin)) == msgspec.json.encode(stored[-1])
    assert reader.count(conn, coin.id, 0, 2000) == 1
    assert reader.accounted_until(conn, coin) == 4000
    # Clean close checkpointed the WAL into the main file.
    assert (
        not (tmp_path / "obd.sqlite-wal").exists()
        or (tmp_path / "obd.sqlite-wal").stat().st_size == 0
    )


def test_reader_refuses_writes(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(writer, 0)
    conn = open_reader(tmp_path / "obd.sqlite")
    with pytest.raises(apsw.ReadOnlyError):
        conn.execute("DELETE FROM series")


def test_checkpoint_puts_committed_rows_in_the_main_file(tmp_path: Path) -> None:
    """After `checkpoint()`, a copy of the main file alone (no -wal) holds every row."""
    import shutil

    path = tmp_path / "obd.sqlite"

    async def scenario() -> None:
        writer = Writer(path)
        await writer.open()
        running = asyncio.create_task(writer.run())
        coin, _ = await writer.call(lambda conn: coins.add_coin(conn, _request(), now=0))
        for ts in range(1000, 11_000, 1000):
            await writer.put(SnapshotIn(coin, ts, BOOK, received_ts=ts - 5, capture="synthetic"))
        await writer.checkpoint()
        shutil.copy(path, tmp_path / "main-only.sqlite")  # the daemon is still running
        await writer.stop()
        await running
        await writer.close()

    asyncio.run(scenario())
    copy = open_reader(tmp_path / "main-only.sqlite")
    assert copy.execute("SELECT count(*) FROM snapshots").fetchall() == [(10,)]


def test_pages_resume_after_the_last_ts_and_stop_on_a_short_page() -> None:
    stored = [0, 10, 20, 30, 40]
    asked: list[int] = []

    def fetch(low: int) -> list[int]:
        asked.append(low)
        return [ts for ts in stored if low <= ts < 45][:2]

    assert list(reader.pages(fetch, 0, 45, 2, lambda ts: ts)) == [[0, 10], [20, 30], [40]]
    assert asked == [0, 11, 31]  # keyset: each query starts past the last ts seen
    asked.clear()
    del stored[-1]  # a full last page costs one more query, which finds nothing
    assert list(reader.pages(fetch, 0, 45, 2, lambda ts: ts)) == [[0, 10], [20, 30]]
    assert asked == [0, 11, 31]
    assert list(reader.pages(fetch, 50, 45, 2, lambda ts: ts)) == []


def test_reader_book_pages_read_ahead_on_threads_and_close_early(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"
    conn = open_writer(path)
    schema.migrate(conn, 0)
    with conn:
        coin, _ = coins.add_coin(conn, _request(), 0)
    writer = Writer(path)

    async def go() -> tuple[list[list[int]], list[int]]:
        await writer.open()
        running = asyncio.create_task(writer.run())
        for ts in range(0, 10_000, 1_000):
            await writer.put(SnapshotIn(coin, ts, BOOK, ts, "ws"))
        await writer.stop()
        await running
        await writer.close()
        read = reader.Reader(path)
        try:
            whole = [[s.ts for s in page] async for page in read.book_pages(coin, 0, 10_000, 4)]
            pages = read.book_pages(coin, 0, 10_000, 4)
            first = [s.ts for s in await anext(pages)]
            await pages.aclose()  # stopping early leaves nothing running
            return whole, first
        finally:
            read.close()

    whole, first = asyncio.run(go())
    assert whole == [[0, 1000, 2000, 3000], [4000, 5000, 6000, 7000], [8000, 9000]]
    assert first == [0, 1000, 2000, 3000]


def test_seq_round_trips_and_reads_as_null_in_files_from_before_it(tmp_path: Path) -> None:
    """The exchange's update id is kept with each book; a schema-2 file (no `seq`
    column: a research copy that cannot be migrated) still reads, with seq null."""
    from obd.storage.writer import insert_snapshot

    conn = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(conn, 0)
    coin, _ = coins.add_coin(conn, _request(), now=0)
    with conn:
        for ts, seq in ((1000, 2**62), (2000, None)):
            book = msgspec.structs.replace(BOOK, seq=seq)
            insert_snapshot(conn, SnapshotIn(coin, ts, book, ts - 1, "ws"))
    assert [s.seq for s in reader.books(conn, coin, 0, 3000, 10)] == [2**62, None]

    legacy = open_writer(tmp_path / "old.sqlite")
    for step in schema.MIGRATIONS[:2]:
        legacy.execute(step)
    legacy.execute("PRAGMA user_version = 2")
    old_coin, _ = coins.add_coin(legacy, _request(), now=0)
    legacy.execute(f"ATTACH '{tmp_path / 'obd.sqlite'}' AS new")
    columns = "ts, exchange_ts, received_ts, capture, bid_levels, ask_levels, crossed, codec, book"
    legacy.execute(
        f"INSERT INTO main.snapshots (series, {columns}) "
        f"SELECT ?, {columns} FROM new.snapshots WHERE ts = 1000",
        (old_coin.id,),
    )
    legacy.close()
    copy = open_reader(tmp_path / "old.sqlite", read_only=True)
    [old] = reader.books(copy, old_coin, 0, 3000, 10)
    assert old.seq is None
    assert (old.bids, old.asks) == (BOOK.bids, BOOK.asks)


def test_coverage_counts_back_filled_slots_before_collection_once(tmp_path: Path) -> None:
    """Slots before the coin was added hold back-filled rows or nothing: present and
    `not_collected` must not overlap (issue 17)."""
    path = tmp_path / "obd.sqlite"
    t = 1_000_000
    # Added at t; back-filled [t-30s, t-20s) and [t-10s, t-5s); collected [t+1s, t+10s).
    coin = prefill(
        path,
        [(t - 30_000, t - 20_000), (t - 10_000, t - 5_000), (t + 1000, t + 10_000)],
        added_ts=t,
    )
    conn = open_reader(path)
    found = coverage(conn, coin, t - 40_000, t + 10_000, now=t + 10_000)
    assert found.expected == 50
    assert found.present == 10 + 5 + 9
    assert [(g.start, g.end, g.reason) for g in found.gaps] == [
        (t - 40_000, t - 30_000, "not_collected"),
        (t - 20_000, t - 10_000, "not_collected"),
        (t - 5_000, t + 1000, "not_collected"),
    ]
    gap_slots = sum((g.end - g.start) // 1000 for g in found.gaps)
    assert found.present + gap_slots == found.expected


def test_unable_to_open_says_why(tmp_path: Path) -> None:
    """SQLite's bare "unable to open database file" gains the reason (issue 12, item 7)."""
    import errno

    from obd.errors import StoreError
    from obd.storage.access import why
    from obd.storage.connect import open_reader

    with pytest.raises(StoreError, match=r"unable to open database file \(missing directory "):
        open_reader(tmp_path / "nowhere" / "obd.sqlite")
    (tmp_path / "adir").mkdir()
    with pytest.raises(StoreError, match=r"adir is not a regular file\)"):
        open_reader(tmp_path / "adir")
    assert why(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"
    assert why(OSError(errno.EROFS, "Read-only file system")) == "Read-only file system"
