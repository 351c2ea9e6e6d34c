"""Bybit v5 spot on recorded traffic (derived from the Binance sessions: see
tests/data/README.md): the venue's dialogue, unmodified ccxt.pro keeping the true
book through the replay emulator, and what ccxt does not notice."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import load_plugin, wait_for, write_config
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.replay_support import (
    GAP_REASONS,
    RECORDINGS,
    LoggedDaemon,
    ReplayProcess,
    coins_toml,
    exchanges_toml,
    fidelity,
)

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
        book = http.get("/v5/market/orderbook", params=asked).json()["result"]
        true = emu.book("ETH/USDT", 5)
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


SPEED = 1.4  # the 125 s recording in ~89 s: room for 62 one-second slots after a slow start-up
DEPTH = 100  # obd asks ccxt for 200 levels (the smallest Bybit depth that covers it)
SLOTS = 62
# A frame sent this long before a slot may still be on its way to obd on this shared
# host (as in test_replay_fidelity.py); never one sent after the slot. How late the
# books really were is printed and bounded (`AT_T`).
TOLERANCE_MS = 1000
AT_T = 0.8  # of websocket slots whose book still stood at T


def _first_ts(daemon: LoggedDaemon, coins: int) -> int | None:
    items = daemon.http.get("/v1/coins").json()["items"]
    firsts = [coin["first_ts"] for coin in items]
    return max(firsts) if len(items) == coins and None not in firsts else None


@pytest.mark.slow
def test_obd_stores_true_bybit_books_and_gaps_through_faults(tmp_path: Path) -> None:
    """A real daemon collects BTC/USDT and ETH/USDT at 1 s through unmodified ccxt
    from the replay. ETH/USDT loses a delta, then gets one whose `u` skips, and a
    429 on its next REST book: each is noticed (`u` checked by obd), the topic is
    unsubscribed and subscribed again for a fresh snapshot, and a slot that falls in
    between is a gap with a reason (or a REST capture true for its moment). Every
    stored book is true; BTC/USDT is served from the websocket at every slot."""
    replay = ReplayProcess("bybit", RECORDING, tmp_path / "bybit.sent", SPEED)
    coins = [("bybit", symbol) for symbol in replay.symbols]
    config = write_config(tmp_path, exchanges_toml([replay]), coins=coins_toml(coins, DEPTH))
    daemon = LoggedDaemon(config)
    try:
        # from the slot after both coins' first snapshots (the first may be a REST one)
        start = wait_for(lambda: _first_ts(daemon, len(coins)), timeout_s=30) + 1000
        time.sleep(12)
        replay.control("drop", symbol=replay.symbols[1], n=1)
        time.sleep(15)
        replay.control("fault", kind="sequence", symbol=replay.symbols[1])
        replay.control("rest-errors", status=429, n=1, path="orderbook")
        time.sleep(max(0.0, start / 1000 + SLOTS + 1.5 - time.time()))
        end = start + SLOTS * 1000
        truth = replay.truth()
        clean, faulty = (
            fidelity(daemon.http, "bybit", symbol, truth, DEPTH, (start, end), TOLERANCE_MS)
            for symbol in replay.symbols
        )
        unsequenced = [
            _unsequenced(daemon, symbol, truth, (start, end)) for symbol in replay.symbols
        ]
        stats = replay.stats()
        downs = daemon.events("stream_down")
    finally:
        code = daemon.stop()
        replay.stop()
    for verdict in (clean, faulty):  # shown with -s: what was measured
        late, transit = sorted(verdict.late_ms), sorted(verdict.transit_ms)
        print(
            f"{verdict.symbol}: {verdict.slots} slots, {verdict.ws} ws, {verdict.rest} rest,"
            f" gaps {verdict.gaps}, wrong {verdict.wrong}; superseded before T:"
            f" {sum(x > 0 for x in late)} slots, max {late[-1]} ms; transit median"
            f" {transit[len(transit) // 2]} ms, max {transit[-1]} ms"
        )
    print(stats, downs, sep="\n")
    assert code == 0
    assert stats["done"] is False
    assert stats["unexpected"] == []
    assert stats["frames_dropped"] == 1
    assert stats["fault_sequence"] == 1
    for verdict in (clean, faulty):
        assert verdict.slots >= 60, verdict
        assert verdict.exact, verdict
    assert unsequenced == [[], []]  # each websocket book is the true book at its seq (u)
    assert clean.ws == clean.slots, clean  # the live book carries every slot
    assert faulty.ws >= faulty.slots - 6, faulty  # a few slots to resync, at most
    late = clean.late_ms + faulty.late_ms
    assert sum(ms == 0 for ms in late) >= AT_T * len(late), late
    assert set(faulty.gaps) <= GAP_REASONS, faulty  # a resync takes well under a
    # second, so a slot falls in it or not: gaps (or REST captures) are few or none
    lost = [e for e in downs if e["symbol"] == "ETH/USDT"]
    assert len(lost) == 2, downs  # the drop and the skipped u, each noticed once
    assert all(e["reason"] == "not_synced" for e in lost), lost
    assert all("1 update(s) lost" in e["error"] for e in lost), lost
    assert not [e for e in downs if e["symbol"] == "BTC/USDT"], downs


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


def _unsequenced(
    daemon: LoggedDaemon, symbol: str, truth: Truth, window: tuple[int, int]
) -> list[int]:
    """Websocket slots whose `seq` is not Bybit's `u` of the true book stored: obd keeps
    ccxt's nonce, which ccxt leaves empty for Bybit and obd's check fills with `u`."""
    at_u = {book.seq: book.floats(DEPTH) for _, book in truth.changes(symbol, 200)}
    params = {"exchange": "bybit", "symbol": symbol, "start": window[0], "end": window[1] - 1}
    items = daemon.http.get("/v1/books", params={**params, "limit": 1000}).json()["items"]
    return [
        item["ts"]
        for item in items
        if item["capture"] == "ws"
        and at_u.get(item["seq"]) != {"bids": item["bids"], "asks": item["asks"]}
    ]
