"""Costs that must not grow with the file (issue 14, items 3 and 5).

growth: builds a small (50 coins x 300 rows, 15 k) and a big database (50 coins x
`--per-coin` rows, default 210,240: two years at 5 minutes, 10.5 M rows) of real
Binance books (depth 100, /work/shared/data/binance, timestamps shifted so the last row
is now), by direct bulk inserts of pre-encoded blobs into the schema-4 tables (the
triggers keep the counts, as for any write). On each it times, with a real daemon (the
50 coins configured, sim exchange patched to list them, at 5 minutes):
  - start-to-ready: `obd run` spawned until it logs `serving` (and without coins);
  - `GET /v1/coins`;
  - a 1-day `GET /v1/books` (288 snapshots, limit 1000) of one coin;
warm (median of repeats) and cold (the db and wal files evicted from the page cache
with posix_fadvise(DONTNEED) before each request; the daemon's own SQLite page cache
is not touched), and prints big / small (target <= 1.2).

layout: file size over payload (blob bytes + summary row bytes, dbstat) at depth 100
and 1000, 50 coins written slot by slot through obd's real write path
(`writer.insert_snapshot`), against the schema-3 layout (one WITHOUT ROWID table) fed
the same books; write rows/s and a 1-day `reader.books` read of each, same process.

    python benchmarks/bench_growth.py [--dir /tmp/obd-growth] [--reuse] [--keep]
        [--per-coin 210240] [--repeat 5] [--rounds 3] [--only growth|layout|migration]

`--reuse` keeps an existing big file in `--dir` (building 10.5 M rows takes minutes and
~6 GB); without `--keep` the directory is deleted at the end.
"""

import argparse
import gzip
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import msgspec
import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from obd.model import Book, Coin  # noqa: E402
from obd.storage import codec, reader, schema  # noqa: E402
from obd.storage.connect import open_writer  # noqa: E402
from obd.storage.summary import summarize  # noqa: E402
from obd.storage.writer import SnapshotIn, insert_snapshot  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance"
COINS = 50
INTERVAL_MS = 300_000
DAY_MS = 86_400_000
SMALL_PER_COIN = 300
_ROW_COLUMNS = (
    "series, ts, exchange_ts, received_ts, capture, bid_levels, ask_levels, best_bid, "
    "best_ask, mid, spread_bps, bid_size_10, ask_size_10, imbalance_10, crossed, codec, book, seq"
)


def _store(conn: apsw.Connection, table: str, values: tuple[Any, ...], blob: bytes) -> None:
    """One row as obd stores it: the blob inline, or (schema 4, over 2 KB) in `books`."""
    values = (*values[:-1], blob, values[-1])
    if table == "snapshot_rows" and len(blob) > schema.INLINE_BOOK_BYTES:
        values = (*values[:-2], b"", values[-1])
    conn.execute(
        f"INSERT OR IGNORE INTO {table} ({_ROW_COLUMNS}) VALUES ({', '.join('?' * 18)})", values
    )
    if table == "snapshot_rows" and conn.changes() == 1 and not values[-2]:
        conn.execute(
            "INSERT INTO books (id, book) VALUES (?, ?)", (schema.book_key(*values[:2]), blob)
        )


def load_books(depth: int, every: int = 1) -> list[Book]:
    if depth == 100:
        text: Any = gzip.open(DATA / "binance_1s_depth100.num.ndjson.gz", "rt")  # noqa: SIM115
    else:
        raw = (DATA / "binance_1s_depth1000.num.ndjson.zst").open("rb")
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw))
    books = []
    with text:
        for index, line in enumerate(text):
            if index % every:
                continue
            row = json.loads(line)
            books.append(
                Book(
                    bids=[(float(p), float(s)) for p, s in row["bids"]],
                    asks=[(float(p), float(s)) for p, s in row["asks"]],
                    exchange_ts=row["ts"],
                )
            )
    return books


# -- building a database by bulk insert ----------------------------------------------


