"""Hyperliquid through the replay emulator: the venue, unmodified ccxt.pro keeping its
books, and the real obd daemon collecting two perpetuals and a spot pair at 1 s, every
stored snapshot checked bit for bit against the book the emulator truly had at its slot.

Hyperliquid's `l2Book` frames are whole books with their own `time`: each book ccxt
returns is checked against the recorded book of that `time`; each snapshot obd stores
against the true books that stood at its slot (`tests/replay_support.py`).
"""

import asyncio
import functools
import json
from typing import Any

import pytest

from tests.conftest import REPO
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.emulator.replay.venue import Conn, RestRequest, create_venue

RECORDING = REPO / "tests" / "data" / "recordings" / "hyperliquid.jsonl.zst"
BTC, ETH, SPOT = "BTC/USDC:USDC", "ETH/USDC:USDC", "BTC/USDC"  # SPOT: coin "@1", UBTC
DEPTH = 50  # more than Hyperliquid has (20 a side): obd stores what exists
LEVELS = 20


# -- the venue --


def _venue() -> Any:
    return create_venue("hyperliquid", rec.load(RECORDING))


def _info(venue: Any, body: dict[str, Any]) -> Any:
    reply = venue.rest(RestRequest("POST", "/info", {}, json.dumps(body)))
    assert reply is not None
    assert reply.status == 200
    return json.loads(reply.body)


def test_recording_is_two_minutes_of_whole_books_derived_from_binance() -> None:
    recording = rec.load(RECORDING)
    assert recording.header.config == {"l2_book": ["BTC", "ETH", "@1"]}
    assert recording.header.meta["derived"] is True
    assert "Binance" in recording.header.meta["note"]
    frames = [json.loads(e.data) for e in recording.recv]
    books = [f["data"] for f in frames if f["channel"] == "l2Book"]
    assert 100 < recording.recv[-1].ts - recording.recv[0].ts < 130
    for coin in ("BTC", "ETH", "@1"):
        times = [b["time"] for b in books if b["coin"] == coin]
        assert len(times) > 500
        assert times == sorted(set(times))  # strictly increasing: ccxt keeps no nonce
    for book in books:
        bids, asks = book["levels"]
        assert 0 < len(bids) <= LEVELS
        assert 0 < len(asks) <= LEVELS
        assert float(bids[0]["px"]) < float(asks[0]["px"])
        assert [float(b["px"]) for b in bids] == sorted(
            (float(b["px"]) for b in bids), reverse=True
        )
    assert RECORDING.stat().st_size < 300_000


def test_venue_answers_what_ccxt_asks() -> None:
    venue = _venue()
    meta, contexts = _info(venue, {"type": "metaAndAssetCtxs"})
    assert [u["name"] for u in meta["universe"]] == ["BTC", "ETH"]
    assert [u["szDecimals"] for u in meta["universe"]] == [5, 4]
    assert float(contexts[0]["markPx"]) > 10_000
    assert _info(venue, {"type": "perpDexs"}) == [None]
    spot, spot_contexts = _info(venue, {"type": "spotMetaAndAssetCtxs"})
    assert [t["name"] for t in spot["tokens"]] == ["USDC", "UBTC"]
    assert spot["universe"] == [{"tokens": [1, 0], "name": "@1", "index": 1}]
    assert spot_contexts[1]["coin"] == "@1"  # indexed by pair index, as ccxt reads them
    assert venue.symbols() == [BTC, ETH, SPOT]
    book = _info(venue, {"type": "l2Book", "coin": "ETH"})
    assert [(lv["px"], lv["sz"]) for lv in book["levels"][0]] == venue.book(ETH).bids
    assert venue.rest(RestRequest("POST", "/info", {}, '{"type":"userFills"}')) is None
    assert venue.rest(RestRequest("GET", "/anything", {})) is None
    venue.delist(ETH)
    assert _info(venue, {"type": "meta"})["universe"][1]["isDelisted"] is True
    assert _info(venue, {"type": "l2Book", "coin": "ETH"}) is None
    venue.delist(SPOT)
    assert _info(venue, {"type": "spotMeta"})["universe"] == []
    assert venue.faults == frozenset()  # no checksum, no sequence number to corrupt


