"""Kraken (WebSocket v2 `book`) on a replayed recording: the recording and its CRC32s,
obd's checksum check on real frames, unmodified ccxt.pro keeping the true book, and
a real daemon storing only true books (a lost frame and a bad checksum on ETH/USD are
gaps with reasons, BTC/USD stays exact)."""

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import load_plugin
from tests.emulator.replay import kraken_wire as wire
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.emulator.replay.venue import create_venue
from tests.replay_support import (
    RECORDINGS,
)

RECORDING = RECORDINGS / "kraken.jsonl.zst"
DEPTH = 10  # the depth the recording was made at (and what the checksum covers)


def _check() -> Any:
    return load_plugin("ccxt").check_kraken  # type: ignore[attr-defined]


def _book_frames() -> list[rec.WsEntry]:
    return [e for e in rec.load(RECORDING).recv if e.data.startswith('{"channel":"book"')]


def test_wire_checksum_follows_krakens_rule() -> None:
    # Kraken's documented example level: "45285.2" / "0.00100000" -> "452852100000"
    expected = wire.checksum([("45285.2", "0.00100000")], [])
    import zlib

    assert expected == zlib.crc32(b"452852100000")


def test_recording_is_derived_and_every_crc_holds() -> None:
    """Each recorded book frame's CRC32 is that of the book after applying it (as a
    depth-10 client keeps it): the generator and the venue agree with Kraken's rule."""
    recording = rec.load(RECORDING)
    assert recording.header.meta["derived"] is True
    assert recording.header.config == {"l2_book": ["BTC/USD", "ETH/USD"], "depth": DEPTH}
    frames = recording.recv
    assert 100 < frames[-1].ts - frames[0].ts < 130
    venue = create_venue("kraken", recording)
    checked = 0
    for entry in frames:
        for symbol in venue.apply(entry):
            book = venue.book(symbol, DEPTH)
            sent = json.loads(entry.data)["data"][0]["checksum"]
            assert wire.checksum(book.asks, book.bids) == sent, entry.line
            assert len(book.bids) == len(book.asks) == DEPTH
            checked += 1
    assert checked > 1500
    assert RECORDING.stat().st_size < 1_000_000


def _replay_into_ccxt_books(frames: list[rec.WsEntry], skip: int | None = None) -> list[Any]:
    """Feed recorded frames to unmodified ccxt.pro's kraken handler; what obd's check
    says after each frame (frame `skip` is lost on the way)."""
    import ccxt.pro
    import orjson
    from ccxt.async_support.base.ws.client import Client

    async def run() -> list[Any]:
        exchange = ccxt.pro.kraken()
        client = Client("ws://127.0.0.1/v2", None, None, None, None, {})
        client.subscriptions["orderbook@BTC/USD"] = {"limit": DEPTH}
        client.subscriptions["orderbook@ETH/USD"] = {"limit": DEPTH}
        verdicts = []
        try:
            for n, entry in enumerate(frames):
                if n == skip:
                    continue
                message = orjson.loads(entry.data)
                exchange.handle_message(client, message)
                verdicts.append(_check().check(message, exchange.orderbooks))
        finally:
            await exchange.close()
        return verdicts

    return asyncio.run(run())


def test_check_passes_every_real_frame() -> None:
    verdicts = _replay_into_ccxt_books(_book_frames()[:400])
    assert verdicts == [{}] * len(verdicts)


def test_check_catches_a_lost_frame_and_a_bad_checksum() -> None:
    frames = _book_frames()[:80]
    lost = 20  # an update (frames 0 and 1 are the snapshots)
    symbol = json.loads(frames[lost].data)["data"][0]["symbol"]
    verdicts = _replay_into_ccxt_books(frames, skip=lost)
    failed = [(n, v) for n, v in enumerate(verdicts) if v]
    assert failed, "a lost frame went unnoticed"
    _first, verdict = failed[0]
    assert set(verdict) == {symbol}
    assert type(verdict[symbol]).__name__ == "ChecksumFailed"
    assert verdict[symbol].gap_reason == "checksum"

    corrupted = json.loads(frames[30].data)
    corrupted["data"][0]["checksum"] = (corrupted["data"][0]["checksum"] + 1) % 2**32
    bad = [*frames[:30], rec.WsEntry(0, "recv", "1", 0.0, json.dumps(corrupted))]
    assert _replay_into_ccxt_books(bad)[-1].keys() == {corrupted["data"][0]["symbol"]}


