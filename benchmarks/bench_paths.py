"""Each data path of obd beside its limit, measured in the same process (issue 14).

    python benchmarks/bench_paths.py [--data DIR] [--snapshots 20000] [--repeat 5]
                                     [--only write,read,to_numpy,export]

Books: the real 100-level Binance books of DIR/binance_1s_depth100.num.ndjson.gz
(default ../shared/data/binance from the repository root; tests/data's slice if that is
missing), cycled over one coin at 1 s. Every figure is snapshots/s, the median of
`--repeat` runs, the path and its limit interleaved; the ratio is path / limit.

- write: obd's real write path (`writer._write_batch`: encode, summary columns,
  INSERT into the obd schema, in transactions of `--batch` rows) vs zstd-3 of msgpack
  [bids, asks] + INSERT into a bare (series, ts, book) table, same batches, same pragmas.
- read: `reader.book_pages` (Snapshots, 512 a query) vs SELECT of the same columns from
  a table of zstd-3 msgpack blobs + decompress + msgspec decode into the same Snapshots.
- to_numpy: `obd.research` `Dataset.to_numpy` vs pyarrow reading the same snapshots from
  a Parquet file (zstd, list<float64> columns, 1,024-row groups) into the same dense
  float64 arrays.
- export: `obd export --format parquet` (`export.run`) vs that same pyarrow read.

Which codec core runs is printed first (`OBD_CODEC=python` measures the reference).

Adding a section (the growth section of benchmarks/bench_growth.py, say): a function
`(Context) -> list[Row]` in `SECTIONS`; or a module `benchmarks/bench_growth.py` with
`section(ctx)` returning the same rows, which `--only growth` picks up by name.
"""

import argparse
import gzip
import importlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import zstandard

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from obd import research  # noqa: E402
from obd.model import Book, Snapshot  # noqa: E402
from obd.research import export  # noqa: E402
from obd.storage import codec, coins, reader, schema, writer  # noqa: E402
from obd.storage.connect import open_reader, open_writer  # noqa: E402

DEPTH_100 = "binance_1s_depth100.num.ndjson.gz"
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z
PAGE = 512  # snapshots a read query, both sides
Levels = list[tuple[float, float]]


class Row(msgspec.Struct):
    """One printed line: a path, its limit and the target ratio."""

    section: str
    path: str
    rate: float  # snapshots/s
    limit: str
    limit_rate: float
    target: float

    @property
    def ratio(self) -> float:
        return self.rate / self.limit_rate