def build(
    path: Path, per_coin: int, encoded: list[tuple[Any, ...]], end_ms: int, version: int = 0
) -> None:
    """50 coins of `per_coin` rows each at 5 minutes, the last slot before `end_ms`."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {schema.PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode = OFF")  # a scratch build: WAL is switched on at the end
    conn.execute("PRAGMA synchronous = OFF")
    if version:  # an older obd's file: its DDL, its table
        with conn:
            for step in schema.MIGRATIONS[:version]:
                conn.execute(step)
            conn.execute(f"PRAGMA user_version = {version}")
    else:
        schema.migrate(conn, 0)
    table = "snapshots" if version and version < 4 else "snapshot_rows"
    last = end_ms // INTERVAL_MS * INTERVAL_MS - INTERVAL_MS
    first = last - (per_coin - 1) * INTERVAL_MS
    began = time.perf_counter()
    with conn:
        for coin in range(COINS):
            conn.execute(
                "INSERT INTO series (id, exchange, symbol, interval_ms, interval, depth, "
                "active, synthetic, added_ts) VALUES (?, 'sim', ?, ?, '5m', 100, 1, 1, ?)",
                (coin + 1, f"C{coin}/USDT", INTERVAL_MS, first - 1),
            )
    for coin in range(1, COINS + 1):
        with conn:
            for k in range(per_coin):
                ts = first + k * INTERVAL_MS
                summary, codec_id, blob = encoded[(coin * 7 + k) % len(encoded)]
                row = (coin, ts, ts - 40, ts - 3, "ws", *summary, codec_id, k)
                _store(conn, table, row, blob)
        if coin % 10 == 0:
            done = coin * per_coin
            rate = done / (time.perf_counter() - began)
            print(f"    built {done:,} rows ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def encode_all(books: list[Book]) -> list[tuple[Any, ...]]:
    out = []
    for book in books:
        codec_id, blob = codec.encode(book.bids, book.asks)
        out.append((msgspec.structs.astuple(summarize(book.bids, book.asks)), codec_id, blob))
    return out


# -- the daemon ------------------------------------------------------------------------


def sim_plugin_dir(directory: Path) -> Path:
    """The sim plugin, listing C0/USDT..C49/USDT besides its own symbols."""
    plugins = directory / "plugins"
    plugins.mkdir(exist_ok=True)
    source = (ROOT / "plugins.d" / "sim.py").read_text()
    extra = "".join(
        f'    "C{i}/USDT": _Listing(100.0, "0.01", "0.001", 0.05, 10.0, _WIDE, 0.1),\n'
        for i in range(COINS)
    )
    anchor = '    "LTC/USDT": _Listing('
    at = source.index("\n", source.index(anchor)) + 1
    (plugins / "sim.py").write_text(source[:at] + extra + source[at:])
    return plugins


def write_config(directory: Path, database: Path, plugins: Path, coins: bool) -> Path:
    entries = "".join(
        f'[[coins]]\nexchange = "sim"\nsymbol = "C{i}/USDT"\ninterval = "5m"\ndepth = 100\n'
        for i in range(COINS if coins else 0)
    )
    config = directory / f"config-{database.stem}-{int(coins)}.toml"
    config.write_text(
        f"""
