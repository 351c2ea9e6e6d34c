"""Keepalive (obd/http/ws/protocol.py): a connection whose peer is acknowledging live
frames is not pinged; an idle one is, and one that never answers is closed (1011)."""

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from obd.http.ws.protocol import DIRECT, Protocol, frame

PING_S = 1.0
WATCH_S = 5.5  # pings come every PING_S to 2 * PING_S (a whole-second grid): two at least


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts; on /live writes a small frame every 0.1 s through the direct writer."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if scope["path"] == "/live":
        direct = scope["extensions"][DIRECT]
        while not direct.gone:
            direct.write(frame(b'{"type":"snapshot"}', text=True))
            await asyncio.sleep(0.1)
    else:
        while (await receive())["type"] != "websocket.disconnect":
            pass


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _app, ws=Protocol, ws_ping_interval=PING_S, ws_ping_timeout=PING_S, log_config=None
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving


async def _watch(port: int, path: str, answer: bool) -> tuple[int, bytes | None]:
    """(pings received in WATCH_S, the close frame's payload if the server closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    pings, closed = 0, None
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
        async with asyncio.timeout(WATCH_S):
            while closed is None:
                first, size = await reader.readexactly(2)
                size &= 0x7F
                if size == 126:
                    size = int.from_bytes(await reader.readexactly(2))
                payload = await reader.readexactly(size)
                opcode = first & 0x0F
                if opcode == 0x9:
                    pings += 1
                    if answer:  # a masked pong (key 0000) with the ping's payload
                        writer.write(bytes((0x8A, 0x80 | size)) + b"\0\0\0\0" + payload)
                elif opcode == 0x8:
                    closed = payload
    writer.close()
    return pings, closed


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs Linux's TCP_INFO")
def test_a_live_connection_is_not_pinged_an_idle_one_is() -> None:
    async def main() -> tuple[tuple[int, bytes | None], tuple[int, bytes | None]]:
        async with _server() as port:
            return await asyncio.gather(
                _watch(port, "/live", answer=True), _watch(port, "/idle", answer=True)
            )

    (live_pings, live_closed), (idle_pings, idle_closed) = asyncio.run(main())
    assert live_pings == 0
    assert live_closed is None
    assert idle_pings >= 2
    assert idle_closed is None


def test_a_connection_that_never_answers_a_ping_is_closed_1011() -> None:
    async def main() -> tuple[int, bytes | None]:
        async with _server() as port:
            return await _watch(port, "/idle", answer=False)

    pings, closed = asyncio.run(main())
    assert pings == 1
    assert closed is not None
    assert int.from_bytes(closed[:2]) == 1011
