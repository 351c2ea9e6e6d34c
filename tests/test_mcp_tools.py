"""The MCP tool set in process (the SDK's in-memory client), on a real SQLite file
filled with sim books: schemas, results, size caps, error messages, resources."""

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from mcp import Client
from mcp.types import CallToolResult

from obd.auth import Authenticator, Principal
from obd.collect import lock
from obd.collect.lock import CollectorLock, collecting
from obd.config import load
from obd.context import Runtime, open_runtime, open_service
from obd.mcp.server import build
from obd.mcp.shapes import (
    HISTORY_BUDGET_BYTES,
    MAX_EXCHANGES,
    MAX_GAPS,
    MAX_HISTORY_ROWS,
    MAX_MARKETS,
)
from obd.mcp.tools import NAMES, Tools
from obd.research import sinks as download
from obd.service.markets import MarketView
from obd.storage import reader
from obd.storage.writer import GapIn, SnapshotIn
from tests.conftest import write_config
from tests.emulator import Emulator
from tests.emulator.config import binance_table

T = TypeVar("T")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SLOTS = 1_500  # BTC/USDT at 1 s from T0, depth 100; every 11th slot a recorded gap
COIN = {"exchange": "sim", "symbol": "BTC/USDT"}
MAX_RESULT_BYTES = 64 * 1024  # what any one tool result may weigh, as docs/MCP.md promises


async def fill(runtime: Runtime, slots: int = SLOTS) -> None:
    """Stored history of sim BTC/USDT, as if collected from T0 on (then removed)."""
    service = runtime.service
    await service.add_coin("sim", "BTC/USDT", "1s", 100)
    coin = await runtime.reader.run(reader.coin, "sim", "BTC/USDT")
    assert coin is not None
    await runtime.writer.call(
        lambda conn: conn.execute("UPDATE series SET added_ts = ? WHERE id = ?", (T0 - 1, coin.id))
    )
    sim = runtime.exchanges.get("sim")
    for index in range(slots):
        ts = T0 + index * 1000
        if index % 11 == 10:
            await runtime.writer.put(GapIn(coin.id, ts, ts + 1000, "disconnected"))
        else:
            book = sim.book_at("BTC/USDT", ts - 50, 100)  # type: ignore[attr-defined]
            await runtime.writer.put(SnapshotIn(coin, ts, book, ts - 40, "synthetic"))
    await service.remove_coin("sim", "BTC/USDT")  # a running daemon must not add to it


def filled_config(directory: Path) -> Path:
    config = write_config(directory)

    async def go() -> None:
        async with open_runtime(load(config)) as runtime:
            await fill(runtime)

    asyncio.run(go())
    return config


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filled_config(tmp_path_factory.mktemp("stored"))


def with_client(
    config: Path,
    scenario: Callable[[Client], Awaitable[T]],
    authenticator: Authenticator | None = None,
) -> T:
    """`scenario` against the tools as `obd mcp` serves them (or, with an
    authenticator, as the daemon's /mcp does), in process."""

    async def go() -> T:
        async with open_service(load(config)) as service:
            tools = (
                Tools(service, download_dir=load(config).download_dir)
                if authenticator is None
                else Tools(service, authenticator=authenticator)
            )
            async with Client(build(tools)) as client:
                return await scenario(client)

    return asyncio.run(go())


def call(config: Path, name: str, **arguments: Any) -> CallToolResult:
    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool(name, arguments)

    return with_client(config, scenario)


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    text = result.content[0].text  # type: ignore[union-attr]
    assert json.loads(text) == result.structured_content  # the same answer, twice
    return result.structured_content


