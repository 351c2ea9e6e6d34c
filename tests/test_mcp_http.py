"""MCP over streamable HTTP at the running daemon's /mcp, with the official client."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from litestar.testing import AsyncTestClient
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from obd.auth import Principal, Unauthorized
from obd.config import load
from obd.context import open_service
from obd.http.app import create_app
from obd.mcp.http import McpHttp
from obd.mcp.tools import NAMES
from tests.conftest import write_config
from tests.test_mcp_stdio import ONE_SECOND_BTC
from tests.test_mcp_tools import COIN, error, ok

T = TypeVar("T")
BAD_ARGUMENTS = [
    ("get_history", {**COIN, "start": 10, "end": 5}, "start: must be before end"),
    ("get_history", {**COIN, "start": 0, "end": 5, "limit": 5000}, "limit:"),
    ("get_latest", {"exchange": "nope", "symbol": "BTC/USDT"}, "exchange 'nope'"),
    ("add_coin", {"exchange": "sim", "symbol": 42}, "symbol:"),
    ("download_history", {**COIN, "start": 0, "end": "now", "format": "parquet"}, "format:"),
    (
        "download_history",
        {**COIN, "start": 0, "end": "now", "format": "ndjson", "path": "x"},
        "path:",
    ),
]


def with_http(url: str, scenario: Callable[[ClientSession], Awaitable[T]]) -> T:
    async def go() -> T:
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await scenario(session)

    return asyncio.run(go())


async def _latest(session: ClientSession) -> dict[str, Any]:
    for _ in range(150):
        result = await session.call_tool("get_latest", COIN)
        if not result.is_error:
            return ok(result)
        await asyncio.sleep(0.1)
    raise AssertionError(result.content)


def test_the_same_tools_over_http(tmp_path: Path, start_daemon: Any) -> None:
    daemon = start_daemon(write_config(tmp_path, coins=ONE_SECOND_BTC))
    eth = {"exchange": "sim", "symbol": "ETH/USDT"}

    async def scenario(session: ClientSession) -> Any:
        tools = (await session.list_tools()).tools
        latest = await _latest(session)
        everything = {**COIN, "start": 0, "end": latest["ts"] + 1}
        good = {
            "list_coins": await session.call_tool("list_coins", {}),
            "check_availability": await session.call_tool("check_availability", eth),
            "get_history": await session.call_tool("get_history", everything),
            "coverage": await session.call_tool("coverage", COIN),
            "download_history": await session.call_tool(
                "download_history", {**everything, "format": "ndjson"}
            ),
            "add_coin": await session.call_tool("add_coin", {**eth, "interval": "1s"}),
            "remove_coin": await session.call_tool("remove_coin", eth),
        }
        bad = [await session.call_tool(name, arguments) for name, arguments, _ in BAD_ARGUMENTS]
        resources = (await session.list_resources()).resources
        read = await session.read_resource(str(resources[-1].uri))
        return tools, latest, good, bad, read

    tools, latest, good, bad, read = with_http(daemon.url, scenario)
    assert tuple(tool.name for tool in tools) == NAMES
    assert len(latest["bids"]) == 5
    results = {name: ok(result) for name, result in good.items()}
    assert results["list_coins"]["coins"][0]["status"] == "live"
    assert results["get_history"]["rows"][-1]["ts"] == latest["ts"]
    assert results["coverage"]["present"] >= 1
    assert results["add_coin"]["collecting"] is True
    assert results["remove_coin"]["coin"]["status"] == "removed"
    for (name, _, mentions), result in zip(BAD_ARGUMENTS, bad, strict=True):
        assert mentions in error(result), name
    assert json.loads(read.contents[0].text)["symbol"] == "BTC/USDT"

    # Over HTTP, download_history links to the range endpoint instead of writing a file.
    link = results["download_history"]
    assert link["format"] == "ndjson"
    assert "note" not in link
    assert "path" not in link
    assert link["url"].startswith(f"{daemon.url}/v1/books?")
    lines = httpx.get(link["url"], timeout=30).raise_for_status().text.splitlines()
    assert len(lines) == link["count"]
    assert json.loads(lines[-1])["ts"] == latest["ts"]
    assert daemon.stop() == 0


def test_mcp_refuses_foreign_hosts(tmp_path: Path, start_daemon: Any) -> None:
    """DNS-rebinding protection: a page on another name must not reach /mcp."""
    daemon = start_daemon(write_config(tmp_path))
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
    accept = {"accept": "application/json, text/event-stream"}
    port = daemon.url.rsplit(":", 1)[1]
    foreign = daemon.http.post("/mcp", json=hello, headers={**accept, "host": "evil.example"})
    assert foreign.status_code == 421
    origin = {**accept, "origin": "http://evil.example"}
    assert daemon.http.post("/mcp", json=hello, headers=origin).status_code == 403
    local = daemon.http.post("/mcp/", json=hello, headers={**accept, "host": f"localhost:{port}"})
    assert local.status_code == 200
    assert daemon.stop() == 0


class _Deny:
    async def authenticate(self, authorization: str | None) -> Principal:
        raise Unauthorized("a bearer token is required")


def test_mcp_mount_is_behind_the_authenticator(tmp_path: Path) -> None:
    """The /mcp mount goes through the same guard as every route, so token auth plugs in."""

    async def go() -> httpx.Response:
        async with open_service(load(write_config(tmp_path))) as service:
            mount = McpHttp(service, _Deny(), "127.0.0.1")
            app = create_app(service, _Deny(), mcp=mount)
            async with AsyncTestClient(app, base_url="http://127.0.0.1:8787") as client:
                return await client.post("/mcp/", json={"jsonrpc": "2.0", "id": 1})

    refused = asyncio.run(go())
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("host", "public_url", "expected"),
    [
        ("evil.example", "", "http://127.0.0.1:8787"),  # never echoed: where it came in
        ("evil.example:8787", "https://obd.example.com/", "https://obd.example.com"),
        ("localhost:8787", "", "http://localhost:8787"),
        ("127.0.0.1:9999", "", "http://127.0.0.1:9999"),
        ("obd.lan", "", "http://obd.lan"),  # one of [server] allowed_hosts
    ],
)
def test_mcp_401_names_obd_by_its_public_url_never_a_foreign_host(
    tmp_path: Path, host: str, public_url: str, expected: str
) -> None:
    """RFC 9728's `resource_metadata` tells a client where to get a token: a Host copied
    from the request would let a forged one send it (and its secret) elsewhere."""

    async def go() -> httpx.Response:
        async with open_service(load(write_config(tmp_path))) as service:
            mount = McpHttp(service, _Deny(), "127.0.0.1")
            app = create_app(
                service, _Deny(), mcp=mount, allowed_hosts=["obd.lan"], public_url=public_url
            )
            async with AsyncTestClient(app, base_url="http://127.0.0.1:8787") as client:
                return await client.post("/mcp/", json={}, headers={"host": host})

    refused = asyncio.run(go())
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    metadata = challenge.split('resource_metadata="', 1)[1].rstrip('"')
    assert metadata == f"{expected}/.well-known/oauth-protected-resource/mcp"
