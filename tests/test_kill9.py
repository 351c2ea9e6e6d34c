"""kill -9 under ingest, again and again, on one file (issue 17, Must hold): four sim
coins at 1 s, two of them 1000 levels deep. After each kill the file passes
`PRAGMA integrity_check`, every snapshot a client saw through the API before the kill
is still there, byte for byte, and once collection runs again every slot since the
first start is a snapshot or a gap with a reason.

The slots each kill cost (slots between the last one committed and the kill, which
were in flight) are printed for the record (`pytest tests/test_kill9.py -s`).
"""

import json
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from tests.conftest import Daemon, wait_for, write_config
from tests.ws_support import coin_toml, now_slot

pytestmark = pytest.mark.slow

S = 1000
KILLS = 5
OFFSETS_S = [0.002, 0.02, 0.2, 0.5, 0.9]  # after a slot is due, when each kill comes
COINS = [("BTC/USDT", 1000), ("ETH/USDT", 1000), ("SOL/USDT", 10), ("BNB/USDT", 10)]


def _coin(symbol: str) -> dict[str, str]:
    return {"exchange": "sim", "symbol": symbol}


def _latest(daemon: Daemon, symbol: str) -> dict[str, Any] | None:
    answer = daemon.http.get("/v1/books/latest", params=_coin(symbol))
    return dict(answer.json()) if answer.status_code == 200 else None


def _seen(daemon: Daemon, symbol: str, since: int) -> dict[int, Any]:
    """Every snapshot of `symbol` from `since` that the API serves now, by slot."""
    params = {**_coin(symbol), "start": since, "format": "ndjson"}
    answer = daemon.http.get("/v1/books", params=params)
    assert answer.status_code == 200, answer.text
    rows = [line for line in answer.text.splitlines() if line]
    return {row["ts"]: row for row in map(json.loads, rows)}


def _integrity(path: Path) -> str:
    conn = apsw.Connection(str(path))  # as the next daemon would: the WAL is recovered
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_kill_9_under_ingest_loses_nothing_committed(tmp_path: Path) -> None:
    coins = "".join(coin_toml(symbol, depth) for symbol, depth in COINS)
    config = write_config(tmp_path, coins=coins)
    database = tmp_path / "obd.sqlite"
    seen: dict[tuple[str, int], Any] = {}
    lost: list[int] = []
    first = 0  # the first slot after the coins were added (at the first start)
    for kill in range(KILLS):
        daemon = Daemon(config)
        started = now_slot()
        first = first or started
        # Ingest is under way: every coin has committed a slot of this run, then a few more.
        for symbol, _ in COINS:
            wait_for(lambda s=symbol, d=daemon, t=started: (_latest(d, s) or {}).get("ts", 0) > t)
        time.sleep(0.5)
        for symbol, _ in COINS:
            for ts, row in _seen(daemon, symbol, started - 5 * S).items():
                seen[symbol, ts] = row
        # Each kill at another point of the second: just after a slot is due (its book
        # in flight to the writer), mid-way, just before the next.
        time.sleep(1 - time.time() % 1 + OFFSETS_S[kill])
        daemon.process.kill()
        killed = time.time_ns() // 1_000_000
        daemon.process.wait()
        daemon.http.close()
        assert daemon.process.stderr is not None
        daemon.process.stderr.close()
        assert _integrity(database) == "ok"
        lost.append(_in_flight(database, killed))

    daemon = Daemon(config)
    try:
        restarted = now_slot()
        for symbol, _ in COINS:
            wait_for(lambda s=symbol: (_latest(daemon, s) or {}).get("ts", 0) > restarted + S)
        # Nothing a client saw is gone or changed.
        for symbol, _ in COINS:
            now = _seen(daemon, symbol, first - 5 * S)
            for (name, ts), row in seen.items():
                if name == symbol:
                    assert now.get(ts) == row, (symbol, ts)
        # Every slot since the first start: a snapshot, or a gap with its reason.
        end = restarted
        down: dict[str, int] = {}
        for symbol, _ in COINS:
            window = {**_coin(symbol), "start": first + S, "end": end}
            coverage = daemon.http.get("/v1/coverage", params=window).json()
            gap_slots = sum((stop - start) // S for start, stop, _ in coverage["gaps"])
            assert coverage["present"] + gap_slots == coverage["expected"], coverage
            reasons = {reason for _, _, reason in coverage["gaps"]}
            assert reasons <= {"daemon_down", "not_synced"}, coverage
            down[symbol] = gap_slots
    finally:
        assert daemon.stop() == 0
    print(
        f"\nkill -9 x{KILLS}: slots in flight (lost) per kill, worst coin: {lost}; "
        f"slots down (kill to collecting again, all kills) per coin: {down}"
    )
    assert len(seen) > KILLS * len(COINS)


def _in_flight(database: Path, killed_ms: int) -> int:
    """Slots of the worst coin between its last committed snapshot and the kill."""
    conn = apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        last = conn.execute("SELECT max(ts) FROM snapshots GROUP BY series").fetchall()
    finally:
        conn.close()
    return max(0, *(killed_ms // S * S - row[0] for row in last)) // S