def error(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    message = result.content[0].text  # type: ignore[union-attr]
    assert "Traceback" not in message
    return str(message)


def test_lists_every_tool_with_schemas_and_descriptions(stored: Path) -> None:
    async def scenario(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in with_client(stored, scenario)}
    assert tuple(tools) == NAMES
    for tool in tools.values():
        assert tool.description is not None
        assert len(tool.description) > 80, tool.name
        assert tool.input_schema["type"] == "object"
        assert "ctx" not in tool.input_schema.get("properties", {})
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        assert tool.annotations is not None
        assert tool.title
    history = tools["get_history"].input_schema
    assert history["required"] == ["exchange", "symbol", "start", "end"]
    # An optional argument is advertised as its type: leaving it out means the default.
    assert history["properties"]["limit"]["type"] == "integer"
    assert history["properties"]["limit"]["maximum"] == MAX_HISTORY_ROWS
    assert tools["list_coins"].annotations.read_only_hint  # type: ignore[union-attr]


VALIDATORS = (Draft7Validator, Draft202012Validator)
UNPORTABLE = ("prefixItems", "$ref", "$defs", "$dynamicRef", "unevaluatedItems")


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _schemas(config: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    async def scenario(client: Client) -> Any:
        return (await client.list_tools()).tools

    return {t.name: (t.input_schema, t.output_schema or {}) for t in with_client(config, scenario)}


def test_every_schema_reads_the_same_under_draft_07_and_2020_12(stored: Path) -> None:
    """Issue 13: Ajv (draft-07, the TypeScript SDK) read `prefixItems` + `items: false` as
    "no items", so every book failed. Each schema is a valid draft-07 and 2020-12 schema
    and uses none of the forms the two read differently."""
    for name, pair in _schemas(stored).items():
        for schema in pair:
            for validator in VALIDATORS:
                validator.check_schema(schema)
            for key, value in _walk(schema):
                assert key not in UNPORTABLE, (name, key)
                assert not (key == "items" and isinstance(value, bool | list)), (name, key)


def test_real_results_validate_under_both_drafts(stored: Path, tmp_path: Path) -> None:
    """Every tool's real answers (books with levels too) against its output schema, and
    the arguments that produced them against its input schema, with both validators."""
    calls = [
        ("list_coins", {}),
        ("list_exchanges", {}),
        ("list_markets", {"exchange": "sim", "query": "usdt", "limit": 3}),
        ("check_availability", {"exchange": "sim", "symbol": "ETH/USDT"}),
        ("check_availability", {"exchange": "sim", "symbol": "ZZZNOTLISTED/USDT"}),
        ("get_latest", {**COIN, "levels": 5}),
        ("get_history", {**COIN, "start": T0, "end": T0 + 20_000, "levels": 3}),
        ("get_history", {**COIN, "start": T0, "end": "2026-01-01T00:01:00Z", "limit": 5}),
        ("coverage", {**COIN, "start": T0, "end": T0 + 60_000}),
        ("download_history", {**COIN, "start": T0, "end": T0 + 3_000, "format": "ndjson"}),
    ]
    schemas = _schemas(stored)

    async def scenario(client: Client) -> list[CallToolResult]:
        return [await client.call_tool(name, arguments) for name, arguments in calls]

    for (name, arguments), result in zip(calls, with_client(stored, scenario), strict=True):
        inputs, outputs = schemas[name]
        answer = ok(result)
        for validator in VALIDATORS:
            validator(inputs).validate(arguments)
            validator(outputs).validate(answer)
    assert {name for name, _ in calls} | {"add_coin", "remove_coin"} == set(NAMES)


def test_get_history_gives_compact_rows_and_says_how_to_go_on(stored: Path) -> None:
    first = ok(call(stored, "get_history", **COIN, start=T0, end=T0 + 60_000, limit=20))
    assert len(first["rows"]) == 20
    assert first["truncated"] is True
    row = first["rows"][0]
    assert set(row) == {
        "ts",
        "ts_iso",
        "best_bid",
        "best_ask",
        "mid",
        "spread_bps",
        "bid_size_10",
        "ask_size_10",
        "imbalance_10",
    }
    assert row["ts"] == T0
    assert row["ts_iso"] == "2026-01-01T00:00:00Z"
    assert row["best_bid"] < row["mid"] < row["best_ask"]
    assert str(first["next_start"]) in first["note"]
    rest = ok(call(stored, "get_history", **COIN, start=first["next_start"], end=T0 + 60_000))
    times = [row["ts"] for row in first["rows"] + rest["rows"]]
    assert times == sorted(set(times))
    assert len(times) == 60 - 60 // 11  # every slot but the gaps
    assert rest["truncated"] is False
    assert rest["next_start"] is None


def test_get_history_every_samples_one_row_per_bucket(stored: Path) -> None:
    found = ok(
        call(
            stored,
            "get_history",
            **COIN,
            start="2026-01-01T00:00:00Z",
            end=T0 + 600_000,
            every="1m",
        )
    )
    # The first stored snapshot of each minute: slot 120 is a gap, so 121 stands in.
    firsts = [60 * minute + (60 * minute % 11 == 10) for minute in range(10)]
    assert [row["ts"] for row in found["rows"]] == [T0 + slot * 1000 for slot in firsts]
    assert found["truncated"] is False


def test_get_history_levels_adds_the_top_of_each_book(stored: Path) -> None:
    found = ok(call(stored, "get_history", **COIN, start=T0, end=T0 + 5_000, levels=3))
    row = found["rows"][0]
    assert len(row["bids"]) == len(row["asks"]) == 3
    assert row["bids"][0][0] == row["best_bid"]


def test_get_latest_cuts_levels(stored: Path) -> None:
    latest = ok(call(stored, "get_latest", **COIN, levels=7))
    assert len(latest["bids"]) == len(latest["asks"]) == 7
    assert latest["ts"] == T0 + (SLOTS - 1) * 1000
    assert len(ok(call(stored, "get_latest", **COIN))["bids"]) == 10


def test_results_stay_small_whatever_is_asked(stored: Path) -> None:
    """Worst cases: the widest range, the most rows and levels, more gaps than shown."""
    everything = {**COIN, "start": 0, "end": "2100-01-01"}
    cases = [
        ("get_history", {**everything, "limit": MAX_HISTORY_ROWS}),
        ("get_history", {**everything, "limit": MAX_HISTORY_ROWS, "levels": 20}),
        ("get_history", {**everything, "limit": MAX_HISTORY_ROWS, "levels": 1, "every": "1s"}),
        ("get_latest", {**COIN, "levels": 100}),
        ("coverage", everything),
        ("list_coins", {}),
    ]

    async def scenario(client: Client) -> list[CallToolResult]:
        return [await client.call_tool(name, arguments) for name, arguments in cases]

    for (name, arguments), result in zip(cases, with_client(stored, scenario), strict=True):
        answer = ok(result)
        text = result.content[0].text  # type: ignore[union-attr]
        assert len(text.encode()) <= MAX_RESULT_BYTES, (name, arguments, len(text))
        if name == "get_history":
            assert len(text.encode()) <= HISTORY_BUDGET_BYTES, (arguments, len(text))
            assert answer["truncated"] is True
            if "levels" not in arguments:  # the budget leaves room for the whole limit
                assert len(answer["rows"]) == MAX_HISTORY_ROWS
    coverage = ok(call(stored, "coverage", **everything))
    assert len(coverage["gaps"]) == MAX_GAPS
    assert coverage["gaps_total"] > MAX_GAPS
    assert coverage["truncated"] is True


@pytest.mark.parametrize(
    ("name", "arguments", "mentions"),
    [
        ("get_history", {**COIN, "start": T0 + 5, "end": T0}, "start: must be before end"),
        ("get_history", {**COIN, "start": T0, "end": T0 + 1, "limit": 10**6}, "limit:"),
        ("get_history", {**COIN, "start": T0, "end": T0 + 1, "limit": "many"}, "limit:"),
        ("get_history", {**COIN, "start": True, "end": T0}, "start:"),
        ("get_history", {**COIN, "start": [1], "end": T0}, "start:"),
        ("get_history", {**COIN, "start": "yesterday", "end": T0}, "start:"),
        ("get_history", {**COIN, "start": T0, "end": T0 + 1, "every": "1y"}, "every:"),
        ("get_history", {**COIN, "start": T0, "end": T0 + 1, "levels": 999}, "levels:"),
        ("get_history", {**COIN, "end": T0}, "start: required"),
        ("get_history", {**COIN, "start": T0, "end": T0 + 1, "lmit": 3}, "lmit: unknown"),
        ("get_latest", {**COIN, "levels": 0}, "levels:"),
        ("get_latest", {"exchange": "nope", "symbol": "BTC/USDT"}, "exchange 'nope'"),
        ("get_latest", {"exchange": "sim", "symbol": "ETH/USDT"}, "list_coins"),
        ("get_latest", {"exchange": "SIM!", "symbol": "BTC/USDT"}, "exchange:"),
        ("get_latest", {"exchange": "sim", "symbol": 5}, "symbol:"),
        ("coverage", {**COIN, "start": T0, "end": T0 - 1000}, "start: must be before end"),
        ("download_history", {**COIN, "start": 0, "end": 1, "format": "xls"}, "format:"),
        ("download_history", {**COIN, "start": 0, "end": 1, "format": "csv"}, "no snapshots"),
        ("check_availability", {"exchange": "nope", "symbol": "BTC/USDT"}, "exchange 'nope'"),
    ],
)
def test_bad_arguments_are_tool_errors_naming_the_argument(
    stored: Path, name: str, arguments: dict[str, Any], mentions: str
) -> None:
    assert mentions in error(call(stored, name, **arguments))


def test_unknown_tool_is_a_tool_error(stored: Path) -> None:
    assert "nope" in error(call(stored, "nope"))


def test_add_and_remove_coin(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    async def scenario(client: Client) -> list[CallToolResult]:
        return [
            await client.call_tool("check_availability", {"exchange": "sim", "symbol": "ETH/USDT"}),
            await client.call_tool(
                "check_availability", {"exchange": "sim", "symbol": "ZZZNOTLISTED/USDT"}
            ),
            await client.call_tool(
                "add_coin", {"exchange": "sim", "symbol": "ETH/USDT", "interval": "1s"}
            ),
            await client.call_tool(
                "add_coin", {"exchange": "sim", "symbol": "ETH/USDT", "interval": "1s"}
            ),
            await client.call_tool(
                "add_coin", {"exchange": "sim", "symbol": "ETH/USDT", "interval": "5s"}
            ),
            await client.call_tool("add_coin", {"exchange": "sim", "symbol": "ZZZNOTLISTED/USDT"}),
            await client.call_tool(
                "add_coin", {"exchange": "sim", "symbol": "ETH/USDT", "depth": 0}
            ),
            await client.call_tool("list_coins", {}),
            await client.call_tool("remove_coin", {"exchange": "sim", "symbol": "ETH/USDT"}),
            await client.call_tool("remove_coin", {"exchange": "sim", "symbol": "ETH/USDT"}),
        ]

    listed, unlisted, added, again, other, missing, shallow, coins, removed, twice = with_client(
        config, scenario
    )
    assert ok(listed)["available"] is True
    assert ok(unlisted)["available"] is False
    first = ok(added)
    assert first["created"] is True
    assert first["collecting"] is False  # no daemon holds the collector lock
    assert "obd run" in first["note"]
    assert ok(again)["created"] is False
    assert "remove it first" in error(other)
    assert "ZZZNOTLISTED/USDT is not listed on sim; check_availability" in error(missing)
    assert "depth:" in error(shallow)
    assert [coin["symbol"] for coin in ok(coins)["coins"]] == ["ETH/USDT"]
    assert ok(removed)["coin"]["status"] == "removed"
    assert "not being collected" in error(twice)


@pytest.mark.parametrize("form", ["ndjson", "csv", "parquet"])
def test_download_history_writes_a_file(stored: Path, tmp_path: Path, form: str) -> None:
    if form == "parquet" and not download.parquet_available():
        pytest.skip("pyarrow is not installed")
    relative = f"{tmp_path.name}/range.{form}"  # a folder made inside the download dir
    target = stored.parent.resolve() / "downloads" / relative
    arguments = {**COIN, "start": T0, "end": T0 + 30_000, "format": form, "path": relative}
    written = ok(call(stored, "download_history", **arguments))
    assert written["path"] == str(target)
    assert written["count"] == 30 - 30 // 11
    assert written["start_iso"] == "2026-01-01T00:00:00Z"
    assert written["size_bytes"] == target.stat().st_size
    assert not list(target.parent.glob(".*partial"))
    stored_books = _stored_books(stored, T0, T0 + 30_000)
    if form == "ndjson":
        lines = target.read_text().splitlines()
        assert [json.loads(line) for line in lines] == stored_books
    elif form == "csv":
        rows = target.read_text().splitlines()
        assert rows[0] == ",".join(download.CSV_HEADER)
        first_bid = rows[1].split(",")
        assert float(first_bid[7]) == stored_books[0]["bids"][0][0]
        assert first_bid[4] == stored_books[0]["capture"]
        assert len(rows) - 1 == sum(len(b["bids"]) + len(b["asks"]) for b in stored_books)
    else:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        table = pq.read_table(target)
        assert table.column("ts").to_pylist() == [book["ts"] for book in stored_books]
        assert table.column("bid_price").to_pylist()[0] == [b[0] for b in stored_books[0]["bids"]]
    again = call(stored, "download_history", **arguments)
    assert "already exists" in error(again)


def test_download_history_default_path_and_missing_pyarrow(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = ok(call(stored, "download_history", **COIN, start=T0, end=T0 + 3_000, format="csv"))
    assert Path(written["path"]).parent == stored.parent / "downloads"
    assert Path(written["path"]).name == f"sim_BTC-USDT_{T0}_{T0 + 3_000}.csv"
    monkeypatch.setattr(download, "parquet_available", lambda: False)
    refused = call(stored, "download_history", **COIN, start=T0, end=T0 + 3_000, format="parquet")
    assert "format: parquet needs pyarrow" in error(refused)


def test_resources_list_coins_and_latest_snapshots(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    async def scenario(client: Client) -> Any:
        await client.call_tool("add_coin", {"exchange": "sim", "symbol": "ETH/USDT"})
        listed = (await client.list_resources()).resources
        coins = await client.read_resource("obd://coins")
        return listed, coins

    listed, coins = with_client(config, scenario)
    uris = [str(resource.uri) for resource in listed]
    assert uris == ["obd://coins", "obd://latest?exchange=sim&symbol=ETH%2FUSDT"]
    assert json.loads(coins.contents[0].text)["coins"][0]["symbol"] == "ETH/USDT"


def test_latest_resource_reads_a_snapshot(stored: Path) -> None:
    async def scenario(client: Client) -> Any:
        return await client.read_resource("obd://latest?exchange=sim&symbol=BTC%2FUSDT")

    snapshot = json.loads(with_client(stored, scenario).contents[0].text)
    assert snapshot["ts"] == T0 + (SLOTS - 1) * 1000
    assert len(snapshot["bids"]) == 100


def test_collector_lock_is_exclusive_and_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "ACQUIRE_WAIT_S", 0.05)
    database = tmp_path / "obd.sqlite"

    async def go() -> None:
        assert not collecting(database)
        async with CollectorLock(database):
            assert collecting(database)
            with pytest.raises(Exception, match=r"already collecting"):
                async with CollectorLock(database):
                    pass
        assert not collecting(database)

    asyncio.run(go())


def test_obd_cli_does_not_import_mcp() -> None:
    import subprocess
    import sys

    code = "import sys, obd.cli; print(sorted(m for m in ('mcp', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _stored_books(config: Path, start: int, end: int) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with open_service(load(config)) as service:
            page = await service.books("sim", "BTC/USDT", start, end, 1000)
            return [json.loads(msgspec.json.encode(item)) for item in page.items]

    return asyncio.run(go())


class _ReadOnly:
    async def authenticate(self, authorization: str | None) -> Principal:
        return Principal(subject="reader", scopes=frozenset({"read"}))


def test_over_http_writes_need_the_write_scope(stored: Path) -> None:
    linking = {**COIN, "start": T0, "end": "2026-01-01T00:00:02Z", "format": "ndjson"}

    async def scenario(client: Client) -> list[CallToolResult]:
        return [
            await client.call_tool("add_coin", {"exchange": "sim", "symbol": "ETH/USDT"}),
            await client.call_tool("remove_coin", COIN),
            await client.call_tool("list_coins", {}),
            await client.call_tool("download_history", linking),
            await client.call_tool("download_history", {**linking, "format": "parquet"}),
            await client.call_tool("download_history", {**linking, "path": "x.ndjson"}),
        ]

    added, removed, listed, linked, parquet, path = with_client(stored, scenario, _ReadOnly())
    assert "needs the 'write' scope" in error(added)
    assert "needs the 'write' scope" in error(removed)
    assert ok(listed)["coins"] == []
    assert ok(linked)["url"].startswith("/v1/books?exchange=sim&symbol=BTC%2FUSDT")
    assert ok(linked)["url"].endswith(f"&start={T0}&end={T0 + 2000}&format=ndjson")
    # Over HTTP only ndjson is served: said up front, never substituted silently.
    assert error(parquet).startswith("format: over HTTP download_history serves ndjson only")
    assert error(path).startswith("path: over HTTP nothing is written")


def test_download_history_stays_inside_the_download_directory(stored: Path) -> None:
    """Absolute paths elsewhere, `..`, and links inside pointing out are refused, naming
    `path`; nothing is written (or made) outside the directory."""
    root = stored.parent.resolve() / "downloads"
    root.mkdir(exist_ok=True)
    outside = stored.parent / "outside"
    outside.mkdir(exist_ok=True)
    (root / "out-link").unlink(missing_ok=True)
    (root / "out-link").symlink_to(outside)  # a folder link leading out
    (root / "file-link.csv").unlink(missing_ok=True)
    (root / "file-link.csv").symlink_to(outside / "target.csv")  # a dangling file link
    escapes = [
        "/etc/x",
        "/nonexistent/dir/x.ndjson",
        "../../x",
        "../outside/x.csv",
        "sub/../../x.csv",
        "out-link/x.csv",
        "out-link/deeper/x.csv",
        "~/x.csv",
        "",
        ".",
    ]
    base = {**COIN, "start": T0, "end": T0 + 3_000, "format": "csv"}

    async def scenario(client: Client) -> list[CallToolResult]:
        calls = [{**base, "path": path} for path in escapes]
        calls.append({**base, "path": "file-link.csv"})
        calls.append({**base, "path": str(root / "inside" / "abs.csv")})  # absolute, inside
        return [await client.call_tool("download_history", arguments) for arguments in calls]

    *refused, link, inside = with_client(stored, scenario)
    for path, result in zip(escapes, refused, strict=True):
        assert error(result).startswith("path: "), path
    assert "leaves the download directory" in error(refused[0])
    assert "already exists" in error(link)  # a link is never written through
    assert ok(inside)["path"] == str(root / "inside" / "abs.csv")
    assert list(outside.iterdir()) == []
    assert not Path("/nonexistent").exists()
    assert not (stored.parent / "x.csv").exists()


def test_download_dir_is_configurable(tmp_path: Path) -> None:
    config = filled_config(tmp_path)
    config.write_text(config.read_text() + '\n[mcp]\ndownload_dir = "exports"\n')
    arguments = {**COIN, "start": T0, "end": T0 + 3_000, "format": "ndjson", "path": "a.ndjson"}
    written = ok(call(config, "download_history", **arguments))
    assert written["path"] == str(tmp_path.resolve() / "exports" / "a.ndjson")


def test_list_markets_filters_pages_and_marks_collected(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    async def scenario(client: Client) -> list[CallToolResult]:
        await client.call_tool("add_coin", {"exchange": "sim", "symbol": "ETH/USDT"})
        return [
            await client.call_tool("list_markets", {"exchange": "sim"}),
            await client.call_tool("list_markets", {"exchange": "sim", "query": "eth"}),
            await client.call_tool("list_markets", {"exchange": "sim", "limit": 3}),
            await client.call_tool("list_markets", {"exchange": "sim", "limit": 3, "offset": 6}),
            await client.call_tool("list_markets", {"exchange": "sim", "query": "ZZZNOTLISTED"}),
            await client.call_tool("list_markets", {"exchange": "sim", "limit": 0}),
            await client.call_tool("list_markets", {"exchange": "nope"}),
            await client.call_tool("list_exchanges", {}),
        ]

    every, eth, first, last, none, zero, unknown, exchanges = with_client(config, scenario)
    markets = ok(every)["markets"]
    symbols = [market["symbol"] for market in markets]
    assert {"BTC/USDT", "ETH/USDT"} <= set(symbols)
    assert "ZZZNOTLISTED/USDT" not in symbols
    assert markets[symbols.index("BTC/USDT")] == {
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "type": "spot",
        "active": True,
        "collected": False,
    }
    assert [m["symbol"] for m in ok(eth)["markets"]] == ["ETH/USDT"]
    assert ok(eth)["markets"][0]["collected"] is True
    page = ok(first)
    assert (len(page["markets"]), page["truncated"], page["next_offset"]) == (3, True, 3)
    assert page["total"] == len(symbols)
    assert ok(last)["next_offset"] is None
    assert ok(none)["markets"] == []
    assert "limit:" in error(zero)
    assert "exchange 'nope'" in error(unknown)
    listed = {e["id"]: e for e in ok(exchanges)["exchanges"]}
    assert listed["sim"] == {"id": "sim", "plugin": "sim", "synthetic": True, "collected": 1}
    assert listed["binance"]["plugin"] == "ccxt"
    assert listed["binance"]["synthetic"] is False
    assert "ccxt" not in listed  # a plugin's name, not an exchange id


def test_a_plugin_name_is_not_an_exchange(stored: Path) -> None:
    for name in ("check_availability", "add_coin", "list_markets", "get_latest"):
        symbol = {} if name == "list_markets" else {"symbol": "BTC/USDT"}
        message = error(call(stored, name, exchange="ccxt", **symbol))
        assert message.startswith("'ccxt' is the name of a plugin serving many exchanges"), name
        assert "list_exchanges" in message
        assert "try again" not in message


def test_list_coins_says_whether_anything_collects(tmp_path: Path) -> None:
    config = write_config(tmp_path)

    async def scenario(client: Client) -> dict[str, Any]:
        await client.call_tool("add_coin", {"exchange": "sim", "symbol": "ETH/USDT"})
        return ok(await client.call_tool("list_coins", {}))

    idle = with_client(config, scenario)
    assert idle["collecting"] is False
    assert idle["coins"][0]["status"] == "idle"
    assert "obd run" in idle["note"]

    async def go() -> dict[str, Any]:
        async with CollectorLock(load(config).database), open_service(load(config)) as service:
            tools = Tools(service, daemon_running=lambda: collecting(load(config).database))
            async with Client(build(tools)) as client:
                return ok(await client.call_tool("list_coins", {}))

    busy = asyncio.run(go())
    assert busy["collecting"] is True
    assert busy["coins"][0]["status"] == "active"
    assert busy["note"] is None


def test_new_results_stay_small(tmp_path: Path) -> None:
    """list_markets at its widest and list_exchanges with every ccxt id."""
    config = write_config(tmp_path)

    async def scenario(client: Client) -> list[CallToolResult]:
        return [
            await client.call_tool("list_markets", {"exchange": "sim", "limit": MAX_MARKETS}),
            await client.call_tool("list_exchanges", {}),
        ]

    for result in with_client(config, scenario):
        ok(result)
        assert len(result.content[0].text.encode()) <= MAX_RESULT_BYTES  # type: ignore[union-attr]
    # The worst case a market can weigh, times the most a page holds.
    worst = MarketView(
        "X" * 40 + "/" + "Y" * 20 + ":" + "Y" * 20, "X" * 40, "Y" * 20, "option", False, False
    )
    assert len(msgspec.json.encode(worst)) * MAX_MARKETS <= MAX_RESULT_BYTES
    assert 70 * MAX_EXCHANGES <= MAX_RESULT_BYTES


def test_list_markets_on_an_emulated_ccxt_exchange(tmp_path: Path) -> None:
    """ccxt's loaded markets (Binance's exchangeInfo, emulated), a halted one inactive;
    600 listings stay under the size cap."""
    with Emulator(extra_symbols=600) as emu:
        emu.delist("BNBUSDT")
        config = write_config(tmp_path, binance_table(emu))

        async def scenario(client: Client) -> list[CallToolResult]:
            binance = {"exchange": "binance"}
            return [
                await client.call_tool("list_markets", {**binance, "query": "bnb"}),
                await client.call_tool("list_markets", {**binance, "query": "BTC/USDT"}),
                await client.call_tool("list_markets", {**binance, "limit": MAX_MARKETS}),
            ]

        bnb, btc, widest = with_client(config, scenario)
    assert ok(bnb)["markets"] == [
        {
            "symbol": "BNB/USDT",
            "base": "BNB",
            "quote": "USDT",
            "type": "spot",
            "active": False,
            "collected": False,
        }
    ]
    assert ok(btc)["markets"][0]["symbol"] == "BTC/USDT"
    page = ok(widest)
    assert page["total"] == 603
    assert len(page["markets"]) == MAX_MARKETS
    assert page["truncated"] is True
    assert len(widest.content[0].text.encode()) <= MAX_RESULT_BYTES  # type: ignore[union-attr]


def test_list_markets_needs_the_capability(tmp_path: Path) -> None:
    """A plugin without `list_markets` (ListsMarkets is optional): the tool says so."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(mode=0o755)
    (plugins / "plain.py").write_text(
        "from obd.plugin import Availability, PluginSpec\n\n\n"
        "class Plain:\n"
        "    synthetic = True\n\n"
        "    async def check_availability(self, symbol):\n"
        "        return Availability(True)\n\n"
        "    async def close(self):\n"
        "        pass\n\n\n"
        "PLUGIN = PluginSpec(name='plain', factory=lambda exchange_id, options: Plain())\n"
    )
    config = write_config(tmp_path, plugins=[plugins])
    message = error(call(config, "list_markets", exchange="plain"))
    assert message.startswith("exchange: the plugin serving 'plain' cannot list its markets")
    listed = ok(call(config, "list_exchanges"))["exchanges"]
    assert listed == [{"id": "plain", "plugin": "plain", "synthetic": True, "collected": 0}]
