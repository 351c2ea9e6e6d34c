"""Hyperliquid through the replay emulator: the venue, unmodified ccxt.pro keeping its
books, and the real obd daemon collecting both coins at 1 s, every stored snapshot
checked bit for bit against the book the emulator truly had at its slot.

Hyperliquid's `l2Book` frames are whole books with their own `time`, so a stored
snapshot is checked twice: it is exactly the true book whose `time` it carries
(`exchange_ts`), and that book stood at some instant of [slot - tolerance, slot].
"""

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Daemon, write_config
from tests.emulator.config import toml_value
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.emulator.replay.venue import Conn, RestRequest, create_venue

RECORDING = REPO / "tests" / "data" / "recordings" / "hyperliquid_btc_eth.jsonl.zst"
BTC, ETH = "BTC/USDC:USDC", "ETH/USDC:USDC"
DEPTH = 50  # more than Hyperliquid has (20 a side): obd stores what exists
LEVELS = 20
# A frame sent just before a slot may reach obd just after it (the machine is shared):
# the stored book must have stood at some instant of [slot - this, slot].
TOLERANCE_MS = 500
GAP_REASONS = {"not_synced", "disconnected", "rate_limited", "exchange_error", "not_listed"}


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
    assert recording.header.config == {"l2_book": ["BTC", "ETH"]}
    assert "Binance" in recording.header.meta["derived"]
    frames = [json.loads(e.data) for e in recording.recv]
    books = [f["data"] for f in frames if f["channel"] == "l2Book"]
    assert 100 < recording.recv[-1].ts - recording.recv[0].ts < 130
    for coin in ("BTC", "ETH"):
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
    assert _info(venue, {"type": "spotMeta"})["tokens"][0]["name"] == "USDC"
    book = _info(venue, {"type": "l2Book", "coin": "ETH"})
    assert [(lv["px"], lv["sz"]) for lv in book["levels"][0]] == venue.book(ETH).bids
    assert venue.rest(RestRequest("POST", "/info", {}, '{"type":"userFills"}')) is None
    assert venue.rest(RestRequest("GET", "/anything", {})) is None
    venue.delist(ETH)
    assert _info(venue, {"type": "meta"})["universe"][1]["isDelisted"] is True
    assert _info(venue, {"type": "l2Book", "coin": "ETH"}) is None
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


# -- unmodified ccxt.pro --


@pytest.mark.slow
def test_ccxt_keeps_the_true_book() -> None:
    """Each book ccxt.pro returns is exactly the emulator's true book with the same
    `time`; after dropped frames the next whole frame puts it right; REST answers."""
    with ReplayEmulator("hyperliquid", RECORDING, speed=4) as emu:
        checked, rest = asyncio.run(_watch(emu))
        truth = Truth("hyperliquid", emu.recording, emu.applied)
        assert emu.unexpected == []
        assert emu.stats["frames_dropped"] == 5
    by_time = {book.ts_ms: book.floats(LEVELS) for _, book in truth.changes(ETH, LEVELS)}
    assert len(checked) == 60
    for time_ms, book in checked:
        assert book == by_time[time_ms], time_ms
    assert rest["bids"]
    assert rest["asks"]


async def _watch(emu: ReplayEmulator) -> tuple[list[tuple[int, Any]], Any]:
    import ccxt.pro

    config = emu.exchanges_config()
    client = ccxt.pro.hyperliquid({"urls": config["urls"], "options": config.get("options", {})})
    checked: list[tuple[int, Any]] = []

    async def watch(n: int) -> None:
        for _ in range(n):
            book = await client.watch_order_book(ETH, DEPTH)
            assert len(book["bids"]) <= LEVELS  # Hyperliquid has no more to give
            levels = {side: [level[:2] for level in book[side]] for side in ("bids", "asks")}
            checked.append((book["timestamp"], levels))

    try:
        await watch(30)
        emu.drop(ETH, 5)
        await watch(30)
        rest = await client.fetch_order_book(ETH)
    finally:
        await client.close()
    return checked, rest


# -- obd --


class _Collector(Daemon):
    """The daemon, its log read as it runs (a full stderr pipe would stall it)."""

    def __init__(self, config: Path) -> None:
        super().__init__(config)
        self._reader = threading.Thread(target=self._read, name="daemon-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                self.log.append(json.loads(line))
            except ValueError:
                self.log.append({"raw": line})

    def stop(self) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout=30)
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


@pytest.fixture
def replay() -> Iterator[ReplayEmulator]:
    with ReplayEmulator("hyperliquid", RECORDING, speed=1.0) as emu:
        yield emu
    assert emu.unexpected == []  # nothing asked that Hyperliquid would not answer


