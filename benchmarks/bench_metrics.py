"""What /metrics costs: requests per second on `GET /v1/books/latest` (each request is
counted and timed by route) against a baseline daemon from another checkout, measured
in the same run, alternating; the time to scrape `/metrics`; and, steadier than
loopback HTTP on a shared machine, one trivial request through a Litestar app in
process, with and without obd's counting and timing wrapper.

    python benchmarks/bench_metrics.py --baseline /work/main [--seconds 5] [--rounds 3]

The baseline runs `python -m obd` with PYTHONPATH set to that checkout (say, the commit
before the instruments), this one with this checkout's code; both on the shipped `sim`
plugin, one coin at 1 s, auth off.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import REPO, Daemon, wait_for, write_config

COIN = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
QUERY = {"exchange": "sim", "symbol": "BTC/USDT"}


async def _rate(url: str, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            (await client.get("/v1/books/latest", params=QUERY)).raise_for_status()
            done += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done / seconds


def _start(directory: Path, source: Path) -> Daemon:
    directory.mkdir()
    daemon = Daemon(write_config(directory, coins=COIN), env={"PYTHONPATH": str(source)})
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 1)
    return daemon


def _scrape_ms(daemon: Daemon, n: int = 50) -> float:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        daemon.http.get("/metrics").raise_for_status()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def _in_process(n: int = 20_000) -> tuple[float, float]:
    """µs per request to a trivial route, plain and instrumented (best of 5)."""
    from litestar import Litestar, get

    from obd.http.metrics import instrument
    from obd.metrics import Metrics

    @get("/x", sync_to_thread=False)
    def route() -> bytes:
        return b"ok"

    plain = Litestar([route], logging_config=None)
    timed = Litestar([route], logging_config=None)
    instrument(timed, Metrics())
    scope = {
        **{"type": "http", "method": "GET", "path": "/x", "raw_path": b"/x", "root_path": ""},
        **{"query_string": b"", "headers": [(b"host", b"localhost")], "scheme": "http"},
        **{"server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "http_version": "1.1"},
        "asgi": {"version": "3.0"},
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        pass

    async def drive(app: Litestar) -> float:
        began = time.perf_counter()
        for _ in range(n):
            await app(dict(scope), receive, send)  # type: ignore[arg-type]
        return (time.perf_counter() - began) / n * 1e6

    async def best() -> tuple[float, float]:
        runs = [(await drive(plain), await drive(timed)) for _ in range(5)]
        return min(r[0] for r in runs), min(r[1] for r in runs)

    return asyncio.run(best())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, required=True, help="checkout to compare")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    plain_us, timed_us = _in_process()
    print(f"in process: plain {plain_us:.1f} us, instrumented {timed_us:.1f} us a request")
    with tempfile.TemporaryDirectory(prefix="obd-bench-metrics-") as work:
        base = _start(Path(work) / "base", args.baseline.resolve())
        this = _start(Path(work) / "this", REPO)
        try:
            rates: dict[str, list[float]] = {"baseline": [], "this": []}
            for _ in range(args.rounds):  # alternate: the machine's load drifts
                for name, daemon in (("baseline", base), ("this", this)):
                    rate = asyncio.run(_rate(daemon.url, args.seconds, args.concurrency))
                    rates[name].append(rate)
            for name, values in rates.items():
                print(f"{name}: {statistics.median(values):,.0f} req/s (rounds {values})")
            ratio = statistics.median(rates["this"]) / statistics.median(rates["baseline"])
            print(f"ratio this/baseline: {ratio:.2f}")
            print(
                f"/metrics scrape, median: baseline {_scrape_ms(base):.1f} ms, "
                f"this {_scrape_ms(this):.1f} ms"
            )
        finally:
            base.stop()
            this.stop()


if __name__ == "__main__":
    main()
