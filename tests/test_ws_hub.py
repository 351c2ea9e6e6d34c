"""The hub and its feeds, in-process: encode once, bounded queues, drop the slow."""

import asyncio
import json
from typing import Any

import msgspec
import pytest

from obd.http.ws import protocol
from obd.http.ws.hub import BACKLOG_FLOOR, HISTORY_QUEUED, LIVE_PER_COMMIT, Feed, Hub
from obd.http.ws.protocol import DirectWriter
from obd.model import Snapshot

KEY = ("sim", "BTC/USDT")


def _snapshot(ts: int, symbol: str = "BTC/USDT") -> Snapshot:
    return Snapshot("sim", symbol, ts, ts - 5, ts - 3, [(1.5, 2.0)], [(1.6, 0.5)], "synthetic")


def _drain(feed: Feed) -> list[str | bytes]:
    async def take() -> list[str | bytes]:
        frames = []
        while feed._frames:
            frames.append(await feed.next())
        return frames

    return asyncio.run(take())


def test_each_snapshot_is_encoded_once_per_wire_format_and_shared() -> None:
    hub = Hub()
    json_feeds = [Feed("json") for _ in range(3)]
    packed = Feed("msgpack")
    for feed in [*json_feeds, packed]:
        hub.subscribe(feed, KEY)
    hub.publish([_snapshot(1000)])
    frames = [_drain(feed)[0] for feed in json_feeds]
    assert all(frame is frames[0] for frame in frames)  # one str object for all
    assert isinstance(frames[0], str)
    assert json.loads(frames[0]) == {
        "type": "snapshot",
        "data": {
            "exchange": "sim",
            "symbol": "BTC/USDT",
            "ts": 1000,
            "exchange_ts": 995,
            "received_ts": 997,
            "bids": [[1.5, 2.0]],
            "asks": [[1.6, 0.5]],
            "capture": "synthetic",
            "seq": None,
        },
    }
    (binary,) = _drain(packed)
    assert isinstance(binary, bytes)
    assert msgspec.msgpack.decode(binary) == json.loads(frames[0])


def test_only_newer_slots_of_subscribed_coins_go_out_in_order() -> None:
    hub = Hub()
    feed = Feed("json")
    hub.subscribe(feed, KEY)
    hub.publish([_snapshot(1000), _snapshot(2000), _snapshot(5000, "ETH/USDT")])
    hub.publish([_snapshot(1000), _snapshot(1500), _snapshot(3000)])  # back-filled: not live
    times = [json.loads(frame)["data"]["ts"] for frame in _drain(feed)]
    assert times == [1000, 2000, 3000]
    hub.unsubscribe(feed, KEY)
    hub.publish([_snapshot(4000)])
    assert _drain(feed) == []
    assert hub.subscribers(KEY) == 0


def test_a_feed_that_falls_behind_is_dropped_and_the_others_are_not() -> None:
    hub = Hub()
    slow, fast = Feed("json"), Feed("json")
    hub.subscribe(slow, KEY)
    hub.subscribe(fast, KEY)
    for n in range(BACKLOG_FLOOR + 5):
        hub.publish([_snapshot(1000 * (n + 1))])
        _drain(fast)
    assert slow.dropped == f"too slow: {BACKLOG_FLOOR} messages unsent"
    assert fast.dropped is None
    assert hub.subscribers(KEY) == 1
    assert hub.dropped == 1
    assert not slow.offer("late")  # a dropped feed takes nothing more


def test_the_backlog_grows_with_the_coins_subscribed() -> None:
    feed = Feed("json")
    hub = Hub()
    for n in range(100):
        hub.subscribe(feed, ("sim", f"C{n}/USDT"))
    assert feed.limit == 400
    hub.publish([_snapshot(1000, f"C{n}/USDT") for n in range(100)])  # one commit, 100 coins
    assert feed.dropped is None


def test_history_chunks_wait_for_room_and_never_count_as_falling_behind() -> None:
    async def scenario() -> None:
        feed = Feed("json")
        for n in range(HISTORY_QUEUED):
            await feed.put_history(f"chunk {n}")
        blocked = asyncio.create_task(feed.put_history("next chunk"))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # the producer waits: the client sets the pace
        assert feed.offer("an answer")  # live frames and answers still go in
        assert await feed.next() == "chunk 0"
        await asyncio.wait_for(blocked, 1)
        assert [await feed.next() for _ in range(3)] == ["chunk 1", "an answer", "next chunk"]

    asyncio.run(scenario())