[server]
port = 0
[storage]
path = "{database}"
[plugins]
dirs = ["{plugins}"]
entry_points = false
[exchanges.sim]
update_ms = 60000
{entries}
"""
    )
    return config


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self.started = time.perf_counter()
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "obd", "run", "--config", str(config)],
                stderr=sink,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "OBD_LOG_LEVEL": "info"},
                cwd=ROOT,
            )
        self.url, self.ready_s = self._wait()
        self.http = httpx.Client(base_url=self.url, timeout=120)

    def _wait(self) -> tuple[str, float]:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if '"serving"' in line:
                    event = json.loads(line)
                    return str(event["url"]), time.perf_counter() - self.started
            if self.process.poll() is not None:
                raise RuntimeError(f"obd run exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.005)
        raise RuntimeError("obd run did not start")

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(timeout=60)


def evict(database: Path) -> None:
    for suffix in ("", "-wal"):
        path = Path(f"{database}{suffix}")
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(fn: Callable[[], Any], repeat: int, before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _requests(http: httpx.Client, end_ms: int, coin: int = 3) -> dict[str, Callable[[], None]]:
    last = end_ms // INTERVAL_MS * INTERVAL_MS - INTERVAL_MS
    day = {
        "exchange": "sim",
        "symbol": f"C{coin}/USDT",
        "start": last - DAY_MS + INTERVAL_MS,
        "end": last + 1,
        "limit": 1000,
    }

    def coins() -> None:
        assert len(http.get("/v1/coins").raise_for_status().json()["items"]) == COINS

    def books() -> None:
        items = http.get("/v1/books", params=day).raise_for_status().json()["items"]
        assert len(items) == DAY_MS // INTERVAL_MS, len(items)

    return {"coins": coins, "books": books}


def measure(
    directory: Path, files: dict[str, tuple[Path, int]], plugins: Path, repeat: int
) -> dict[str, dict[str, float]]:
    """Each figure for each file, the files taking turns (the machine's load drifts: a
    ratio of figures measured minutes apart would measure the drift)."""
    configs = {
        name: write_config(directory, path, plugins, coins=True)
        for name, (path, _) in files.items()
    }
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in files}

    def add(name: str, key: str, seconds: float) -> None:
        samples[name].setdefault(key, []).append(seconds)

    for _ in range(repeat):  # start-to-ready: warm, then with the file evicted
        for name, (path, _) in files.items():
            for key, cold in (("ready_warm", False), ("ready_cold", True)):
                if cold:
                    evict(path)
                daemon = Daemon(configs[name], directory / f"daemon-{name}.log")
                add(name, key, daemon.ready_s)
                daemon.stop()
    daemons = {name: Daemon(configs[name], directory / f"daemon-{name}.log") for name in files}
    try:
        calls = {name: _requests(d.http, files[name][1]) for name, d in daemons.items()}
        for name in files:
            for call in calls[name].values():
                call()  # first touch
        for round_ in range(repeat * 4):
            for name, (path, _) in files.items():
                for what, call in calls[name].items():
                    add(name, f"{what}_warm", timed(call, 1))
                if round_ < repeat:
                    # Another coin each time: the daemon's SQLite page cache (~2 MB a
                    # connection, which eviction cannot reach) has not seen its rows.
                    other = _requests(daemons[name].http, files[name][1], 10 + round_)
                    for what, call in other.items():
                        add(name, f"{what}_cold", timed(call, 1, lambda p=path: evict(p)))
    finally:
        for daemon in daemons.values():
            daemon.stop()
    return {
        name: {key: statistics.median(v) for key, v in found.items()}
        for name, found in samples.items()
    }


def startup_storage(path: Path) -> float:
    """What `obd run` asks of the file before it serves, with the file evicted first:
    the file check, open and migrate, the 50 configured coins added (already there),
    and where each coin's accounted slots end (the collector's start)."""
    from obd.context import check_database_file
    from obd.storage import coins as coin_writes

    evict(path)
    began = time.perf_counter()
    check_database_file(path)
    conn = open_writer(path)
    schema.migrate(conn, 0)
    for i in range(COINS):
        with conn:
            request = coin_writes.CoinRequest("sim", f"C{i}/USDT", INTERVAL_MS, "5m", 100, True)
            coin_writes.add_coin(conn, request, 0)
    for coin in reader.coins(conn):
        reader.accounted_until(conn, coin)
    conn.close()
    return time.perf_counter() - began


def ready_without_coins(directory: Path, database: Path, plugins: Path, repeat: int) -> float:
    config = write_config(directory, database, plugins, coins=False)
    runs = []
    for _ in range(repeat):
        daemon = Daemon(config, directory / "daemon.log")
        runs.append(daemon.ready_s)
        daemon.stop()
    return statistics.median(runs)


def growth(args: argparse.Namespace) -> None:
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    encoded = encode_all(load_books(100, every=30))
    end_ms = int(time.time() * 1000)
    small, big = directory / "small.sqlite", directory / "big.sqlite"
    build(small, SMALL_PER_COIN, encoded, end_ms)
    marker = directory / "big.rows"
    if not (args.reuse and big.exists() and marker.exists()):
        print(f"building {COINS * args.per_coin:,} rows in {big} ...", file=sys.stderr)
        build(big, args.per_coin, encoded, end_ms)
        marker.write_text(f"{COINS * args.per_coin} {end_ms}")
    big_rows, big_end = (int(v) for v in marker.read_text().split())
    plugins = sim_plugin_dir(directory)
    print(
        f"growth: small {COINS * SMALL_PER_COIN:,} rows ({small.stat().st_size / 2**20:,.0f} MiB), "
        f"big {big_rows:,} rows ({big.stat().st_size / 2**30:,.2f} GiB); 50 coins, depth 100, "
        f"5 m; medians of {args.repeat} (cold, start-to-ready) / {args.repeat * 4} (warm)"
    )
    # The small file is rebuilt ending now; the big one ends when it was built: the
    # daemon records the time since as one daemon_down gap a coin, whatever its length.
    files = {"small": (small, end_ms), "big": (big, big_end)}
    results = measure(directory, files, plugins, args.repeat)
    empty = ready_without_coins(directory, small, plugins, args.repeat)
    for name, (path, _) in files.items():
        results[name]["storage_cold"] = statistics.median(
            startup_storage(path) for _ in range(args.repeat)
        )
    names = {
        "coins_warm": "GET /v1/coins, warm",
        "coins_cold": "GET /v1/coins, cold",
        "books_warm": "1-day GET /v1/books, warm",
        "books_cold": "1-day GET /v1/books, cold",
        "ready_warm": "start-to-ready, warm",
        "ready_cold": "start-to-ready, cold",
        "storage_cold": "start-up storage work, cold",
    }
    print(f"  {'':28s} {'small':>10s} {'big':>10s} {'big/small':>10s}  (target <= 1.2)")
    for key, name in names.items():
        a, b = results["small"][key] * 1000, results["big"][key] * 1000
        print(f"  {name:28s} {a:8.1f}ms {b:8.1f}ms {b / a:10.2f}")
    print(f"  {'start-to-ready, no coins':28s} {empty * 1000:8.1f}ms")


# -- layout: file size against payload ---------------------------------------------------


def _v3_insert(conn: apsw.Connection, row: SnapshotIn) -> None:
    """What obd wrote per book before schema 4: encode, summarize, one row with the blob."""
    codec_id, blob = codec.encode(row.book.bids, row.book.asks)
    summary = msgspec.structs.astuple(summarize(row.book.bids, row.book.asks))
    values = (row.coin.id, row.ts, row.book.exchange_ts, row.received_ts, row.capture)
    _store(conn, "snapshots", (*values, *summary, codec_id, row.book.seq), blob)


def _slots(coins: list[Coin], books: list[Book], per_coin: int) -> Iterator[list[SnapshotIn]]:
    for k in range(per_coin):
        ts = 1_700_000_000_000 + k * INTERVAL_MS
        yield [
            SnapshotIn(coin, ts, books[(k * COINS + i) % len(books)], ts - 3, "ws")
            for i, coin in enumerate(coins)
        ]


def _raw_insert(version: int) -> Callable[[apsw.Connection, SnapshotIn, tuple[Any, ...]], None]:
    """SQLite's share of a write: the row of a pre-encoded book, in either layout."""
    table = "snapshot_rows" if version >= 4 else "snapshots"

    def insert(conn: apsw.Connection, row: SnapshotIn, enc: tuple[Any, ...]) -> None:
        summary, codec_id, blob = enc
        values = (row.coin.id, row.ts, row.book.exchange_ts, row.received_ts, row.capture)
        _store(conn, table, (*values, *summary, codec_id, row.book.seq), blob)

    return insert


