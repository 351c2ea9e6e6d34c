"""Collecting from an emulated Binance through the unmodified ccxt, against the real
daemon on loopback. Prints markdown.

    python benchmarks/bench_ccxt.py [--coins 1,50,200] [--seconds 30] [--depth 100]
    python benchmarks/bench_ccxt.py --replay [--seconds 30]

Live books: the emulator (`tests/emulator`, in this process, on 127.0.0.1) lists the
coins and changes every book every 100 ms (1-4 levels a change, as `<sym>@depth@100ms`
diffs); the daemon collects them all at a 5 m cadence, so what it spends is the cost of
keeping live books (ccxt parsing and applying diffs, obd converting and timestamping
them), not of storing. Once every coin is live: the daemon's CPU (user+system, from
/proc) over `--seconds`, per coin per second, and its RSS at the end. ccxt's rate limit
is lowered to 5 ms a request for the start-up snapshots (the emulator has no limit;
Binance's real weights would take ~50 s to sync 200 coins at depth 100).

Replayed exchanges (`--replay`): each exchange proven in docs/EXCHANGES.md, its
recording (tests/data/recordings) replayed at recorded pace by the replay emulator in
a subprocess, the daemon keeping one coin's live book, then every coin the recording
has (2; 3 for Hyperliquid): CPU per coin per second above an idle daemon, frames
delivered, RSS. The recordings hold two or three symbols, so 100 coins a venue cannot
be replayed; the synthetic Binance rows above are the many-coin figures.

Start-up: wall time from spawning `obd run` to its `serving` line with a sim coin only,
and with one binance coin (which imports ccxt and loads the markets first), then to that
coin's first live book. Median of `--repeat` runs.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.emulator import Emulator  # noqa: E402
from tests.emulator.config import binance_table  # noqa: E402
from tests.replay_support import RECORDINGS, ReplayProcess, exchanges_toml  # noqa: E402

REPLAYED = {  # ccxt id -> recording, as tests/test_replay_fidelity.py runs them
    "binance": "binance.jsonl.zst",
    "binanceusdm": "binanceusdm.jsonl.zst",
    "binancecoinm": "binancecoinm.jsonl.zst",
    "okx": "okx_btc_eth_usdt.jsonl.zst",
    "bybit": "bybit_spot.jsonl.zst",
    "kraken": "kraken.jsonl.zst",
    "coinbase": "coinbase.jsonl.zst",
    "hyperliquid": "hyperliquid.jsonl.zst",
}
# The depth each recording serves: Kraken's was made at 10, Bybit's is orderbook.200
# (what obd subscribes for depth 100); the others take 50.
REPLAY_DEPTH = {"kraken": 10, "bybit": 100}

TICK_S = os.sysconf("SC_CLK_TCK")
# The plugin's defaults, not the tests' quick ones (listings reloaded every second).
PRODUCTION = {"markets_ttl_s": 3600, "ping_interval_s": 10, "stale_after_s": 30, "timeout_s": 10}


class _Daemon:
    """`obd run` on a config, its log drained in a thread (a full pipe would stall it)."""

    def __init__(self, config: Path) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "obd", "run", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "OBD_LOG_LEVEL": "info"},
        )
        self.serving = threading.Event()
        self.url = ""
        self.serving_s = 0.0
        threading.Thread(target=self._read, daemon=True).start()
        if not self.serving.wait(120):
            raise RuntimeError("obd run did not start serving")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "serving":
                self.url, self.serving_s = event["url"], time.monotonic() - self.started
                self.serving.set()

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK_S

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def live(self) -> int:
        items = self.http.get("/v1/coins").json()["items"]
        return sum(item["status"] == "live" for item in items)

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(60)


def _config(directory: Path, body: str, coins: list[tuple[str, str]], depth: int) -> Path:
    lines = [
        '[server]\nport = 0\n[storage]\npath = "obd.sqlite"',
        f"[plugins]\ndirs = [{json.dumps(str(REPO / 'plugins.d'))}]\nentry_points = false",
        f'[collection]\ninterval = "5m"\ndepth = {depth}',
        body,
    ]
    lines += [f'[[coins]]\nexchange = "{e}"\nsymbol = "{s}"' for e, s in coins]
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _symbols(count: int) -> list[str]:
    return [f"C{i:03d}/USDT" for i in range(count)]


_IDLE: list[float] = []


def idle_cpu_s(wall_s: float) -> float:
    """What a daemon collecting nothing spends in `wall_s` (measured once, 10 s)."""
    if not _IDLE:
        with tempfile.TemporaryDirectory() as tmp:
            daemon = _Daemon(_config(Path(tmp), "", [], 100))
            try:
                time.sleep(2)
                start = daemon.cpu_s()
                time.sleep(10)
                _IDLE.append((daemon.cpu_s() - start) / 10)
            finally:
                daemon.stop()
    return _IDLE[0] * wall_s


def live_books(counts: list[int], seconds: float, depth: int) -> list[dict[str, Any]]:
    rows = []
    for count in counts:
        with (
            Emulator(extra_symbols=count, record=False) as emu,
            tempfile.TemporaryDirectory() as tmp,
        ):
            body = binance_table(emu, rate_limit_ms=5, **PRODUCTION)
            coins = [("binance", symbol) for symbol in _symbols(count)]
            daemon = _Daemon(_config(Path(tmp), body, coins, depth))
            try:
                deadline = time.monotonic() + 300
                while daemon.live() < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {daemon.live()} of {count} coins live")
                    time.sleep(0.5)
                time.sleep(2)  # let the start-up snapshots settle
                cpu, frames, wall = daemon.cpu_s(), emu.frames_sent, time.monotonic()
                time.sleep(seconds)
                cpu = daemon.cpu_s() - cpu
                wall = time.monotonic() - wall
                frames = emu.frames_sent - frames
                busy = cpu - idle_cpu_s(wall)
                rows.append(
                    {
                        "coins": count,
                        "cpu_pct": 100 * cpu / wall,
                        "cpu_ms_per_coin_s": 1000 * busy / wall / count,
                        "us_per_diff": 1e6 * busy / max(frames, 1),
                        "diffs_per_s": frames / wall,
                        "rss_mib": daemon.rss_mib(),
                        "connections": emu.connections,
                    }
                )
            finally:
                daemon.stop()
    return rows


def replayed(seconds: float) -> list[dict[str, Any]]:
    """Each replayed exchange at 1 coin and at every coin its recording has."""
    rows = []
    for exchange, recording in REPLAYED.items():
        with tempfile.TemporaryDirectory() as tmp:
            probe = ReplayProcess(exchange, RECORDINGS / recording, Path(tmp) / "s", 1.0)
            symbols = probe.symbols
            probe.stop()
        for count in sorted({1, len(symbols)}):
            try:
                rows.append(_replayed(exchange, recording, symbols[:count], seconds))
            except RuntimeError as exc:  # one exchange's trouble is a row, not the end
                print(f"{exchange}, {count} coins: {exc}", file=sys.stderr, flush=True)
    return rows


def _replayed(exchange: str, recording: str, symbols: list[str], seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        replay = ReplayProcess(
            exchange, RECORDINGS / recording, Path(tmp) / "sent", 1.0, start="connect"
        )
        depth = REPLAY_DEPTH.get(exchange, 50)
        try:
            body = exchanges_toml([replay], **PRODUCTION)
            coins = [(exchange, symbol) for symbol in symbols]
            daemon = _Daemon(_config(Path(tmp), body, coins, depth))
            try:
                deadline = time.monotonic() + 120
                while daemon.live() < len(symbols):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{exchange}: {daemon.live()} of {symbols} live")
                    time.sleep(0.5)
                time.sleep(2)
                cpu, sent, wall = daemon.cpu_s(), replay.stats()["frames_sent"], time.monotonic()
                time.sleep(seconds)
                cpu, wall = daemon.cpu_s() - cpu, time.monotonic() - wall
                sent = replay.stats()["frames_sent"] - sent
                busy = cpu - idle_cpu_s(wall)
                return {
                    "exchange": exchange,
                    "coins": len(symbols),
                    "cpu_pct": 100 * cpu / wall,
                    "cpu_ms_per_coin_s": 1000 * busy / wall / len(symbols),
                    "frames_per_s": sent / wall,
                    "us_per_frame": 1e6 * busy / max(sent, 1),
                    "rss_mib": daemon.rss_mib(),
                }
            finally:
                daemon.stop()
        finally:
            replay.stop()


def startup(repeat: int) -> dict[str, float]:
    """Seconds to serving (and to a first live ccxt book); a sim-only daemon's RSS."""
    sim, sim_rss, ccxt_serving, ccxt_live = [], [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            daemon = _Daemon(_config(Path(tmp), "", [("sim", "BTC/USDT")], 100))
            sim.append(daemon.serving_s)
            time.sleep(2)
            sim_rss.append(daemon.rss_mib())
            daemon.stop()
        with Emulator() as emu, tempfile.TemporaryDirectory() as tmp:
            body = binance_table(emu, **PRODUCTION)
            config = _config(Path(tmp), body, [("binance", "BTC/USDT")], 100)
            daemon = _Daemon(config)
            ccxt_serving.append(daemon.serving_s)
            while daemon.live() < 1:
                time.sleep(0.02)
            ccxt_live.append(time.monotonic() - daemon.started)
            daemon.stop()
    return {
        "sim_serving_s": statistics.median(sim),
        "sim_rss_mib": statistics.median(sim_rss),
        "ccxt_serving_s": statistics.median(ccxt_serving),
        "ccxt_first_live_s": statistics.median(ccxt_live),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", default="1,50,200")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--replay", action="store_true", help="only the replayed exchanges")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    if args.replay:
        print_replayed(replayed(min(args.seconds, 60)))
        return
    rows = live_books([int(c) for c in args.coins.split(",")], args.seconds, args.depth)
    print(f"idle daemon (no coins): {100 * idle_cpu_s(1):.1f}% CPU\n")
    print("| coins | daemon CPU | above idle, per coin | per diff | diffs/s delivered | RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['coins']} | {row['cpu_pct']:.1f}% | {row['cpu_ms_per_coin_s']:.2f} ms/s"
            f" | {row['us_per_diff']:.0f} µs | {row['diffs_per_s']:.0f}"
            f" | {row['rss_mib']:.0f} MiB |"
        )
    times = startup(args.repeat)
    print("\n| start-up (median) | s |\n| --- | ---: |")
    print(f"| `obd run` to serving, sim only | {times['sim_serving_s']:.2f} |")
    print(f"| `obd run` to serving, a binance coin configured | {times['ccxt_serving_s']:.2f} |")
    print(f"| `obd run` to that coin's first live book | {times['ccxt_first_live_s']:.2f} |")
    print(f"\nRSS of a sim-only daemon (ccxt never imported): {times['sim_rss_mib']:.0f} MiB")


def print_replayed(rows: list[dict[str, Any]]) -> None:
    print(f"idle daemon (no coins): {100 * idle_cpu_s(1):.1f}% CPU\n")
    print("| exchange | coins | daemon CPU | above idle, per coin | per frame | frames/s | RSS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['exchange']} | {row['coins']} | {row['cpu_pct']:.1f}%"
            f" | {row['cpu_ms_per_coin_s']:.2f} ms/s | {row['us_per_frame']:.0f} µs"
            f" | {row['frames_per_s']:.0f} | {row['rss_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
