"""Compare obd's book codec with the obvious alternatives, on the real Binance data.

    python benchmarks/compare_codec.py [DATA_DIR] [--repeat N] [--profile]

DATA_DIR holds binance_1s_depth100.num.ndjson.gz (default: ../shared/data/binance from
the repository root). Prints markdown: bytes per 100-level-a-side snapshot (every 30th
snapshot of each series, so rows are not near-copies), then speed, and how close
"encode + store" and "read + decode" come to their limits (plain zstd + apsw doing the
same I/O with no modelling), over all snapshots in an apsw WAL file, 1000 rows a commit.
"""

import argparse
import cProfile
import gc
import gzip
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
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
    parser.add_argument("--repeat", type=int, default=3, help="speed runs; the best counts")
    parser.add_argument("--profile", action="store_true", help="also profile encode and decode")
    args = parser.parse_args()
    books = load(args.data / DEPTH_100)
    gc.collect()
    gc.freeze()  # the 590k loaded levels would otherwise make every collection slow
    sample = every_nth(books, 30)
    print(f"# Book codec on {len(sample)} of {len(books)} snapshots ({args.data / DEPTH_100})\n")
    print_sizes(sample, books)
    print_speed(books, args.repeat)
    if args.profile:
        profile(books)


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
    return raw_encode((book["bids"], book["asks"]))


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


# --- speed -------------------------------------------------------------------------------


def print_speed(books: list[Book], repeat: int) -> None:
    """Times each task on chunks of BATCH rows, the tasks interleaved, best of `repeat`.

    Interleaving and keeping each chunk's best time make the ratios robust to other
    processes stealing the CPU now and then (2-core machines, tests running).
    """
    keys = series_keys(books)
    order = sorted(range(len(books)), key=keys.__getitem__)  # a chunk is then one key range
    books, keys = [books[i] for i in order], [keys[i] for i in order]
    sides = [(b["bids"], b["asks"]) for b in books]
    packed = [msgspec.msgpack.encode(side) for side in sides]
    encoded = [codec.encode(*side) for side in sides]
    raw_blobs = [raw_encode(side) for side in sides]
    chunks = [range(i, min(i + BATCH, len(books))) for i in range(0, len(books), BATCH)]
    tasks: dict[str, Callable[[range, Any], object]] = {
        "SCALED encode": lambda c, _: each(c, lambda i: codec.encode(*sides[i])),
        "SCALED decode": lambda c, _: each(c, lambda i: codec.decode(*encoded[i])),
        "RAW encode (float lists -> zstd-3 msgpack)": lambda c, _: each(
            c, lambda i: raw_encode(sides[i])
        ),
        "RAW decode (incl. its zstd decompress)": lambda c, _: each(
            c, lambda i: codec.decode(codec.RAW, raw_blobs[i])
        ),
        STORE: lambda c, db: insert(db, [(*keys[i], *codec.encode(*sides[i])) for i in c]),
        STORE_LIMIT: lambda c, db: insert(
            db, [limit_row(keys[i], packed[i], encoded[i]) for i in c]
        ),
        READ: lambda c, db: read(db, keys[c.start], keys[c.stop - 1], codec.decode),
        READ_LIMIT: lambda c, db: read(db, keys[c.start], keys[c.stop - 1], decompress_only),
    }
    seconds = {name: [float("inf")] * len(chunks) for name in tasks}
    with database(keys, encoded) as reader:
        for _ in range(repeat):
            with database([], []) as ours, database([], []) as limit:
                where = {STORE: ours, STORE_LIMIT: limit, READ: reader, READ_LIMIT: reader}
                for at, chunk in enumerate(chunks):
                    for name, task in tasks.items():
                        start = time.perf_counter()
                        task(chunk, where.get(name))
                        took = time.perf_counter() - start
                        seconds[name][at] = min(seconds[name][at], took)
    print(f"## Speed ({len(books):,} snapshots, best of {repeat})\n")
    print("| what | snapshots/s | us each |\n| --- | ---: | ---: |")
    total = {name: sum(times) for name, times in seconds.items()}
    for name, took in total.items():
        print(f"| {name} | {len(books) / took:,.0f} | {took / len(books) * 1e6:.1f} |")
    print(f"\nencode + store: **{total[STORE_LIMIT] / total[STORE]:.2f}** of the limit; ", end="")
    print(f"read + decode: **{total[READ_LIMIT] / total[READ]:.2f}** of the limit (1 = as fast).\n")


