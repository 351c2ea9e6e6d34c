"""A web page the user opens cannot drive a loopback obd with auth off: a foreign Host
or Origin is refused on /v1 and /v1/ws, and a body that is not JSON is a 415."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from obd.config import load
from obd.errors import ConfigError
from tests.conftest import Daemon, write_config
from tests.ws_support import SIM, ask, open_ws

COIN = {"exchange": "sim", "symbol": "ETH/USDT", "interval": "1s"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory: Path = tmp_path_factory.mktemp("browsers")
    running = Daemon(
        write_config(
            directory, coins='[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
        )
    )
    yield running
    assert running.stop() == 0


def _coins(daemon: Daemon) -> list[str]:
    return [c["symbol"] for c in daemon.http.get("/v1/coins").json()["items"]]


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {
        "error": {"code": code, "message": response.json()["error"]["message"]}
    }


def test_a_cross_origin_text_post_adds_nothing(daemon: Daemon) -> None:
    before = _coins(daemon)
    # What a <form enctype="text/plain"> or fetch(..., {mode: "no-cors"}) sends.
    page = {"origin": "https://evil.example", "content-type": "text/plain"}
    _refused(
        daemon.http.post("/v1/coins", content=json.dumps(COIN), headers=page), 403, "forbidden"
    )
    same_origin_text = {"content-type": "text/plain"}
    response = daemon.http.post("/v1/coins", content=json.dumps(COIN), headers=same_origin_text)
    _refused(response, 415, "unsupported_media_type")
    form = {"content-type": "application/x-www-form-urlencoded"}
    _refused(
        daemon.http.post("/v1/coins", content=b"a=b", headers=form), 415, "unsupported_media_type"
    )
    assert _coins(daemon) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "evil.example"},  # DNS rebinding: the page's name, resolving to 127.0.0.1
        {"host": "evil.example:8787"},
        {"origin": "https://evil.example"},
        {"origin": "http://127.0.0.1.evil.example"},
        {"origin": "null"},  # a sandboxed frame or a file:// page
    ],
)
def test_a_foreign_host_or_origin_is_refused(daemon: Daemon, headers: dict[str, str]) -> None:
    _refused(daemon.http.get("/v1/coins", headers=headers), 403, "forbidden")
    _refused(daemon.http.delete("/v1/coins", params=SIM, headers=headers), 403, "forbidden")
    assert "BTC/USDT" in _coins(daemon)


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "localhost:1"},
        {"host": "[::1]:8787"},
        {"origin": "http://localhost:3000"},
        {"origin": "http://127.0.0.1"},
    ],
)
def test_this_machines_names_are_served_on_any_port(
    daemon: Daemon, headers: dict[str, str]
) -> None:
    assert daemon.http.get("/v1/coins", headers=headers).status_code == 200


def test_json_posts_and_unguarded_paths_still_work(daemon: Daemon) -> None:
    assert daemon.http.post("/v1/coins", json=COIN).status_code == 201
    assert "ETH/USDT" in _coins(daemon)
    assert (
        daemon.http.delete(
            "/v1/coins", params={"exchange": "sim", "symbol": "ETH/USDT"}
        ).status_code
        == 200
    )
    assert daemon.http.get("/healthz", headers={"host": "evil.example"}).status_code in (200, 503)


def test_a_foreign_origin_websocket_is_refused(daemon: Daemon) -> None:
    asyncio.run(_websocket(daemon))


async def _websocket(daemon: Daemon) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(daemon, origin=Origin("https://evil.example"))
    assert refused.value.response.status_code == 403
    error = json.loads(refused.value.response.body)["error"]
    assert error["code"] == "forbidden"
    assert "Origin" in error["message"]
    ws = await open_ws(daemon, origin=Origin("http://localhost:8787"))
    try:
        assert (await ask(ws, {"op": "latest", **SIM, "id": 1}))["type"] in ("latest", "error")
    finally:
        await ws.close()


def test_allowed_hosts_adds_names(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text().replace(
        "[server]\nport = 0\n", '[server]\nport = 0\nallowed_hosts = ["obd.lan"]\n'
    )
    config.write_text(text)
    daemon = Daemon(config)
    try:
        assert daemon.http.get("/v1/coins", headers={"host": "obd.lan:8787"}).status_code == 200
        origin = {"origin": "http://obd.lan:8787"}
        assert daemon.http.get("/v1/coins", headers=origin).status_code == 200
        _refused(daemon.http.get("/v1/coins", headers={"host": "evil.lan"}), 403, "forbidden")
        # /mcp checks the same names (its own refusal is a 421).
        mcp = daemon.http.post("/mcp/", json={}, headers={"host": "evil.lan"})
        assert mcp.status_code == 421
        mcp = daemon.http.post("/mcp/", json={}, headers={"host": "obd.lan"})
        assert mcp.status_code != 421
    finally:
        assert daemon.stop() == 0


def test_allowed_hosts_are_names_not_urls(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text().replace(
            "[server]\nport = 0\n", '[server]\nport = 0\nallowed_hosts = ["http://x:1"]\n'
        )
    )
    with pytest.raises(ConfigError, match=r"server.allowed_hosts\[0\]"):
        load(config)
