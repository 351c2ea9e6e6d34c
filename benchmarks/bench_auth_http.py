"""Requests per second on `GET /v1/books/latest` with auth off and with a bearer token
(ES256), against the real daemon on loopback, measured in the same run; the ratio is
what auth costs a client.

    python benchmarks/bench_auth_http.py [--seconds 10] [--concurrency 8]
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import Daemon, obd, wait_for, write_config

COIN = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
QUERY = {"exchange": "sim", "symbol": "BTC/USDT"}


async def _rate(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.get("/v1/books/latest", params=QUERY, headers=headers)
            response.raise_for_status()
            done += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done / seconds


def _measure(directory: Path, auth: bool, seconds: float, concurrency: int) -> float:
    config = write_config(directory, "[auth]\nenabled = true\n" if auth else "", coins=COIN)
    headers: dict[str, str] = {}
    if auth:
        obd("client", "add", "bench", "--scope", "read", config=config)
        token = obd("token", "--client", "bench", config=config).stdout.strip()
        headers = {"authorization": f"Bearer {token}"}
    daemon = Daemon(config)
    try:
        wait_for(
            lambda: daemon.http.get("/v1/books/latest", params=QUERY, headers=headers).is_success
        )
        return asyncio.run(_rate(daemon.url, headers, seconds, concurrency))
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as off, tempfile.TemporaryDirectory() as on:
        plain = _measure(Path(off), False, args.seconds, args.concurrency)
        bearer = _measure(Path(on), True, args.seconds, args.concurrency)
    print("| /v1/books/latest (100 levels) | requests/s |")
    print("| --- | ---: |")
    print(f"| auth off | {plain:,.0f} |")
    print(f"| bearer token (ES256) | {bearer:,.0f} |")
    print(f"| ratio (with / without) | {bearer / plain:.2f} |")


if __name__ == "__main__":
    main()
