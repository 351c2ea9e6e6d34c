"""`obd mcp` as an agent runs it: a subprocess spoken to over stdio by the official client,
on the same SQLite file as a running daemon."""

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from mcp import ClientSession, StdioServerParameters, stdio_client

from obd.mcp.tools import NAMES
from tests.conftest import REPO, obd, write_config
from tests.test_mcp_tools import COIN, T0, error, filled_config, ok

T = TypeVar("T")
ONE_SECOND_BTC = """
[[coins]]
exchange = "sim"
symbol = "BTC/USDT"
interval = "1s"
depth = 5
"""


def with_stdio(
    config: Path,
    scenario: Callable[[ClientSession], Awaitable[T]],
    *extra: str,
    errlog: IO[str] = sys.stderr,
) -> T:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "obd", "mcp", "--config", str(config), *extra],
        env={"OBD_LOG_LEVEL": "info"},
        cwd=REPO,
    )

    async def go() -> T:
        async with (
            stdio_client(params, errlog=errlog) as streams,
            ClientSession(*streams) as session,
        ):
            await session.initialize()
            return await scenario(session)

    return asyncio.run(go())


async def _until_ok(session: ClientSession, name: str, arguments: dict[str, Any]) -> Any:
    deadline = time.monotonic() + 15
    while True:
        result = await session.call_tool(name, arguments)
        if not result.is_error:
            return ok(result)
        assert time.monotonic() < deadline, result.content
        await asyncio.sleep(0.2)


def test_stdio_serves_every_tool_on_the_file(tmp_path: Path) -> None:
    config = filled_config(tmp_path)
    target = tmp_path.resolve() / "downloads" / "out.csv"
    good = [
        ("list_coins", {}),
        ("check_availability", {"exchange": "sim", "symbol": "ETH/USDT"}),
        ("get_latest", {**COIN, "levels": 3}),
        ("get_history", {**COIN, "start": T0, "end": "2026-01-01T00:00:10Z"}),
        ("coverage", {**COIN, "start": T0, "end": T0 + 60_000}),
        (
            "download_history",
            {**COIN, "start": T0, "end": T0 + 5_000, "format": "csv", "path": "out.csv"},
        ),
        ("list_markets", {"exchange": "sim", "query": "BTC"}),
        ("list_exchanges", {}),
        ("add_coin", {"exchange": "sim", "symbol": "ETH/USDT", "interval": "1s"}),
        ("remove_coin", {"exchange": "sim", "symbol": "ETH/USDT"}),
    ]
    bad = [
        ("get_history", {**COIN, "start": T0 + 1000, "end": T0}, "start:"),
        ("get_history", {**COIN, "start": T0, "end": T0 + 1, "limit": 10**9}, "limit:"),
        ("get_latest", {**COIN, "levels": "lots"}, "levels:"),
        ("coverage", {"exchange": "nope", "symbol": "BTC/USDT"}, "exchange 'nope'"),
        ("add_coin", {"exchange": "sim", "symbol": "ZZZNOTLISTED/USDT"}, "check_availability"),
        ("remove_coin", {"exchange": "sim"}, "symbol: required"),
        ("download_history", {**COIN, "start": 0, "end": 1, "format": "xlsx"}, "format:"),
        (
            "download_history",
            {**COIN, "start": 0, "end": "now", "format": "csv", "path": "/etc/x"},
            "path:",
        ),
        ("list_markets", {"exchange": "ccxt"}, "'ccxt' is the name of a plugin"),
        ("list_markets", {"exchange": "sim", "limit": -1}, "limit:"),
    ]

    async def scenario(session: ClientSession) -> Any:
        tools = (await session.list_tools()).tools
        answers = [await session.call_tool(name, arguments) for name, arguments in good]
        errors = [await session.call_tool(name, arguments) for name, arguments, _ in bad]
        resources = (await session.list_resources()).resources
        return tools, answers, errors, resources

    errlog = (tmp_path / "stderr.log").open("w")
    with errlog:
        tools, answers, errors, resources = with_stdio(config, scenario, errlog=errlog)
    assert tuple(tool.name for tool in tools) == NAMES
    results = dict(zip([name for name, _ in good], [ok(answer) for answer in answers], strict=True))
    assert results["check_availability"]["available"] is True
    assert len(results["get_latest"]["bids"]) == 3
    assert len(results["get_history"]["rows"]) == 10 - 10 // 11
    assert results["coverage"]["gaps"][0] == [T0 + 10_000, T0 + 11_000, "disconnected"]
    assert results["download_history"]["path"] == str(target)
    assert target.read_text().startswith(
        "ts,exchange_ts,received_ts,seq,capture,side,level,price,size\n"
    )
    assert results["add_coin"]["collecting"] is False
    assert results["list_coins"]["collecting"] is False  # and no daemon runs: it says so
    assert results["list_markets"]["markets"][0]["symbol"] == "BTC/USDT"
    assert {"id": "sim", "plugin": "sim", "synthetic": True, "collected": 0} in results[
        "list_exchanges"
    ]["exchanges"]
    assert results["remove_coin"]["coin"]["status"] == "removed"
    for (name, _, mentions), result in zip(bad, errors, strict=True):
        assert mentions in error(result), name
    assert [str(resource.uri) for resource in resources] == ["obd://coins"]
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()


