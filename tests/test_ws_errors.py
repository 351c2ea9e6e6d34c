"""Bad input on `/v1/ws`: an `error` frame naming the problem, and the connection goes on."""

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import Daemon, wait_for
from tests.ws_support import SIM, ask, coin_toml, config, decode, open_ws

NOW = "2026-11-25T12:00:00Z"
SUBSCRIBE = {"op": "subscribe", **SIM}

# (frame sent, id echoed, code, words the message must hold)
BAD: list[tuple[str, Any, str, str]] = [
    ('{"op": "subscribe", "exchange": "sim"', None, "bad_request", "not a JSON object"),
    ("[1, 2]", None, "bad_request", "not a JSON object"),
    ('{"exchange": "sim", "symbol": "BTC/USDT"}', None, "bad_request", "op: required"),
    ('{"op": "trade", "id": 1}', 1, "bad_request", "op: unknown 'trade'"),
    ('{"op": "subscribe", "exchange": "sim", "id": 2}', 2, "bad_request", "symbol: required"),
    ('{"op": "latest", "symbol": "BTC/USDT", "id": 3}', 3, "bad_request", "exchange: required"),
    ('{"op": "subscribe", **}', None, "bad_request", "not a JSON object"),
    ('{"op": "subscribe", "exchange": 5, "symbol": "x", "id": 4}', 4, "bad_request", "exchange"),
    (
        '{"op": "subscribe", "exchange": "sim", "symbol": "BTC/USDT", "depth": 5, "id": 5}',
        5,
        "bad_request",
        "depth: unknown field",
    ),
    (
        '{"op": "history", "exchange": "sim", "symbol": "BTC/USDT", "end": 5, "id": 6}',
        6,
        "bad_request",
        "start: required",
    ),
    (
        '{"op": "history", "exchange": "sim", "symbol": "BTC/USDT", "start": "yesterday", '
        '"end": 5, "id": 7}',
        7,
        "bad_request",
        "start: expected ms since the epoch or ISO 8601",
    ),
    (
        f'{{"op": "history", "exchange": "sim", "symbol": "BTC/USDT", "start": "{NOW}", '
        '"end": 1000, "id": 8}',
        8,
        "bad_request",
        "start: must be before end",
    ),
    (
        '{"op": "history", "exchange": "sim", "symbol": "BTC/USDT", "start": 0, "end": 9e99, '
        '"id": 9}',
        9,
        "bad_request",
        "end",
    ),
    (
        '{"op": "history", "exchange": "sim", "symbol": "BTC/USDT", "start": 0, "end": 1000, '
        '"chunk": 0, "id": 10}',
        10,
        "bad_request",
        "chunk",
    ),
    (
        '{"op": "history", "exchange": "sim", "symbol": "ZZZNOTLISTED/USDT", "start": 0, '
        '"end": 1000, "id": 11}',
        11,
        "not_found",
        "ZZZNOTLISTED/USDT is not listed on sim",
    ),
    (
        '{"op": "subscribe", "exchange": "sim", "symbol": "ZZZNOTLISTED/USDT", "id": 12}',
        12,
        "not_found",
        "ZZZNOTLISTED/USDT on sim is not",
    ),
    (
        '{"op": "latest", "exchange": "nosuchexchange", "symbol": "BTC/USDT", "id": 13}',
        13,
        "not_found",
        "no plugin serves exchange 'nosuchexchange'",
    ),
    (
        '{"op": "subscribe", "exchange": "Sim!", "symbol": "BTC/USDT", "id": 14}',
        14,
        "bad_request",
        "exchange: expected a lower-case exchange id",
    ),
    ('{"op": "cancel"}', None, "bad_request", "id: required"),
    ('{"op": "cancel", "id": "nothing-running"}', "nothing-running", "not_found", "no running"),
    (
        '{"op": "subscribe", "exchange": "sim", "symbol": "BTC/USDT", "id": true}',
        None,
        "bad_request",
        "id",
    ),
    # An id past 64 bits is not echoed: no msgpack integer holds it (the fuzzer's find).
    (
        '{"op": "latest", "exchange": "sim", "symbol": "BTC/USDT", "x": 1, "id": -1'
        + "0" * 40
        + "}",
        None,
        "bad_request",
        "x: unknown field",
    ),
]


def test_an_id_past_64_bits_is_not_echoed() -> None:
    from obd.errors import RequestError
    from obd.http.ws.messages import decode_request

    for frame in ('{"op": "latest", "id": 18446744073709551616}', b"\x81\xa2id\xcb\x7f"):
        with pytest.raises(RequestError) as refused:
            decode_request(frame)
        assert refused.value.request_id is None


def test_bad_requests_get_an_error_frame_and_the_connection_stays_usable(
    tmp_path: Path, start_daemon: Any
) -> None:
    daemon = start_daemon(config(tmp_path, coin_toml("BTC/USDT", 5)))
    wait_for(lambda: daemon.http.get("/v1/books/latest", params=SIM).status_code == 200)
    asyncio.run(_bad_requests(daemon))
    assert daemon.stop() == 0


async def _bad_requests(daemon: Daemon) -> None:
    ws = await open_ws(daemon)
    for frame, request_id, code, words in BAD:
        await ws.send(frame)
        error = await _error(ws)
        assert error.get("id") == request_id, frame
        assert error["code"] == code, (frame, error)
        assert words in error["message"], (frame, error)
        # Still open and answering.
        assert (await ask(ws, {"op": "latest", **SIM, "id": "ok"}))["type"] == "latest"

    # msgpack request frames are understood too, and their errors echo the id.
    await ws.send(msgspec.msgpack.encode({"op": "subscribe", "exchange": "sim", "id": 20}))
    assert (await _error(ws))["message"].startswith("symbol: required")

    # Too large for a request: an error; the connection stays.
    await ws.send(json.dumps({**SUBSCRIBE, "padding": "x" * 20_000}))
    assert (await _error(ws))["code"] == "too_large"
    assert (await ask(ws, {**SUBSCRIBE, "id": "s"}))["type"] == "subscribed"

    # Beyond the frame limit (1 MiB) the protocol itself closes with 1009.
    await ws.send("x" * (1024 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        await _read_until_closed(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009

    # A format the server does not speak is refused at the handshake.
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(daemon, "?format=xml")
    assert refused.value.response.status_code == 400
    error = json.loads(refused.value.response.body)["error"]  # the HTTP routes' body
    assert error["code"] == "bad_request"
    assert error["message"].startswith("format: expected")


async def _error(ws: Any) -> dict[str, Any]:
    while (message := decode(await ws.recv()))["type"] == "snapshot":
        pass
    assert message["type"] == "error", message
    return message


async def _read_until_closed(ws: Any) -> None:
    while True:
        await ws.recv()
