"""The replay emulator: its recording reader, its command line, its sent log, and
unmodified ccxt.pro keeping Binance books through it (spot, USD-M, COIN-M)."""

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import REPO
from tests.emulator.replay import recording as rec
from tests.emulator.replay.server import ReplayEmulator
from tests.emulator.replay.truth import Truth, applied_from_sent_log

RECORDINGS = REPO / "tests" / "data" / "recordings"
VENUES = {  # ccxt id -> (recording, a symbol it serves)
    "binance": ("binance.jsonl.zst", "BTC/USDT"),
    "binanceusdm": ("binanceusdm.jsonl.zst", "ETH/USDT:USDT"),
    "binancecoinm": ("binancecoinm.jsonl.zst", "BTC/USD:BTC"),
}
HEADER = '{"t":"header","exchange":"BINANCE","config":{"l2_book":["BTCUSDT"]}}'
RECV = '{"t":"recv","conn":"a","ts":1.5,"data":"{}"}'


@pytest.mark.parametrize(
    ("lines", "line", "why"),
    [
        ([HEADER, RECV, "{not json"], 3, "not JSON"),
        ([HEADER, '{"t":"pong","ts":1}'], 2, "unknown entry type"),
        ([HEADER, '{"t":"recv","conn":"a","data":"{}"}'], 2, "lacks 'ts'"),
        ([HEADER, '{"t":"http","ts":"soon","url":"u","data":""}'], 2, "wrong type"),
        ([RECV, HEADER], 1, "first line is no header"),
        ([HEADER, RECV, HEADER], 3, "header must be the first line"),
        ([HEADER, "", RECV], 2, "empty line"),
        (['{"t":"header","config":{}}'], 1, "lacks 'exchange'"),
        (["[1, 2]"], 1, "not a JSON object"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, lines: list[str], line: int, why: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(rec.RecordingError) as caught:
        rec.load(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert why in str(caught.value)


def test_an_empty_recording_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(rec.RecordingError, match=r"empty.jsonl:1: empty recording"):
        rec.load(tmp_path / "empty.jsonl")


def test_recordings_read_whole() -> None:
    recording = rec.load(RECORDINGS / "binance.jsonl.zst")
    assert recording.header.config == {"l2_book": ["BTCUSDT", "ETHUSDT"]}
    assert [h.url.split("symbol=")[1] for h in recording.http] == [
        "BTCUSDT&limit=1000",
        "ETHUSDT&limit=1000",
    ]
    frames = recording.recv
    assert 100 < frames[-1].ts - frames[0].ts < 130  # the ~2 minutes fidelity tests need
    assert rec.load(RECORDINGS / "binancecoinm.jsonl.zst").header.meta["derived"] is True


def _cli(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.emulator", "replay", *args]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_cli_refuses_a_malformed_recording_naming_the_line() -> None:
    process = _cli("--exchange", "binance", "--recording", str(RECORDINGS / "malformed.jsonl"))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert out == ""
    assert "malformed.jsonl:3: not JSON" in err


def test_cli_serves_logs_what_it_sends_and_stops_on_sigterm(tmp_path: Path) -> None:
    sent_log = tmp_path / "sent.jsonl"
    recording = RECORDINGS / "binance.jsonl.zst"
    process = _cli(
        "--exchange", "binance", "--recording", str(recording), "--speed", "4",
        "--sent-log", str(sent_log),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["exchange"] == "binance"
        assert info["symbols"] == ["BTC/USDT", "ETH/USDT"]
        assert info["exchanges_config"]["urls"]["api"]["public"].endswith(f":{info['port']}/api/v3")
        frames = asyncio.run(_subscribe(info["port"], "btcusdt@depth@100ms", 5))
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert json.loads(frames[0]) == {"result": None, "id": 1}
    events = [json.loads(frame) for frame in frames[1:]]
    assert all(e["e"] == "depthUpdate" and e["s"] == "BTCUSDT" for e in events)
    assert [e["U"] for e in events[1:]] == [e["u"] + 1 for e in events[:-1]]  # chained
    logged = [json.loads(line) for line in sent_log.read_text().splitlines()]
    to_client = [entry for entry in logged if entry["conn"] == "c1"]
    assert to_client[0]["line"] is None  # the subscribe reply: made up, no recording line
    lines = {entry.line: entry for entry in rec.load(recording).recv}
    for entry, frame in zip(to_client[1:], frames[1:], strict=False):
        assert frame in lines[entry["line"]].data  # the recorded bytes, envelope removed
    assert set(applied_from_sent_log(sent_log)) <= set(lines)


async def _subscribe(port: int, stream: str, count: int) -> list[str]:
    """A subscribe reply and then `count` - 1 frames, as a raw client sees them."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/stream/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 1}))
        return [str(await asyncio.wait_for(ws.recv(), 10)) for _ in range(count)]


def test_controls_answer_over_http() -> None:
    import httpx

    with ReplayEmulator("binanceusdm", RECORDINGS / "binanceusdm.jsonl.zst", speed=4) as emu:
        with httpx.Client(base_url=emu.url) as http:
            book = http.get("/__emulator__/book", params={"symbol": "BTC/USDT:USDT", "depth": 2})
            assert len(book.json()["bids"]) == 2
            assert http.post("/__emulator__/rest-errors", params={"status": 429}).json()["ok"]
            refused = http.get("/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 5})
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "1"
            assert http.get("/fapi/v1/depth", params={"symbol": "BTCUSDT"}).status_code == 200
            bad = http.post("/__emulator__/fault", params={"kind": "checksum", "symbol": "x"})
            assert bad.status_code == 400  # Binance has no checksum to corrupt
            assert http.post("/__emulator__/delist", params={"symbol": "ETH/USDT:USDT"}).is_success
            gone = http.get("/fapi/v1/depth", params={"symbol": "ETHUSDT"})
            assert gone.json()["code"] == -1121
            assert http.get("/fapi/v1/nothing").status_code == 404
        assert emu.unexpected == ["/fapi/v1/nothing"]


@pytest.mark.slow
@pytest.mark.parametrize("exchange_id", sorted(VENUES))
def test_ccxt_keeps_the_true_book(exchange_id: str) -> None:
    """Unmodified ccxt.pro through the replay: each book it returns is the emulator's
    true book at the update id ccxt says it is at; a skipped id is noticed and
    resynced; a 429 reaches ccxt as a rate limit."""
    name, symbol = VENUES[exchange_id]
    with ReplayEmulator(exchange_id, RECORDINGS / name, speed=10) as emu:
        checked = asyncio.run(_watch(emu, exchange_id, symbol))
        truth = Truth(exchange_id, emu.recording, emu.applied)
        assert checked
        for nonce, book in checked:
            at_nonce = truth.book_at_seq(symbol, 20, nonce)
            assert at_nonce is not None
            assert book == at_nonce.floats(20), nonce
        assert emu.stats["fault_sequence"] == 1
        assert emu.unexpected == []


async def _watch(emu: ReplayEmulator, exchange_id: str, symbol: str) -> list[tuple[int, Any]]:
    import ccxt.pro  # type: ignore[import-untyped]

    config = emu.exchanges_config()
    client = getattr(ccxt.pro, exchange_id)({"urls": config["urls"], "options": config["options"]})
    checked: list[tuple[int, Any]] = []

    async def watch(n: int) -> None:
        for _ in range(n):
            book = await client.watch_order_book(symbol, 100)
            levels = {side: [level[:2] for level in book[side][:20]] for side in ("bids", "asks")}
            checked.append((book["nonce"], levels))

    try:
        await watch(20)
        emu.fault("sequence", symbol)
        with pytest.raises(ccxt.pro.InvalidNonce):
            await watch(100)
        await watch(20)  # resynced from a new REST snapshot
        emu.rest_errors(429, path="depth")
        with pytest.raises(ccxt.pro.DDoSProtection):
            await client.fetch_order_book(symbol, 5)
    finally:
        await client.close()
    return checked


def test_speed_paces_the_replay() -> None:
    recording = rec.load(RECORDINGS / "binance.jsonl.zst")
    with ReplayEmulator("binance", recording, speed=10) as emu:
        time.sleep(1.0)
        applied = dict(emu.applied)
    first = recording.recv[0].ts
    late = [
        entry.ts - first - (applied[entry.line] - min(applied.values())) * 10 / 1000
        for entry in recording.recv
        if entry.line in applied
    ]
    assert 80 < len(applied) < len(recording.recv)  # ~10 s of recording in ~1 s
    assert max(abs(x) for x in late) < 1.0  # within 100 ms of wall time of its pace


def test_close_and_stall_controls() -> None:
    with ReplayEmulator("binance", RECORDINGS / "binance.jsonl.zst", speed=4) as emu:
        asyncio.run(_close_then_stall(emu))
        assert emu.stats["connections"] == 2


async def _close_then_stall(emu: ReplayEmulator) -> None:
    url = emu.url.replace("http://", "ws://") + "/stream/ws/0"
    subscribe = json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": 7})
    async with websockets.connect(url, ping_interval=None) as ws:
        await ws.send(subscribe)
        assert json.loads(await ws.recv()) == {"result": None, "id": 7}
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["s"] == "ETHUSDT"
        await asyncio.to_thread(emu.close_sockets)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _drain(ws, 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
    async with websockets.connect(url, ping_interval=None) as ws:
        await ws.send(subscribe)
        await ws.recv()
        await asyncio.wait_for(ws.recv(), 5)
        await asyncio.to_thread(emu.stall)
        with pytest.raises(TimeoutError):
            await _drain(ws, 0.3)  # what was already on its way, then nothing
        pong = await ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pong, 0.5)  # not even a pong


async def _drain(ws: Any, quiet_s: float) -> None:
    """Read until the socket closes or stays quiet for `quiet_s` (raising either way)."""
    while True:
        await asyncio.wait_for(ws.recv(), quiet_s)
