"""The OKX checksum check (plugins.d/ccxt/check_okx.py) on the frames of the OKX
recording, applied by unmodified ccxt.pro okx's own frame handler (no network)."""

import asyncio
import importlib
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from obd.errors import ChecksumFailed
from tests.conftest import REPO, load_plugin
from tests.emulator.replay import recording as rec
from tests.emulator.replay.okx_wire import checksum as wire_checksum
from tests.emulator.replay.venues.okx import OkxVenue

RECORDING = REPO / "tests" / "data" / "recordings" / "okx_btc_eth_usdt.jsonl.zst"


@pytest.fixture(scope="module")
def check_okx() -> ModuleType:
    load_plugin("ccxt")
    return importlib.import_module("obd_test_plugins_ccxt.check_okx")


@pytest.fixture(scope="module")
def recording() -> rec.Recording:
    return rec.load(RECORDING)


class _Ccxt:
    """ccxt.pro okx handling frames as its websocket client would hand them over."""

    def __init__(self, recording: rec.Recording) -> None:
        import ccxt.pro

        self.exchange = ccxt.pro.okx()
        listing = json.loads(next(h.data for h in recording.http if "instruments" in h.url))
        self.exchange.set_markets(self.exchange.parse_markets(listing["data"]))
        self.client = self.exchange.client("ws://127.0.0.1:9/ws/v5/public")  # never opened
        for symbol in ("BTC/USDT", "ETH/USDT"):
            self.client.subscriptions[f"books:{symbol}"] = True

    def handle(self, frame: str) -> Any:
        message = json.loads(frame)
        self.exchange.handle_message(self.client, message)
        return message


def _with_ccxt(recording: rec.Recording, test: Callable[[_Ccxt], None]) -> None:
    """Run `test` with ccxt inside an event loop (ccxt's websocket client wants one)."""

    async def run() -> None:
        ccxt = _Ccxt(recording)
        try:
            test(ccxt)
        finally:
            await ccxt.exchange.close()

    asyncio.run(run())


def _frames(recording: rec.Recording) -> Iterator[str]:
    for entry in recording.recv:
        if '"action":' in entry.data:
            yield entry.data


def test_every_recorded_frame_passes_with_ccxts_books(
    check_okx: ModuleType, recording: rec.Recording
) -> None:
    """2,000+ real-book frames: ccxt's float book, turned back into strings, gives the
    checksum each frame carries, so a right book is never flagged."""
    checked: list[str] = []

    def test(ccxt: _Ccxt) -> None:
        for frame in _frames(recording):
            message = ccxt.handle(frame)
            assert check_okx.check(message, ccxt.exchange.orderbooks) == {}, frame[:200]
            checked.append(frame)

    _with_ccxt(recording, test)
    assert len(checked) > 2000
    # The strings matter: sizes such as "0.00001" print as 1e-05 from a float, so
    # str(float) would fail these frames; the check writes them as OKX does.
    sizes = {level[1] for frame in _frames(recording) for level in _levels(frame)}
    assert any(str(float(size)) != size for size in sizes)


def test_a_bad_checksum_is_caught(check_okx: ModuleType, recording: rec.Recording) -> None:
    venue = OkxVenue(recording, "okx")
    frames = list(_frames(recording))
    bad = venue.fault("checksum", "ETH/USDT", frames[100])
    assert bad is not None

    def test(ccxt: _Ccxt) -> None:
        for frame in frames[:100]:
            ccxt.handle(frame)
        failed = check_okx.check(ccxt.handle(bad), ccxt.exchange.orderbooks)
        assert list(failed) == [json.loads(bad)["arg"]["instId"].replace("-", "/")]
        assert isinstance(next(iter(failed.values())), ChecksumFailed)

    _with_ccxt(recording, test)


def test_a_lost_frame_ccxt_lets_by_is_caught(
    check_okx: ModuleType, recording: rec.Recording
) -> None:
    """A frame lost with the numbering intact (the next frame's prevSeqId pointing past
    it): ccxt's sequence check passes it; the checksum does not."""
    frames = [json.loads(frame) for frame in _frames(recording)]
    btc = [i for i, m in enumerate(frames) if m["arg"]["instId"] == "BTC-USDT"]
    lost, following = frames[btc[50]], frames[btc[51]]
    following["data"][0]["prevSeqId"] = lost["data"][0]["prevSeqId"]

    def test(ccxt: _Ccxt) -> None:
        for i in range(btc[50]):
            ccxt.handle(json.dumps(frames[i]))
        message = ccxt.handle(json.dumps(following))
        assert "BTC/USDT" in ccxt.exchange.orderbooks  # ccxt saw no nonce gap: kept it
        failed = check_okx.check(message, ccxt.exchange.orderbooks)
        assert isinstance(failed.get("BTC/USDT"), ChecksumFailed)

    _with_ccxt(recording, test)


def test_trailing_zeros_are_taken_from_the_frames(check_okx: ModuleType) -> None:
    """OKX checksums its own strings: a level sent as "0.10" must be checksummed as
    "0.10", which the float 0.1 cannot say; the check keeps what the frames sent."""
    bids = [["100.50", "0.10", "0", "1"], ["100.4", "2", "0", "1"]]
    asks = [["100.6", "1.000", "0", "2"]]
    sent = wire_checksum([level[:2] for level in bids], [level[:2] for level in asks])
    data = {"bids": bids, "asks": asks, "ts": "1", "checksum": sent, "prevSeqId": -1, "seqId": 7}
    message = {"arg": {"channel": "books", "instId": "XYZ-USDT"}, "action": "snapshot"}
    book = {"bids": [[100.5, 0.1], [100.4, 2.0]], "asks": [[100.6, 1.0]], "nonce": 7}
    assert check_okx.check({**message, "data": [data]}, {"XYZ/USDT": book}) == {}
    # Without the frame's strings the float form differs, and so would the checksum:
    assert check_okx.checksum(book) != sent
    assert check_okx.plain(1e-05) == "0.00001"
    assert check_okx.plain(61837.0) == "61837"


def test_only_the_frames_own_book_is_checked(check_okx: ModuleType) -> None:
    """A frame ccxt refused (its book gone) or for another instrument names nothing."""
    data = {"bids": [], "asks": [], "ts": "1", "checksum": 1, "prevSeqId": 6, "seqId": 7}
    message = {"arg": {"channel": "books", "instId": "XYZ-USDT"}, "action": "update"}
    other = {"ABC/USDT": {"bids": [], "asks": [], "nonce": 7}}
    assert check_okx.check({**message, "data": [data]}, other) == {}
    assert check_okx.check({"event": "subscribe"}, other) == {}
    assert check_okx.check("pong", other) == {}


def _levels(frame: str) -> list[list[str]]:
    data = json.loads(frame)["data"][0]
    return [*data["bids"], *data["asks"]]
