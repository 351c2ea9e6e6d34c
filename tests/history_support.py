"""Archive test kit: Tardis.dev-format day files made from the Binance replay recording,
a local archive server (stdlib HTTP on 127.0.0.1, in a thread), and an independent
rebuild of the book a file gives at a time, which shares no code with obd's provider.

The day files are generated here, not committed: `incremental_book_L2` rows from the
recording's REST `/depth?limit=1000` answer (a snapshot run) and its `@depth@100ms`
diffs (those after the answer's `lastUpdateId`), with Binance's event time `E` as
`timestamp` and the recorded receive time as `local_timestamp` (never before the
snapshot's: diffs received while the REST answer was in flight are applied after it).
Halfway through, a second snapshot run (the top `RESNAPSHOT_LEVELS` a side of the book
then) starts a new full book, as the archive's files do at reconnections. The data is
Binance's (nkaz001/hftbacktest, MIT: tests/data/README.md).
"""

import asyncio
import csv
import gzip
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from obd.config import load as load_config
from obd.context import open_runtime
from tests.emulator.replay.recording import load

RECORDING = Path(__file__).parent / "data" / "recordings" / "binance.jsonl.zst"
HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
RESNAPSHOT_LEVELS = 400
DAY_MS = 1723075200000  # 2024-08-08T00:00:00Z: the day write_day_file fills by default


def _number(text: str) -> str:
    """Binance's '61837.63000000' as the archive writes it: '61837.63'."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def l2_lines(symbol: str, *, resnapshot_after_s: float = 60.0) -> list[str]:
    """The `incremental_book_L2` file of `symbol` (BTCUSDT or ETHUSDT) as text lines."""
    recording = load(RECORDING)
    answer = next(h for h in recording.http if f"symbol={symbol}&" in h.url)
    depth = json.loads(answer.data)
    snapshot_local = int(answer.ts * 1_000_000)
    lines = [HEADER]
    book: dict[str, dict[str, str]] = {"bid": {}, "ask": {}}

    def snapshot(at_us: int, exchange_us: int, levels: int | None) -> None:
        for side, _key, best_first in (("bid", "bids", True), ("ask", "asks", False)):
            prices = sorted(book[side], key=float, reverse=best_first)[:levels]
            book[side] = {p: book[side][p] for p in prices}
            for price in prices:
                lines.append(
                    f"binance,{symbol},{exchange_us},{at_us},true,{side},{price},{book[side][price]}"
                )

    for side, key in (("bid", "bids"), ("ask", "asks")):
        book[side] = {_number(p): _number(a) for p, a in depth[key]}
    snapshot(snapshot_local, snapshot_local, None)
    resnapshot_at = snapshot_local + int(resnapshot_after_s * 1_000_000)
    for entry in recording.recv:
        if entry.conn != symbol:
            continue
        frame = json.loads(entry.data)["data"]
        if frame["u"] <= depth["lastUpdateId"]:
            continue
        local = max(int(entry.ts * 1_000_000), snapshot_local)
        exchange_us = frame["E"] * 1000
        if resnapshot_at is not None and local > resnapshot_at:
            snapshot(local, exchange_us, RESNAPSHOT_LEVELS)
            resnapshot_at = None
        for side, key in (("bid", "b"), ("ask", "a")):
            for price, amount in frame[key]:
                price, amount = _number(price), _number(amount)
                if amount == "0":
                    book[side].pop(price, None)
                else:
                    book[side][price] = amount
                lines.append(
                    f"binance,{symbol},{exchange_us},{local},false,{side},{price},{amount}"
                )
    return lines


def gz(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


class Rebuilt:
    """The book a file gives at time T, rebuilt plainly: `csv`, a dict a side, every
    row with local_timestamp <= T applied, a snapshot run after other rows clears it."""

    def __init__(self, lines: list[str]) -> None:
        self.rows = list(csv.DictReader(io.StringIO("\n".join(lines))))

    def at(self, slots: list[int], depth: int) -> dict[int, dict[str, Any] | None]:
        """{slot: the book then (None before the first row)}, `slots` ascending."""
        out: dict[int, dict[str, Any] | None] = {}
        bids: dict[float, float] = {}
        asks: dict[float, float] = {}
        previous_snapshot = False
        last: dict[str, str] | None = None
        rows = iter(self.rows)
        row = next(rows, None)
        for t_ms in slots:
            while row is not None and int(row["local_timestamp"]) <= t_ms * 1000:
                snap = row["is_snapshot"] == "true"
                if snap and not previous_snapshot:
                    bids, asks = {}, {}
                previous_snapshot = snap
                side = bids if row["side"] == "bid" else asks
                price, amount = float(row["price"]), float(row["amount"])
                if amount == 0:
                    side.pop(price, None)
                else:
                    side[price] = amount
                last = row
                row = next(rows, None)
            out[t_ms] = (
                None
                if last is None
                else {
                    "bids": [[p, bids[p]] for p in sorted(bids, reverse=True)[:depth]],
                    "asks": [[p, asks[p]] for p in sorted(asks)[:depth]],
                    "exchange_ts": int(last["timestamp"]) // 1000,
                    "received_ts": int(last["local_timestamp"]) // 1000,
                }
            )
        return out

    @property
    def first_ms(self) -> int:
        return int(self.rows[0]["local_timestamp"]) // 1000

    @property
    def last_ms(self) -> int:
        return int(self.rows[-1]["local_timestamp"]) // 1000


class Archive:
    """A Tardis-like archive on 127.0.0.1: `files` by path under `/v1/`, an optional
    bearer key, 429s (with Retry-After) before a path is served, Range requests."""

    def __init__(self, key: str = "") -> None:
        self.files: dict[str, bytes] = {}
        self.key = key
        self.throttle: dict[str, int] = {}  # path -> 429s still to answer
        self.cut: dict[str, int] = {}  # path -> send only this many bytes, once, then hang up
        self.retry_after = "1"
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        archive = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                archive.requests.append((self.path, self.headers.get("Range", "")))
                if archive.key and self.headers.get("Authorization") != f"Bearer {archive.key}":
                    return self._answer(401, b'{"message":"invalid API key"}')
                path = self.path.removeprefix("/v1/")
                if archive.throttle.get(path, 0) > 0:
                    archive.throttle[path] -= 1
                    return self._answer(429, b"slow down", {"Retry-After": archive.retry_after})
                body = archive.files.get(path)
                if body is None:
                    return self._answer(404, b'{"message":"not found"}')
                if (cut := archive.cut.pop(path, None)) is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:cut])
                    self.close_connection = True  # the client sees the body end early
                    return None
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes=") and ranged.endswith("-"):
                    offset = int(ranged[6:-1])
                    return self._answer(206, body[offset:])
                return self._answer(200, body)

            def _answer(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def day_path(exchange: str, data_type: str, day: str, symbol: str) -> str:
    """`binance/incremental_book_L2/2024/08/08/BTCUSDT.csv.gz` for day '2024-08-08'."""
    return f"{exchange}/{data_type}/{day.replace('-', '/')}/{symbol}.csv.gz"


def iter_slots(start: int, end: int, interval: int) -> Iterator[int]:
    return iter(range(start, end, interval))


def write_day_file(path: Path, symbol: str = "BTCUSDT", day_ms: int = DAY_MS) -> int:
    """A whole UTC day of `incremental_book_L2` rows for the memory test and benchmark,
    written streaming to `path` (gzip); returns the rows written. Made from the
    recording: each cycle is a snapshot run (the REST answer's top 200 levels a side)
    then every diff frame of the recording's first 120 s, played 10 times slower (so a
    cycle is 20 minutes: 72 a day); a valid file whose books are never crossed, not a
    real day's market."""
    recording = load(RECORDING)
    answer = next(h for h in recording.http if f"symbol={symbol}&" in h.url)
    depth = json.loads(answer.data)
    t0 = answer.ts
    frames = [
        (entry.ts - t0, json.loads(entry.data)["data"])
        for entry in recording.recv
        if entry.conn == symbol
    ]
    cycle_s = 120.0
    frames = [
        (max(at, 0.0), f)
        for at, f in frames
        if f["u"] > depth["lastUpdateId"] and at < cycle_s  # in order, within a cycle
    ]
    slower = 10
    rows = 0
    with gzip.open(path, "wt", compresslevel=1) as out:
        out.write(HEADER + "\n")
        cycle = 0
        while cycle * cycle_s * slower < 86_400:
            base_us = day_ms * 1000 + int(cycle * cycle_s * slower * 1_000_000)
            for side, key in (("bid", "bids"), ("ask", "asks")):
                for price, amount in depth[key][:200]:
                    out.write(
                        f"binance,{symbol},{base_us},{base_us},true,{side},"
                        f"{_number(price)},{_number(amount)}\n"
                    )
                    rows += 1
            for at, frame in frames:
                local = base_us + int(at * slower * 1_000_000)
                if local >= (day_ms + 86_400_000) * 1000:
                    break
                for side, key in (("bid", "b"), ("ask", "a")):
                    for price, amount in frame[key]:
                        out.write(
                            f"binance,{symbol},{local},{local},false,{side},"
                            f"{_number(price)},{_number(amount)}\n"
                        )
                        rows += 1
            cycle += 1
    return rows


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / 2**20


