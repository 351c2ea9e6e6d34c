"""The daemon through a full disk, for real: a file size limit on the running process
(RLIMIT_FSIZE, set with prlimit; no root, no mount) makes every write of the file fail
as a full disk would. Reads keep being served, health says why, books past the queue
bound become `storage_full` gaps, writing resumes when the limit is lifted, and a
SIGTERM during the outage exits 0 at once."""

import asyncio
import json
import resource
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import Daemon, wait_for, write_config
from tests.ws_support import SIM, Sampler, coin_toml, decode, open_ws, rss_mib

S = 1000
CONFIG = '[storage]\npath = "obd.sqlite"\nqueue_mib = 1\n'


def _disk_full(pid: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))


def _space_back(pid: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))


def _health(daemon: Daemon) -> dict[str, object]:
    answer = daemon.http.get("/healthz")
    body = answer.json()
    assert answer.status_code == (200 if body["status"] == "ok" else 503)
    return dict(body)


def _latest_ts(daemon: Daemon) -> int:
    answer = daemon.http.get("/v1/books/latest", params=SIM)
    return int(answer.json()["ts"]) if answer.status_code == 200 else 0


async def _backfill(daemon: Daemon, start: int, end: int) -> dict[str, Any]:
    """A history request over slots before the coin was added (back-filled): its last answer."""
    ws = await open_ws(daemon)
    try:
        await ws.send(json.dumps({"op": "history", **SIM, "start": start, "end": end}))
        while (message := decode(await ws.recv()))["type"] in ("history_chunk", "snapshot"):
            pass
        return message
    finally:
        await ws.close()


