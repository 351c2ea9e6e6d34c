"""Back-fill through `/v1/ws` history is metered: `[history]` caps the rows one request
and one connection may have fetched and stored; past a cap the request ends with a
`too_many_requests` error, and reading what is stored stays free."""

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.conftest import Daemon, wait_for
from tests.ws_support import SIM, coin_toml, config, decode, now_slot, open_ws

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