@pytest.mark.parametrize("wire", ["json", "msgpack"])
def test_dropping_wakes_whoever_waits_for_it(wire: str) -> None:
    async def scenario() -> str:
        feed = Feed(wire)  # type: ignore[arg-type]
        waiting = asyncio.create_task(feed.wait_dropped())
        await asyncio.sleep(0)
        feed.drop("gone")
        return await asyncio.wait_for(waiting, 1)

    assert asyncio.run(scenario()) == "gone"


def test_a_backlog_flushed_after_an_outage_does_not_drop_a_normal_reader() -> None:
    """After a writer outage one commit can hold hundreds of a coin's slots: only the
    newest go out live, the rest are history (issue 17)."""
    hub = Hub()
    feed = Feed("json")
    hub.subscribe(feed, KEY)
    hub.publish([_snapshot(1000 * n) for n in range(1, 301)])
    assert feed.dropped is None
    times = [json.loads(frame)["data"]["ts"] for frame in _drain(feed)]
    assert times == [1000 * n for n in range(301 - LIVE_PER_COMMIT, 301)]


class _Socket(DirectWriter):
    """A direct writer over a list: takes frames while `open`, refuses them once paused
    (as the protocol does: `send` is None while the socket does not take frames)."""

    __slots__ = ("written",)

    def __init__(self) -> None:  # no uvicorn protocol behind it
        self.written: list[bytes] = []
        self.send = self.written.append

    @property
    def open(self) -> bool:
        return self.send is not None

    @open.setter
    def open(self, value: bool) -> None:
        self.send = self.written.append if value else None


def _payload(framed: bytes) -> Any:
    """The JSON of one unmasked text frame, its header checked."""
    assert framed[0] == 0x81
    assert not framed[1] & 0x80
    size, head = framed[1], 2
    if size == 126:
        size, head = int.from_bytes(framed[2:4]), 4
    elif size == 127:
        size, head = int.from_bytes(framed[2:10]), 10
    assert len(framed) == head + size
    return json.loads(framed[head:])


def test_idle_sockets_get_the_same_framed_bytes_written_at_once() -> None:
    hub = Hub()
    sockets = [_Socket() for _ in range(3)]
    feeds = [Feed("json", socket) for socket in sockets]
    for feed in feeds:
        hub.subscribe(feed, KEY)
    hub.publish([_snapshot(1000)])
    frames = [socket.written[0] for socket in sockets]
    assert all(frame is frames[0] for frame in frames)  # framed once, shared
    assert _payload(frames[0])["data"]["ts"] == 1000
    assert all(not feed._frames for feed in feeds)  # nothing queued, no task to wake
    assert hub.delivered == 3


def test_a_paused_socket_queues_and_keeps_order_and_is_dropped_when_full() -> None:
    async def scenario() -> None:
        hub = Hub()
        socket = _Socket()
        feed = Feed("json", socket)
        hub.subscribe(feed, KEY)
        socket.open = False  # the peer stopped reading: frames queue on the feed
        hub.publish([_snapshot(1000)])
        socket.open = True
        # While that one waits to be sent, newer ones queue behind it: never overtake.
        hub.publish([_snapshot(2000)])
        assert socket.written == []
        first = await feed.next()
        hub.publish([_snapshot(3000)])  # the sender holds `first`: this one queues too
        feed.sent()
        rest = [await feed.next(), await feed.next()]
        assert [json.loads(f)["data"]["ts"] for f in [first, *rest]] == [1000, 2000, 3000]
        feed.sent()
        hub.publish([_snapshot(4000)])  # idle again: straight to the socket
        assert [_payload(f)["data"]["ts"] for f in socket.written] == [4000]

        socket.open = False
        for n in range(BACKLOG_FLOOR + 1):
            hub.publish([_snapshot(5000 + 1000 * n)])
        assert feed.dropped == f"too slow: {BACKLOG_FLOOR} messages unsent"
        assert hub.subscribers(KEY) == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 70_000])
def test_frames_carry_the_payload_length_as_rfc_6455_says(size: int) -> None:
    payload = b"x" * size
    framed = protocol.frame(payload, text=False)
    assert framed[0] == 0x82
    assert framed.endswith(payload)
    header = len(framed) - size
    assert header == (2 if size < 126 else 4 if size < 65_536 else 10)
