"""The seam between the generic replay server and one exchange's protocol.

The server (`server.py`) owns everything that is the same on every exchange: the
listening socket, websocket connections, pacing the recording (recorded pace from
the first `recv`, divided by `--speed`), the sent log, and the fault controls. A
venue owns everything that is not: URLs, REST answers, the websocket dialogue, and
the true books, which it keeps by applying the recording's `recv` frames in order.

One module a ccxt exchange id, `tests/emulator/replay/venues/<ccxt id>.py`, with

    def create(recording: Recording, exchange_id: str) -> Venue

(found by name, so adding a venue touches no shared file; two ids may share a
module by one importing the other's `create`). All calls come from the server's
event loop thread, one at a time, never concurrently: a venue needs no locks.
What a call returns is sent at once, in order, before any other frame.
"""

import importlib
from typing import Any, Literal, Protocol

import msgspec

from tests.emulator.replay.recording import Recording, WsEntry

__all__ = [
    "FAULTS",
    "Book",
    "Conn",
    "Fault",
    "Frame",
    "RestReply",
    "RestRequest",
    "Venue",
    "create_venue",
]

Frame = str | bytes  # a websocket message: text (nearly always) or binary
# Faults that change frames, which a venue may support (`Venue.faults`):
#   "checksum": the frame carries a checksum that does not match the book;
#   "sequence": the frame's sequence fields say one update was skipped (its
#               content is unchanged: only the numbering jumps).
# Dropping frames, stalling, closing sockets, REST errors and delisting are the
# server's; the venue only answers `rest_error` and `delist`.
Fault = Literal["checksum", "sequence"]
FAULTS: tuple[Fault, ...] = ("checksum", "sequence")


class RestRequest(msgspec.Struct, frozen=True):
    """An HTTP request the client made (any path not under `/__emulator__/`)."""

    method: str  # "GET", "POST", ...
    path: str  # "/api/v3/depth"
    query: dict[str, str]  # the last value of each query key
    body: str = ""
    headers: dict[str, str] = {}


class RestReply(msgspec.Struct, frozen=True):
    """The answer to a `RestRequest`: `body` sent as is, with `content_type`."""

    status: int
    body: str
    content_type: str = "application/json"
    headers: dict[str, str] = {}


class Book(msgspec.Struct, frozen=True):
    """A true book: levels best first, as `(price, size)` in the venue's wire strings
    (what a client parses; `float(price)` is what ccxt and obd keep)."""

    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    seq: int | None = None  # the venue's update id / sequence number the book is at
    ts_ms: int | None = None  # the exchange's time of the last change (ms), if it has one

    def floats(self, depth: int) -> dict[str, list[list[float]]]:
        """The top `depth` levels a side as obd stores them: `{"bids", "asks"}` floats."""
        return {
            "bids": [[float(p), float(q)] for p, q in self.bids[:depth]],
            "asks": [[float(p), float(q)] for p, q in self.asks[:depth]],
        }


class Conn:
    """One client websocket, as the server keeps it; venues read it and update
    `symbols` (and their own notes in `state`) as the client subscribes."""

    def __init__(self, conn_id: str, path: str, query: dict[str, str]) -> None:
        self.id = conn_id  # "c1", "c2", ... in connection order (the sent log's `conn`)
        self.path = path  # the URL path the client opened ("/stream/ws/1")
        self.query = query
        self.symbols: set[str] = set()  # ccxt symbols it is subscribed to (venue-kept)
        self.state: dict[str, Any] = {}  # the venue's per-connection notes


class Venue(Protocol):
    """One exchange's protocol on the replay server, driven by one recording."""

    exchange_id: str  # the ccxt id it emulates ("binanceusdm")
    faults: frozenset[Fault]  # the frame faults `fault` can make

    def symbols(self) -> list[str]:
        """The ccxt symbols the recording serves ("BTC/USDT:USDT"), in header order."""
        ...

    def exchanges_config(self, base_url: str) -> dict[str, Any]:
        """obd's `[exchanges.<id>]` table pointing ccxt here: `urls` overriding every
        REST and websocket URL ccxt could use (`base_url` is "http://127.0.0.1:PORT";
        websockets are the same host and port, `ws://`), and `options` (e.g. market
        types to load). The server adds timing keys (`timeout_s`, `ping_interval_s`,
        `stale_after_s`, `markets_ttl_s`) unless the venue set them."""
        ...

    def rest(self, request: RestRequest) -> RestReply | None:
        """Answer a REST call: markets for `load_markets` (synthesised from the served
        symbols), the order book from the true book as replayed so far, server time,
        whatever else ccxt asks. None: not emulated (the server answers 404 and counts
        it as unexpected)."""
        ...

    def rest_error(self, status: int, retry_after_s: int) -> RestReply:
        """A refusal shaped as the exchange sends it: 429 (rate limited; the server
        adds `Retry-After` if the reply has none) or 503 (unavailable)."""
        ...

    def on_open(self, conn: Conn) -> list[Frame]:
        """Frames to send when a client connects (a welcome/status message), if any."""
        ...

    def on_message(self, conn: Conn, data: Frame) -> list[Frame]:
        """Answer a client's websocket message: subscribe/unsubscribe replies (updating
        `conn.symbols`), app-level pongs. A snapshot-then-delta venue appends, after a
        subscribe reply, a snapshot frame synthesised from the current true book, its
        checksum and sequence consistent with the recorded frames that follow.
        Protocol-level websocket pings are the server's (so a stall stops them)."""
        ...

    def apply(self, entry: WsEntry) -> list[str]:
        """Apply one recorded `recv` frame to the true book(s), in recording order;
        return the ccxt symbols it concerns ([] for a frame that is no book's: a
        heartbeat, a recorded subscribe ack). Called for every recv, subscribed or not."""
        ...

    def frame_for(self, conn: Conn, entry: WsEntry, symbols: list[str]) -> Frame | None:
        """What to send `conn` for the recorded frame just applied (`symbols` as
        `apply` returned, less those delisted or being dropped), or None if the
        connection is not subscribed to it. Byte for byte `entry.data` unless the
        protocol forces a change (another stream name, a channel id, an envelope)."""
        ...

    def fault(self, kind: Fault, symbol: str, frame: Frame) -> Frame | None:
        """`frame` (about `symbol`) altered to carry fault `kind`, or None if this frame
        cannot carry it (the server then tries the symbol's next frame)."""
        ...

    def delist(self, symbol: str) -> None:
        """Take `symbol` off the market: the listing shows it halted or gone and REST
        refuses its book (the server stops sending its frames)."""
        ...

    def book(self, symbol: str, depth: int | None = None) -> Book:
        """The true book of `symbol` as of the last applied frame (top `depth` a side)."""
        ...


def create_venue(exchange_id: str, recording: Recording) -> Venue:
    """The venue for a ccxt id, from `tests/emulator/replay/venues/<id>.py`."""
    try:
        module = importlib.import_module(f"tests.emulator.replay.venues.{exchange_id}")
    except ModuleNotFoundError as exc:
        if exc.name != f"tests.emulator.replay.venues.{exchange_id}":
            raise
        raise ValueError(f"no replay venue for exchange {exchange_id!r}") from None
    venue: Venue = module.create(recording, exchange_id)
    return venue
