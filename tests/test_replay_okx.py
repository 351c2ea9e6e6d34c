"""OKX v5 on the replay emulator: unmodified ccxt.pro okx keeps the true book through
it, and a real daemon collecting BTC/USDT and ETH/USDT at 1 s stores only true books,
with faults on ETH/USDT (a dropped frame, a bad checksum, a skipped sequence) turned
into gaps with reasons, never a wrong book."""

import asyncio
import bisect
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import wait_for, write_config
from tests.emulator.replay.okx_wire import WireBook
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

RECORDING = RECORDINGS / "okx_btc_eth_usdt.jsonl.zst"
SPEED = 1.6  # the 115 s recording in ~72 s: 60+ one-second slots after start-up
DEPTH = 50
SLOTS = 62
TOLERANCE_MS = 250  # a frame sent this long before a slot may still be on its way


def test_the_venue_speaks_okx_v5() -> None:
    """What a raw client sees: text pings, subscribe acks, a snapshot whose checksum and
    seqId the recorded updates chain onto, no second snapshot for a live channel, OKX's
    error codes, the listings ccxt asks for, the REST book, a delisting."""
    with ReplayEmulator("okx", RECORDING, speed=4) as emu:
        assert emu.symbols() == ["BTC/USDT", "ETH/USDT"]
        assert emu.exchanges_config()["urls"]["api"]["ws"] == f"ws://127.0.0.1:{emu.port}/ws/v5"
        frames = asyncio.run(_dialogue(f"ws://127.0.0.1:{emu.port}/ws/v5/public"))
        with httpx.Client(base_url=emu.url + "/api/v5") as http:
            spot = http.get("/public/instruments", params={"instType": "SPOT"}).json()["data"]
            swap = http.get("/public/instruments", params={"instType": "SWAP"}).json()
            book = http.get("/market/books", params={"instId": "ETH-USDT", "sz": 5}).json()
            emu.delist("ETH/USDT")
            gone = http.get("/market/books", params={"instId": "ETH-USDT", "sz": 5})
            after = http.get("/public/instruments", params={"instType": "SPOT"}).json()["data"]
    pong, ack, snapshot, *updates = frames["btc"]
    assert (pong, json.loads(ack)["event"]) == ("pong", "subscribe")
    book_now = WireBook()  # the snapshot and every update after it check out
    for frame in [snapshot, *updates]:
        message = json.loads(frame)
        data = message["data"][0]
        if message["action"] == "update":
            assert data["prevSeqId"] == book_now.seq
        book_now.apply(data, snapshot=message["action"] == "snapshot")
        assert book_now.checksum() == data["checksum"]
    assert json.loads(snapshot)["data"][0]["prevSeqId"] == -1
    assert len(json.loads(snapshot)["data"][0]["bids"]) == 400
    assert [json.loads(f)["event"] for f in frames["acks"]] == [
        "unsubscribe",
        "subscribe",
        "subscribe",
    ]
    assert len(frames["snapshots"]) == 1  # for the new subscription, not the repeat
    assert '"action":"snapshot"' in frames["snapshots"][0]
    assert [json.loads(f).get("code") for f in frames["errors"]] == ["60018", "60018", "60012"]
    assert [row["instId"] for row in spot] == ["BTC-USDT", "ETH-USDT"]
    assert swap == {"code": "0", "msg": "", "data": []}
    assert len(book["data"][0]["bids"]) == 5
    assert gone.json()["code"] == "51001"
    assert [row["state"] for row in after] == ["live", "suspend"]


