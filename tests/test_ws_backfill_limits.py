"""Back-fill through `/v1/ws` history is metered: `[history]` caps the rows one request
and one connection may have fetched and stored; past a cap the request ends with a
`too_many_requests` error, and reading what is stored stays free."""

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.conftest import PLUGINS, Daemon, wait_for
from tests.ws_support import SIM, coin_toml, config, decode, now_slot, open_ws, sim_alias

S = 1000
LIMITS = """
[history]
backfill_rows_per_request = 50
backfill_rows_per_connection = 80
"""


def test_backfill_stops_at_the_request_and_connection_caps(
    tmp_path: Path, start_daemon: Any
) -> None:
    daemon: Daemon = start_daemon(config(tmp_path, coin_toml("BTC/USDT", 10), extra=LIMITS))
    wait_for(lambda: daemon.http.get("/v1/books/latest", params=SIM).status_code == 200)
    t = now_slot() - 600 * S  # long before the coin was added: every slot back-fillable
    answers = asyncio.run(_requests(daemon, t))

    # 100 slots asked, 50 a request: 50 arrive (stored, sent), then the error.
    rows, last = answers[0]
    assert rows == list(range(t, t + 50 * S, S))
    assert last["type"] == "error", last
    assert (last["id"], last["code"]) == (1, "too_many_requests")
    assert "backfill_rows_per_request" in last["message"]
    # 30 more fit in the connection's 80.
    rows, last = answers[1]
    assert rows == list(range(t + 200 * S, t + 230 * S, S))
    assert (last["type"], last["backfilled"]) == ("history_complete", 30)
    # The connection has used its 80: the next back-fill is refused...
    rows, last = answers[2]
    assert rows == []
    assert (last["code"], last["id"]) == ("too_many_requests", 3)
    assert "backfill_rows_per_connection" in last["message"]
    # ...but what is stored is read as before, with nothing to back-fill.
    rows, last = answers[3]
    assert rows == list(range(t, t + 50 * S, S))
    assert (last["type"], last["count"], last["backfilled"]) == ("history_complete", 50, 0)
    assert daemon.stop() == 0


async def _requests(daemon: Daemon, t: int) -> list[tuple[list[int], dict[str, Any]]]:
    ranges = [(t, t + 100 * S), (t + 200 * S, t + 230 * S), (t + 300 * S, t + 305 * S)]
    ranges.append((t, t + 50 * S))
    ws = await open_ws(daemon)
    answers = []
    try:
        for n, (start, end) in enumerate(ranges, 1):
            request = {"op": "history", **SIM, "start": start, "end": end, "id": n}
            await ws.send(json.dumps(request))
            rows: list[int] = []
            while (message := decode(await ws.recv()))["type"] == "history_chunk":
                rows += [row["ts"] for row in message["data"]]
            answers.append((rows, message))
    finally:
        await ws.close()
    return answers


METERS = """
[history]
backfill_rows_per_request = 1000
backfill_rows_per_minute_per_client = 60
backfill_concurrent_per_client = 1
"""
# The sim market under another id, its history fetched a row every 0.2 s: a back-fill
# that is still running when the next request comes.
SLOW_HISTORY = """
import asyncio

_fetch = _sim.SimExchange.fetch_history


async def _slow(self, *args):
    async for item in _fetch(self, *args):
        await asyncio.sleep(0.2)
        yield item


_sim.SimExchange.fetch_history = _slow
"""
SLOW = {"exchange": "slowsim", "symbol": "BTC/USDT"}


def test_back_fill_is_metered_per_client_across_connections(
    tmp_path: Path, start_daemon: Any
) -> None:
    """Back-fills at once and rows a minute count per client (auth off: its address),
    whatever connection it asks on; a refusal says when to ask again."""
    plugins = (PLUGINS, sim_alias(tmp_path, "slowsim", SLOW_HISTORY))
    coins = coin_toml("BTC/USDT", 10) + coin_toml("BTC/USDT", 10, exchange="slowsim")
    daemon: Daemon = start_daemon(config(tmp_path, coins, plugin_dirs=plugins, extra=METERS))
    for coin in (SIM, SLOW):
        wait_for(lambda c=coin: daemon.http.get("/v1/books/latest", params=c).status_code == 200)
    t = now_slot() - 3600 * S  # long before the coins were added: every slot back-fillable
    asyncio.run(_metered(daemon, t))
    assert daemon.stop() == 0


async def _history(
    ws: Any, n: int, start: int, end: int, coin: dict[str, str] = SIM, chunk: int = 500
) -> None:
    request = {"op": "history", **coin, "start": start, "end": end, "id": n, "chunk": chunk}
    await ws.send(json.dumps(request))


async def _until_end(ws: Any, n: int) -> tuple[list[int], dict[str, Any]]:
    rows: list[int] = []
    while True:
        message = decode(await ws.recv())
        if message.get("id") != n:
            continue
        if message["type"] != "history_chunk":
            return rows, message
        rows += [row["ts"] for row in message["data"]]


async def _metered(daemon: Daemon, t: int) -> None:
    first, second = await open_ws(daemon), await open_ws(daemon)
    try:
        # One back-fill at once per client: while one runs (slowly), another connection's
        # waits its turn; once it is cancelled, the other's goes ahead.
        await _history(first, 1, t, t + 100 * S, SLOW)
        await asyncio.sleep(2)  # it has begun (it runs for 20 s: 100 rows at 0.2 s)
        await _history(second, 2, t + 200 * S, t + 210 * S, SLOW)
        rows, last = await _until_end(second, 2)
        assert (rows, last["code"]) == ([], "too_many_requests"), last
        assert "backfill_concurrent_per_client" in last["message"]
        assert last["retry_after_s"] == 5
        await first.send(json.dumps({"op": "cancel", "id": 1}))
        while decode(await first.recv())["type"] != "cancelled":
            pass
        await _history(second, 3, t + 200 * S, t + 203 * S, SLOW)
        rows, last = await _until_end(second, 3)
        assert (len(rows), last["type"]) == (3, "history_complete"), last

        # 60 rows a minute (less the few above): a request for 100 gets what is left,
        # then when to ask again...
        await _history(first, 4, t, t + 100 * S)
        rows, last = await _until_end(first, 4)
        assert 30 < len(rows) <= 60, len(rows)
        assert rows == list(range(t, t + len(rows) * S, S))
        assert (last["type"], last["code"]) == ("error", "too_many_requests"), last
        assert "backfill_rows_per_minute_per_client" in last["message"]
        assert last["retry_after_s"] == 6  # a tenth of the minute's rows back
        # ...and another connection of the same client meets the same meter.
        await _history(second, 5, t + 200 * S, t + 210 * S)
        rows, last = await _until_end(second, 5)
        assert (rows, last["code"]) == ([], "too_many_requests"), last
        # What is stored is read as before.
        await _history(second, 6, t, t + 40 * S)
        rows, last = await _until_end(second, 6)
        assert (len(rows), last["type"], last["backfilled"]) == (40, "history_complete", 0)
    finally:
        await first.close()
        await second.close()