def test_venue_websocket_dialogue() -> None:
    venue, conn = _venue(), Conn("c1", "/ws", {})
    subscribe = '{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC"}}'
    ack, snapshot = (json.loads(frame) for frame in venue.on_message(conn, subscribe))
    assert ack["channel"] == "subscriptionResponse"
    assert ack["data"]["subscription"]["coin"] == "BTC"
    assert snapshot["channel"] == "l2Book"
    assert snapshot["data"]["time"] == venue.book(BTC).ts_ms
    assert conn.symbols == {BTC}
    again = json.loads(venue.on_message(conn, subscribe)[0])
    assert again["channel"] == "error"
    assert again["data"].startswith("Already subscribed")  # ccxt ignores exactly this
    assert venue.on_message(conn, '{"method":"ping"}') == ['{"channel":"pong"}']
    frames = rec.load(RECORDING).recv
    btc = next(e for e in frames if '"coin":"BTC","time"' in e.data and '"l2Book"' in e.data)
    eth = next(e for e in frames if '"coin":"ETH","time"' in e.data and '"l2Book"' in e.data)
    assert venue.frame_for(conn, btc, venue.apply(btc)) == btc.data  # byte for byte
    assert venue.frame_for(conn, eth, venue.apply(eth)) is None  # not subscribed
    unsubscribe = subscribe.replace('"subscribe"', '"unsubscribe"')
    assert json.loads(venue.on_message(conn, unsubscribe)[0])["data"]["method"] == "unsubscribe"
    assert conn.symbols == set()


def test_every_ccxt_url_points_at_the_emulator() -> None:
    import ccxt.pro  # type: ignore[import-untyped]

    config = _venue().exchanges_config("http://127.0.0.1:9")
    client = ccxt.pro.hyperliquid({"urls": config["urls"]})
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, str):
            found.append(value)

    walk({"api": client.urls["api"], "test": client.urls["test"]})
    assert found
    assert all(url.startswith(("http://127.0.0.1:9", "ws://127.0.0.1:9")) for url in found)


# -- unmodified ccxt.pro --


@functools.cache
def _by_time(symbol: str) -> dict[int, dict[str, list[list[float]]]]:
    """Every book the recording gives `symbol`, by its `time` (the truth keeps only
    changes of price or size; a frame may change only an order count `n`)."""
    venue, books = _venue(), {}
    for entry in rec.load(RECORDING).recv:
        if symbol in venue.apply(entry):
            book = venue.book(symbol)
            books[book.ts_ms] = book.floats(DEPTH)
    return books


@pytest.mark.slow
def test_ccxt_keeps_the_true_book() -> None:
    """Each book ccxt.pro returns (a perpetual, and the spot pair) is exactly the
    emulator's true book with the same `time`; after dropped frames the next whole
    frame puts it right; REST answers."""
    with ReplayEmulator("hyperliquid", RECORDING, speed=4) as emu:
        checked, rest = asyncio.run(_watch(emu))
        truth = Truth("hyperliquid", emu.recording, emu.applied)
        assert emu.unexpected == []
        assert emu.stats["frames_dropped"] == 5
    assert len(checked) == 80
    assert truth.changes(ETH, LEVELS)  # the replay ran
    for symbol, time_ms, book in checked:
        assert book == _by_time(symbol)[time_ms], (symbol, time_ms)
    assert rest["bids"]
    assert rest["asks"]


async def _watch(emu: ReplayEmulator) -> tuple[list[tuple[str, int, Any]], Any]:
    import ccxt.pro

    config = emu.exchanges_config()
    client = ccxt.pro.hyperliquid({"urls": config["urls"], "options": config.get("options", {})})
    checked: list[tuple[str, int, Any]] = []

    async def watch(symbol: str, n: int) -> None:
        for _ in range(n):
            book = await client.watch_order_book(symbol, DEPTH)
            assert len(book["bids"]) <= LEVELS  # Hyperliquid has no more to give
            levels = {side: [level[:2] for level in book[side]] for side in ("bids", "asks")}
            checked.append((symbol, book["timestamp"], levels))

    try:
        await watch(ETH, 30)
        emu.drop(ETH, 5)
        await watch(ETH, 30)
        await watch(SPOT, 20)
        rest = await client.fetch_order_book(SPOT)
    finally:
        await client.close()
    return checked, rest


# Through obd: tests/test_replay_fidelity.py replays this exchange with every other
# one into one daemon (CI time), with the faults above.
