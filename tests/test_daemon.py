"""The real daemon on `sim` at a 1 s cadence, through real HTTP."""

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_plugin, obd, wait_for, write_config

COIN = {"exchange": "sim", "symbol": "BTC/USDT"}
ONE_SECOND_COIN = """
[[coins]]
exchange = "sim"
symbol = "BTC/USDT"
interval = "1s"
depth = 20
"""


def _sim() -> Any:
    """The sim plugin, loaded in this process to recompute its deterministic books."""
    return load_plugin("sim").PLUGIN.factory("sim", None)


def _pages(http: Any, **query: Any) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        params = {**COIN, **query, **({"cursor": cursor} if cursor else {})}
        page = http.get("/v1/books", params=params).raise_for_status().json()
        items += page["items"]
        if not (cursor := page["next"]):
            return items


def test_collects_aligned_snapshots_and_serves_them(tmp_path: Path, start_daemon: Any) -> None:
    daemon = start_daemon(write_config(tmp_path, coins=ONE_SECOND_COIN))
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 5)

    stored = _pages(daemon.http, limit=2)
    assert len(stored) >= 5
    times = [item["ts"] for item in stored]
    assert times == sorted(set(times))
    assert all(ts % 1000 == 0 for ts in times)

    # ndjson streams exactly what the pages hold (same range, fixed end).
    end = times[-1] + 1
    paged = _pages(daemon.http, end=end, limit=3)
    response = daemon.http.get("/v1/books", params={**COIN, "end": end, "format": "ndjson"})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    streamed = [json.loads(line) for line in response.text.splitlines()]
    assert streamed == paged

    latest = daemon.http.get("/v1/books/latest", params=COIN).json()
    assert latest["ts"] >= times[-1]
    assert latest["capture"] == "synthetic"
    coin = daemon.http.get("/v1/coins").json()["items"][0]
    assert coin["interval"] == "1s"
    assert coin["depth"] == 20
    assert coin["synthetic"] is True
    assert daemon.stop() == 0


def test_snapshot_is_the_book_as_it_stood_at_its_slot(tmp_path: Path, start_daemon: Any) -> None:
    """Point in time: slot T holds a book the sim published at or before T, unchanged."""
    daemon = start_daemon(write_config(tmp_path, coins=ONE_SECOND_COIN))
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 4)
    sim = _sim()
    for item in _pages(daemon.http):
        assert item["exchange_ts"] <= item["ts"]
        assert item["received_ts"] <= item["ts"]
        truth = sim.book_at("BTC/USDT", item["exchange_ts"])
        assert item["bids"] == [list(level) for level in truth.bids[:20]]
        assert item["asks"] == [list(level) for level in truth.asks[:20]]
        # The newest update at or before T is at most one sim update older than T.
        assert item["ts"] - item["exchange_ts"] <= 1_000
    assert daemon.stop() == 0


def test_restart_records_daemon_down_gap(tmp_path: Path, start_daemon: Any) -> None:
    config = write_config(tmp_path, coins=ONE_SECOND_COIN)
    first = start_daemon(config)
    wait_for(lambda: first.http.get("/v1/coins").json()["items"][0]["count"] >= 2)
    assert first.stop() == 0
    stopped_at = int(time.time() * 1000)
    time.sleep(3.2)

    second = start_daemon(config)
    before = second.http.get("/v1/coins").json()["items"][0]["count"]
    wait_for(lambda: second.http.get("/v1/coins").json()["items"][0]["count"] >= before + 2)
    coverage = second.http.get("/v1/coverage", params=COIN).json()
    down = [gap for gap in coverage["gaps"] if gap[2] == "daemon_down"]
    assert down, coverage
    start, end, _ = down[-1]
    assert start <= stopped_at + 1000
    assert end - start >= 3000
    # Every expected slot is either present or inside a gap.
    missing = sum((gap[1] - gap[0]) // 1000 for gap in coverage["gaps"])
    assert coverage["present"] + missing == coverage["expected"]
    assert second.stop() == 0


def test_coin_added_by_another_process_is_collected(tmp_path: Path, start_daemon: Any) -> None:
    config = write_config(tmp_path)
    daemon = start_daemon(config)
    assert daemon.http.get("/v1/coins").json() == {"items": []}
    added = obd(
        "coins", "add", "sim", "ETH/USDT", "--interval", "1s", "--depth", "5", config=config
    )
    assert added.returncode == 0, added.stderr
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 1, timeout_s=5)
    snapshot = daemon.http.get("/v1/books/latest", params={"exchange": "sim", "symbol": "ETH/USDT"})
    assert len(snapshot.json()["bids"]) == 5

    removed = obd("coins", "remove", "sim", "ETH/USDT", config=config)
    assert removed.returncode == 0, removed.stderr
    listed = obd("coins", "list", "--json", config=config)
    assert listed.returncode == 0
    assert listed.stdout == ""  # removed coins are not listed; their data stays
    assert daemon.stop() == 0


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_clean_stop_checkpoints_and_exits_zero(tmp_path: Path, start_daemon: Any, sig: str) -> None:
    import signal

    daemon = start_daemon(write_config(tmp_path, coins=ONE_SECOND_COIN))
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 1)
    daemon.http.close()
    daemon.process.send_signal(getattr(signal, sig))
    assert daemon.process.wait(timeout=30) == 0
    wal = tmp_path / "obd.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed into the main file
