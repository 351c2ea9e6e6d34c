"""Per-series size models (codec 2): trained by the writing connection, kept in `dicts`,
survive a restart and a rolled-back transaction, replaced when stale, read per file."""

import asyncio
import gzip
import json
from pathlib import Path

import apsw
import numpy as np
import pytest

from obd import research
from obd.model import Book, Coin
from obd.storage import codec, coins, dicts, reader, schema
from obd.storage.connect import open_reader, open_writer
from obd.storage.writer import SnapshotIn, Writer, insert_snapshot

DATA = Path(__file__).resolve().parent / "data"
Side = list[tuple[float, float]]
DAY = 86_400_000


def _books(exchange: str, symbol: str) -> list[tuple[Side, Side]]:
    """One real Binance series of tests/data (100 levels a side), in time order."""
    with gzip.open(DATA / "binance_depth100_every15.ndjson.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    return [
        ([tuple(x) for x in r["bids"]], [tuple(x) for x in r["asks"]])
        for r in rows
        if (r["exchange"], r["symbol"]) == (exchange, symbol)
    ]


SPOT = _books("binance", "BTCUSDT")  # 44 books
FUTURES = _books("binance-futures", "BTCUSDT")  # 55 books


def _file(path: Path, symbol: str = "BTC/USDT") -> tuple[apsw.Connection, Coin]:
    conn = open_writer(path)
    schema.migrate(conn, 0)
    with conn:
        coin, _ = coins.add_coin(conn, coins.CoinRequest("sim", symbol, 1000, "1s", 100, False), 0)
    return conn, coin


def _write(conn: apsw.Connection, coin: Coin, books: list[tuple[Side, Side]], first: int) -> None:
    conn.execute("BEGIN")
    for i, (bids, asks) in enumerate(books):
        ts = first + 1000 * i
        insert_snapshot(conn, SnapshotIn(coin, ts, Book(bids=bids, asks=asks), ts, "ws"))
    conn.execute("COMMIT")
    dicts.writing(conn).committed()


def _codecs(conn: apsw.Connection, coin: Coin) -> list[int]:
    rows = conn.execute("SELECT codec FROM snapshot_rows WHERE series = ? ORDER BY ts", (coin.id,))
    return [row[0] for row in rows]


def _models(conn: apsw.Connection) -> list[tuple[int, int, int]]:
    return conn.execute("SELECT id, series, ts FROM dicts ORDER BY id").fetchall()


def _read_back(path: Path, coin: Coin, books: list[tuple[Side, Side]], first: int) -> None:
    """Every stored book comes back with its very float bits, read by a new connection."""
    conn = open_reader(path)
    try:
        got = reader.books(conn, coin, first, first + 1000 * len(books), len(books))
    finally:
        conn.close()
    assert [(s.bids, s.asks) for s in got] == [(list(b), list(a)) for b, a in books]


def test_a_series_learns_its_model_from_its_first_books(tmp_path: Path) -> None:
    conn, coin = _file(tmp_path / "obd.sqlite")
    _write(conn, coin, SPOT, 0)
    kinds = _codecs(conn, coin)
    assert kinds[: dicts.TRAIN_BOOKS] == [codec.SCALED] * dicts.TRAIN_BOOKS
    assert kinds[dicts.TRAIN_BOOKS :].count(codec.MODELED) >= len(SPOT) - dicts.TRAIN_BOOKS - 2
    assert _models(conn) == [(1, coin.id, 1000 * (dicts.TRAIN_BOOKS - 1))]
    stored = conn.execute(
        "SELECT avg(length(book)) FROM snapshot_rows WHERE series = ? AND codec = ?",
        (coin.id, codec.MODELED),
    ).fetchone()[0]
    plain = np.mean([len(codec.encode(b, a)[1]) for b, a in SPOT[dicts.TRAIN_BOOKS :]])
    assert stored < plain - 10  # the point of it: the sizes' table is not in every book
    conn.close()
    _read_back(tmp_path / "obd.sqlite", coin, SPOT, 0)


def test_a_restarted_writer_keeps_the_model_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"
    conn, coin = _file(path)
    _write(conn, coin, SPOT[:20], 0)
    conn.close()
    conn = open_writer(path)
    _write(conn, coin, SPOT[20:], 20_000)
    assert len(_models(conn)) == 1  # not learned again
    assert set(_codecs(conn, coin)[20:]) <= {codec.MODELED, codec.SCALED}
    assert codec.MODELED in _codecs(conn, coin)[20:]
    conn.close()
    _read_back(path, coin, SPOT, 0)


