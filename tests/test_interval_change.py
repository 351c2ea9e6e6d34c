"""Changing a coin's interval (issue 17): remove, then add at a new interval, on the real
daemon. The new interval is a new series; the old one stays readable with its own
coverage; research names both; a config at the new interval starts cleanly."""

import json
from pathlib import Path
from typing import Any

from obd import research
from obd.research import export
from tests.conftest import obd, wait_for, write_config

COIN = {"exchange": "sim", "symbol": "BTC/USDT"}
TWO_SECOND_COIN = """
[[coins]]
exchange = "sim"
symbol = "BTC/USDT"
interval = "2s"
depth = 5
"""


def _count(http: Any, interval: str) -> int:
    items = http.get("/v1/coins", params={"removed": "true"}).json()["items"]
    return sum(c["count"] for c in items if c["interval"] == interval)


def _accounted(coverage: dict[str, Any]) -> bool:
    """Every expected slot is a snapshot or inside a gap, none twice."""
    missing = sum((gap[1] - gap[0]) // coverage["interval_ms"] for gap in coverage["gaps"])
    return bool(coverage["present"] + missing == coverage["expected"])


def test_re_adding_at_a_new_interval_starts_a_new_series(tmp_path: Path, start_daemon: Any) -> None:
    daemon = start_daemon(write_config(tmp_path))
    http = daemon.http
    assert http.post("/v1/coins", json={**COIN, "interval": "1s", "depth": 5}).status_code == 201
    wait_for(lambda: _count(http, "1s") >= 3)
    refused = http.post("/v1/coins", json={**COIN, "interval": "2s", "depth": 5})
    assert refused.status_code == 409
    assert http.delete("/v1/coins", params=COIN).status_code == 200
    assert http.post("/v1/coins", json={**COIN, "interval": "2s", "depth": 5}).status_code == 201
    wait_for(lambda: _count(http, "2s") >= 2)

    listed = http.get("/v1/coins", params={"removed": "true"}).json()["items"]
    assert [(c["interval"], c["status"]) for c in listed] == [("2s", "live"), ("1s", "removed")]
    assert [c["interval"] for c in http.get("/v1/coins").json()["items"]] == ["2s"]
    one_s = http.get("/v1/coverage", params={**COIN, "interval": "1s"}).json()
    assert one_s["interval_ms"] == 1000
    assert one_s["present"] == listed[1]["count"]  # only its own rows, none of the 2 s ones
    assert one_s["gaps"][-1][2] == "removed"
    assert _accounted(one_s)
    two_s = http.get("/v1/coverage", params=COIN).json()  # default: the active series
    assert two_s["interval_ms"] == 2000
    assert two_s["present"] <= two_s["expected"]
    assert _accounted(two_s)
    old = http.get("/v1/books", params={**COIN, "interval": "1s", "limit": 1000}).json()
    assert len(old["items"]) == listed[1]["count"]
    assert http.get("/v1/books", params={**COIN, "interval": "7s"}).status_code == 404
    assert daemon.stop() == 0

    with research.open(tmp_path / "obd.sqlite") as dataset:
        series = dataset.series()
        assert [(s.interval_ms, s.interval, s.active) for s in series] == [
            (1000, "1s", False),
            (2000, "2s", True),
        ]
        assert series[0].count == listed[1]["count"]
        ts = [s.ts for s in dataset.snapshots("sim", "BTC/USDT", interval="1s")]
        assert len(ts) == series[0].count
        assert all(t % 1000 == 0 for t in ts)
        assert all(s.ts % 2000 == 0 for s in dataset.snapshots("sim", "BTC/USDT"))

    listed_cli = obd("coins", "list", "--removed", "--json", config=tmp_path / "config.toml")
    assert listed_cli.returncode == 0, listed_cli.stderr
    rows = [json.loads(line) for line in listed_cli.stdout.splitlines()]
    assert [(r["interval"], r["status"]) for r in rows] == [("2s", "active"), ("1s", "removed")]

    # An export names the interval of each series: the two are never mixed.
    out = tmp_path / "export"
    export.run(tmp_path / "obd.sqlite", out, "ndjson")
    exported = {p.parent.parent.name: p for p in out.rglob("part.ndjson")}
    assert set(exported) <= {"interval=1s", "interval=2s"}
    assert "interval=1s" in exported
    ms = {"interval=1s": 1000, "interval=2s": 2000}
    for name, path in exported.items():
        assert all(json.loads(line)["ts"] % ms[name] == 0 for line in path.read_text().splitlines())

    # The config names the coin at its new interval: the daemon starts and resumes it.
    again = start_daemon(write_config(tmp_path, coins=TWO_SECOND_COIN))
    before = _count(again.http, "2s")
    wait_for(lambda: _count(again.http, "2s") >= before + 1)
    assert [c["interval"] for c in again.http.get("/v1/coins").json()["items"]] == ["2s"]
    assert _count(again.http, "1s") == listed[1]["count"]
    assert again.stop() == 0
