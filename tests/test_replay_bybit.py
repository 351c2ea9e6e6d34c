"""Bybit v5 spot on recorded traffic (derived from the Binance sessions: see
tests/data/README.md): the venue's dialogue, unmodified ccxt.pro keeping the true
book through the replay emulator, and what ccxt does not notice."""

import asyncio
import json
import time
from typing import Any

import pytest
import websockets

from tests.conftest import load_plugin
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.replay_support import RECORDINGS

RECORDING = RECORDINGS / "bybit_spot.jsonl.zst"
TOPIC = "orderbook.200.BTCUSDT"


async def _raw(port: int, requests: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Send `requests` on one spot connection and read `count` frames back."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/v5/public/spot") as ws:
        for request in requests:
            await ws.send(json.dumps(request))
        return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(count)]


def test_the_recording_reads_whole() -> None:
    recording = rec.load(RECORDING)
    assert recording.header.meta["derived"] is True
    assert recording.header.config == {"l2_book": ["BTCUSDT", "ETHUSDT"]}
    frames = recording.recv
    assert 100 < frames[-1].ts - frames[0].ts < 130  # the ~2 minutes fidelity needs
    assert RECORDING.stat().st_size < 1_000_000


def test_the_spot_dialogue() -> None:
    """Subscribe ack, a snapshot, deltas numbered u + 1; a second subscribe to the
    same topic is refused (as Bybit does); unsubscribe, subscribe: a fresh snapshot
    whose u the next delta follows; an app-level ping gets a pong."""
    sub = {"op": "subscribe", "req_id": "1", "args": [TOPIC]}
    again = {**sub, "req_id": "2"}
    with ReplayEmulator("bybit", RECORDING, speed=4) as emu:
        frames = asyncio.run(_raw(emu.port, [sub, again, {"op": "ping", "req_id": "3"}], 10))
        first = [frame for frame in frames if frame.get("op") is not None]
        book = [frame for frame in frames if "topic" in frame]
        unsub = {"op": "unsubscribe", "req_id": "4", "args": [TOPIC]}
        replies = asyncio.run(_raw(emu.port, [sub, unsub, {**sub, "req_id": "5"}], 6))
    assert first[0] == {**first[0], "success": True, "op": "subscribe", "req_id": "1"}
    assert first[1]["success"] is False
    assert first[1]["ret_msg"] == f"error:already subscribed,topic:{TOPIC}"
    assert first[2]["ret_msg"] == "pong"
    assert first[2]["req_id"] == "3"
    assert book[0]["type"] == "snapshot"
    assert len(book[0]["data"]["b"]) == 200
    assert all(frame["type"] == "delta" for frame in book[1:])
    us = [frame["data"]["u"] for frame in book]
    assert us == list(range(us[0], us[0] + len(us)))
    ops = [(f.get("op"), f.get("type")) for f in replies]
    resubscribed = ops.index(("subscribe", None), ops.index(("unsubscribe", None)))
    snapshot = replies[resubscribed + 1]
    assert snapshot["type"] == "snapshot"
    follows = [f for f in replies[resubscribed + 2 :] if f.get("type") == "delta"]
    assert all(f["data"]["u"] == snapshot["data"]["u"] + 1 + i for i, f in enumerate(follows))


def test_rest_answers_what_ccxt_asks() -> None:
    import httpx

    with ReplayEmulator("bybit", RECORDING, speed=4) as emu, httpx.Client(base_url=emu.url) as http:
        spot = http.get("/v5/market/instruments-info", params={"category": "spot"}).json()
        linear = http.get("/v5/market/instruments-info", params={"category": "linear"}).json()
        asked = {"category": "spot", "symbol": "ETHUSDT", "limit": 5}
        for _ in range(100):  # compare only while the replay held the book still
            true = emu.book("ETH/USDT", 5)
            book = http.get("/v5/market/orderbook", params=asked).json()["result"]
            if true.seq is not None and emu.book("ETH/USDT", 5).seq == true.seq:
                break
            time.sleep(0.01)
        emu.delist("ETH/USDT")
        gone = http.get("/v5/market/orderbook", params=asked).json()
        listed = http.get("/v5/market/instruments-info", params={"category": "spot"}).json()
    assert [m["symbol"] for m in spot["result"]["list"]] == ["BTCUSDT", "ETHUSDT"]
    assert linear["result"]["list"] == []
    assert (book["b"], book["a"]) == ([list(x) for x in true.bids], [list(x) for x in true.asks])
    assert book["u"] == true.seq
    assert gone["retCode"] == 10001
    assert listed["result"]["list"][1]["status"] == "Closed"


@pytest.mark.slow
def test_ccxt_keeps_the_true_book_and_misses_a_lost_delta() -> None:
    """Unmodified ccxt.pro through the replay: every book it returns is the true book
    of the frame it last applied (ccxt keeps Bybit's `ts` as the book's timestamp).
    Then one delta is dropped: ccxt raises nothing and goes on returning a book that
    is no longer true (it checks neither `u` nor anything else), which is why obd
    checks `u` itself (plugins.d/ccxt/check_bybit.py)."""
    with ReplayEmulator("bybit", RECORDING, speed=4) as emu:
        clean, dropped = asyncio.run(_watch(emu, "BTC/USDT"))
        truth = Truth("bybit", emu.recording, emu.applied)
        by_ts = {book.ts_ms: book.floats(200) for _, book in truth.changes("BTC/USDT", 200)}
        assert emu.unexpected == []
    assert len(clean) == 40
    for ts, levels in clean:
        assert levels == by_ts[ts], ts
    assert any(levels != by_ts[ts] for ts, levels in dropped)  # wrong, and not noticed


async def _watch(emu: ReplayEmulator, symbol: str) -> tuple[list[Any], list[Any]]:
    import ccxt.pro

    config = emu.exchanges_config()
    client = ccxt.pro.bybit({"urls": config["urls"], "options": config["options"]})

    async def watch(n: int) -> list[tuple[int, Any]]:
        books = []
        for _ in range(n):
            book = await client.watch_order_book(symbol, 200)
            levels = {side: [level[:2] for level in book[side]] for side in ("bids", "asks")}
            books.append((book["timestamp"], levels))
        return books

    try:
        clean = await watch(40)
        emu.drop(symbol, 1)
        dropped = await watch(30)
    finally:
        await client.close()
    return clean, dropped


def test_a_coin_dropped_and_watched_again_gets_its_book() -> None:
    """obd's unsubscribe of a coin it stops collecting names the topic it subscribed
    (`orderbook.200`, not ccxt's default 50): else Bybit keeps it subscribed and the
    next watch of that coin is refused for good (`error:already subscribed`)."""
    with ReplayEmulator("bybit", RECORDING, speed=4) as emu:
        books = asyncio.run(_watch_twice(emu))
    assert len(books) == 2
    assert all(len(book.bids) == 100 for book in books)


async def _watch_twice(emu: ReplayEmulator) -> list[Any]:
    plugin = load_plugin("ccxt")
    config = emu.exchanges_config()
    options = plugin.CcxtOptions(urls=config["urls"], options=config["options"], timeout_s=2)
    exchange = plugin.create("bybit", options)
    books = []
    try:
        for _ in range(2):
            watching = exchange.watch("BTC/USDT", 100)
            books.append(await asyncio.wait_for(anext(watching), 10))
            await watching.aclose()  # the coin is no longer collected: unsubscribe
            await asyncio.sleep(0.5)  # (in the background) until Bybit acked it
    finally:
        await exchange.close()
    return books


# Through obd: tests/test_replay_fidelity.py replays this exchange with every other
# one into one daemon (CI time), with the faults above.
