"""Two daemons on one machine, A and B, collecting the same sim coin: A is stopped
and restarted, and its `daemon_down` hole is filled from B (the peer provider),
row for row as B stored it, labelled `backfill:peer:<B's capture>`."""

import time
from pathlib import Path
from typing import Any

from tests.conftest import Daemon, obd, wait_for, write_config
from tests.ws_support import coin_toml

COIN = {"exchange": "sim", "symbol": "BTC/USDT"}


def _books(daemon: Daemon, start: int, end: int | str) -> list[dict[str, Any]]:
    page = daemon.http.get("/v1/books", params={**COIN, "start": start, "end": end, "limit": 1000})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def _gaps(daemon: Daemon, start: int, end: int | str) -> list[list[Any]]:
    found = daemon.http.get("/v1/coverage", params={**COIN, "start": start, "end": end})
    gaps: list[list[Any]] = found.json()["gaps"]
    return gaps


def test_a_daemon_down_hole_is_healed_from_a_peer(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    coin = coin_toml("BTC/USDT", 10)
    b = Daemon(write_config(tmp_path / "b", coins=coin))
    a_config = write_config(
        tmp_path / "a",
        f"""
[history]
providers = ["plugin"]
[history.exchanges]
sim = ["peer"]
[history.peer]
url = "{b.url}"
""",
        coins=coin,
    )
    a = Daemon(a_config)
    try:
        wait_for(lambda: len(_books(a, 0, "now")) >= 3)
        last_before = _books(a, 0, "now")[-1]["ts"]
        assert a.stop() == 0
        time.sleep(6)  # A is down; B collects
        a = Daemon(a_config)
        # A accounts for its downtime as a daemon_down gap when its sampler stores its
        # first new row (before that, coverage only infers the hole, and a probe rightly
        # leaves inferred slots to collection).
        wait_for(lambda: _books(a, last_before + 5_000, "now"), timeout_s=20)  # a new row
        hole = [g for g in _gaps(a, 0, "now") if g[2] == "daemon_down"]
        [(hole_start, hole_end, _)] = hole
        assert hole_end - hole_start >= 5_000

        # Asked first: the peer could fill it (its /v1/coverage), nothing fetched yet.
        probed = a.http.get(
            "/v1/coverage",
            params={**COIN, "start": hole_start, "end": hole_end, "fillable": "true"},
        ).json()
        assert probed["fillable"] == [[hole_start, hole_end, "peer", ""]]
        assert probed["providers"] == ["peer"]
        grid = a.http.get("/v1/coverage/grid", params={**COIN, "start": hole_start}).json()
        assert (grid["providers"], grid["backfill"]) == (["peer"], True)  # the page's note

        done = obd(
            "backfill",
            "sim",
            "BTC/USDT",
            "--start",
            str(hole_start),
            "--end",
            str(hole_end),
            config=a_config,
        )
        assert done.returncode == 0, done.stderr
        slots = (hole_end - hole_start) // 1000
        assert f"{slots} slots, 0 already stored, {slots} back-filled" in done.stdout

        healed = _books(a, hole_start, hole_end)
        original = _books(b, hole_start, hole_end)
        assert len(healed) == len(original) == slots
        for row, peer_row in zip(healed, original, strict=True):
            assert row["capture"] == f"backfill:peer:{peer_row['capture']}"
            assert {**row, "capture": peer_row["capture"]} == peer_row
        assert [g for g in _gaps(a, hole_start, hole_end)] == []
        # The peer's own back-filled rows would not be taken: B has none here to give,
        # and A's copies are labelled so B would refuse them in turn.
        assert all(r["capture"] == "backfill:peer:synthetic" for r in healed)
    finally:
        a.stop()
        b.stop()
