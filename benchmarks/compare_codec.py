"""Bytes per snapshot: obd's book codec beside the obvious alternatives, on real books.

    python benchmarks/compare_codec.py [DATA_DIR]

DATA_DIR holds binance_1s_depth100.num.ndjson.gz (default: ../shared/data/binance from
the repository root). Prints markdown: bytes per 100-level-a-side snapshot (every 30th
snapshot of each series, so rows are not near-copies), overall and by series, then
MODELED (codec 2) as obd's writer stores each series into a real file (its first
books SCALED, then a size model trained on their size symbols, `obd.storage.dicts`); and
the decode and encode rates of codec 2 against codec 1 (compiled core, same run). Speed
against the limits is benchmarks/bench_paths.py.
"""

import argparse
import gc
import gzip
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from obd.model import Book as StoredBook
from obd.storage import codec, coins, dicts, scaled, schema, sizecode
from obd.storage.connect import open_writer
from obd.storage.writer import SnapshotIn, insert_snapshot

REPO = Path(__file__).resolve().parent.parent
DEPTH_100 = "binance_1s_depth100.num.ndjson.gz"
TRAIN = dicts.TRAIN_BOOKS  # books a series stores SCALED before its model is trained on them
BATCH = 1000  # rows per transaction
TABLE = (
    "CREATE TABLE snapshots(series INTEGER, ts INTEGER, codec INTEGER, book BLOB, "
    "PRIMARY KEY(series, ts)) WITHOUT ROWID"
)

Book = dict[str, Any]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=REPO.parent / "shared/data/binance")
    args = parser.parse_args()
    books = load(args.data / DEPTH_100)
    gc.collect()
    gc.freeze()  # the 590k loaded levels would otherwise make every collection slow
    sample = every_nth(books, 30)
    print(f"# Book codec on {len(sample)} of {len(books)} snapshots ({args.data / DEPTH_100})\n")
    print_sizes(sample, books)
    print_modeled(books)


def load(path: Path) -> list[Book]:
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in lines]


def every_nth(books: list[Book], n: int) -> list[Book]:
    """Every nth snapshot of each series, from its first."""
    seen: dict[tuple[str, str], int] = defaultdict(int)
    picked = []
    for book in books:
        key = (book["exchange"], book["symbol"])
        if seen[key] % n == 0:
            picked.append(book)
        seen[key] += 1
    return picked


# --- sizes -------------------------------------------------------------------------------


def print_sizes(books: list[Book], everything: list[Book]) -> None:
    levels = sum(len(b["bids"]) + len(b["asks"]) for b in books) / len(books)
    zstd3 = zstandard.ZstdCompressor(level=3)
    rows: list[tuple[str, float]] = [
        ("JSON row", mean(len(json_row(b)) for b in books)),
        ("gzip-6 of each JSON row", mean(len(gzip.compress(json_row(b), 6)) for b in books)),
        (
            "zstd-3 of each msgpack row",
            mean(len(zstd3.compress(msgspec.msgpack.encode(b))) for b in books),
        ),
        ("obd RAW: zstd-3 of msgpack [bids, asks]", mean(len(raw(b)) for b in books)),
    ]
    parquet = parquet_bytes(books)
    if parquet is not None:
        rows.append(("Parquet (zstd) of the whole set, one row per level", parquet))
        near_copies = parquet_bytes(everything)
        assert near_copies is not None
        rows.append(
            (f"(same, all {len(everything):,} snapshots: 1 s apart, near-copies)", near_copies)
        )
    encoded = [codec.encode(b["bids"], b["asks"]) for b in books]
    assert all(codec_id == codec.SCALED for codec_id, _ in encoded)
    rows.append(("**obd SCALED**", mean(len(blob) for _, blob in encoded)))
    print(f"## Bytes per snapshot ({levels:.0f} levels, every 30th of each series)\n")
    print("| format | bytes | vs SCALED |\n| --- | ---: | ---: |")
    for name, size in rows:
        print(f"| {name} | {size:,.0f} | {size / rows[-1][1]:.2f}x |")
    print("\n| series | SCALED bytes |\n| --- | ---: |")
    by_series: dict[str, list[int]] = defaultdict(list)
    for book, (_, blob) in zip(books, encoded, strict=True):
        by_series[f"{book['exchange']} {book['symbol']}"].append(len(blob))
    for series, sizes in sorted(by_series.items()):
        print(f"| {series} | {mean(sizes):,.0f} |")
    print()


# --- codec 2 ------------------------------------------------------------------------------


def print_modeled(books: list[Book]) -> None:
    """Codec 2 as the writer stores each series, against codec 1 alone, every 30th row."""
    series: dict[str, list[Book]] = defaultdict(list)
    for book in books:
        series[f"{book['exchange']} {book['symbol']}"].append(book)
    print(f"## MODELED (codec 2): the first {TRAIN} books of a series SCALED, the rest")
    print("with a size model trained on those\n")
    print("| series | rows | every 30th: stored bytes | SCALED alone | MODELED rows |")
    print("| --- | ---: | ---: | ---: | ---: |")
    stored, alone, rows, models = [], [], [], []
    written = writer_order(dict(sorted(series.items())))
    for name, items in sorted(series.items()):
        blobs, model = written[name]
        models.append(model)
        sample = blobs[::30]
        scaled = [codec.encode(b["bids"], b["asks"])[1] for b in items[::30]]
        stored += [len(blob) for _, blob in sample]
        alone += [len(blob) for blob in scaled]
        rows += blobs
        modeled = sum(codec_id == codec.MODELED for codec_id, _ in sample)
        print(
            f"| {name} | {len(items)} | {mean(len(b) for _, b in sample):.1f} "
            f"| {mean(map(len, scaled)):.1f} | {modeled} of {len(sample)} |"
        )
    model_bytes = len(models) * sizecode.SYMBOLS
    amortised = model_bytes / len(rows)
    print(f"| **all** | {len(rows)} | **{mean(stored):.1f}** | {mean(alone):.1f} | |\n")
    print(
        f"Models: {len(models)} x {sizecode.SYMBOLS} B in `dicts`, {amortised:.2f} B a stored"
        f" row amortised over the {len(rows)} rows ({mean(stored) + amortised:.1f} B a row"
        " with it).\n"
    )
    print_rates(books, models)


