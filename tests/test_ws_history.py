"""History over `/v1/ws`: stored rows, back-fill of what storage lacks, gaps, cancel,
limits and flat memory. The real daemon on port 0, real `websockets` clients."""

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection

from obd.auth import Forbidden
from obd.config import load
from obd.context import open_service
from tests.conftest import PLUGINS, Daemon, wait_for
from tests.ws_support import (
    SIM,
    Sampler,
    ask,
    coin_toml,
    config,
    decode,
    now_slot,
    open_ws,
    prefill,
    rss_mib,
    sim_alias,
)

S = 1000  # ms
NO_HISTORY = """
class _NoHistory:
    \"\"\"The sim market without the history capability: no `fetch_history` at all.\"\"\"

    synthetic = True

    def __init__(self, exchange_id, options):
        self._sim = _sim.SimExchange(exchange_id, options)

    async def check_availability(self, symbol):
        return await self._sim.check_availability(symbol)

    def watch(self, symbol, depth):
        return self._sim.watch(symbol, depth)

    async def close(self):
        await self._sim.close()


def _create(exchange_id, options):
    return _NoHistory(exchange_id, options or _sim.SimOptions())


PLUGIN = msgspec.structs.replace(PLUGIN, factory=_create)
"""
ETH_NOHIST = {"exchange": "nohist", "symbol": "ETH/USDT"}


def _latest_ts(daemon: Any) -> int:
    latest = daemon.http.get("/v1/books/latest", params=SIM)
    return int(latest.json()["ts"]) if latest.status_code == 200 else 0


def test_history_streams_stored_rows_and_backfills_the_hole_in_order(
    tmp_path: Path, start_daemon: Any
) -> None:
    t = now_slot() - 600 * S
    database = tmp_path / "obd.sqlite"
    # sim: stored [t, t+100s) and [t+200s, t+300s); the daemon was down in between.
    prefill(
        database,
        [(t, t + 100 * S), (t + 200 * S, t + 300 * S)],
        added_ts=t - 1,
        gaps=[(t + 100 * S, t + 200 * S, "daemon_down")],
    )
    # nohist (no history): stored [t, t+50s) and [t+100s, t+150s), disconnected between.
    prefill(
        database,
        [(t, t + 50 * S), (t + 100 * S, t + 150 * S)],
        added_ts=t - 1,
        exchange="nohist",
        symbol="ETH/USDT",
        gaps=[(t + 50 * S, t + 100 * S, "disconnected")],
    )
    coins = coin_toml("BTC/USDT", 10) + coin_toml("ETH/USDT", 10, "nohist")
    plugins = (PLUGINS, sim_alias(tmp_path, "nohist", NO_HISTORY))
    daemon = start_daemon(config(tmp_path, coins, plugin_dirs=plugins))
    # Once a live snapshot is stored, the sampler has recorded the downtime before it.
    # (The prefilled rows answer /latest at once: wait for a slot after them.)
    wait_for(lambda: _latest_ts(daemon) >= t + 300 * S)

    end = now_slot() + 30 * S  # the last 30 s cannot be filled yet
    sim, nohist, live = asyncio.run(_two_histories_while_live(daemon, t - 20 * S, end, t))

    # sim: everything from t-20s on, oldest first, in chunks of 100, seq counting up.
    chunks, complete = sim
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert all(len(c["data"]) == 100 for c in chunks[:-1])
    rows = [row for c in chunks for row in c["data"]]
    times = [row["ts"] for row in rows]
    assert times == list(range(t - 20 * S, times[-1] + 1, S))
    assert complete["count"] == len(rows)
    filled = [row["ts"] for row in rows if row["capture"] == "backfill:sim"]
    assert complete["backfilled"] == len(filled)
    assert set(range(t - 20 * S, t, S)) <= set(filled)  # before the coin was collected
    assert set(range(t + 100 * S, t + 200 * S, S)) <= set(filled)  # the hole
    assert not set(filled) & set(range(t, t + 100 * S, S))  # stored rows are not replaced
    # What could not be filled: the slots collection has not reached yet.
    assert complete["gaps"] == [[times[-1] + S, end, "pending"]]

    # nohist: its stored parts; the hole stays a gap with its reason, and no error.
    chunks, complete = nohist
    times = [row["ts"] for c in chunks for row in c["data"]]
    assert times == [*range(t, t + 50 * S, S), *range(t + 100 * S, t + 150 * S, S)]
    assert complete["count"] == 100
    assert complete["backfilled"] == 0
    assert complete["gaps"] == [[t + 50 * S, t + 100 * S, "disconnected"]]

    # The live feed went on meanwhile on the same connection.
    assert len(live) >= 1
    assert live == sorted(set(live))

    # The back-filled rows are stored with their provenance; the hole is no longer a gap.
    window = {**SIM, "start": t - 20 * S, "end": t + 300 * S, "limit": 1000}
    stored = daemon.http.get("/v1/books", params=window).json()["items"]
    assert [row["ts"] for row in stored] == list(range(t - 20 * S, t + 300 * S, S))
    captures = {row["ts"]: row["capture"] for row in stored}
    assert {captures[ts] for ts in range(t + 100 * S, t + 200 * S, S)} == {"backfill:sim"}
    assert {captures[ts] for ts in range(t, t + 100 * S, S)} == {"synthetic"}
    coverage = daemon.http.get("/v1/coverage", params={**SIM, "start": t, "end": t + 300 * S})
    assert coverage.json()["gaps"] == []
    assert daemon.stop() == 0
    # nohist has no `fetch_history`: the kernel answered for it, and nobody errored.
    unavailable = [e for e in daemon.log if e.get("event") == "backfill_unavailable"]
    assert {e["error"] for e in unavailable} == {"history not available from nohist"}