def test_ccxt_own_checksum_option_cannot_be_used() -> None:
    """Why obd checks the CRC itself: ccxt 4.5.90's `watchOrderBook.checksum` formats
    the floats it keeps as strings, and raises on the first frame."""
    import ccxt.pro
    import orjson
    from ccxt.async_support.base.ws.client import Client

    async def run() -> None:
        exchange = ccxt.pro.kraken({"options": {"watchOrderBook": {"checksum": True}}})
        client = Client("ws://127.0.0.1/v2", None, None, None, None, {})
        client.subscriptions["orderbook@BTC/USD"] = {"limit": DEPTH}
        try:
            with pytest.raises(AttributeError, match="'float' object has no attribute 'split'"):
                exchange.handle_message(client, orjson.loads(_book_frames()[0].data))
        finally:
            await exchange.close()

    asyncio.run(run())


def test_obd_finds_krakens_subscriptions_and_can_unsubscribe() -> None:
    """ccxt keys kraken's book subscriptions `orderbook@BTC/USD`: obd must see them as
    the symbol's (to hear its frames and run the check), and resyncs by unsubscribing."""
    import sys

    load_plugin("ccxt")
    internals = sys.modules["obd_test_plugins_ccxt.internals"]
    assert internals._names("orderbook@BTC/USD", "BTC/USD")
    assert not internals._names("orderbook@BTC/USDT", "BTC/USD")
    assert _check().unsubscribe("ETH/USD", 10) == {
        "method": "unsubscribe",
        "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 10},
    }


def test_venue_dialogue_rest_and_faults() -> None:
    """The v2 dialogue (status, ping, subscribe ack + snapshot, refusals), the REST
    answers, a bad checksum and a delisting, as a raw client sees them."""
    import httpx

    with ReplayEmulator("kraken", RECORDING, speed=4) as emu:
        frames = asyncio.run(_dialogue(emu))
        with httpx.Client(base_url=emu.url) as http:
            depth = http.get("/0/public/Depth", params={"pair": "XXBTZUSD", "count": 5}).json()
            assert len(depth["result"]["XXBTZUSD"]["bids"]) == 5
            emu.rest_errors(429)
            assert http.get("/0/public/Time").status_code == 429
            emu.delist("ETH/USD")
            pairs = http.get("/0/public/AssetPairs").json()["result"]
            assert list(pairs) == ["XXBTZUSD"]
            gone = http.get("/0/public/Depth", params={"pair": "XETHZUSD"}).json()
            assert gone["error"] == ["EQuery:Unknown asset pair"]
        assert emu.unexpected == []
    status, pong, ack, snapshot, again, deeper, update = frames
    assert status["channel"] == "status"
    assert pong["method"] == "pong"
    assert pong["req_id"] == 7
    assert ack["success"] is True
    assert ack["result"]["symbol"] == "BTC/USD"
    assert snapshot["type"] == "snapshot"
    assert len(snapshot["data"][0]["bids"]) == DEPTH
    assert again["error"] == "Already subscribed"
    assert deeper["success"] is False
    assert update["type"] == "update"
    assert emu.stats["fault_checksum"] == 1