def measure_backfill(path: Path, work: Path, slots: int = 86_400) -> dict[str, Any]:
    """Back-fill `slots` 1 s slots of the day file at `path` from a local archive into a
    new file in `work`, through `Service.backfill`; the report's counts, slots/s and RSS
    (sampled at every stored batch: growth is the peak less the RSS once 2 % was done)."""
    archive = Archive()
    archive.files[day_path("binance", "incremental_book_L2", "2024-08-08", "BTCUSDT")] = (
        path.read_bytes()
    )
    config_path = work / "config.toml"
    config_path.write_text(
        f"""
[storage]
path = "obd.sqlite"
[plugins]
dirs = []
entry_points = false
[history]
providers = ["tardis"]
[history.tardis]
base_url = "{archive.url}"
"""
    )
    samples: list[tuple[int, float]] = []

    def progress(slot: int, lo: int, hi: int) -> None:
        samples.append((slot - lo, rss_mib()))

    async def go() -> Any:
        async with open_runtime(load_config(config_path)) as runtime:
            return await runtime.service.backfill(
                "binance",
                "BTC/USDT",
                DAY_MS,
                DAY_MS + slots * 1000,
                interval="1s",
                depth=100,
                progress=progress,
            )

    try:
        report = asyncio.run(go())
    finally:
        archive.close()
    settled = next(rss for done, rss in samples if done >= slots * 1000 * 0.02)
    peak = max(rss for _, rss in samples)
    return {
        "slots": report.slots,
        "backfilled": report.backfilled,
        "unfilled_slots": report.unfilled_slots,
        "seconds": round(report.seconds, 2),
        "slots_per_s": round(report.backfilled / report.seconds),
        "rss_settled_mib": round(settled, 1),
        "rss_peak_mib": round(peak, 1),
        "rss_growth_mib": round(peak - settled, 1),
        "database_mib": round((work / "obd.sqlite").stat().st_size / 2**20, 1),
    }
