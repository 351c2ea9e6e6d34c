"""Bytes per snapshot: obd's book codec beside the obvious alternatives, on real books.

    python benchmarks/compare_codec.py [DATA_DIR]

DATA_DIR holds binance_1s_depth100.num.ndjson.gz (default: ../shared/data/binance from
the repository root). Prints markdown: bytes per 100-level-a-side snapshot (every 30th
snapshot of each series, so rows are not near-copies), overall and by series. Speed
against the limits is benchmarks/bench_paths.py.
"""

import argparse
import gc
import gzip
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from obd.storage import codec

REPO = Path(__file__).resolve().parent.parent
DEPTH_100 = "binance_1s_depth100.num.ndjson.gz"
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