def test_add_coin_over_stdio_is_collected_by_the_running_daemon(
    tmp_path: Path, start_daemon: Any
) -> None:
    config = write_config(tmp_path)
    daemon = start_daemon(config)
    eth = {"exchange": "sim", "symbol": "ETH/USDT"}

    async def scenario(session: ClientSession) -> Any:
        added = ok(await session.call_tool("add_coin", {**eth, "interval": "1s", "depth": 5}))
        latest = await _until_ok(session, "get_latest", eth)
        removed = ok(await session.call_tool("remove_coin", eth))
        return added, latest, removed

    added, latest, removed = with_stdio(config, scenario)
    assert added["created"] is True
    assert added["collecting"] is True  # the daemon holds the collector lock
    assert latest["capture"] == "synthetic"
    assert len(latest["bids"]) == 5  # collected by the daemon, at the depth asked for
    assert removed["coin"]["status"] == "removed"

    # A second collector on the same file is refused, in one line (`obd run` too: the
    # daemon takes the same lock).
    refused = obd("mcp", "--collect", config=config)
    assert refused.returncode == 2
    assert "already collecting" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert daemon.stop() == 0
    stopped = [e for e in daemon.log if e.get("event") == "coin_stopped"]
    assert stopped
    assert stopped[0]["symbol"] == "ETH/USDT"


def test_collect_flag_collects_in_the_mcp_process(tmp_path: Path) -> None:
    config = write_config(tmp_path, coins=ONE_SECOND_BTC)

    async def scenario(session: ClientSession) -> Any:
        listed = ok(await session.call_tool("list_coins", {}))  # [[coins]] added at start
        latest = await _until_ok(session, "get_latest", COIN)
        added = ok(await session.call_tool("add_coin", {"exchange": "sim", "symbol": "ETH/USDT"}))
        return listed, latest, added

    listed, latest, added = with_stdio(config, scenario, "--collect")
    assert [coin["symbol"] for coin in listed["coins"]] == ["BTC/USDT"]
    assert len(latest["bids"]) == 5
    assert added["collecting"] is True


def test_sigterm_stops_obd_mcp_promptly_while_the_client_is_connected(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "obd", "mcp", "--collect", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    process.stdin.write(json.dumps(hello) + "\n")
    process.stdin.flush()
    answer = json.loads(process.stdout.readline())  # stdout carries the protocol only
    assert answer["id"] == 1
    assert answer["result"]["serverInfo"]["name"] == "obd"
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        rest, stderr = process.communicate()
    assert "Traceback" not in stderr
    assert rest == ""  # nothing but protocol messages on stdout