def _collect(tmp_path: Path, emu: ReplayEmulator) -> _Collector:
    table = emu.exchanges_config()
    lines = [f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items()]
    coins = "".join(
        f'[[coins]]\nexchange = "hyperliquid"\nsymbol = "{symbol}"\n'
        f'interval = "1s"\ndepth = {DEPTH}\n'
        for symbol in (BTC, ETH)
    )
    body = "[exchanges.hyperliquid]\n" + "\n".join(lines) + "\n"
    return _Collector(write_config(tmp_path, body, coins=coins))


def _books(daemon: Daemon, symbol: str) -> list[dict[str, Any]]:
    params = {"exchange": "hyperliquid", "symbol": symbol, "limit": 1000}
    return list(daemon.http.get("/v1/books", params=params).json()["items"])


def _coverage(daemon: Daemon, symbol: str) -> dict[str, Any]:
    params = {"exchange": "hyperliquid", "symbol": symbol}
    return dict(daemon.http.get("/v1/coverage", params=params).json())


def _verify(truth: Truth, symbol: str, items: list[dict[str, Any]]) -> None:
    """Every snapshot is the true book of its `time`, standing at its slot."""
    by_time = {book.ts_ms: book.floats(DEPTH) for _, book in truth.changes(symbol, DEPTH)}
    for item in items:
        stored = {"bids": item["bids"], "asks": item["asks"]}
        assert item["capture"] == "ws", item["ts"]
        assert item["received_ts"] <= item["ts"]
        assert len(item["bids"]) <= LEVELS  # depth 50 asked; Hyperliquid serves 20
        assert stored == by_time[item["exchange_ts"]], (symbol, item["ts"])
        standing = truth.books_within(symbol, DEPTH, item["ts"] - TOLERANCE_MS, item["ts"])
        assert stored in [book.floats(DEPTH) for book in standing], (symbol, item["ts"])


def _accounted(coverage: dict[str, Any]) -> list[list[Any]]:
    """Every slot a snapshot or a gap with a reason; the gaps inside the run."""
    missing = sum((end - start) // 1000 for start, end, _ in coverage["gaps"])
    assert coverage["present"] + missing == coverage["expected"], coverage
    return list(coverage["gaps"])


def _run_for(daemon: Daemon, symbol: str, slots: int) -> None:
    """Wait until `symbol` has `slots` snapshots (at 1 s, about as many seconds)."""
    import time

    deadline = time.monotonic() + slots + 30
    while len(_books(daemon, symbol)) < slots:
        assert daemon.process.poll() is None, daemon.log[-5:]
        assert time.monotonic() < deadline, "obd did not store in time"
        time.sleep(0.5)


@pytest.mark.slow
def test_obd_stores_the_true_book_at_every_slot(tmp_path: Path, replay: ReplayEmulator) -> None:
    daemon = _collect(tmp_path, replay)
    try:
        _run_for(daemon, ETH, 62)
        results = {s: (_books(daemon, s), _coverage(daemon, s)) for s in (BTC, ETH)}
    finally:
        assert daemon.stop() == 0
    truth = Truth("hyperliquid", replay.recording, replay.applied)
    for symbol, (items, coverage) in results.items():
        assert len(items) >= 60
        _verify(truth, symbol, items)
        gaps = _accounted(coverage)
        first = min(item["ts"] for item in items)
        assert [gap for gap in gaps if gap[0] >= first] == []  # 100 % once collecting


@pytest.mark.slow
def test_dropped_frames_never_leave_a_wrong_book(tmp_path: Path, replay: ReplayEmulator) -> None:
    """Frames of ETH dropped mid-run (Hyperliquid numbers nothing, so obd cannot see a
    loss): the next whole book heals it; no stored book is wrong; BTC stays 100 %."""
    import time

    daemon = _collect(tmp_path, replay)
    try:
        _run_for(daemon, ETH, 20)
        for _ in range(8):  # lose 1, 2, ... 8 frames in a row, about every 5 s
            replay.drop(ETH, _ + 1)
            time.sleep(5)
        _run_for(daemon, ETH, 62)
        results = {s: (_books(daemon, s), _coverage(daemon, s)) for s in (BTC, ETH)}
    finally:
        assert daemon.stop() == 0
    assert replay.stats["frames_dropped"] == 36
    truth = Truth("hyperliquid", replay.recording, replay.applied)
    for symbol, (items, coverage) in results.items():
        _verify(truth, symbol, items)
        gaps = _accounted(coverage)
        assert all(reason in GAP_REASONS for _, _, reason in gaps)
    btc_items, btc_coverage = results[BTC]
    first = min(item["ts"] for item in btc_items)
    assert [gap for gap in btc_coverage["gaps"] if gap[0] >= first] == []
