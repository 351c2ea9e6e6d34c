"""OKX v5 on the replay emulator: unmodified ccxt.pro okx keeps the true book through
it, and a real daemon collecting BTC/USDT and ETH/USDT at 1 s stores only true books,
with faults on ETH/USDT (a dropped frame, a bad checksum, a skipped sequence) turned
into gaps with reasons, never a wrong book."""

import asyncio
import bisect
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.emulator.replay.okx_wire import WireBook
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth
from tests.replay_support import (
    RECORDINGS,
)

RECORDING = RECORDINGS / "okx_btc_eth_usdt.jsonl.zst"


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


# Through obd: tests/test_replay_fidelity.py replays this exchange with every other
# one into one daemon (CI time), with the faults above.