async def _two_histories_while_live(
    daemon: Daemon, start: int, end: int, t: int
) -> tuple[Any, Any, list[int]]:
    ws = await open_ws(daemon)
    assert (await ask(ws, {"op": "subscribe", **SIM}))["type"] == "subscribed"
    sim = {"op": "history", **SIM, "start": start, "end": end, "chunk": 100, "id": "sim"}
    nohist = {"op": "history", **ETH_NOHIST, "start": t, "end": t + 150 * S, "id": 2}
    await ws.send(json.dumps(sim))
    await ws.send(json.dumps(nohist))
    by_id: dict[Any, list[dict[str, Any]]] = {"sim": [], 2: []}
    done: dict[Any, dict[str, Any]] = {}
    live: list[int] = []
    while len(done) < 2 or not live:  # and a live snapshot, whenever it comes
        message = decode(await ws.recv())
        if message["type"] == "snapshot":
            live.append(message["data"]["ts"])
        elif message["type"] == "history_chunk":
            assert message["id"] not in done
            by_id[message["id"]].append(message)
        else:
            assert message["type"] == "history_complete", message
            done[message["id"]] = message
    await ws.close()
    return (by_id["sim"], done["sim"]), (by_id[2], done[2]), live


def test_history_adds_the_coin_runs_four_at_once_and_cancels(
    tmp_path: Path, start_daemon: Any
) -> None:
    # Back-fill limits high enough that each stream is still running when cancelled.
    unmetered = "[history]\nbackfill_rows_per_request = 10000000\n"
    unmetered += "backfill_rows_per_connection = 10000000\n"
    unmetered += "backfill_concurrent_per_client = 8\nbackfill_concurrent = 8\n"
    daemon = start_daemon(config(tmp_path, extra=unmetered))
    asyncio.run(_limits_and_cancel(daemon))
    # History made sure the coin is collected (at the configured default cadence).
    listed = daemon.http.get("/v1/coins").json()["items"]
    assert [(c["exchange"], c["symbol"], c["interval"]) for c in listed] == [
        ("sim", "SOL/USDT", "5m")
    ]
    assert daemon.stop() == 0