STORE = "encode + store (apsw WAL, 1000 rows a commit)"
STORE_LIMIT = "limit: zstd-3 of msgpack + INSERT of the same blobs"
READ = "read + decode (apsw SELECT of a key range)"
READ_LIMIT = "limit: SELECT + zstd-decompress of the blobs' frames"


def series_keys(books: list[Book]) -> list[tuple[int, int]]:
    ids: dict[tuple[str, str], int] = {}
    return [(ids.setdefault((b["exchange"], b["symbol"]), len(ids)), b["ts"]) for b in books]


_zstd3 = zstandard.ZstdCompressor(level=3)


def raw_encode(side: tuple[list[Any], list[Any]]) -> bytes:
    return _zstd3.compress(msgspec.msgpack.encode(side))


def each(chunk: range, run: Callable[[int], object]) -> None:
    """Run on each index, keeping no result (kept results would slow the GC down)."""
    for i in chunk:
        run(i)


def limit_row(
    key: tuple[int, int], packed: bytes, encoded: tuple[int, bytes]
) -> tuple[int, int, int, bytes]:
    """The writer's floor: zstd of ready msgpack bytes, then a row as large as SCALED's."""
    _zstd3.compress(packed)
    return (*key, *encoded)


def insert(connection: apsw.Connection, rows: list[tuple[int, int, int, bytes]]) -> None:
    with connection:
        connection.executemany("INSERT INTO snapshots VALUES (?, ?, ?, ?)", rows)


class database:  # lower case: used like open()
    """A fresh WAL database in a temp dir, holding `rows`."""

    def __init__(self, keys: list[tuple[int, int]], rows: list[tuple[int, bytes]]) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.connection = apsw.Connection(str(Path(self.tmp.name) / "bench.sqlite"))
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(TABLE)
        with self.connection:
            self.connection.executemany(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?)",
                [(s, t, c, b) for (s, t), (c, b) in zip(keys, rows, strict=False)],
            )

    def __enter__(self) -> apsw.Connection:
        return self.connection

    def __exit__(self, *exc: object) -> None:
        self.connection.close()
        self.tmp.cleanup()


def read(
    connection: apsw.Connection,
    first: tuple[int, int],
    last: tuple[int, int],
    decode: Callable[[int, bytes], object],
) -> None:
    query = (
        "SELECT codec, book FROM snapshots "
        "WHERE (series, ts) >= (?, ?) AND (series, ts) <= (?, ?) ORDER BY series, ts"
    )
    for codec_id, blob in connection.execute(query, (*first, *last)):
        decode(codec_id, blob)


_decompressor = zstandard.ZstdDecompressor()
_header = msgspec.msgpack.Decoder()


def decompress_only(codec_id: int, blob: bytes) -> None:
    """The reader's floor: find the blob's zstd frames and decompress them, nothing more."""
    fields = _header.decode(blob)  # docs/FORMAT.md: [flags, n_bids, n_asks, ..., rice, ...]
    n_bids, n_asks, rice, steps, sizes = fields[1], fields[2], fields[9], fields[10], fields[11]
    if len(sizes) < n_bids + n_asks:  # else stored as is
        _decompressor.decompress(b"\x28\xb5\x2f\xfd" + sizes)
    if rice == -1 and len(steps) < max(n_bids - 1, 0) + max(n_asks - 1, 0):
        _decompressor.decompress(b"\x28\xb5\x2f\xfd" + steps)


# --- profile -----------------------------------------------------------------------------


def profile(books: list[Book]) -> None:
    sides = [(b["bids"], b["asks"]) for b in books]
    encoded = [codec.encode(*side) for side in sides]
    for name, run in [
        ("encode", lambda: [codec.encode(*side) for side in sides]),
        ("decode", lambda: [codec.decode(*pair) for pair in encoded]),
    ]:
        print(f"## Profile: {name}\n\n```")
        profiler = cProfile.Profile()
        profiler.runcall(run)
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)
        print("```\n")


if __name__ == "__main__":
    main()
