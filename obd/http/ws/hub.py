"""The live hub: every committed snapshot is encoded once per wire format and fanned out
to the feeds subscribed to its coin. A feed that falls behind is dropped, never waited on.

The writer calls `Hub.publish` after each commit, on the event loop. A feed whose
socket is idle and writable gets the frame written at once, the same framed bytes for
every such client (`protocol.DirectWriter`: one C call per socket, no task switch);
any other gets it appended to its bounded queue, so neither collection nor the other
clients ever wait for a slow one.
"""

import asyncio
import collections
from collections.abc import Sequence
from typing import Literal

import msgspec

from obd.http.ws import protocol
from obd.http.ws.protocol import DirectWriter
from obd.model import Snapshot

__all__ = ["Feed", "Frame", "Hub", "Key", "Wire", "encode"]

Wire = Literal["json", "msgpack"]  # JSON text frames, or msgpack binary frames
Frame = str | bytes  # str goes out as a text frame, bytes as a binary one
Key = tuple[str, str]  # (exchange, symbol)

BACKLOG_FLOOR = 32  # unsent frames a feed may hold before it is dropped, at least...
BACKLOG_PER_COIN = 4  # ...or this many per subscribed coin: all coins' slots can land at once
# A commit publishes at most this many of a coin's newest slots: after a writer outage a
# commit can hold hundreds, which would drop every subscriber that reads at a normal pace
# (issue 17); the older ones are history.
LIVE_PER_COMMIT = BACKLOG_PER_COIN // 2
HISTORY_QUEUED = 2  # history chunks queued per feed; their producer waits for room

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


def encode(message: msgspec.Struct, wire: Wire) -> Frame:
    """One server message as a frame of the connection's wire format."""
    if wire == "msgpack":
        return _msgpack.encode(message)
    # A text frame must be a str at the ASGI boundary; decoding once here lets every
    # subscriber share it.
    return _json.encode(message).decode()


class SnapshotFrame(msgspec.Struct, frozen=True, tag="snapshot", tag_field="type"):
    """`{"type": "snapshot", "data": {...}}`: the one message every subscriber shares."""

    data: Snapshot


class Feed:
    """One client's outgoing frames, in order: live snapshots, answers, history chunks.

    Live frames and answers are offered without waiting; a feed that already holds
    `limit` of them unsent is dropped. History chunks wait for room instead: the
    client sets the pace of what it asked for.
    """

    __slots__ = (
        "_frames",
        "_gone",
        "_history_room",
        "_holding",
        "_ready",
        "_unsent",
        "direct",
        "dropped",
        "idle",
        "keys",
        "wire",
    )

    def __init__(self, wire: Wire, direct: DirectWriter | None = None) -> None:
        self.wire = wire
        self.direct = direct  # writes to the socket itself, where the server offers it
        self.keys: set[Key] = set()  # coins subscribed to (the hub keeps this)
        self.dropped: str | None = None  # why, once dropped
        # Nothing queued, nothing held by the sender, not dropped: a live frame may be
        # written straight to the socket (kept here so the hub reads one attribute).
        self.idle = True
        self._frames: collections.deque[tuple[Frame, bool]] = collections.deque()
        self._unsent = 0  # queued frames that are not history chunks
        self._holding = False  # the sender took a frame and has not written it yet
        self._ready = asyncio.Event()
        self._gone = asyncio.Event()
        self._history_room = asyncio.Semaphore(HISTORY_QUEUED)

    @property
    def limit(self) -> int:
        return max(BACKLOG_FLOOR, BACKLOG_PER_COIN * len(self.keys))

    def offer(self, frame: Frame) -> bool:
        """Queue `frame` now; False (and the feed dropped) if it is `limit` frames behind."""
        if self.dropped is not None:
            return False
        if self._unsent >= self.limit:
            self.drop(f"too slow: {self._unsent} messages unsent")
            return False
        self._frames.append((frame, False))
        self.idle = False
        self._unsent += 1
        self._ready.set()
        return True

    async def put_history(self, frame: Frame) -> None:
        """Queue a history chunk once fewer than HISTORY_QUEUED are waiting to be sent."""
        await self._history_room.acquire()
        self._frames.append((frame, True))
        self.idle = False
        self._ready.set()

    async def next(self) -> Frame:
        """The next frame to send, oldest first. Until `sent()`, live frames queue behind
        it rather than being written directly: they would overtake it."""
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        frame, is_history = self._frames.popleft()
        if is_history:
            self._history_room.release()
        else:
            self._unsent -= 1
        self._holding = True
        self.idle = False
        return frame

    def sent(self) -> None:
        """The frame `next` gave is written."""
        self._holding = False
        self.idle = not self._frames and self.dropped is None

    def drop(self, reason: str) -> None:
        if self.dropped is None:
            self.dropped = reason
            self.idle = False
            self._frames.clear()  # nothing more will be sent: let the memory go now
            self._gone.set()

    async def wait_dropped(self) -> str:
        await self._gone.wait()
        assert self.dropped is not None
        return self.dropped


