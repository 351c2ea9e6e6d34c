"""Coinbase Advanced Trade on recorded traffic (derived from Binance spot): the
recording, the `level2` venue, unmodified ccxt.pro through it, obd's sequence_num
check, and fidelity through a real daemon with a lost message on the second symbol."""

import asyncio
import importlib
import itertools
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import load_plugin
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.replay_support import RECORDINGS

RECORDING = RECORDINGS / "coinbase.jsonl.zst"
SYMBOLS = ["BTC/USD", "ETH/USD"]


def _messages() -> list[dict[str, Any]]:
    return [json.loads(entry.data) for entry in rec.load(RECORDING).recv]


def _check() -> Any:
    load_plugin("ccxt")
    return importlib.import_module("obd_test_plugins_ccxt.check_coinbase").check


# -- the recording --


def test_the_recording_is_coinbase_level2_derived_from_binance() -> None:
    recording = rec.load(RECORDING)
    assert recording.header.exchange == "COINBASE"
    assert recording.header.config == {"l2_book": ["BTC-USD", "ETH-USD"]}
    assert recording.header.meta["derived"] is True
    assert "hftbacktest" in recording.header.meta["source"]
    assert [h.url.split("/")[-1] for h in recording.http] == ["products", "time"]
    frames = recording.recv
    assert 100 < frames[-1].ts - frames[0].ts <= 120
    messages = _messages()
    assert [m["sequence_num"] for m in messages] == list(range(len(messages)))  # one connection
    assert [m["events"][0]["type"] for m in messages[:2]] == ["snapshot", "snapshot"]
    assert messages[2]["channel"] == "subscriptions"
    assert {m["channel"] for m in messages} == {"l2_data", "subscriptions", "heartbeats"}
    assert RECORDING.stat().st_size < 1_000_000


# -- obd's check (plugins.d/ccxt/check_coinbase.py) on recorded frames --


def test_the_check_is_registered_for_coinbase() -> None:
    load_plugin("ccxt")
    checks = importlib.import_module("obd_test_plugins_ccxt.checks")
    assert checks.CHECKS["coinbase"] is _check()


def test_the_check_passes_an_unbroken_stream() -> None:
    check, books = _check(), dict.fromkeys(SYMBOLS, object())
    assert all(check(message, books) == {} for message in _messages())


def test_a_skipped_message_fails_every_book_on_the_connection() -> None:
    from obd.errors import NotSynced

    check, books = _check(), dict.fromkeys(SYMBOLS, object())
    messages = _messages()[:200]
    for message in messages[:100]:
        assert check(message, books) == {}
    failed = check(messages[101], books)  # messages[100] was lost on the wire
    assert set(failed) == set(SYMBOLS)  # whichever product it was about: unknown
    assert all(isinstance(error, NotSynced) for error in failed.values())
    assert "sequence_num 99 then 101" in str(failed["ETH/USD"])
    assert all(check(message, books) == {} for message in messages[102:])  # resumes


def test_a_new_connection_numbers_from_zero_again() -> None:
    check, books = _check(), dict.fromkeys(SYMBOLS, object())
    messages = _messages()
    for message in messages[:300]:
        check(message, books)
    assert all(check(message, books) == {} for message in messages[:50])


def test_a_book_rebuilt_by_the_gapped_message_itself_stands() -> None:
    check, books = _check(), dict.fromkeys(SYMBOLS, object())
    snapshot = _messages()[1]  # ETH-USD's snapshot
    check({**snapshot, "sequence_num": 10}, books)
    assert set(check({**snapshot, "sequence_num": 12}, books)) == {"BTC/USD"}


def test_other_instances_are_checked_apart() -> None:
    check, messages = _check(), _messages()
    one, two = dict.fromkeys(SYMBOLS, object()), dict.fromkeys(SYMBOLS, object())
    for message in messages[:20]:
        assert check(message, one) == {}
        assert check(message, two) == {}
    assert check("not a dict", one) == {}
    assert check({"channel": "l2_data"}, one) == {}


# -- the venue --


def test_rest_answers_what_ccxt_asks() -> None:
    with (
        ReplayEmulator("coinbase", RECORDING, speed=4) as emu,
        httpx.Client(base_url=emu.url) as http,
    ):
        listing = http.get("/api/v3/brokerage/market/products").json()
        assert [p["product_id"] for p in listing["products"]] == ["BTC-USD", "ETH-USD"]
        futures = http.get("/api/v3/brokerage/market/products", params={"product_type": "FUTURE"})
        assert futures.json()["products"] == []
        for _ in range(50):  # the replay moves on meanwhile: compare a book that stood still
            true = emu.book("BTC/USD", 3)
            book = http.get(
                "/api/v3/brokerage/market/product_book",
                params={"product_id": "BTC-USD", "limit": 3},
            ).json()["pricebook"]
            if emu.book("BTC/USD", 3) == true:
                break
        assert [(b["price"], b["size"]) for b in book["bids"]] == true.bids
        assert [(a["price"], a["size"]) for a in book["asks"]] == true.asks
        for path in ("/v2/currencies", "/v2/currencies/crypto", "/v2/exchange-rates", "/v2/time"):
            assert http.get(path).status_code == 200
        missing = http.get("/api/v3/brokerage/market/product_book", params={"product_id": "X-Y"})
        assert missing.status_code == 404
        emu.rest_errors(429)
        refused = http.get("/api/v3/brokerage/market/products")
        assert refused.status_code == 429
        assert refused.json()["errors"][0]["id"] == "rate_limit_exceeded"
        emu.delist("ETH/USD")
        eth = http.get("/api/v3/brokerage/market/products").json()["products"][1]
        assert eth["trading_disabled"] is True
        assert emu.unexpected == []


