"""Fidelity on recorded Binance traffic: spot, USD-M and COIN-M replayed at once into
one real daemon through unmodified ccxt, at 1 s slots. The first symbol of each
exchange runs clean; the second takes faults (a dropped frame, a skipped update id,
a 429 on the resync). Every stored snapshot must be a true book of its slot, and
every slot a snapshot or a gap with a reason."""

import time
from pathlib import Path

import pytest

from tests.conftest import wait_for, write_config
from tests.replay_support import (
    GAP_REASONS,
    RECORDINGS,
    LoggedDaemon,
    ReplayProcess,
    coins_toml,
    exchanges_toml,
    fidelity,
)

pytestmark = pytest.mark.slow

SPEED = 1.6  # 125 s recordings in ~78 s: room for 60+ one-second slots after start-up
DEPTH = 50
SLOTS = 62
TOLERANCE_MS = 250  # a frame sent this long before a slot may still be on its way
RUNS = {
    "binance": "binance_spot.jsonl.zst",
    "binanceusdm": "binanceusdm.jsonl.zst",
    "binancecoinm": "binancecoinm.jsonl.zst",
}


def _first_ts(daemon: LoggedDaemon) -> int | None:
    coins = daemon.http.get("/v1/coins").json()["items"]
    firsts = [coin["first_ts"] for coin in coins]
    return max(firsts) if len(coins) == 2 * len(RUNS) and None not in firsts else None


def test_binance_family_on_recorded_traffic(tmp_path: Path) -> None:
    replays = [
        ReplayProcess(exchange_id, RECORDINGS / name, tmp_path / f"{exchange_id}.sent", SPEED)
        for exchange_id, name in RUNS.items()
    ]
    coins = [(replay.exchange_id, symbol) for replay in replays for symbol in replay.symbols]
    config = write_config(tmp_path, exchanges_toml(replays), coins=coins_toml(coins, DEPTH))
    daemon = LoggedDaemon(config)
    try:
        start = wait_for(lambda: _first_ts(daemon), timeout_s=30)
        time.sleep(12)
        for replay in replays:  # faults on the second symbol only
            replay.control("drop", symbol=replay.symbols[1], n=1)
        time.sleep(15)
        for replay in replays:
            replay.control("fault", kind="sequence", symbol=replay.symbols[1])
            replay.control("rest-errors", status=429, n=1, path="depth")
        time.sleep(max(0.0, start / 1000 + SLOTS + 1.5 - time.time()))
        end = start + SLOTS * 1000
        verdicts = [
            fidelity(daemon.http, replay.exchange_id, symbol, replay.truth(), DEPTH,
                     (start, end), TOLERANCE_MS)
            for replay in replays
            for symbol in replay.symbols
        ]  # fmt: skip
        stats = [replay.stats() for replay in replays]
        log = list(daemon.log)
    finally:
        code = daemon.stop()
        for replay in replays:
            replay.stop()
    for verdict in verdicts:
        print(verdict)
    print(stats)
    print([e for e in log if e.get("event") in ("stream_down", "rest_failed")][:40])
    assert code == 0
    for verdict in verdicts:
        assert verdict.slots >= 60, verdict
        assert verdict.exact, verdict
        assert set(verdict.gaps) <= GAP_REASONS, verdict
    for stat in stats:
        assert stat["done"] is False  # still replaying when the window closed
        assert stat["unexpected"] == []