class Hub:
    """Coins to the feeds subscribed to them; `publish` is the writer's commit listener."""

    def __init__(self) -> None:
        self._feeds: dict[Key, dict[Feed, None]] = {}  # an insertion-ordered set per coin
        self._last_ts: dict[Key, int] = {}
        self.published = 0  # snapshots published
        self.delivered = 0  # frames queued to feeds
        self.dropped = 0  # feeds dropped for falling behind

    def subscribe(self, feed: Feed, key: Key) -> None:
        self._feeds.setdefault(key, {})[feed] = None
        feed.keys.add(key)

    def unsubscribe(self, feed: Feed, key: Key) -> None:
        feed.keys.discard(key)
        feeds = self._feeds.get(key)
        if feeds is not None:
            feeds.pop(feed, None)
            if not feeds:
                del self._feeds[key]

    def detach(self, feed: Feed) -> None:
        """Forget `feed` everywhere (its client left or was dropped)."""
        for key in list(feed.keys):
            self.unsubscribe(feed, key)

    @property
    def subscriptions(self) -> int:
        """(client, coin) pairs subscribed live, over all coins."""
        return sum(len(feeds) for feeds in self._feeds.values())

    def subscribers(self, key: Key) -> int:
        return len(self._feeds.get(key, ()))

    def publish(self, snapshots: Sequence[Snapshot]) -> None:
        """Fan out newly committed snapshots; never blocks, never raises for a slow feed."""
        per_coin: dict[tuple[str, str], int] = {}
        for snapshot in snapshots:
            key = (snapshot.exchange, snapshot.symbol)
            per_coin[key] = per_coin.get(key, 0) + 1
        for snapshot in snapshots:
            key = (snapshot.exchange, snapshot.symbol)
            per_coin[key] -= 1
            if per_coin[key] >= LIVE_PER_COMMIT:
                continue  # a backlog's older slot: history, not live
            # Live means newer than the last one published: a back-filled or re-written
            # older slot is history, and a subscriber sees each coin's slots in order.
            if snapshot.ts <= self._last_ts.get(key, -1):
                continue
            self._last_ts[key] = snapshot.ts
            self.published += 1
            feeds = self._feeds.get(key)
            if feeds:
                self._fan_out(snapshot, feeds)

    def _fan_out(self, snapshot: Snapshot, feeds: dict[Feed, None]) -> None:
        frames: dict[Wire, tuple[Frame, bytes]] = {}
        message = SnapshotFrame(snapshot)
        delivered = 0
        behind: list[Feed] = []
        # A live frame is written straight to the socket when nothing is ahead of it
        # (`idle`) and the socket takes it (`send`), else `offer`ed to the feed's queue.
        # The loop runs once a second over every subscriber with cold caches: per feed
        # it reads the feed's and its writer's slots and makes one C call; a method call
        # per feed and attribute chains through the protocol cost ~3x.
        for feed in feeds:
            encoded = frames.get(feed.wire)
            if encoded is None:
                encoded = frames[feed.wire] = _encoded(message, feed.wire)
            direct = feed.direct
            if feed.idle and direct is not None and (send := direct.send) is not None:
                send(encoded[1])
                delivered += 1
            else:
                behind.append(feed)
        for feed in behind:  # after the loop: a drop changes the dict iterated
            if feed.offer(frames[feed.wire][0]):
                delivered += 1
            else:
                self.dropped += 1
                self.detach(feed)
        self.delivered += delivered


def _encoded(message: msgspec.Struct, wire: Wire) -> tuple[Frame, bytes]:
    """(the frame for a queue, the same as one WebSocket frame for a direct write)."""
    if wire == "msgpack":
        payload = _msgpack.encode(message)
        return payload, protocol.frame(payload, text=False)
    payload = _json.encode(message)
    return payload.decode(), protocol.frame(payload, text=True)
