"""Hyperliquid through the replay emulator: the venue, unmodified ccxt.pro keeping its
books, and the real obd daemon collecting two perpetuals and a spot pair at 1 s, every
stored snapshot checked bit for bit against the book the emulator truly had at its slot.

Hyperliquid's `l2Book` frames are whole books with their own `time`, so a stored
snapshot is checked twice: it is exactly the true book whose `time` it carries
(`exchange_ts`), and that book stood at some instant of [slot - tolerance, slot].
"""

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, wait_for, write_config
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.emulator.replay.venue import Conn, RestRequest, create_venue
from tests.replay_support import (
    GAP_REASONS,
    LoggedDaemon,
    ReplayProcess,
    Verdict,
    coins_toml,
    exchanges_toml,
    fidelity,
)

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
    import ccxt.pro

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


# -- obd --

SPEED = 1.0  # real pace: ~9 frames a second a coin, as Hyperliquid sends a busy book
SLOTS = 62
TOLERANCE_MS = 250  # as for Binance: a frame sent this long before a slot may be in flight


def _start(tmp_path: Path) -> tuple[ReplayProcess, LoggedDaemon, int]:
    """A replay subprocess and a daemon collecting every coin at 1 s, depth 50; and the
    first slot they all have a snapshot for."""
    replay = ReplayProcess("hyperliquid", RECORDING, tmp_path / "hyperliquid.sent", SPEED)
    coins = coins_toml([("hyperliquid", symbol) for symbol in replay.symbols], DEPTH)
    daemon = LoggedDaemon(write_config(tmp_path, exchanges_toml([replay]), coins=coins))
    start = wait_for(lambda: _first_ts(daemon), timeout_s=30)
    return replay, daemon, start


def _first_ts(daemon: LoggedDaemon) -> int | None:
    firsts = [coin["first_ts"] for coin in daemon.http.get("/v1/coins").json()["items"]]
    return max(firsts) if len(firsts) == 3 and None not in firsts else None


def _books(daemon: LoggedDaemon, symbol: str, window: tuple[int, int]) -> list[dict[str, Any]]:
    params = {"exchange": "hyperliquid", "symbol": symbol, "start": window[0]}
    params |= {"end": window[1] - 1, "limit": 1000}
    return list(daemon.http.get("/v1/books", params=params).json()["items"])


def _of_its_time(symbol: str, items: list[dict[str, Any]]) -> None:
    """Each snapshot is exactly the true book that carried its `exchange_ts` (the
    frame's `time`), cut to the 20 levels a side Hyperliquid has (depth 50 asked)."""
    by_time = _by_time(symbol)
    for item in items:
        assert len(item["bids"]) <= LEVELS
        assert len(item["asks"]) <= LEVELS
        stored = {"bids": item["bids"], "asks": item["asks"]}
        assert stored == by_time[item["exchange_ts"]], (symbol, item["ts"])


def _collect(
    tmp_path: Path, during: Any
) -> tuple[list[Verdict], dict[str, Any], LoggedDaemon, dict[str, list[dict[str, Any]]]]:
    """Collect for SLOTS slots, running `during(replay, start)` meanwhile; the verdict
    of each coin, the emulator's stats, the daemon (stopped) and what it stored."""
    replay, daemon, start = _start(tmp_path)
    try:
        during(replay, start)
        time.sleep(max(0.0, start / 1000 + SLOTS + 1.5 - time.time()))
        window = (start, start + SLOTS * 1000)
        truth = replay.truth()
        verdicts = [
            fidelity(daemon.http, "hyperliquid", s, truth, DEPTH, window, TOLERANCE_MS)
            for s in replay.symbols
        ]
        stored = {symbol: _books(daemon, symbol, window) for symbol in replay.symbols}
        for symbol, items in stored.items():
            _of_its_time(symbol, items)
        stats = replay.stats()
    finally:
        code = daemon.stop()
        replay.stop()
    assert code == 0
    assert stats["unexpected"] == []  # nothing asked that Hyperliquid would not answer
    assert stats["done"] is False  # still replaying when the window closed
    print(verdicts, stats, daemon.events("stream_down"))  # shown when a test fails
    return verdicts, stats, daemon, stored


