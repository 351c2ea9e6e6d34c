"""The array paths of obd.research (to_numpy, DataFrames, Parquet export) decode books in
batches (`Dataset.decoded`): they must give exactly what the Snapshots give, for ragged
books (empty sides, fewer or more levels than asked, RAW books with NaN and -0.0) too."""

import importlib.util
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from obd import research
from obd.model import Book
from obd.research import export
from obd.storage import coins, schema
from obd.storage.connect import open_writer
from obd.storage.writer import SnapshotIn, insert_snapshot
from tests.research_support import real_books

T0 = 1_764_547_200_000  # 2025-12-01T00:00Z
KEY = ("sim", "BTC/USDT")


def _books() -> list[Book]:
    real = real_books()
    odd = [
        Book([], []),
        Book([(100.0, 1.0)], []),
        Book([], [(101.0, 2.0), (102.0, 3.0)]),
        Book([(math.nan, 1.0), (99.0, -0.0)], [(math.inf, 0.5)]),  # RAW
        Book(real[0][0][:3], real[0][1] + [(200000.0, 1.5)] * 30),  # 130 asks
    ]
    return [Book(*book) for book in real[:6]] + odd + [Book(*real[7])]


@pytest.fixture(scope="module")
def ragged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ragged") / "obd.sqlite"
    conn = open_writer(path)
    try:
        schema.migrate(conn, 0)
        with conn:
            request = coins.CoinRequest(*KEY, 1_000, "1s", 100, False)
            coin, _ = coins.add_coin(conn, request, now=0)
            for i, book in enumerate(_books()):
                insert_snapshot(conn, SnapshotIn(coin, T0 + i * 1_000, book, T0, "rest"))
    finally:
        conn.close()
    return path


def bits(values: list[float]) -> list[bytes]:
    return [struct.pack("<d", value) for value in values]


@pytest.mark.parametrize("levels", [None, 0, 3, 120])
@pytest.mark.parametrize(
    "books",  # every book, the real ones (all equally deep), an empty one alone
    [(0, 12), (0, 6), (6, 7)],
    ids=["all", "equally-deep", "empty"],
)
def test_to_numpy_equals_the_snapshots(
    ragged: Path, levels: int | None, books: tuple[int, int]
) -> None:
    start, end = T0 + books[0] * 1_000, T0 + books[1] * 1_000
    with research.open(ragged) as dataset:
        snapshots = list(dataset.snapshots(*KEY, start, end))
        arrays = dataset.to_numpy(*KEY, start, end, levels=levels)
    assert len(snapshots) == books[1] - books[0]
    depth = 100 if levels is None else levels
    assert arrays.ts.tolist() == [s.ts for s in snapshots]
    for i, snapshot in enumerate(snapshots):
        for side, values, mask in (
            (snapshot.bids, arrays.bids, arrays.bid_mask),
            (snapshot.asks, arrays.asks, arrays.ask_mask),
        ):
            kept = side[:depth]
            got = values[i, : len(kept)].ravel().tolist()
            assert bits(got) == bits([x for level in kept for x in level])
            assert mask[i].tolist() == [True] * len(kept) + [False] * (depth - len(kept))
            assert all(math.isnan(x) for x in values[i, len(kept) :].ravel())


def _long(snapshots: list[Any], depth: int | None) -> list[tuple[Any, ...]]:
    return [
        (s.ts, name, level, price, size)
        for s in snapshots
        for name, side in (("bid", s.bids), ("ask", s.asks))
        for level, (price, size) in enumerate(side[:depth])
    ]


@pytest.mark.skipif(importlib.util.find_spec("polars") is None, reason="polars is missing")
@pytest.mark.parametrize("levels", [None, 2])
def test_polars_equals_the_snapshots(ragged: Path, levels: int | None) -> None:
    with research.open(ragged) as dataset:
        snapshots = list(dataset.snapshots(*KEY))
        frame = dataset.to_polars(*KEY, levels=levels)
    got = frame.rows()
    want = _long(snapshots, levels)
    assert [row[:3] for row in got] == [row[:3] for row in want]
    assert bits([x for row in got for x in row[3:]]) == bits([x for row in want for x in row[3:]])


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is missing")
def test_parquet_export_equals_the_snapshots(ragged: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    done = export.run(ragged, tmp_path / "out", "parquet")
    with research.open(ragged) as dataset:
        snapshots = list(dataset.snapshots(*KEY))
    assert done.snapshots == len(snapshots)
    (part,) = (tmp_path / "out").rglob("part.parquet")
    table = pq.read_table(part).to_pylist()
    assert [row["ts"] for row in table] == [s.ts for s in snapshots]
    for row, snapshot in zip(table, snapshots, strict=True):
        assert (row["exchange_ts"], row["received_ts"], row["capture"], row["seq"]) == (
            snapshot.exchange_ts,
            snapshot.received_ts,
            snapshot.capture,
            snapshot.seq,
        )
        for side, levels in (("bid", snapshot.bids), ("ask", snapshot.asks)):
            assert bits(row[f"{side}_price"]) == bits([level[0] for level in levels])
            assert bits(row[f"{side}_size"]) == bits([level[1] for level in levels])


def test_shards_merge_alike_in_arrays_and_snapshots(tmp_path: Path) -> None:
    from tests.research_support import build

    build(tmp_path / "a.sqlite", range(0, 30_000, 1_000))
    build(tmp_path / "b.sqlite", range(20_000, 50_000, 1_000))  # overlaps: a's rows win
    with research.open([tmp_path / "a.sqlite", tmp_path / "b.sqlite"]) as dataset:
        snapshots = list(dataset.snapshots(*KEY))
        arrays = dataset.to_numpy(*KEY, levels=100)
        chunks = list(dataset.decoded(*KEY, size=7))
    assert arrays.ts.tolist() == [s.ts for s in snapshots] == list(range(0, 50_000, 1_000))
    assert [row[0] for rows, _ in chunks for row in rows] == arrays.ts.tolist()
    books = [book for _, levels in chunks for book in levels.books()]
    assert books == [(s.bids, s.asks) for s in snapshots]
    for i, snapshot in enumerate(snapshots):
        assert arrays.bids[i].tolist() == [list(level) for level in snapshot.bids]
        assert arrays.asks[i].tolist() == [list(level) for level in snapshot.asks]