def test_a_full_disk_is_survived_and_writing_resumes(tmp_path: Path) -> None:
    config = write_config(tmp_path, coins=coin_toml("BTC/USDT", 1000))
    config.write_text(config.read_text().replace('[storage]\npath = "obd.sqlite"\n', CONFIG))
    daemon = Daemon(config)
    pid = daemon.process.pid
    wait_for(lambda: _latest_ts(daemon) > 0)

    _disk_full(pid)
    began = time.time() * 1000
    wait_for(lambda: _health(daemon)["writer_error"] is not None)
    stuck = _latest_ts(daemon)
    time.sleep(8)  # slots pass: past 1 MiB of books, each is a storage_full gap
    health = _health(daemon)
    assert health["status"] == "failing"  # liveness: the writer cannot commit
    assert "full" in str(health["writer_error"]) or "I/O" in str(health["writer_error"])
    # Reads are served throughout; nothing new is committed.
    assert daemon.http.get("/v1/coins").status_code == 200
    assert _latest_ts(daemon) == stuck
    rss_outage = rss_mib(pid)
    # Write calls answer at once, saying when to ask again, instead of waiting for space.
    eth = {"exchange": "sim", "symbol": "ETH/USDT", "interval": "1s", "depth": 5}
    added = daemon.http.post("/v1/coins", json=eth)
    assert added.status_code == 503, added.text
    assert added.headers["retry-after"] == "5"
    assert "storage cannot take writes now" in added.json()["error"]["message"]
    refused = asyncio.run(_backfill(daemon, int(began) - 60 * S, int(began) - 50 * S))
    assert (refused["type"], refused["code"], refused["retry_after_s"]) == (
        "error",
        "unavailable",
        5,
    ), refused

    _space_back(pid)
    resumed = time.time() * 1000
    wait_for(lambda: _health(daemon)["writer_error"] is None, timeout_s=40)
    wait_for(lambda: _latest_ts(daemon) > resumed)
    window = {**SIM, "start": int(began) // S * S, "end": int(resumed) // S * S}
    coverage = daemon.http.get("/v1/coverage", params=window).json()
    reasons = {gap[2] for gap in coverage["gaps"]}
    assert "storage_full" in reasons, coverage
    gap_slots = sum((end - start) // S for start, end, _ in coverage["gaps"])
    assert coverage["present"] + gap_slots == coverage["expected"], coverage
    assert rss_outage < 400, rss_outage  # 1 MiB of books queued, not a row per slot
    # What was refused was not done later behind the client's back.
    assert [c["symbol"] for c in daemon.http.get("/v1/coins").json()["items"]] == ["BTC/USDT"]

    # A second outage, and a stop in the middle of it: exit 0, at once.
    _disk_full(pid)
    wait_for(lambda: _health(daemon)["writer_error"] is not None)
    stopping = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - stopping < 10
    assert any(event.get("event") == "stopped" for event in daemon.log)


class _NormalReader(threading.Thread):
    """A live subscriber that reads at a normal pace, on its own thread and loop."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(name="normal reader", daemon=True)
        self.url = daemon.url.replace("http://", "ws://") + "/v1/ws"
        self.slots: list[int] = []
        self.closed: int | None = None  # the close code, if the daemon closed it
        self._done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._read())

    async def _read(self) -> None:
        async with connect(self.url, max_size=None) as ws:
            await ws.send(json.dumps({"op": "subscribe", **SIM}))
            while not self._done.is_set():
                try:
                    message = decode(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                except ConnectionClosed as exc:
                    self.closed = exc.rcvd.code if exc.rcvd else -1
                    return
                if message["type"] == "snapshot":
                    self.slots.append(message["data"]["ts"])

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _files(directory: Path) -> int:
    return max(path.stat().st_size for path in directory.glob("obd.sqlite*"))


def test_a_disk_freed_in_part_then_whole_and_a_reader_stays(tmp_path: Path) -> None:
    """The issue's sequence: fill, free part (a few commits fit, then it is full again),
    free all. Reads are served throughout, every slot is accounted for, writing resumes
    without a restart, and a live subscriber reading at a normal pace stays connected
    through the backlog written at the end (no 1013)."""
    config = write_config(tmp_path, coins=coin_toml("BTC/USDT", 1000))
    config.write_text(config.read_text().replace('[storage]\npath = "obd.sqlite"\n', CONFIG))
    daemon = Daemon(config)
    pid = daemon.process.pid
    wait_for(lambda: _latest_ts(daemon) > 0)
    reader = _NormalReader(daemon)
    reader.start()
    wait_for(lambda: reader.slots)
    rss_before = rss_mib(pid)
    rss = Sampler(lambda: rss_mib(pid), every_s=0.2)

    _disk_full(pid)
    began = time.time() * 1000
    wait_for(lambda: _health(daemon)["writer_error"] is not None)
    time.sleep(4)
    # Part of the space back: each file may grow by 256 KiB, a few books' worth.
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (_files(tmp_path) + 256 * 1024, hard))
    time.sleep(4)
    assert daemon.http.get("/v1/coins").status_code == 200
    assert _health(daemon)["status"] in ("ok", "failing")
    assert _latest_ts(daemon) > 0

    _space_back(pid)
    resumed = time.time() * 1000
    wait_for(lambda: _health(daemon)["writer_error"] is None, timeout_s=40)
    wait_for(lambda: _latest_ts(daemon) > resumed)
    recovered_s = time.time() - resumed / 1000
    wait_for(lambda: max(reader.slots) > resumed)
    peak = rss.stop()
    print(
        f"\nRSS {rss_before:.0f} MiB before, {peak:.0f} MiB at most; new slots {recovered_s:.1f} s"
    )
    assert peak < rss_before + 1 + 100, (rss_before, peak)  # the queue bound (1 MiB) + 100
    window = {**SIM, "start": int(began) // S * S, "end": int(resumed) // S * S}
    coverage = daemon.http.get("/v1/coverage", params=window).json()
    gap_slots = sum((end - start) // S for start, end, _ in coverage["gaps"])
    assert coverage["present"] + gap_slots == coverage["expected"], coverage
    assert {gap[2] for gap in coverage["gaps"]} <= {"storage_full"}, coverage
    reader.stop()
    assert reader.closed is None, reader.closed
    assert reader.slots == sorted(set(reader.slots))  # in order, each once
    assert daemon.stop() == 0