@pytest.mark.slow
def test_obd_stores_the_true_book_at_every_slot(tmp_path: Path) -> None:
    verdicts, _, _, _ = _collect(tmp_path, lambda replay, start: None)
    for verdict in verdicts:
        assert verdict.slots >= 60, verdict
        assert verdict.exact, verdict
        assert verdict.gaps == {}, verdict  # 100 %: every slot a true book...
        # ...live, but for the first if the subscription's book came just after it (REST)
        assert verdict.ws >= verdict.slots - 1, verdict


@pytest.mark.slow
def test_dropped_frames_leave_no_wrong_book(tmp_path: Path) -> None:
    """ETH frames lost mid-run, one at a time: Hyperliquid numbers nothing, so obd
    cannot see a loss, and needs not: the next frame is the whole book. No stored book
    is wrong, every slot is accounted for, BTC and the spot pair stay 100 %."""

    def drop(replay: ReplayProcess, start: int) -> None:
        for _ in range(8):
            time.sleep(4)
            replay.control("drop", symbol=ETH, n=1)

    verdicts, stats, _, _ = _collect(tmp_path, drop)
    assert stats["frames_dropped"] == 8
    for verdict in verdicts:
        assert verdict.slots >= 60, verdict
        assert verdict.exact, verdict
        assert set(verdict.gaps) <= GAP_REASONS, verdict
    assert verdicts[0].gaps == {}, verdicts[0]  # BTC: 100 %
    assert verdicts[2].gaps == {}, verdicts[2]  # spot BTC/USDC: 100 %


@pytest.mark.slow
def test_stall_is_replaced_and_delisting_stops_with_reason(tmp_path: Path) -> None:
    """A connection gone silent (no frames, no pongs) is dropped by obd's watchdog and
    replaced: the slots in between are `disconnected` gaps, then live books again.
    ETH delisted later: its slots become `not_listed` gaps; BTC carries on."""
    delisted: list[float] = []

    def stall_then_delist(replay: ReplayProcess, start: int) -> None:
        time.sleep(10)
        replay.control("stall")
        time.sleep(20)
        delisted.append(time.time())
        replay.control("delist", symbol=ETH)

    verdicts, stats, daemon, stored = _collect(tmp_path, stall_then_delist)
    btc, eth, spot = verdicts
    assert spot.exact, spot
    assert stats["connections"] >= 2  # the stalled one, and its replacement
    assert btc.exact, btc  # REST snapshots included: taken while the websocket was down
    assert btc.ws < btc.slots, btc  # the stall cost live slots...
    assert btc.ws >= btc.slots - 8, btc  # ...a few: ccxt's missed pongs or the watchdog
    assert set(btc.gaps) <= GAP_REASONS, btc
    assert eth.unaccounted == 0, eth
    assert eth.gaps.get("not_listed", 0) >= 20, eth
    assert any(e.get("reason") == "not_listed" for e in daemon.events("stream_down", ETH))
    # Until obd has reloaded the listing (markets_ttl_s: 2 s here, then ~2 s of
    # rate-limited requests) a delisted coin looks like a quiet one, its connection
    # alive: those slots hold its last book, stale but never invented (docs/exchanges).
    delisted_ms = int(delisted[0] * 1000)
    assert all(slot >= delisted_ms - TOLERANCE_MS for slot in eth.wrong), eth
    assert len(eth.wrong) <= 8, eth
    stale = [item for item in stored[ETH] if item["ts"] in eth.wrong]
    assert all(item["received_ts"] <= delisted_ms + TOLERANCE_MS for item in stale), eth
