"""MCP `get_history`/`download_history` with `backfill=true`: holes filled from the
history providers as WebSocket `history` fills them (the same stream and meters), over
HTTP at a running daemon and over stdio (`obd mcp`), with the official clients.
Without the flag nothing is written. (A `read` token's refusal: tests/test_auth.py.)"""

import csv
import json
from pathlib import Path
from typing import Any

import httpx
from mcp import ClientSession
from mcp.types import CallToolResult

from tests.conftest import wait_for
from tests.test_mcp_http import with_http
from tests.test_mcp_stdio import with_stdio
from tests.test_mcp_tools import COIN, T0, VALIDATORS, error, filled_config, ok
from tests.ws_support import SIM, coin_toml, config, now_slot

S = 1000
METERED = """
[history]
backfill_rows_per_minute_per_client = 60
"""


def _valid(tools: dict[str, Any], name: str, arguments: dict[str, Any], answer: Any) -> None:
    """Arguments and answer against the tool's schemas, as draft-07 and 2020-12 read them."""
    for validator in VALIDATORS:
        validator(tools[name].input_schema).validate(arguments)
        validator(tools[name].output_schema).validate(answer)


def test_backfill_over_http_fills_holes_labels_them_and_is_metered(
    tmp_path: Path, start_daemon: Any
) -> None:
    daemon = start_daemon(config(tmp_path, coin_toml("BTC/USDT", 10), extra=METERED))
    wait_for(lambda: daemon.http.get("/v1/books/latest", params=SIM).status_code == 200)
    t = now_slot() - 600 * S  # long before the coin was added: every slot back-fillable
    first = {**SIM, "start": t, "end": t + 20 * S}
    second = {**SIM, "start": t + 100 * S, "end": t + 110 * S, "format": "ndjson"}
    third = {**SIM, "start": t + 200 * S, "end": t + 300 * S}
    calls = [
        ("get_history", first),
        ("download_history", {**first, "format": "ndjson"}),
        ("get_history", {**first, "backfill": True}),
        ("get_history", {**first, "backfill": True}),
        ("download_history", {**second, "backfill": True}),
        ("get_history", {**third, "backfill": True}),
    ]

    async def scenario(session: ClientSession) -> Any:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        return tools, [await session.call_tool(name, arguments) for name, arguments in calls]

    tools, results = with_http(daemon.url, scenario)
    plain, plain_download, filled, again, linked, over = results

    # Without the flag: a read, and nothing is written.
    assert ok(plain)["rows"] == []
    assert "backfilled" not in ok(plain)
    assert "no snapshots" in error(plain_download)
    # With it: the hole before collection is filled, oldest first, nothing left missing.
    answer = ok(filled)
    assert [row["ts"] for row in answer["rows"]] == list(range(t, t + 20 * S, S))
    assert (answer["backfilled"], answer["gaps"], answer["gaps_truncated"]) == (20, [], False)
    _valid(tools, "get_history", calls[2][1], answer)
    assert (ok(again)["backfilled"], len(ok(again)["rows"])) == (0, 20)  # stored now
    # download_history fills first, then links to the range with its new rows.
    link = ok(linked)
    assert (link["backfilled"], link["count"], link["gaps"]) == (10, 10, [])
    _valid(tools, "download_history", calls[4][1], link)
    books = _ndjson(link["url"])
    assert [book["ts"] for book in books] == list(range(t + 100 * S, t + 110 * S, S))
    stored = _books(daemon.url, t, t + 20 * S)
    assert {book["capture"] for book in books + stored} == {"backfill:sim"}

    # Past the daemon's meter (60 rows a minute for this client, 30 used above): what
    # fits is stored, then the tool's error says when to ask again, as the WebSocket's.
    message = error(over)
    assert "backfill_rows_per_minute_per_client" in message
    assert message.startswith("backfill: stopped after ")
    assert over.meta == {"retry_after_s": 6}  # a tenth of the minute's rows back
    assert message.endswith("(retry_after_s: 6)")
    kept = _books(daemon.url, t + 200 * S, t + 300 * S)
    assert 60 - 30 <= len(kept) < 100, len(kept)  # what was left, plus the refill meanwhile
    assert f"stopped after {len(kept)} row(s)" in message
    assert daemon.stop() == 0


def _books(url: str, start: int, end: int) -> list[dict[str, Any]]:
    query = f"exchange=sim&symbol=BTC/USDT&start={start}&end={end}&format=ndjson"
    return _ndjson(f"{url}/v1/books?{query}")


def _ndjson(url: str) -> list[dict[str, Any]]:
    lines = httpx.get(url, timeout=30).raise_for_status().text.splitlines()
    return [json.loads(line) for line in lines]


def test_backfill_over_stdio_fills_recorded_gaps_and_the_time_before(tmp_path: Path) -> None:
    """`obd mcp` back-fills into the file it serves: the slots before the coin was
    collected and its recorded `disconnected` gaps (every 11th slot of the fixture)."""
    config_path = filled_config(tmp_path)
    span = {**COIN, "start": T0 - 10 * S, "end": T0 + 30 * S}
    out = {**span, "format": "csv", "path": "filled.csv"}

    async def scenario(session: ClientSession) -> list[CallToolResult]:
        return [
            await session.call_tool("get_history", span),
            await session.call_tool("download_history", {**out, "path": "before.csv"}),
            await session.call_tool("get_history", {**span, "backfill": True}),
            await session.call_tool("download_history", {**out, "backfill": True}),
        ]

    plain, before, filled, written = with_stdio(config_path, scenario)
    present = [T0 + n * S for n in range(30) if n % 11 != 10]
    assert [row["ts"] for row in ok(plain)["rows"]] == present
    assert ok(before)["count"] == len(present)  # nothing written by reading
    answer = ok(filled)
    assert [row["ts"] for row in answer["rows"]] == list(range(T0 - 10 * S, T0 + 30 * S, S))
    assert (answer["backfilled"], answer["gaps"]) == (12, [])
    download = ok(written)
    assert (download["backfilled"], download["count"]) == (0, 40)
    with Path(download["path"]).open() as file:
        captures = {int(row["ts"]): row["capture"] for row in csv.DictReader(file)}
    filled_slots = {ts for ts, capture in captures.items() if capture == "backfill:sim"}
    assert filled_slots == set(range(T0 - 10 * S, T0 + 30 * S, S)) - set(present)
    assert {captures[ts] for ts in present} == {"synthetic"}
