"""Schema 4 on real files: a schema-3 file migrates with every row and gap intact; the
per-series counts stay right through every write path; a series is (exchange, symbol,
interval)."""

import gzip
import json
from pathlib import Path
from typing import Any

import apsw
import msgspec
import pytest

from obd.errors import Conflict
from obd.model import Book, Gap
from obd.storage import codec, coins, reader, schema
from obd.storage.coins import CoinRequest
from obd.storage.connect import open_reader, open_writer
from obd.storage.summary import summarize
from obd.storage.writer import (
    RetractIn,
    SnapshotIn,
    clear_gaps,
    insert_snapshot,
    record_gap,
    retract,
)

DATA = Path(__file__).parent / "data"
_V3_COLUMNS = (
    "series, ts, exchange_ts, received_ts, capture, bid_levels, ask_levels, best_bid, "
    "best_ask, mid, spread_bps, bid_size_10, ask_size_10, imbalance_10, crossed, codec, book, seq"
)


def _books(limit: int) -> list[Book]:
    """Real books (tests/data), depth 100 and deeper: some blobs spill past a page."""
    found: list[Book] = []
    for path in sorted(DATA.glob("*.ndjson.gz")):
        with gzip.open(path, "rt") as lines:
            for line in lines:
                row = json.loads(line)
                if "bids" in row and "asks" in row:
                    bids = [(float(p), float(s)) for p, s in row["bids"]]
                    asks = [(float(p), float(s)) for p, s in row["asks"]]
                    found.append(Book(bids=bids, asks=asks, exchange_ts=row.get("ts")))
                if len(found) >= limit:
                    return found
    return found


def _request(interval_ms: int = 1000, **changes: Any) -> CoinRequest:
    fields: dict[str, Any] = {
        "exchange": "sim",
        "symbol": "BTC/USDT",
        "interval_ms": interval_ms,
        "interval": f"{interval_ms // 1000}s",
        "depth": 100,
        "synthetic": True,
        **changes,
    }
    return CoinRequest(**fields)


