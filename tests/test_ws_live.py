"""The live feed of `/v1/ws`: the real daemon on port 0, real `websockets` clients."""

import asyncio
import itertools
import socket
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.conftest import PLUGINS, Daemon
from tests.ws_support import SIM, Log, ask, coin_toml, config, decode, open_ws, sim_alias

SUBSCRIBERS = 200
# The slow client also follows these (on sim and on an alias of it), 1000 levels a side,
# so that it falls behind in seconds, not after the kernel's socket buffers (megabytes on
# loopback) fill at 1 KB/s.
HEAVY = ["ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT", "LTC/USDT"]
HEAVY_COINS = [(exchange, symbol) for exchange in ("sim", "simx") for symbol in HEAVY]


def test_200_subscribers_get_every_snapshot_and_a_client_that_never_reads_is_dropped(
    tmp_path: Path, start_daemon: Any
) -> None:
    coins = coin_toml("BTC/USDT", 20) + "".join(
        coin_toml(symbol, 1000, exchange) for exchange in ("sim", "simx") for symbol in HEAVY
    )
    plugins = (PLUGINS, sim_alias(tmp_path, "simx"))
    # One sim update a second, not ten: the books are deep and the machine is shared.
    quiet = "[exchanges.sim]\nupdate_ms = 1000\n[exchanges.simx]\nupdate_ms = 1000\n"
    daemon = start_daemon(config(tmp_path, coins, plugin_dirs=plugins, extra=quiet))
    log = Log(daemon)
    seen, closed = asyncio.run(_fan_out(daemon, log))

    # The slow one was told why: 1013 and a reason, after what it had been sent.
    assert closed is not None
    assert closed.code == 1013
    assert "too slow" in closed.reason
    assert len(log.events("ws_dropped")) == 1

    # The other 200 each saw every committed snapshot, in order, no duplicates...
    for times in seen:
        assert len(times) >= 5
        assert all(b - a == 1000 for a, b in itertools.pairwise(times)), times
    first, last = min(t[0] for t in seen), max(t[-1] for t in seen)
    params = {**SIM, "start": first, "end": last + 1, "limit": 1000}
    stored = [item["ts"] for item in daemon.http.get("/v1/books", params=params).json()["items"]]
    for times in seen:
        assert times == [ts for ts in stored if times[0] <= ts <= times[-1]]
    # ...and collection kept its pace for every coin: no slot missing while it all ran.
    for exchange, symbol in [("sim", "BTC/USDT"), *HEAVY_COINS]:
        window = {"exchange": exchange, "symbol": symbol, "start": first, "end": last + 1}
        coverage = daemon.http.get("/v1/coverage", params=window).json()
        assert coverage["present"] == coverage["expected"], (symbol, coverage)
    assert log.stop() == 0


async def _fan_out(daemon: Daemon, log: Log) -> tuple[list[list[int]], Any]:
    clients = list(await asyncio.gather(*(open_ws(daemon) for _ in range(SUBSCRIBERS))))
    for n, ws in enumerate(clients):
        assert await ask(ws, {"op": "subscribe", **SIM, "id": n}) == {
            "type": "subscribed",
            "id": n,
            **SIM,
        }
    seen: list[list[int]] = [[] for _ in clients]
    readers = [
        asyncio.create_task(_follow(ws, into)) for ws, into in zip(clients, seen, strict=True)
    ]
    slow = await _never_reading_client(daemon)
    import time

    t0 = time.monotonic()
    await _until(lambda: log.events("ws_dropped"), timeout_s=60)
    print("drop after", time.monotonic() - t0)
    # The others keep going after the drop.
    marks = [len(times) for times in seen]
    await _until(lambda: all(len(t) >= m + 3 for t, m in zip(seen, marks, strict=True)), 30)
    closed = None
    try:
        while True:  # read what was sent before the close: then the close itself
            await slow.recv()
    except ConnectionClosed as exc:
        closed = exc.rcvd
    for ws in clients:
        await ws.close()
    await asyncio.gather(*readers)
    return seen, closed


async def _never_reading_client(daemon: Daemon) -> ClientConnection:
    """Subscribed to every coin, then reads nothing; small buffers on its side."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    host, port = daemon.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    slow = await open_ws(daemon, sock=sock, max_queue=1)
    for exchange, symbol in [("sim", "BTC/USDT"), *HEAVY_COINS]:
        reply = await ask(slow, {"op": "subscribe", "exchange": exchange, "symbol": symbol})
        assert reply["type"] == "subscribed"
    return slow


async def _follow(ws: ClientConnection, into: list[int]) -> None:
    try:
        async for frame in ws:
            message = decode(frame)
            assert message["type"] == "snapshot"
            assert message["data"]["symbol"] == "BTC/USDT"
            into.append(message["data"]["ts"])
    except ConnectionClosed:
        pass


async def _until(condition: Any, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (the condition lives on other threads)
            await asyncio.sleep(0.1)


def test_many_coins_a_connection_msgpack_frames_latest_and_unsubscribe(
    tmp_path: Path, start_daemon: Any
) -> None:
    coins = coin_toml("BTC/USDT", 5) + coin_toml("ETH/USDT", 5)
    daemon = start_daemon(config(tmp_path, coins))
    asyncio.run(_formats_and_unsubscribe(daemon))
    assert daemon.stop() == 0


async def _formats_and_unsubscribe(daemon: Daemon) -> None:
    eth = {"exchange": "sim", "symbol": "ETH/USDT"}
    by_subprotocol = await open_ws(daemon, subprotocols=["obd.msgpack"])
    by_query = await open_ws(daemon, "?format=msgpack")
    plain = await open_ws(daemon)
    assert by_subprotocol.subprotocol == "obd.msgpack"
    for ws in (by_subprotocol, by_query):
        assert (await ask(ws, {"op": "subscribe", **SIM, "id": "b"}))["type"] == "subscribed"
        assert (await ask(ws, {"op": "subscribe", **eth, "id": "e"}))["id"] == "e"
    for frames in await asyncio.gather(*(_frames(ws, 4) for ws in (by_subprotocol, by_query))):
        assert all(isinstance(frame, bytes) for frame in frames)  # binary frames
        snapshots = [decode(frame)["data"] for frame in frames]
        for symbol in ("BTC/USDT", "ETH/USDT"):
            times = [s["ts"] for s in snapshots if s["symbol"] == symbol]
            assert times
            assert times == sorted(set(times))

    latest = await ask(plain, {"op": "latest", **SIM, "id": 7})
    assert latest["type"] == "latest"
    assert latest["id"] == 7
    assert latest["data"]["symbol"] == "BTC/USDT"
    assert len(latest["data"]["bids"]) == 5

    # After `unsubscribed`, nothing more of that coin; the other keeps coming.
    await by_query.send('{"op": "unsubscribe", "exchange": "sim", "symbol": "BTC/USDT"}')
    while (message := decode(await by_query.recv()))["type"] == "snapshot":
        pass
    assert message == {"type": "unsubscribed", **SIM}
    after = [decode(frame) for frame in await _frames(by_query, 2)]
    assert {m["data"]["symbol"] for m in after} == {"ETH/USDT"}
    for ws in (by_subprotocol, by_query, plain):
        await ws.close()


async def _frames(ws: ClientConnection, count: int) -> list[str | bytes]:
    return [await ws.recv() for _ in range(count)]