def test_websocket_dialogue_and_faults_renumber_the_connection() -> None:
    with ReplayEmulator("coinbase", RECORDING, speed=4) as emu:
        frames = asyncio.run(_raw_session(emu))
    numbers = [frame["sequence_num"] for frame in frames]
    assert frames[0]["events"][0]["type"] == "snapshot"
    assert frames[0]["events"][0]["product_id"] == "BTC-USD"
    assert frames[1]["events"] == [{"subscriptions": {"level2": ["BTC-USD"]}}]
    updates = [f for f in frames if f["channel"] == "l2_data"][1:]
    assert {f["events"][0]["product_id"] for f in updates} == {"BTC-USD"}  # no ETH, no beats
    jumps = [b - a for a, b in itertools.pairwise(numbers) if b - a != 1]
    assert jumps == [2, 2]  # the dropped frame, then the skipped number
    assert frames[-1]["events"] == [{"subscriptions": {}}]
    assert emu.stats["frames_dropped"] == 1
    assert emu.stats["fault_sequence"] == 1


async def _raw_session(emu: ReplayEmulator) -> list[dict[str, Any]]:
    subscribe = {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}
    frames: list[dict[str, Any]] = []
    async with websockets.connect(emu.url.replace("http", "ws") + "/ws", max_size=None) as ws:
        await ws.send(json.dumps(subscribe))
        for step in range(30):
            if step == 10:
                emu.drop("BTC/USD")
            if step == 20:
                emu.fault("sequence", "BTC/USD")
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await ws.send(json.dumps({**subscribe, "type": "unsubscribe"}))
        while frames[-1]["channel"] != "subscriptions":
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    return frames


# -- unmodified ccxt.pro --


@pytest.mark.slow
def test_ccxt_keeps_the_true_book_and_misses_a_lost_message() -> None:
    """ccxt.pro.coinbase through the replay: every whole book it returns is the true
    book as of the frame it last applied (its `timestamp`); after one dropped frame it
    goes on without a word (it never reads `sequence_num`) and its book stays wrong."""
    with ReplayEmulator("coinbase", RECORDING, speed=4) as emu:
        before, after = asyncio.run(_watch(emu))
        truth = Truth("coinbase", emu.recording, emu.applied)
        order = {  # each whole true book -> its place in the symbol's history
            symbol: {_key(book.floats(10_000)): i for i, (_, book) in enumerate(changes)}
            for symbol in SYMBOLS
            if (changes := truth.changes(symbol, 10_000))
        }
        for symbol in SYMBOLS:
            places = [order[symbol].get(_key(levels)) for s, levels in before if s == symbol]
            assert len(places) >= 20
            assert None not in places, (symbol, places)  # each one a true book ...
            assert places == sorted(places), symbol  # ... in the order they stood
        assert len(after) == 10  # no error after the lost frame ...
        assert None in [order["ETH/USD"].get(_key(levels)) for _, levels in after]  # wrong
        assert emu.stats["frames_dropped"] == 1
        assert emu.unexpected == []


def _key(levels: dict[str, list[list[float]]]) -> tuple[Any, ...]:
    return tuple(tuple(map(tuple, levels[side])) for side in ("bids", "asks"))


async def _watch(emu: ReplayEmulator) -> tuple[list[Any], list[Any]]:
    import ccxt.pro

    config = emu.exchanges_config()
    client = ccxt.pro.coinbase({"urls": config["urls"], "options": config["options"]})

    async def watch(symbol: str, n: int) -> list[tuple[str, Any]]:
        seen = []
        for _ in range(n):
            book = await client.watch_order_book(symbol)
            levels = {side: [level[:2] for level in book[side]] for side in ("bids", "asks")}
            seen.append((symbol, levels))
        return seen

    try:
        btc, eth = await asyncio.gather(watch("BTC/USD", 30), watch("ETH/USD", 30))
        emu.drop("ETH/USD")
        after = await watch("ETH/USD", 10)
    finally:
        await client.close()
    return btc + eth, after


# Through obd: tests/test_replay_fidelity.py replays this exchange with every other
# one into one daemon (CI time), with the faults above.
