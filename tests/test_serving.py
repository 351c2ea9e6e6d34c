"""Serving books off the loop (issue 14): reads are decoded and encoded on worker threads,
a bounded few at once, and none of it holds up collection or the live feed."""

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from obd import ndjson, service
from obd.config import load
from obd.context import open_service
from obd.storage import reader
from tests.ws_support import SIM, coin_toml, config, decode, open_ws, prefill

ROWS = 600


def _prefilled(tmp_path: Path, depth: int, rows: int = ROWS) -> tuple[Path, int, int]:
    end = time.time_ns() // 1_000_000 // 1000 * 1000 - 120_000
    start = end - rows * 1000
    prefill(tmp_path / "obd.sqlite", [(start, end)], depth=depth, added_ts=start - 1)
    return config(tmp_path, coin_toml("BTC/USDT", depth)), start, end


def test_concurrent_reads_are_bounded_and_all_answer_correctly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, start, _ = _prefilled(tmp_path, depth=20)
    running, peak, lock = 0, 0, threading.Lock()
    real_books = reader.books

    def counted(*args: Any) -> Any:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.01)  # long enough for the others to pile up if they could
            return real_books(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(reader, "books", counted)

    async def scenario() -> None:
        async with open_service(load(path)) as svc:
            starts = [start + 1000 * (n * 37 % 500) for n in range(40)]
            pages = await asyncio.gather(
                *(
                    svc.books_as(msgspec.json.encode, "sim", "BTC/USDT", at, None, 5)
                    for at in starts
                )
            )
            for at, page in zip(starts, pages, strict=True):
                items = json.loads(page)["items"]
                assert [item["ts"] for item in items] == [at + 1000 * k for k in range(5)]
                assert len(items[0]["bids"]) == 20
            # A stream gives the same bytes as encoding each chunk of the plain stream.
            plain = b"".join(
                [ndjson.lines(chunk) async for chunk in await svc.stream_books(*SIM.values())]
            )
            lines = await svc.stream_books_as(ndjson.lines, *SIM.values())
            assert b"".join([chunk async for chunk in lines]) == plain
            assert plain.count(b"\n") == ROWS

    asyncio.run(scenario())
    assert peak <= service.SERVE_CONCURRENCY


def test_a_stalled_reader_and_many_readers_do_not_hold_up_the_live_feed(
    tmp_path: Path, start_daemon: Any
) -> None:
    path, start, end = _prefilled(tmp_path, depth=200, rows=3000)
    daemon = start_daemon(path)
    host, port = daemon.url.removeprefix("http://").rsplit(":", 1)

    # A client that asks for the whole range as NDJSON and stops reading after a byte.
    stalled = socket.create_connection((host, int(port)))
    query = f"exchange=sim&symbol=BTC/USDT&start={start}&end={end}&format=ndjson"
    stalled.sendall(f"GET /v1/books?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert stalled.recv(1)

    async def scenario() -> tuple[list[int], list[httpx.Response]]:
        ws = await open_ws(daemon)
        await ws.send(json.dumps({"op": "subscribe", **SIM}))
        assert decode(await ws.recv())["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=daemon.url, timeout=60) as http:
            pages = asyncio.gather(
                *(
                    http.get(
                        "/v1/books",
                        params={**SIM, "start": start + 1000 * n, "limit": 50},
                        headers={"accept": "application/msgpack" if n % 2 else "*/*"},
                    )
                    for n in range(30)
                )
            )
            live = [decode(await ws.recv())["data"]["ts"] for _ in range(3)]
            answers = await pages
        await ws.close()
        return live, answers

    live, answers = asyncio.run(scenario())
    assert live == [live[0], live[0] + 1000, live[0] + 2000]  # every slot, in order
    for n, response in enumerate(answers):
        assert response.status_code == 200
        decoded = (msgspec.msgpack.decode if n % 2 else json.loads)(response.content)
        times = [item["ts"] for item in decoded["items"]]
        assert times == [start + 1000 * (n + k) for k in range(50)]

    # The stalled client still gets the whole range, in order, once it reads again.
    stalled.settimeout(60)
    received = bytearray()
    while not received.endswith(b"0\r\n\r\n"):  # the chunked body's end
        chunk = stalled.recv(1 << 20)
        assert chunk
        received += chunk
    stalled.close()
    body = _unchunk(bytes(received).split(b"\r\n\r\n", 1)[1])
    times = [json.loads(line)["ts"] for line in body.splitlines()]
    assert times == list(range(start, end, 1000))
    assert daemon.stop() == 0


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        data = rest[size + 2 :]