async def _limits_and_cancel(daemon: Daemon) -> None:
    ws = await open_ws(daemon)
    sol = {"exchange": "sim", "symbol": "SOL/USDT"}
    year = 365 * 86_400 * S
    # Back-filling years of slots takes a while: each of these is still running below.
    for n in range(4):
        start = now_slot() - (n + 2) * year
        await ws.send(
            json.dumps(
                {"op": "history", **sol, "start": start, "end": start + year, "chunk": 5, "id": n}
            )
        )
    fifth = {"op": "history", **sol, "start": 0, "end": year, "id": "fifth"}
    busy = await _answer_to(ws, fifth, "fifth")
    assert busy["type"] == "error"
    assert busy["code"] == "too_many_requests"
    duplicate = {"op": "history", **sol, "start": 0, "end": year, "id": 0}
    conflict = await _answer_to(ws, duplicate, 0, skip_chunks=True)
    assert (conflict["type"], conflict["code"]) == ("error", "conflict")
    # A chunk comes once its stream has made sure the coin is collected (checked after
    # this): a request cancelled before that point adds nothing, rightly, and all four
    # were cancelled that early about once in 30 runs.
    while decode(await ws.recv())["type"] != "history_chunk":
        pass

    # Cancel each: `cancelled` comes once its stream stopped, and nothing after it.
    cancelled: set[int] = set()
    for n in range(4):
        assert await _answer_to(ws, {"op": "cancel", "id": n}, n, skip_chunks=True) == {
            "type": "cancelled",
            "id": n,
        }
        cancelled.add(n)
    marker = await _answer_to(ws, {"op": "latest", **sol, "id": "marker"}, "marker")
    assert marker["type"] in ("latest", "error")
    unknown = await _answer_to(ws, {"op": "cancel", "id": 99}, 99)
    assert (unknown["type"], unknown["code"]) == ("error", "not_found")
    await ws.close()


async def _answer_to(
    ws: ClientConnection, request: dict[str, Any], request_id: Any, *, skip_chunks: bool = False
) -> dict[str, Any]:
    """Send `request`; its answer, passing over other requests' traffic (chunks of
    `request_id` itself too if `skip_chunks`, i.e. ones queued before this request)."""
    await ws.send(json.dumps(request))
    while True:
        message = decode(await ws.recv())
        if message.get("id") != request_id:
            continue
        if message["type"] == "history_chunk" and skip_chunks:
            continue
        return message


def test_history_of_100k_snapshots_streams_in_flat_memory(
    tmp_path: Path, start_daemon: Any
) -> None:
    count = 100_000
    end = now_slot() - 60 * S
    start = end - count * S
    prefill(tmp_path / "obd.sqlite", [(start, end)], added_ts=start - 1)
    daemon = start_daemon(config(tmp_path))
    pid = daemon.process.pid
    # Warm up (thread pools, page caches, allocator arenas), then measure a full stream.
    assert asyncio.run(_stream_count(daemon, start, start + 5_000 * S)) == 5_000
    baseline = rss_mib(pid)
    peak = Sampler(lambda: rss_mib(pid))
    streamed = asyncio.run(_stream_count(daemon, start, end))
    highest = peak.stop()
    assert streamed == count
    print(f"rss {baseline:.1f} MiB, highest while streaming {highest:.1f} MiB")
    assert highest - baseline < 8, (baseline, highest)
    assert daemon.stop() == 0


class _Frame(msgspec.Struct):
    """Just what counting needs: the snapshots stay undecoded (Raw), so the client is
    not what limits the stream."""

    type: str
    data: list[msgspec.Raw] = []
    count: int = 0
    gaps: list[Any] = []


_frames = msgspec.msgpack.Decoder(_Frame)


async def _stream_count(daemon: Daemon, start: int, end: int) -> int:
    ws = await open_ws(daemon, subprotocols=["obd.msgpack"])
    await ws.send(json.dumps({"op": "history", **SIM, "start": start, "end": end}))
    seen = 0
    while (message := _frames.decode(await ws.recv())).type == "history_chunk":
        seen += len(message.data)
    assert message.type == "history_complete", message
    assert message.count == seen
    assert message.gaps == []
    await ws.close()
    return seen


def test_adding_a_coin_for_history_needs_the_write_scope(tmp_path: Path) -> None:
    async def attempt() -> None:
        async with open_service(load(config(tmp_path))) as service:
            with pytest.raises(Forbidden, match="write"):
                await service.history("sim", "BTC/USDT", 0, 1_000_000, may_add=False)
            assert await service.list_coins() == []
            history = await service.history("sim", "BTC/USDT", 0, 5 * S, may_add=True)
            assert [c.symbol for c in await service.list_coins()] == ["BTC/USDT"]
            assert history.coin.symbol == "BTC/USDT"

    asyncio.run(attempt())