def writer_order(
    series: dict[str, list[Book]],
) -> dict[str, tuple[list[tuple[int, bytes]], sizecode.SizeModel]]:
    """Each series' rows as obd's writer stores them (`insert_snapshot` into a real file,
    one coin a series, so the dicts lifecycle that runs is the daemon's), and its model."""
    stored: dict[str, tuple[list[tuple[int, bytes]], sizecode.SizeModel]] = {}
    with tempfile.TemporaryDirectory() as directory:
        conn = open_writer(Path(directory) / "obd.sqlite")
        try:
            schema.migrate(conn, 0)
            for name, items in series.items():
                request = coins.CoinRequest("sim", name, 1000, "1s", 100, False)
                with conn:
                    coin, _ = coins.add_coin(conn, request, now=0)
                for start in range(0, len(items), BATCH):
                    conn.execute("BEGIN")
                    for i, b in enumerate(items[start : start + BATCH], start):
                        book = StoredBook(bids=b["bids"], asks=b["asks"])
                        insert_snapshot(conn, SnapshotIn(coin, 1000 * i, book, 1000 * i, "ws"))
                    conn.execute("COMMIT")
                    dicts.writing(conn).committed()
                blobs = conn.execute(
                    "SELECT codec, book FROM snapshots WHERE series = ? ORDER BY ts", (coin.id,)
                ).fetchall()
                found = conn.execute("SELECT id, data FROM dicts WHERE series = ?", (coin.id,))
                (model,) = [sizecode.SizeModel.load(*row) for row in found]  # minutes: one
                stored[name] = [(int(codec_id), bytes(blob)) for codec_id, blob in blobs], model
        finally:
            conn.close()
    return stored


def print_rates(books: list[Book], models: list[Any]) -> None:
    """Decode (one batch) and encode rates, codec 2 over codec 1, median of 5 rounds."""
    by_id = {model.id: model for model in models}
    series = sorted({(b["exchange"], b["symbol"]) for b in books})
    model_of = {key: models[i] for i, key in enumerate(series)}
    sample = books[::7]
    pairs = [(b["bids"], b["asks"], model_of[b["exchange"], b["symbol"]]) for b in sample]
    scaled_rows = [codec.encode(bids, asks) for bids, asks, _ in pairs]
    modeled = [codec.encode(bids, asks, model) for bids, asks, model in pairs]
    share = sum(c == codec.MODELED for c, _ in modeled) / len(modeled)

    def timed(run: Callable[[], object], rounds: int = 7) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return len(pairs) / statistics.median(times)

    rates = {
        "decode_many (arrays)": (
            timed(lambda: codec.decode_many(scaled_rows)),
            timed(lambda: codec.decode_many(modeled, by_id.__getitem__)),
        ),
        "decode one by one (+books)": (
            timed(lambda: [codec.decode(c, b) for c, b in scaled_rows]),
            timed(lambda: [codec.decode(c, b, by_id.__getitem__) for c, b in modeled]),
        ),
        "encode": (
            timed(lambda: [codec.encode(bids, asks) for bids, asks, _ in pairs]),
            timed(lambda: [codec.encode(bids, asks, m) for bids, asks, m in pairs]),
        ),
        "python core: decode_many (arrays)": (
            timed(lambda: codec.decode_with(scaled, scaled_rows), 3),
            timed(lambda: codec.decode_with(scaled, modeled, by_id.__getitem__), 3),
        ),
    }
    print(f"## Speed, codec 2 vs codec 1 ({codec.CORE} core; {len(pairs)} books, {share:.0%}")
    print("of them MODELED; snapshots/s, median of 7, the python core's of 3)\n")
    print("| path | codec 1 | codec 2 | ratio |\n| --- | ---: | ---: | ---: |")
    for name, (one, two) in rates.items():
        print(f"| {name} | {one:,.0f} | {two:,.0f} | {two / one:.2f} |")
    print()


def json_row(book: Book) -> bytes:
    return json.dumps(book, separators=(",", ":")).encode()


def raw(book: Book) -> bytes:
    return _zstd3.compress(msgspec.msgpack.encode((book["bids"], book["asks"])))


_zstd3 = zstandard.ZstdCompressor(level=3)


def parquet_bytes(books: list[Book]) -> float | None:
    """Parquet (zstd) bytes per snapshot, one row per level; None without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    columns: dict[str, list[Any]] = defaultdict(list)
    for book in books:
        for side in ("bids", "asks"):
            for level, (price, size) in enumerate(book[side]):
                columns["exchange"].append(book["exchange"])
                columns["symbol"].append(book["symbol"])
                columns["ts"].append(book["ts"])
                columns["side"].append(side[0])
                columns["level"].append(level)
                columns["price"].append(price)
                columns["size"].append(size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "books.parquet"
        pq.write_table(pa.table(columns), path, compression="zstd")
        return path.stat().st_size / len(books)


def mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values)


if __name__ == "__main__":
    main()