def test_a_model_from_a_rolled_back_transaction_is_never_used(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"
    conn, coin = _file(path)
    conn.execute("BEGIN")
    for i, (bids, asks) in enumerate(SPOT[:20]):
        insert_snapshot(conn, SnapshotIn(coin, 1000 * i, Book(bids=bids, asks=asks), 0, "ws"))
    assert len(_models(conn)) == 1
    conn.execute("ROLLBACK")  # a full disk, say: the model's row is gone with the books
    assert _models(conn) == []
    _write(conn, coin, SPOT, 0)  # the same connection, its memory of the model now stale
    models = _models(conn)
    assert len(models) == 1
    used = conn.execute(
        "SELECT DISTINCT book FROM snapshot_rows WHERE codec = ?", (codec.MODELED,)
    ).fetchall()
    assert used  # and every one of them decodes with the model the file holds
    conn.close()
    _read_back(path, coin, SPOT, 0)


def test_a_day_old_model_is_replaced_and_old_books_keep_theirs(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"
    conn, coin = _file(path)
    _write(conn, coin, SPOT[:30], 0)
    later = DAY + 15_000  # a day after the book the model learned last, by slot time
    _write(conn, coin, SPOT[30:] + SPOT[:10], later)
    assert [m[2] for m in _models(conn)] == [15_000, later + 15_000]
    conn.close()
    _read_back(path, coin, SPOT[:30], 0)
    _read_back(path, coin, SPOT[30:] + SPOT[:10], later)


def test_books_that_outgrow_the_model_make_it_learn_again(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"
    conn, coin = _file(path)
    _write(conn, coin, SPOT[: dicts.TRAIN_BOOKS], 0)
    # Every size the same: zstd codes the repeats in a few bytes, the model cannot.
    grown = [
        ([(p, 0.5) for p, _ in bids], [(p, 0.5) for p, _ in asks])
        for bids, asks in (SPOT * 4)[: dicts.WINDOW + dicts.TRAIN_BOOKS]
    ]
    _write(conn, coin, grown, 100_000)
    assert len(_models(conn)) == 2
    conn.close()
    _read_back(path, coin, grown, 100_000)


def test_the_writer_trains_in_its_transactions(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"
    conn, coin = _file(path)
    conn.close()

    async def scenario() -> None:
        writer = Writer(path)
        await writer.open()
        task = asyncio.create_task(writer.run())
        for i, (bids, asks) in enumerate(FUTURES):
            await writer.put(SnapshotIn(coin, 1000 * i, Book(bids=bids, asks=asks), 0, "ws"))
        await writer.stop()
        await task
        await writer.close()

    asyncio.run(scenario())
    conn = open_reader(path)
    assert len(_models(conn)) == 1
    assert _codecs(conn, coin).count(codec.MODELED) > len(FUTURES) // 2
    conn.close()
    _read_back(path, coin, FUTURES, 0)


def test_research_decodes_each_shard_with_its_own_models(tmp_path: Path) -> None:
    """Model ids are per file: two shards both hold a model 1, each its own."""
    first, second = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    conn, coin = _file(first)
    _write(conn, coin, SPOT, 0)
    conn.close()
    conn, coin = _file(second)
    _write(conn, coin, FUTURES, 1000 * len(SPOT))
    conn.close()
    every = SPOT + FUTURES
    with research.open([first, second]) as data:
        arrays = data.to_numpy("sim", "BTC/USDT")
    assert len(arrays.ts) == len(every)
    for row, (bids, asks) in enumerate(every):
        assert arrays.bids[row, : len(bids)].tolist() == [list(level) for level in bids]
        assert arrays.asks[row, : len(asks)].tolist() == [list(level) for level in asks]


def test_a_book_whose_model_is_missing_is_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "obd.sqlite"
    conn, coin = _file(path)
    _write(conn, coin, SPOT, 0)
    with conn:
        conn.execute("DELETE FROM dicts")
    with pytest.raises(ValueError, match="model"):
        reader.books(conn, coin, 0, 1000 * len(SPOT), len(SPOT))
    conn.close()