async def _dialogue(url: str) -> dict[str, list[str]]:
    def request(op: str, channel: str, inst_id: str) -> str:
        return json.dumps({"op": op, "args": [{"channel": channel, "instId": inst_id}]})

    async with websockets.connect(url) as ws:

        async def until_event() -> list[str]:
            """Frames up to and including the next event (ack or error)."""
            frames = [str(await asyncio.wait_for(ws.recv(), 10))]
            while '"event"' not in frames[-1]:
                frames.append(str(await asyncio.wait_for(ws.recv(), 10)))
            return frames

        await ws.send("ping")
        await ws.send(request("subscribe", "books", "BTC-USDT"))
        btc = [str(await asyncio.wait_for(ws.recv(), 10)) for _ in range(13)]
        await ws.send(request("unsubscribe", "books", "BTC-USDT"))
        acks = [(await until_event())[-1]]
        await ws.send(request("subscribe", "books", "BTC-USDT"))  # anew: a new snapshot
        acks.append((await until_event())[-1])
        snapshot = str(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(request("subscribe", "books", "BTC-USDT"))  # again: none
        between = await until_event()
        acks.append(between[-1])
        snapshots = [snapshot, *[f for f in between if '"action":"snapshot"' in f]]
        errors = []
        for sent in (
            request("subscribe", "books", "DOGE-USDT"),
            request("subscribe", "books5", "BTC-USDT"),
            "hello",
        ):
            await ws.send(sent)
            errors.append((await until_event())[-1])
    return {"btc": btc, "acks": acks, "snapshots": snapshots, "errors": errors}


@pytest.mark.slow
def test_ccxt_keeps_the_true_book_through_the_okx_replay() -> None:
    """Each book ccxt returns is the true book at the seqId ccxt says it is at; a skipped
    sequence is an InvalidNonce and ccxt resyncs (unsubscribe, subscribe, new snapshot);
    a bad checksum passes ccxt unnoticed (obd's check_okx catches it: test_check_okx);
    a 429 reaches ccxt as a rate limit; the listing and REST book are OKX's."""
    with ReplayEmulator("okx", RECORDING, speed=4) as emu:
        checked, rest_book = asyncio.run(_watch(emu))
        truth = Truth("okx", emu.recording, emu.applied)
        books = [book for _, book in truth.changes("BTC/USDT", 20)]
        seqs = [book.seq or 0 for book in books]
        assert len(checked) >= 60
        for nonce, book in checked:
            assert book == books[bisect.bisect_right(seqs, nonce) - 1].floats(20), nonce
        assert emu.stats["fault_sequence"] == 1
        assert emu.stats["fault_checksum"] == 1
        assert emu.unexpected == []
    assert len(rest_book["bids"]) == 5


async def _watch(emu: ReplayEmulator) -> tuple[list[tuple[int, Any]], Any]:
    import ccxt.pro

    config = emu.exchanges_config()
    client = ccxt.pro.okx({"urls": config["urls"], "options": config["options"]})
    checked: list[tuple[int, Any]] = []

    async def watch(n: int) -> None:
        for _ in range(n):
            book = await client.watch_order_book("BTC/USDT")
            levels = {side: [level[:2] for level in book[side][:20]] for side in ("bids", "asks")}
            checked.append((book["nonce"], levels))

    try:
        await client.load_markets()
        assert client.markets["BTC/USDT"]["precision"] == {"amount": 1e-08, "price": 0.1}
        await watch(20)
        emu.fault("checksum", "BTC/USDT")
        await watch(20)  # ccxt never looks at the checksum
        emu.fault("sequence", "BTC/USDT")
        with pytest.raises(ccxt.pro.InvalidNonce):
            await watch(100)
        await watch(20)  # resynced from a new snapshot
        rest_book = await client.fetch_order_book("ETH/USDT", 5)
        emu.rest_errors(429, path="books")
        with pytest.raises(ccxt.pro.RateLimitExceeded):
            await client.fetch_order_book("BTC/USDT", 5)
    finally:
        await client.close()
    return checked, rest_book


def _first_ts(daemon: LoggedDaemon) -> int | None:
    coins = daemon.http.get("/v1/coins").json()["items"]
    firsts = [coin["first_ts"] for coin in coins]
    return max(firsts) if len(coins) == 2 and None not in firsts else None


@pytest.mark.slow
def test_okx_fidelity_on_recorded_traffic(tmp_path: Path) -> None:
    """BTC/USDT runs clean: every slot a true websocket book. ETH/USDT takes a dropped
    frame, a bad checksum and a skipped sequence: each noticed and resynced, the slots
    in between REST captures or gaps with reasons, never a wrong book."""
    replay = ReplayProcess("okx", RECORDING, tmp_path / "okx.sent", SPEED)
    btc, eth = replay.symbols
    coins = coins_toml([("okx", btc), ("okx", eth)], DEPTH)
    daemon = LoggedDaemon(write_config(tmp_path, exchanges_toml([replay]), coins=coins))
    try:
        start = wait_for(lambda: _first_ts(daemon), timeout_s=30)
        for delay_s, control in ((10, "drop"), (15, "checksum"), (15, "sequence")):
            time.sleep(delay_s)
            if control == "drop":
                replay.control("drop", symbol=eth, n=1)
            else:
                replay.control("fault", kind=control, symbol=eth)
        time.sleep(max(0.0, start / 1000 + SLOTS + 1.5 - time.time()))
        window = (start, start + SLOTS * 1000)
        truth = replay.truth()
        verdicts = [
            fidelity(daemon.http, "okx", symbol, truth, DEPTH, window, TOLERANCE_MS)
            for symbol in (btc, eth)
        ]
        stats = replay.stats()
        downs = daemon.events("stream_down")
    finally:
        code = daemon.stop()
        replay.stop()
    print(verdicts, stats, downs[:20], sep="\n")
    assert code == 0
    clean, faulted = verdicts
    assert clean.slots >= 60
    assert clean.exact
    assert clean.ws == clean.slots, clean  # 100 %: no gap at all
    assert faulted.slots >= 60
    assert faulted.exact, faulted
    assert set(faulted.gaps) <= GAP_REASONS | {"checksum"}, faulted
    # Each fault was noticed (obd fills the slots of a resync with REST captures, so
    # they are `rest` snapshots or gaps), and the live book came back after each:
    reasons = [event["reason"] for event in downs if event["symbol"] == eth]
    assert reasons.count("checksum") == 1, downs
    assert reasons.count("not_synced") >= 2, downs  # the drop and the skipped sequence
    assert not [event for event in downs if event["symbol"] == btc], downs
    assert faulted.ws >= faulted.slots - 9, faulted
    assert (stats["frames_dropped"], stats["fault_checksum"], stats["fault_sequence"]) == (1, 1, 1)
    assert stats["unexpected"] == []