async def _dialogue(emu: ReplayEmulator) -> list[Any]:
    import websockets

    def subscribe(depth: int) -> str:
        params = {"channel": "book", "symbol": ["BTC/USD"], "depth": depth}
        return json.dumps({"method": "subscribe", "params": params, "req_id": 1})

    async with websockets.connect(f"ws://127.0.0.1:{emu.port}/v2") as ws:
        frames = [json.loads(await ws.recv())]
        await ws.send(json.dumps({"method": "ping", "req_id": 7}))
        frames.append(json.loads(await ws.recv()))
        await ws.send(subscribe(DEPTH))
        frames += [json.loads(await ws.recv()) for _ in range(2)]
        emu.fault("checksum", "BTC/USD")
        await ws.send(subscribe(DEPTH))
        await ws.send(subscribe(25))
        replies = [json.loads(await ws.recv()) for _ in range(12)]
        frames += [r for r in replies if "error" in r][:2]
        frames.append(next(r for r in replies if r.get("type") == "update"))
    return frames


@pytest.mark.slow
def test_ccxt_keeps_the_true_book() -> None:
    """Unmodified ccxt.pro through the replay: every book it returns is a true book (at
    the timestamp it carries), for both symbols on one socket; pings are answered."""
    with ReplayEmulator("kraken", RECORDING, speed=4) as emu:
        seen = asyncio.run(_watch(emu))
        truth = Truth("kraken", emu.recording, emu.applied)
        for symbol, books in seen.items():
            true_books = [book.floats(DEPTH) for _, book in truth.changes(symbol, DEPTH)]
            assert len(books) > 50, symbol
            assert all(book in true_books for book in books), symbol
        assert emu.stats["connections"] == 1
        assert emu.unexpected == []


async def _watch(emu: ReplayEmulator) -> dict[str, list[Any]]:
    import ccxt.pro

    config = emu.exchanges_config()
    client = ccxt.pro.kraken(
        {"urls": config["urls"], "options": config["options"], "streaming": {"keepAlive": 500}}
    )
    seen: dict[str, list[Any]] = {"BTC/USD": [], "ETH/USD": []}

    async def watch(symbol: str) -> None:
        until = time.monotonic() + 8
        while time.monotonic() < until:
            book = await client.watch_order_book(symbol, DEPTH)
            seen[symbol].append({side: [lv[:2] for lv in book[side]] for side in ("bids", "asks")})

    try:
        await asyncio.gather(*(watch(symbol) for symbol in seen))
        assert client.clients[config["urls"]["api"]["ws"]["publicV2"]].lastPong is not None
        depth = await client.fetch_order_book("BTC/USD", 5)
        assert len(depth["bids"]) == 5
    finally:
        await client.close()
    return seen


@pytest.mark.slow
def test_a_coin_no_longer_collected_is_unsubscribed() -> None:
    """ccxt has no un_watch_order_book for kraken: obd sends the v2 unsubscribe itself
    when a coin stops, so the socket stops streaming its book."""
    import sys

    import msgspec

    load_plugin("ccxt")
    exchange_module = sys.modules["obd_test_plugins_ccxt.exchange"]
    options_module = sys.modules["obd_test_plugins_ccxt.options"]
    with ReplayEmulator("kraken", RECORDING, speed=4) as emu:
        options = msgspec.convert(emu.exchanges_config(), options_module.CcxtOptions)
        sent = asyncio.run(_watch_then_stop(exchange_module.CcxtExchange("kraken", options), emu))
    assert sent[0] < sent[1]  # streaming while watched
    assert sent[2] == sent[3]  # nothing once the coin stopped


async def _watch_then_stop(exchange: Any, emu: ReplayEmulator) -> list[int]:
    books = exchange.watch("ETH/USD", DEPTH)
    sent = []
    try:
        for _ in range(3):
            await books.__anext__()
        sent.append(emu.stats["frames_sent"])
        for _ in range(5):
            await books.__anext__()
        sent.append(emu.stats["frames_sent"])
        await books.aclose()  # as the collector does when a coin is removed
        await asyncio.sleep(1.0)  # the unsubscribe, and frames already on their way
        sent.append(emu.stats["frames_sent"])
        await asyncio.sleep(1.5)
        sent.append(emu.stats["frames_sent"])
    finally:
        await exchange.close()
    return sent


# Through obd: tests/test_replay_fidelity.py replays this exchange with every other
# one into one daemon (CI time), with the faults above.