def _v3_file(path: Path, books: list[Book]) -> list[tuple[Any, ...]]:
    """A schema-3 file written as obd 3 wrote it (its DDL, its columns): two coins, their
    rows and gaps. Returns the rows as the v3 `snapshots` table held them."""
    conn = open_writer(path)
    with conn:
        for step in schema.MIGRATIONS[:3]:
            conn.execute(step)
        conn.execute("PRAGMA user_version = 3")
        for id_, symbol in ((1, "BTC/USDT"), (2, "ETH/USDT")):
            conn.execute(
                "INSERT INTO series (id, exchange, symbol, interval_ms, interval, depth, "
                "active, synthetic, added_ts) VALUES (?, 'sim', ?, 1000, '1s', 1000, ?, 1, 0)",
                (id_, symbol, id_ == 1),
            )
        for index, book in enumerate(books):
            series, ts = 1 + index % 2, 1000 * (index // 2 + 1)
            codec_id, blob = codec.encode(book.bids, book.asks)
            summary = msgspec.structs.astuple(summarize(book.bids, book.asks))
            conn.execute(
                f"INSERT INTO snapshots ({_V3_COLUMNS}) VALUES ({', '.join('?' * 18)})",
                (series, ts, book.exchange_ts, ts - 3, "ws", *summary, codec_id, blob, index),
            )
        conn.executemany(
            "INSERT INTO gaps (series, start_ts, end_ts, reason) VALUES (?, ?, ?, ?)",
            [(1, 500_000, 502_000, "disconnected"), (2, 600_000, 601_000, "late")],
        )
    rows = conn.execute(f"SELECT {_V3_COLUMNS} FROM snapshots ORDER BY series, ts").fetchall()
    conn.close()
    return rows


def test_v3_file_migrates_with_every_row_and_gap(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    books = _books(60)
    assert any(len(codec.encode(b.bids, b.asks)[1]) > 4_000 for b in books)  # spilled in v3
    before = _v3_file(path, books)
    conn = open_writer(path)
    schema.migrate(conn, now_ms=1)

    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    after = conn.execute(f"SELECT {_V3_COLUMNS} FROM snapshots ORDER BY series, ts").fetchall()
    assert after == before  # every column of every row, blobs byte for byte, via the view
    long = sum(1 for row in before if len(row[16]) > schema.INLINE_BOOK_BYTES)
    assert 0 < long < len(before)  # deep books moved to `books`, the others stayed inline
    assert conn.execute("SELECT count(*) FROM books").fetchone()[0] == long
    empty = "SELECT count(*) FROM snapshot_rows WHERE length(book) = 0"
    assert conn.execute(empty).fetchone()[0] == long
    assert conn.execute("SELECT series, start_ts, end_ts, reason FROM gaps").fetchall() == [
        (1, 500_000, 502_000, "disconnected"),
        (2, 600_000, 601_000, "late"),
    ]
    for series in (1, 2):
        ts = [row[1] for row in before if row[0] == series]
        assert reader.stats(conn, series) == reader.CoinStats(min(ts), max(ts), len(ts))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    coin = reader.coin(conn, "sim", "BTC/USDT")
    assert coin is not None
    assert coin.active
    assert coin.interval_ms == 1000
    [first] = reader.books(conn, coin, 0, 1001, 1)
    assert (first.bids, first.asks, first.seq) == (books[0].bids, books[0].asks, 0)
    conn.close()


def _stats_match_rows(conn: apsw.Connection, coin_id: int) -> None:
    counted = conn.execute(
        "SELECT min(ts), max(ts), count(*) FROM snapshot_rows WHERE series = ?", (coin_id,)
    ).fetchone()
    assert reader.stats(conn, coin_id) == reader.CoinStats(*counted)
    books = conn.execute(
        "SELECT count(*) FROM books WHERE id >= ? AND id < ?",
        (schema.book_key(coin_id, 0), schema.book_key(coin_id + 1, 0)),
    ).fetchone()[0]
    outside = conn.execute(
        "SELECT count(*) FROM snapshot_rows WHERE series = ? AND length(book) = 0", (coin_id,)
    ).fetchone()[0]
    assert books == outside  # no row without its book, no orphaned book
    assert (
        conn.execute(
            "SELECT count(*) FROM snapshots WHERE series = ? AND length(book) > 0", (coin_id,)
        ).fetchone()[0]
        == counted[2]
    )  # the view shows every book


def test_stats_follow_every_write_path(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(conn, 0)
    book = _books(1)[0]
    shallow = Book(bids=book.bids[:20], asks=book.asks[:20])  # its blob stays inline
    assert len(codec.encode(book.bids, book.asks)[1]) > schema.INLINE_BOOK_BYTES
    with conn:
        coin, _ = coins.add_coin(conn, _request(), now=0)
    assert reader.stats(conn, coin.id) == reader.CoinStats(None, None, 0)
    with conn:  # live rows, one repeated (ignored: the first stays)
        for ts in (3000, 1000, 2000, 4000, 5000, 2000):
            stored = (book, shallow)[ts // 1000 % 2]
            insert_snapshot(conn, SnapshotIn(coin, ts, stored, ts - 1, "ws"))
    for snapshot in reader.books(conn, coin, 0, 10_000, 10):
        expected = (book, shallow)[snapshot.ts // 1000 % 2]
        assert (snapshot.bids, snapshot.asks) == (expected.bids, expected.asks)
    assert reader.stats(conn, coin.id) == reader.CoinStats(1000, 5000, 5)
    _stats_match_rows(conn, coin.id)
    # A range holding the whole series is answered from the kept count, others counted.
    assert [reader.count(conn, coin.id, *r) for r in ((0, 10**12), (1000, 5001), (1001, 5001))] == [
        5,
        5,
        4,
    ]
    assert reader.count(conn, coin.id, 1000, 5000) == 4
    with conn:  # retraction of the newest live rows
        retract(conn, RetractIn(coin.id, after=3000, until=5000, reason="stale", interval_ms=1000))
    assert reader.stats(conn, coin.id) == reader.CoinStats(1000, 3000, 3)
    _stats_match_rows(conn, coin.id)
    with conn:  # back-fill before the first row
        for ts in (-1000 + 1000, 500):
            insert_snapshot(conn, SnapshotIn(coin, ts, book, ts + 1, "backfill:sim"))
        clear_gaps(conn, coin.id, 0, 1000)
    assert reader.stats(conn, coin.id) == reader.CoinStats(0, 3000, 5)
    with conn:  # deleting the first row by hand: first_ts follows
        conn.execute("DELETE FROM snapshot_rows WHERE series = ? AND ts = 0", (coin.id,))
    assert reader.stats(conn, coin.id) == reader.CoinStats(500, 3000, 4)
    _stats_match_rows(conn, coin.id)
    with pytest.raises(apsw.ConstraintError, match="never updated"), conn:
        conn.execute("UPDATE snapshot_rows SET ts = ts + 1 WHERE series = ?", (coin.id,))
    assert not insert_snapshot(conn, SnapshotIn(coin, schema.TS_LIMIT, book, 0, "ws"))
    assert reader.stats(conn, coin.id).count == 4


def test_gap_extends_the_touching_gap_only(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(conn, 0)
    with conn:
        coin, _ = coins.add_coin(conn, _request(), now=0)
        record_gap(conn, coin.id, 1000, 3000, "late")
        record_gap(conn, coin.id, 5000, 6000, "late")
        record_gap(conn, coin.id, 6000, 8000, "late")  # touches: one row
        record_gap(conn, coin.id, 8000, 9000, "disconnected")  # another reason: its own
        record_gap(conn, coin.id, 3000, 4000, "stale")
    assert reader.gaps(conn, coin.id, 0, 10_000) == [
        Gap(1000, 3000, "late"),
        Gap(3000, 4000, "stale"),
        Gap(5000, 8000, "late"),
        Gap(8000, 9000, "disconnected"),
    ]
    assert reader.accounted_until(conn, coin) == 9000


def test_series_is_exchange_symbol_and_interval(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "obd.sqlite")
    schema.migrate(conn, 0)
    book = _books(1)[0]
    with conn:
        one, created = coins.add_coin(conn, _request(1000), now=0)
        assert created
        for ts in range(1000, 6000, 1000):
            insert_snapshot(conn, SnapshotIn(one, ts, book, ts - 1, "ws"))
        with pytest.raises(Conflict, match="remove it first"):
            coins.add_coin(conn, _request(2000), now=6000)
        coins.remove_coin(conn, "sim", "BTC/USDT")
        two, created = coins.add_coin(conn, _request(2000), now=6000)
        assert created
        assert two.id != one.id
        assert two.interval_ms == 2000
        insert_snapshot(conn, SnapshotIn(two, 8000, book, 7999, "ws"))
    # The old series keeps its rows and interval; the new one starts empty.
    assert reader.stats(conn, one.id) == reader.CoinStats(1000, 5000, 5)
    assert reader.stats(conn, two.id) == reader.CoinStats(8000, 8000, 1)
    assert [c.id for c in reader.coins(conn)] == [two.id]
    assert [(c.interval_ms, c.active) for c in reader.coins(conn, active_only=False)] == [
        (2000, True),
        (1000, False),
    ]
    assert reader.coin(conn, "sim", "BTC/USDT") == two  # the active one
    old = reader.coin(conn, "sim", "BTC/USDT", 1000)
    assert old is not None
    assert old.id == one.id
    assert not old.active
    with pytest.raises(apsw.ConstraintError):  # never two active series of a coin
        conn.execute("UPDATE series SET active = 1 WHERE id = ?", (one.id,))
    with conn:  # back to 1 s: the old series resumes, its absence a `removed` gap
        coins.remove_coin(conn, "sim", "BTC/USDT")
        assert reader.coin(conn, "sim", "BTC/USDT") == msgspec.structs.replace(two, active=False)
        back, created = coins.add_coin(conn, _request(1000), now=20_000)
    assert created
    assert back.id == one.id
    assert reader.gaps(conn, one.id, 0, 30_000) == [Gap(6000, 20_000, "removed")]


def test_reader_reads_a_v3_copy_it_cannot_migrate(tmp_path: Path) -> None:
    """A read-only copy of a schema-3 file: stats come from counting its rows."""
    path = tmp_path / "old.sqlite"
    _v3_file(path, _books(6))
    copy = open_reader(path, read_only=True)
    assert reader.stats(copy, 1) == reader.CoinStats(1000, 3000, 3)
    assert reader.count(copy, 1, 0, 10_000) == 3
    coin = reader.coin(copy, "sim", "BTC/USDT")
    assert coin is not None
    assert len(reader.books(copy, coin, 0, 10_000, 10)) == 3
