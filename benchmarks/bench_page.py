"""The status page's JSON calls for a 30-day range, against the real daemon on loopback.
Prints markdown.

    python benchmarks/bench_page.py [--coins 4] [--days 30] [--db PATH] [--repeat 15]

Builds (once; reused while `--db` exists with the same shape) a file of `--coins` sim
coins at 1 s over `--days` days (4 x 30 d = 10.4 M snapshot rows, ~6 GB), each row with
its summary columns and a real 100-level SCALED blob (the same bytes in every row: the
codec is not what this measures, the pages are), a 1-minute `disconnected` gap every
6 h and a 2-hour `daemon_down` gap in the middle. Then starts `obd run` on it (the coins
stay active, so it collects them at 1 s meanwhile) and times, sequentially, each call
the page makes for a 30-day view, median and p95 of `--repeat`:

- `/v1/coverage/grid?bucket=1d` (the heat-map row, one a coin) and `bucket=1h` (720
  buckets: the 7-day view's shape over 30 days);
- `/v1/summary?every=1h` (the mid/spread chart: 720 rows);
- `/v1/books/latest` (the depth chart's first book);
- baselines in the same run: `/healthz` (an HTTP round trip that reads nothing) and
  `/v1/coverage` over the same 30 days, which counts the rows (what the grid avoids);
- `/v1/coins` (the table: it counts each coin's rows; per-series stats are the storage
  layer's to add), reported, not part of the page's range calls.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apsw
import httpx

from obd.model import Book, GapReason
from obd.storage import codec, coins
from obd.storage.connect import open_writer
from obd.storage.schema import migrate
from obd.storage.summary import summarize
from obd.storage.writer import record_gap

DAY = 86_400_000
HOUR = 3_600_000
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT"]


def _book(depth: int = 100) -> Book:
    bids = [(50_000.0 - i * 0.5, 0.1 + (i * 37 % 11) * 0.013) for i in range(depth)]
    asks = [(50_000.5 + i * 0.5, 0.1 + (i * 53 % 13) * 0.011) for i in range(depth)]
    return Book(bids, asks)


def build(path: Path, n_coins: int, days: int) -> int:
    """The file; returns the number of snapshot rows."""
    if path.exists():
        path.unlink()
    end = time.time_ns() // 1_000_000 // 1000 * 1000
    start = end - days * DAY
    book = _book()
    codec_id, blob = codec.encode(book.bids, book.asks)
    summary = summarize(book.bids, book.asks)
    conn = open_writer(path)
    migrate(conn, start - 1)
    rows = 0
    for n in range(n_coins):
        want = coins.CoinRequest("sim", SYMBOLS[n], 1000, "1s", 100, True, 0.01, 1e-5)
        with conn:
            coin, _ = coins.add_coin(conn, want, start - 1)
        for day in range(days):
            low = start + day * DAY
            with conn:
                conn.execute(
                    "WITH RECURSIVE k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k "
                    "WHERE n < 86399) "
                    "INSERT INTO snapshots (series, ts, exchange_ts, received_ts, capture, "
                    "bid_levels, ask_levels, best_bid, best_ask, mid, spread_bps, bid_size_10, "
                    "ask_size_10, imbalance_10, crossed, codec, book) "
                    "SELECT ?1, ?2 + n * 1000, ?2 + n * 1000 - 7, ?2 + n * 1000 - 3, "
                    "'synthetic', ?3, ?4, ?5 + (n % 977) * 0.01, ?6 + (n % 977) * 0.01, "
                    "?7 + (n % 977) * 0.01, ?8 + (n % 13) * 0.001, ?9, ?10, ?11, 0, ?12, ?13 "
                    "FROM k",
                    (
                        coin.id,
                        low,
                        summary.bid_levels,
                        summary.ask_levels,
                        summary.best_bid,
                        summary.best_ask,
                        summary.mid,
                        summary.spread_bps,
                        summary.bid_size_10,
                        summary.ask_size_10,
                        summary.imbalance_10,
                        codec_id,
                        blob,
                    ),
                )
                rows += 86_400
                for hole in range(low + 6 * HOUR, low + DAY, 6 * HOUR):
                    rows -= _gap(conn, coin.id, hole, hole + 60_000, "disconnected")
                if n == 0 and day == days // 2:
                    rows -= _gap(conn, coin.id, low + HOUR, low + 3 * HOUR, "daemon_down")
            print(f"  coin {n + 1}/{n_coins}, day {day + 1}/{days}", end="\r", file=sys.stderr)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print(file=sys.stderr)
    return rows


def _gap(conn: apsw.Connection, coin_id: int, start: int, end: int, reason: GapReason) -> int:
    conn.execute(
        "DELETE FROM snapshots WHERE series = ? AND ts >= ? AND ts < ?", (coin_id, start, end)
    )
    record_gap(conn, coin_id, start, end, reason)
    return (end - start) // 1000


class Daemon:
    def __init__(self, database: Path, directory: Path) -> None:
        config = directory / "config.toml"
        plugins = Path(__file__).resolve().parent.parent / "plugins.d"
        config.write_text(
            f'[server]\nport = 0\n[storage]\npath = "{database}"\n'
            f"[plugins]\ndirs = [{json.dumps(str(plugins))}]\nentry_points = false\n"
        )
        command = [sys.executable, "-m", "obd", "run", "--config", str(config)]
        env = {**os.environ, "OBD_LOG_LEVEL": "info"}
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stderr is not None
        lines = []
        for line in self.process.stderr:
            lines.append(line)
            if '"serving"' in line:
                self.url = str(json.loads(line)["url"])
                return
        raise RuntimeError(f"obd run exited before serving: {''.join(lines)[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def timed(http: httpx.Client, path: str, params: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        answer = http.get(path, params=params)
        times.append((time.perf_counter() - began) * 1000)
        answer.raise_for_status()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coins", type=int, default=4)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "obd-page.db")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    shape = args.db.with_suffix(".shape")
    want = f"{args.coins} {args.days}"
    if args.rebuild or not args.db.exists() or not shape.exists() or shape.read_text() != want:
        began = time.perf_counter()
        rows = build(args.db, args.coins, args.days)
        shape.write_text(want)
        print(f"built {rows:,} rows in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    size = args.db.stat().st_size
    with tempfile.TemporaryDirectory() as directory:
        daemon = Daemon(args.db, Path(directory))
        try:
            report(daemon.url, args, size)
        finally:
            daemon.stop()


def report(url: str, args: argparse.Namespace, size: int) -> None:
    coin = {"exchange": "sim", "symbol": SYMBOLS[0]}
    month = {**coin, "start": f"-{args.days}d", "end": "now"}
    calls = [
        ("`/healthz` (baseline: reads nothing)", "/healthz", {}),
        (
            f"`/v1/coverage/grid` {args.days} d, `bucket=1d`",
            "/v1/coverage/grid",
            {**month, "bucket": "1d"},
        ),
        (
            f"`/v1/coverage/grid` {args.days} d, `bucket=1h`",
            "/v1/coverage/grid",
            {**month, "bucket": "1h"},
        ),
        (f"`/v1/summary` {args.days} d, `every=1h`", "/v1/summary", {**month, "every": "1h"}),
        ("`/v1/books/latest`", "/v1/books/latest", coin),
        (f"`/v1/coverage` {args.days} d (baseline: counts rows)", "/v1/coverage", month),
        ("`/v1/coins` (counts every coin's rows)", "/v1/coins", {}),
    ]
    print(
        f"{args.coins} coins x {args.days} d at 1 s, {size / 1e9:.1f} GB file, "
        f"{args.repeat} sequential calls each, after one warm-up\n"
    )
    print("| call | median ms | p95 ms | vs /healthz |")
    print("| --- | ---: | ---: | ---: |")
    with httpx.Client(base_url=url, timeout=120) as http:
        base = None
        for label, path, params in calls:
            timed(http, path, params, 1)  # warm the page cache and the reader threads
            times = timed(http, path, params, args.repeat if "coins" not in path else 3)
            median = statistics.median(times)
            p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
            base = base or median
            print(f"| {label} | {median:.1f} | {p95:.1f} | {median / base:.1f}x |")


if __name__ == "__main__":
    main()