class Context(msgspec.Struct):
    work: Path
    books: list[tuple[Levels, Levels]]
    snapshots: int
    repeat: int
    batch: int
    cache: dict[str, Any] = msgspec.field(default_factory=dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/binance")
    parser.add_argument("--snapshots", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100, help="rows a write transaction")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    args = parser.parse_args()
    books = load_books(args.data)
    work = Path(tempfile.mkdtemp(prefix="obd-bench-paths-"))
    ctx = Context(work, books, args.snapshots, args.repeat, args.batch)
    print(f"codec core: {codec.CORE}; {len(books)} real books cycled over {args.snapshots:,}")
    print(f"snapshots; median of {args.repeat}, path and limit interleaved\n")
    print("| path | snapshots/s | limit | snapshots/s | ratio | target |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    try:
        for name in args.only.split(","):
            for row in section(name)(ctx):
                print(
                    f"| {row.path} | {row.rate:,.0f} | {row.limit} | {row.limit_rate:,.0f} "
                    f"| {row.ratio:.2f} | >= {row.target} |",
                    flush=True,
                )
    finally:
        shutil.rmtree(work)


def load_books(data: Path) -> list[tuple[Levels, Levels]]:
    path = data / DEPTH_100
    if not path.exists():
        path = REPO / "tests" / "data" / "binance_depth100_every15.ndjson.gz"
    with gzip.open(path, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    return [([tuple(x) for x in r["bids"]], [tuple(x) for x in r["asks"]]) for r in rows]


def section(name: str) -> Callable[[Context], list[Row]]:
    if name in SECTIONS:
        return SECTIONS[name]
    module = importlib.import_module(f"bench_{name}")  # benchmarks/bench_<name>.py
    found: Callable[[Context], list[Row]] = module.section
    return found


def interleaved(repeat: int, *runs: Callable[[], int]) -> list[float]:
    """Median snapshots/s of each run, the runs taking turns."""
    rates: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for rate, run in zip(rates, runs, strict=True):
            started = time.perf_counter()
            done = run()
            rate.append(done / (time.perf_counter() - started))
    return [statistics.median(rate) for rate in rates]


# --- write -----------------------------------------------------------------------------------


def bench_write(ctx: Context) -> list[Row]:
    n = min(ctx.snapshots, 10_000)
    obd_conn = open_writer(ctx.work / "write-obd.sqlite")
    schema.migrate(obd_conn, 0)
    with obd_conn:
        request = coins.CoinRequest("sim", "BTC/USDT", 1_000, "1s", 100, False)
        coin, _ = coins.add_coin(obd_conn, request, now=0)
    bare = open_writer(ctx.work / "write-bare.sqlite")
    bare.execute(
        "CREATE TABLE snapshots (series INTEGER, ts INTEGER, book BLOB, "
        "PRIMARY KEY (series, ts)) WITHOUT ROWID"
    )
    packer = msgspec.msgpack.Encoder()
    compressor = zstandard.ZstdCompressor(level=3)
    rounds = iter(range(1, 1_000))

    def books(start: int) -> Iterator[tuple[int, Book]]:
        for i in range(n):
            bids, asks = ctx.books[i % len(ctx.books)]
            yield start + i * 1_000, Book(bids, asks, exchange_ts=start + i * 1_000 - 7)

    def obd_path() -> int:
        start = T0 + next(rounds) * n * 1_000
        rows = [writer.SnapshotIn(coin, ts, book, ts + 3, "ws") for ts, book in books(start)]
        for at in range(0, n, ctx.batch):
            writer._write_batch(obd_conn, rows[at : at + ctx.batch])  # type: ignore[arg-type]
        return n

    def limit() -> int:
        start = T0 + next(rounds) * n * 1_000
        rows = list(books(start))
        for at in range(0, n, ctx.batch):
            with bare:
                for ts, book in rows[at : at + ctx.batch]:
                    blob = compressor.compress(packer.encode((book.bids, book.asks)))
                    bare.execute("INSERT INTO snapshots VALUES (1, ?, ?)", (ts, blob))
        return n

    rate, limit_rate = interleaved(ctx.repeat, obd_path, limit)
    obd_conn.close()
    bare.close()
    return [
        Row(
            "write",
            "obd write path (encode + summary + INSERT)",
            rate,
            "zstd-3 msgpack + bare INSERT",
            limit_rate,
            0.5,
        )
    ]


# --- read --------------------------------------------------------------------------------


def database(ctx: Context) -> Path:
    """An obd file of `snapshots` real books, one coin at 1 s (built once)."""
    if "database" not in ctx.cache:
        path = ctx.work / "obd.sqlite"
        conn = open_writer(path)
        schema.migrate(conn, 0)
        with conn:
            request = coins.CoinRequest("sim", "BTC/USDT", 1_000, "1s", 100, False)
            coin, _ = coins.add_coin(conn, request, now=0)
        rows = [
            writer.SnapshotIn(coin, T0 + i * 1_000, Book(*ctx.books[i % len(ctx.books)]), 0, "ws")
            for i in range(ctx.snapshots)
        ]
        for at in range(0, len(rows), 1_000):
            writer._write_batch(conn, rows[at : at + 1_000])  # type: ignore[arg-type]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        ctx.cache["database"] = path
    path: Path = ctx.cache["database"]
    return path


def bench_read(ctx: Context) -> list[Row]:
    path = database(ctx)
    conn = open_reader(path)
    coin = reader.coins(conn)[0]
    end = T0 + ctx.snapshots * 1_000
    # The limit's table: the same rows, each book zstd-3 of msgpack [bids, asks].
    bare_path = ctx.work / "read-bare.sqlite"
    bare = open_writer(bare_path)
    bare.execute(
        "CREATE TABLE snapshots (series INTEGER, ts INTEGER, exchange_ts INTEGER, "
        "received_ts INTEGER, capture TEXT, seq INTEGER, book BLOB, "
        "PRIMARY KEY (series, ts)) WITHOUT ROWID"
    )
    compressor = zstandard.ZstdCompressor(level=3)
    packer = msgspec.msgpack.Encoder()
    with bare:
        for snapshots in reader.book_pages(conn, coin, T0, end, 1_000):
            for s in snapshots:
                blob = compressor.compress(packer.encode((s.bids, s.asks)))
                bare.execute(
                    "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (coin.id, s.ts, s.exchange_ts, s.received_ts, s.capture, s.seq, blob),
                )
    bare.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    decompressor = zstandard.ZstdDecompressor()
    unpack = msgspec.msgpack.Decoder(tuple[Levels, Levels]).decode

    def obd_path() -> int:
        return sum(len(page) for page in reader.book_pages(conn, coin, T0, end, PAGE))

    def limit_page(low: int) -> list[Snapshot]:
        rows = bare.execute(
            "SELECT ts, exchange_ts, received_ts, capture, seq, book FROM snapshots "
            "WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?",
            (coin.id, low, end, PAGE),
        ).fetchall()
        out = []
        for ts, exchange_ts, received_ts, capture, seq, blob in rows:
            bids, asks = unpack(decompressor.decompress(blob))
            out.append(
                Snapshot("sim", "BTC/USDT", ts, exchange_ts, received_ts, bids, asks, capture, seq)
            )
        return out

    def limit() -> int:
        pages = reader.pages(limit_page, T0, end, PAGE, lambda s: s.ts)
        return sum(len(page) for page in pages)

    got = [s for page in reader.book_pages(conn, coin, T0, T0 + 50_000, PAGE) for s in page]
    assert got == limit_page(T0)[:50], "the limit must give the same output"
    rate, limit_rate = interleaved(ctx.repeat, obd_path, limit)
    conn.close()
    bare.close()
    return [
        Row(
            "read",
            "reader.books (Snapshots)",
            rate,
            "SELECT + zstd + msgspec into Snapshots",
            limit_rate,
            0.5,
        )
    ]


# --- to_numpy and export -----------------------------------------------------------------


def parquet(ctx: Context) -> Path:
    """The same snapshots as one Parquet file (pyarrow, zstd), built once."""
    if "parquet" in ctx.cache:
        found: Path = ctx.cache["parquet"]
        return found
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = ctx.work / "limit.parquet"
    with research.open(database(ctx)) as dataset:
        arrays = dataset.to_numpy("sim", "BTC/USDT", levels=100)
    n, depth = len(arrays.ts), 100
    offsets = pa.array(np.arange(0, (n + 1) * depth, depth, dtype=np.int32))
    columns = {"ts": pa.array(arrays.ts)}
    for side, books in (("bid", arrays.bids), ("ask", arrays.asks)):
        for at, name in enumerate(("price", "size")):
            values = np.ascontiguousarray(books[..., at]).reshape(-1)
            columns[f"{side}_{name}"] = pa.ListArray.from_arrays(offsets, pa.array(values))
    table = pa.table(columns)  # written as `obd export` writes it: zstd, no dictionary
    pq.write_table(table, path, compression="zstd", row_group_size=1_024, use_dictionary=["ts"])
    ctx.cache["parquet"] = path
    return path


def pyarrow_read(path: Path) -> int:
    """pyarrow: the Parquet snapshots into dense (T, 100, 2) float64 arrays, as to_numpy."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    ts = table.column("ts").to_numpy()
    n, depth = len(ts), 100
    dense = {}
    for side in ("bid", "ask"):
        books = np.empty((n, depth, 2))
        for at, name in enumerate(("price", "size")):
            column = table.column(f"{side}_{name}").combine_chunks()
            books[..., at] = column.flatten().to_numpy().reshape(n, depth)
        dense[side] = books
    return n


def bench_to_numpy(ctx: Context) -> list[Row]:
    path, limit = database(ctx), parquet(ctx)

    def obd_path() -> int:
        with research.open(path) as dataset:
            return len(dataset.to_numpy("sim", "BTC/USDT", levels=100).ts)

    rate, limit_rate = interleaved(ctx.repeat, obd_path, lambda: pyarrow_read(limit))
    return [
        Row(
            "to_numpy",
            "Dataset.to_numpy",
            rate,
            "pyarrow: Parquet into NumPy",
            limit_rate,
            0.25,
        )
    ]


def bench_export(ctx: Context) -> list[Row]:
    path, limit = database(ctx), parquet(ctx)
    runs = iter(range(1_000))

    def obd_path() -> int:
        return export.run(path, ctx.work / f"export-{next(runs)}", "parquet").snapshots

    rate, limit_rate = interleaved(ctx.repeat, obd_path, lambda: pyarrow_read(limit))
    return [
        Row(
            "export",
            "obd export --format parquet",
            rate,
            "pyarrow: Parquet into NumPy",
            limit_rate,
            0.25,
        )
    ]


SECTIONS: dict[str, Callable[[Context], list[Row]]] = {
    "write": bench_write,
    "read": bench_read,
    "to_numpy": bench_to_numpy,
    "export": bench_export,
}


if __name__ == "__main__":
    main()