class LayoutFigures(msgspec.Struct):
    ratio: float  # file size / payload
    write: float  # rows/s, obd's write path (encode included)
    raw_write: float  # rows/s, pre-encoded rows: SQLite's share
    read_ms: float  # a 1-day reader.books (decode included)
    raw_read_ms: float  # the same rows selected, not decoded: SQLite's share


def _layout_file(path: Path, version: int, books: list[Book], per_coin: int) -> LayoutFigures:
    """One layout's figures; the real write path fills the file, pre-encoded rows a copy."""
    figures = LayoutFigures(0, 0, 0, 0, 0)
    encoded = {id(book): enc for book, enc in zip(books, encode_all(books), strict=True)}
    for raw in (False, True):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        conn = open_writer(path)
        with conn:
            for step in schema.MIGRATIONS[:version]:
                conn.execute(step)
            conn.execute(f"PRAGMA user_version = {version}")
            for i in range(COINS):
                conn.execute(
                    "INSERT INTO series (id, exchange, symbol, interval_ms, interval, depth, "
                    "active, synthetic, added_ts) VALUES (?, 'sim', ?, ?, '5m', 1000, 1, 1, 0)",
                    (i + 1, f"C{i}/USDT", INTERVAL_MS),
                )
        coins = reader.coins(conn)
        insert = insert_snapshot if version >= 4 else _v3_insert
        raw_insert = _raw_insert(version)
        began = time.perf_counter()
        for slot in _slots(coins, books, per_coin):
            with conn:  # one commit a slot, as the daemon's writer does under light load
                for row in slot:
                    if raw:
                        raw_insert(conn, row, encoded[id(row.book)])
                    else:
                        insert(conn, row)
        rate = per_coin * COINS / (time.perf_counter() - began)
        if raw:
            figures.raw_write = rate
            conn.close()
            continue
        figures.write = rate
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("CREATE VIRTUAL TABLE temp.stat USING dbstat")
        tables = ("snapshot_rows", "books") if version >= 4 else ("snapshots",)  # dbstat
        payload = sum(
            conn.execute("SELECT sum(payload) FROM temp.stat WHERE name = ?", (t,)).fetchone()[0]
            for t in tables
        )
        figures.ratio = path.stat().st_size / payload
        start = 1_700_000_000_000 + (per_coin // 4) * INTERVAL_MS
        figures.read_ms, figures.raw_read_ms = _read_figures(conn, coins[3], start)
        conn.close()
    return figures


def _median(figures: list[LayoutFigures]) -> LayoutFigures:
    return LayoutFigures(
        *(
            statistics.median(getattr(f, name) for f in figures)
            for name in LayoutFigures.__struct_fields__
        )
    )


def _read_figures(conn: apsw.Connection, coin: Coin, start: int) -> tuple[float, float]:
    """ms of a 1-day `reader.books`, and of selecting the same rows without decoding."""
    decoded = timed(lambda: reader.books(conn, coin, start, start + DAY_MS, 1000), 9)
    select = "SELECT ts, codec, book FROM snapshots WHERE series = ? AND ts >= ? AND ts < ?"
    raw = timed(lambda: conn.execute(select, (coin.id, start, start + DAY_MS)).fetchall(), 9)
    return decoded * 1000, raw * 1000


def layout(args: argparse.Namespace) -> None:
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    print(
        f"layout: 50 coins written slot by slot (one commit a slot), real books; rows/s; "
        f"medians of {args.rounds} rounds"
    )
    print("  and 1-day reads with obd's codec (encode/decode) and without it (SQLite alone)")
    head = ("file/payload", "write", "write raw", "read", "read raw")
    print(f"  {'':22s} " + " ".join(f"{h:>12s}" for h in head))
    for depth, every, per_coin in ((100, 30, 400), (1000, 15, 120)):
        books = load_books(depth, every)
        runs: dict[int, list[LayoutFigures]] = {3: [], schema.SCHEMA_VERSION: []}
        for _ in range(args.rounds):  # the layouts take turns: load drift hits both alike
            for version, found in runs.items():
                found.append(_layout_file(directory / "layout.sqlite", version, books, per_coin))
        found = {version: _median(figures) for version, figures in runs.items()}
        for version, f in found.items():
            name = f"depth {depth}, schema {version}"
            print(
                f"  {name:22s} {f.ratio:12.2f} {f.write:12,.0f} {f.raw_write:12,.0f} "
                f"{f.read_ms:10.1f}ms {f.raw_read_ms:10.2f}ms"
            )
        new, old = found[schema.SCHEMA_VERSION], found[3]
        speed = (
            new.write / old.write,
            new.raw_write / old.raw_write,
            old.read_ms / new.read_ms,
            old.raw_read_ms / new.raw_read_ms,
        )
        print(f"  {'  schema 4 / 3 speed':22s} {'':12s} " + " ".join(f"{v:11.2f}x" for v in speed))


def migration(args: argparse.Namespace) -> None:
    """How long obd's first open of a big schema-3 file takes (its upgrade to schema 4)."""
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "v3.sqlite"
    print(f"building a schema-3 file of {COINS * args.per_coin:,} rows ...", file=sys.stderr)
    build(path, args.per_coin, encode_all(load_books(100, every=30)), int(time.time() * 1000), 3)
    size = path.stat().st_size
    evict(path)
    began = time.perf_counter()
    conn = open_writer(path)
    schema.migrate(conn, 0)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    took = time.perf_counter() - began
    rows = conn.execute("SELECT sum(snapshots) FROM series").fetchone()[0]
    conn.close()
    print(
        f"migration: schema 3 -> {schema.SCHEMA_VERSION} of {rows:,} rows at depth 100 "
        f"({size / 2**30:.2f} GiB, evicted first): {took:.1f} s; file now "
        f"{path.stat().st_size / 2**30:.2f} GiB"
    )
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/obd-growth"))
    parser.add_argument("--per-coin", type=int, default=210_240)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="layout: files built per layout")
    parser.add_argument("--reuse", action="store_true", help="keep an existing big file")
    parser.add_argument("--keep", action="store_true", help="leave the files in --dir")
    parser.add_argument("--only", choices=("growth", "layout", "migration"))
    args = parser.parse_args()
    try:
        if args.only in (None, "layout"):
            layout(args)
        if args.only in (None, "growth"):
            growth(args)
        if args.only == "migration":  # not by default: another big file to build
            migration(args)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
