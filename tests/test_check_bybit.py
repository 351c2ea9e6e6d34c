"""obd's Bybit check (plugins.d/ccxt/check_bybit.py) on real frames of the replay
recording, applied by ccxt's own Bybit handler: consecutive `u` passes, a lost or
skipped update is named, and the book stays condemned until a snapshot."""

import asyncio
import importlib
import json
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import load_plugin
from tests.emulator.replay import recording as rec
from tests.emulator.replay.venue import create_venue
from tests.replay_support import RECORDINGS

RECORDING = rec.load(RECORDINGS / "bybit_spot.jsonl.zst")


def _check_module() -> ModuleType:
    load_plugin("ccxt")
    return importlib.import_module("obd_test_plugins_ccxt.check_bybit")


class _Client:
    """What ccxt's `handle_order_book` asks of a websocket client."""

    url = "ws://127.0.0.1/v5/public/spot"

    def resolve(self, result: Any, message_hash: str) -> Any:
        return result


@pytest.fixture(scope="module")
def bybit() -> Any:
    """ccxt.pro's Bybit, its spot markets from the recorded instruments answer."""
    import ccxt.pro

    exchange = ccxt.pro.bybit()
    listing = json.loads(next(h.data for h in RECORDING.http if "instruments" in h.url))

    async def markets() -> Any:
        async def answer(params: Any) -> Any:
            return listing

        exchange.publicGetV5MarketInstrumentsInfo = answer
        exchange.set_markets(await exchange.fetch_spot_markets({}))
        await exchange.close()

    asyncio.run(markets())
    return exchange


def _frames(symbol_id: str, count: int) -> list[dict[str, Any]]:
    """The first `count` recorded book frames of one market (its snapshot first)."""
    out = []
    for entry in RECORDING.recv:
        message = json.loads(entry.data)
        if message.get("data", {}).get("s") == symbol_id:
            out.append(message)
        if len(out) == count:
            break
    return out


def _run(bybit: Any, frames: list[dict[str, Any]]) -> list[dict[str, Exception]]:
    """Each frame through ccxt's handler, then the check; what the check said."""
    check = _check_module().check
    said = []
    for message in frames:
        bybit.handle_message(_Client(), message)
        said.append(check(message, bybit.orderbooks))
    return said


def test_consecutive_updates_pass_and_the_book_is_true(bybit: Any) -> None:
    bybit.orderbooks.clear()
    frames = _frames("BTCUSDT", 60)
    assert frames[0]["type"] == "snapshot"
    assert _run(bybit, frames) == [{}] * 60
    book = bybit.orderbooks["BTC/USDT"]
    assert book["nonce"] == frames[-1]["data"]["u"]  # the check keeps Bybit's u there
    venue = create_venue("bybit", RECORDING)
    for entry in RECORDING.recv:
        venue.apply(entry)
        if json.loads(entry.data).get("data", {}).get("u") == book["nonce"]:
            break
    true = venue.book("BTC/USDT").floats(200)
    assert [level[:2] for level in book["bids"]] == true["bids"]
    assert [level[:2] for level in book["asks"]] == true["asks"]


def test_a_lost_delta_is_named_and_condemns_the_book_until_a_snapshot(bybit: Any) -> None:
    bybit.orderbooks.clear()
    frames = _frames("ETHUSDT", 12)
    lost = frames[:5] + frames[6:]  # the sixth frame never arrives
    said = _run(bybit, lost)
    assert said[:5] == [{}] * 5
    error = said[5]["ETH/USDT"]
    assert type(error).__name__ == "NotSynced"
    u = frames[6]["data"]["u"]
    assert str(error) == f"bybit ETH/USDT: update id {u} after {u - 2}: 1 update(s) lost"
    assert all("ETH/USDT" in later for later in said[6:])  # never trusted again...
    snapshot = {**frames[0], "data": {**frames[0]["data"], "u": frames[-1]["data"]["u"]}}
    assert _run(bybit, [snapshot]) == [{}]  # ...until a snapshot starts the count again


def test_a_skipped_update_id_and_a_delta_before_any_snapshot(bybit: Any) -> None:
    bybit.orderbooks.clear()
    frames = _frames("BTCUSDT", 4)
    skipped = {**frames[3], "data": {**frames[3]["data"], "u": frames[3]["data"]["u"] + 1}}
    said = _run(bybit, [*frames[:3], skipped])
    assert "1 update(s) lost" in str(said[3]["BTC/USDT"])
    bybit.orderbooks.clear()  # what obd does to a book it throws away
    said = _run(bybit, frames[1:2])
    assert "before any snapshot" in str(said[0]["BTC/USDT"])


def test_a_restart_snapshot_with_u_1_starts_the_count_again(bybit: Any) -> None:
    """Bybit restarts a topic with a snapshot whose `u` is 1; deltas follow from 2."""
    bybit.orderbooks.clear()
    frames = _frames("BTCUSDT", 5)
    restart = {**frames[0], "data": {**frames[0]["data"], "u": 1}}
    after = [{**f, "data": {**f["data"], "u": 2 + i}} for i, f in enumerate(frames[1:3])]
    assert _run(bybit, [*frames[:3], restart, *after]) == [{}] * 6
    assert bybit.orderbooks["BTC/USDT"]["nonce"] == 3


def test_frames_that_are_no_book_are_ignored(bybit: Any) -> None:
    check = _check_module().check
    others = [json.loads(e.data) for e in RECORDING.recv if "topic" not in e.data]
    assert others  # the subscribe ack and the pongs
    assert all(check(message, bybit.orderbooks) == {} for message in others)
    assert check("not a dict", bybit.orderbooks) == {}


def test_spot_and_linear_books_of_one_pair_are_told_apart_by_ts() -> None:
    check = _check_module().check
    delta = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 20, "data": {}}
    spot = {"nonce": 7, "timestamp": 20}
    linear = {"nonce": 100, "timestamp": 19}
    books = {"BTC/USDT": spot, "BTC/USDT:USDT": linear}
    assert check({**delta, "data": {"s": "BTCUSDT", "u": 8}}, books) == {}
    assert (spot["nonce"], linear["nonce"]) == (8, 100)
    linear["timestamp"] = 20  # both stamped alike: which one it was is unknown
    assert check({**delta, "data": {"s": "BTCUSDT", "u": 50}}, books) == {}
    assert (spot["nonce"], linear["nonce"]) == (8, 100)


def test_the_check_is_registered() -> None:
    plugin = load_plugin("ccxt")
    checks = importlib.import_module(f"{plugin.__name__}.checks")
    assert checks.CHECKS["bybit"] is _check_module().check
