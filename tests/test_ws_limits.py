"""`/v1/ws` served in-process by uvicorn (as the daemon serves it), for what needs a
knob turned or a different authenticator: the idle timeout, scopes, refused tokens."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from obd.auth import SCOPES, Principal, Unauthorized
from obd.config import load
from obd.context import open_service
from obd.http.app import create_app
from obd.http.ws import route as ws
from tests.ws_support import SIM, answer, ask, config


class _Tokens:
    """Bearer `reader` holds the read scope only, `admin` every scope, else 401."""

    async def authenticate(self, authorization: str | None) -> Principal:
        if authorization == "Bearer reader":
            return Principal("reader", frozenset({"read"}))
        if authorization == "Bearer admin":
            return Principal("admin", SCOPES)
        raise Unauthorized("a valid bearer token is required")


@asynccontextmanager
async def _serving(tmp_path: Path) -> AsyncIterator[str]:
    async with open_service(load(config(tmp_path))) as service:
        app = create_app(service, _Tokens())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = uvicorn.Server(
            uvicorn.Config(app, ws="websockets-sansio", log_config=None, lifespan="off")
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
            await asyncio.sleep(0.01)
        try:
            yield f"ws://127.0.0.1:{sock.getsockname()[1]}/v1/ws"
        finally:
            server.should_exit = True
            await serving


async def _open(url: str, **options: Any) -> ClientConnection:
    return await connect(url, max_size=None, compression=None, **options)


def test_idle_connections_are_closed_busy_ones_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws, "IDLE_TIMEOUT_S", 0.3)

    async def scenario() -> None:
        async with _serving(tmp_path) as url:
            idle = await _open(url, additional_headers={"Authorization": "Bearer admin"})
            with pytest.raises(ConnectionClosed) as closed:
                await idle.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1000
            assert closed.value.rcvd.reason == "idle for 0.3 s"

            # A subscription keeps a quiet client's connection open. (History adds the
            # coin; nothing collects it in this process, so no snapshot comes.)
            busy = await _open(url, additional_headers={"Authorization": "Bearer admin"})
            request = {"op": "history", **SIM, "start": 0, "end": 600_000, "id": 1}
            await busy.send(json.dumps(request))
            while (await answer(busy))["type"] != "history_complete":
                pass
            assert (await ask(busy, {"op": "subscribe", **SIM}))["type"] == "subscribed"
            await asyncio.sleep(1)
            assert (await ask(busy, {"op": "latest", **SIM, "id": 2}))["id"] == 2
            await busy.close()

    asyncio.run(scenario())


def test_tokens_and_scopes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _serving(tmp_path) as url:
            with pytest.raises(InvalidStatus) as refused:
                await _open(url)
            response = refused.value.response
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            # The HTTP routes' error body (docs/WEBSOCKET.md), not a WebSocket error frame.
            assert json.loads(response.body) == {
                "error": {"code": "unauthorized", "message": "a valid bearer token is required"}
            }
            assert response.headers["content-type"] == "application/json"

            # `?access_token=` for browsers; read scope: live and history of what is
            # collected, but adding a coin for history needs `write`.
            reader = await _open(f"{url}?access_token=reader")
            request = {"op": "history", **SIM, "start": 0, "end": 1000, "id": "h"}
            refusal = await ask(reader, request)
            assert (refusal["type"], refusal["id"], refusal["code"]) == ("error", "h", "forbidden")
            assert "write" in refusal["message"]
            missing = await ask(reader, {"op": "subscribe", **SIM})
            assert (missing["type"], missing["code"]) == ("error", "not_found")
            await reader.close()

    asyncio.run(scenario())
