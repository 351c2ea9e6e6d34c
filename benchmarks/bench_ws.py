"""`/v1/ws` under load, against the real daemon on loopback. Prints markdown.

    python benchmarks/bench_ws.py fanout [--clients 1000] [--seconds 20] [--depth 100] [--ws NAME]
                                         [--no-floor]
    python benchmarks/bench_ws.py history [--snapshots 50000] [--depth 100]

fanout: one sim coin at 1 s, `--clients` subscribers spread over client processes,
JSON then msgpack frames. Latency is the client's receive time minus the slot time
`ts` (sampling, commit, fan-out, loopback and the client's own loop), and the
fan-out spread is each receive minus the first receive of the same snapshot. CPU is
the daemon's user+system time per delivered message, in total and above what the
same daemon spends collecting with nobody subscribed. The floor is a bare uvloop
server in its own process (no collection, no ASGI, no hub) that writes the same
frames (a sim book at the same depth, encoded once per slot) to as many loopback
sockets of the same clients, one `transport.write` each: what delivering costs on
this machine before obd does anything; obd's figure is given as a ratio to it.

history: `--snapshots` stored snapshots (pre-filled before the daemon starts), streamed
to one client as JSON and as msgpack, against the rate at which the store alone reads
and decodes the same range (`obd.storage.reader.books` in 256-row steps, one thread):
the limit, since every streamed snapshot is read and decoded first.
"""

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from websockets.asyncio.client import connect

from obd.http.ws.protocol import frame
from obd.model import Book
from obd.storage import codec, coins, reader
from obd.storage.connect import open_reader, open_writer
from obd.storage.schema import migrate
from obd.storage.writer import SnapshotIn, insert_snapshot

REPO = Path(__file__).resolve().parent.parent
CLIENT_PROCESSES = 4  # so the clients' own loops are not what is measured
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class Daemon:
    """`obd run` on port 0 in a subprocess; its log read on a thread."""

    def __init__(self, directory: Path, coins_toml: str = "", ws: str | None = None) -> None:
        config = directory / "config.toml"
        config.write_text(
            f'[server]\nport = 0\n[storage]\npath = "obd.sqlite"\n[plugins]\n'
            f"dirs = [{json.dumps(str(REPO / 'plugins.d'))}]\nentry_points = false\n"
            f"{coins_toml}"
        )
        command = [sys.executable, "-m", "obd", "run", "--config", str(config)]
        if ws is not None:  # uvicorn's own protocol instead of obd's: what it costs
            launch = (
                f"import obd.daemon, obd.cli; obd.daemon.WS_PROTOCOL = {ws!r}; "
                "raise SystemExit(obd.cli.main())"
            )
            command[1:3] = ["-c", launch]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        lines = []
        for line in self.process.stderr:
            lines.append(line)
            if '"serving"' in line:
                self.url = json.loads(line)["url"].replace("http://", "ws://") + "/v1/ws"
                break
        else:
            raise RuntimeError(f"obd run exited before serving: {''.join(lines)[-2000:]}")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for _ in self.process.stderr:
            pass

    def cpu_s(self) -> float:
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / TICKS_PER_S, int(fields[12]) / TICKS_PER_S

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# -- fan-out --


def _subscribers(url: str, count: int, wire: str, pipe: Any) -> None:
    """A client process: `count` subscribers; says "ready" once all are subscribed, then
    on "stop" sends back (ts, receive time) per message."""
    gc.disable()  # see _stream_rate
    uvloop.install()
    pipe.send(asyncio.run(_subscribe_and_listen(url, count, wire, pipe)))


async def _subscribe_and_listen(
    url: str, count: int, wire: str, pipe: Any
) -> list[tuple[int, float]]:
    received: list[tuple[int, float]] = []
    clients = [await _LeanClient.open(url, wire, received) for _ in range(count)]
    for client in clients:
        await client.subscribed
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"
    for client in clients:
        client.transport.close()
    return received


class _Ts(msgspec.Struct):
    ts: int


class _Message(msgspec.Struct):
    type: str
    data: _Ts | None = None


class _LeanClient(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455 frames parsed by hand, no library loop):
    the `websockets` client spends ~50 µs a message, and 250 subscribers a process
    then measure the clients' backlog instead of the daemon's fan-out."""

    def __init__(self, wire: str, into: list[tuple[int, float]]) -> None:
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport
        self._into = into
        self._buffer = b""
        self._upgraded = False
        self._decoder: Any = (msgspec.msgpack if wire == "msgpack" else msgspec.json).Decoder(
            _Message
        )
        self._wire = wire

    @classmethod
    async def open(cls, url: str, wire: str, into: list[tuple[int, float]]) -> "_LeanClient":
        host, port = url.removeprefix("ws://").split("/")[0].rsplit(":", 1)
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(wire, into), host, int(port))
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        protocol = "Sec-WebSocket-Protocol: obd.msgpack\r\n" if self._wire == "msgpack" else ""
        transport.write(
            b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n" + protocol.encode() + b"\r\n"
        )

    def _send(self, opcode: int, payload: bytes) -> None:
        # Masked with the key 0000, as a client must mask: the payload stays as it is.
        assert len(payload) < 126
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self._buffer + data
        if not self._upgraded:
            head, found, buffer = buffer.partition(b"\r\n\r\n")
            if not found:
                self._buffer = head
                return
            assert head.startswith(b"HTTP/1.1 101"), head
            self._upgraded = True
            request = {"op": "subscribe", "exchange": "sim", "symbol": "BTC/USDT"}
            self._send(0x1, json.dumps(request).encode())
        at = 0
        while len(buffer) - at >= 2:
            opcode, size = buffer[at] & 0x0F, buffer[at + 1] & 0x7F
            head = 2
            if size == 126:
                size, head = int.from_bytes(buffer[at + 2 : at + 4]), 4
            elif size == 127:
                size, head = int.from_bytes(buffer[at + 2 : at + 10]), 10
            if len(buffer) - at < head + size:
                break
            payload = buffer[at + head : at + head + size]
            at += head + size
            if opcode == 0x9:  # ping: pong, or uvicorn closes the connection
                self._send(0xA, payload)
            elif opcode in (0x1, 0x2):
                message = self._decoder.decode(payload)
                if message.data is not None:
                    self._into.append((message.data.ts, now))
                elif message.type == "subscribed":
                    self.subscribed.set_result(None)
        self._buffer = buffer[at:]


def fanout(clients: int, seconds: float, depth: int, ws: str | None, floor: bool = True) -> None:
    coin = f'[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\ndepth = {depth}\n'
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        daemon = Daemon(Path(directory), coin, ws)
        try:
            time.sleep(3)
            before = daemon.cpu_s()
            time.sleep(seconds)
            idle_per_s = (daemon.cpu_s() - before) / seconds
            protocol = ws or "obd's (websockets-sansio + direct writes)"
            print(f"## Fan-out: {clients} subscribers, one coin at 1 s, depth {depth}\n")
            print(f"WebSocket protocol: {protocol}\n")
            print(f"daemon CPU collecting with no subscriber: {idle_per_s * 100:.1f}% of a core\n")
            print(
                "| frames | messages | latency from slot p50 / p99 | fan-out spread p50 / p99 "
                "| daemon CPU per message | of it in the kernel | above idle |"
            )
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for wire in ("json", "msgpack"):
                rows[wire] = _fanout_row(daemon, clients, seconds, wire, idle_per_s)
        finally:
            daemon.stop()
    if floor:
        server = FloorServer(depth)
        try:
            time.sleep(1)
            for wire in ("json", "msgpack"):
                per_message = _fanout_row(server, clients, seconds, wire, 0.0, "floor, ")
                rows[f"floor {wire}"] = per_message
        finally:
            server.stop()
        print("\nobd / floor (daemon CPU per delivered message): ", end="")
        wires = ("json", "msgpack")
        ratios = [f"{wire} {rows[wire] / rows[f'floor {wire}']:.2f}" for wire in wires]
        print(", ".join(ratios))


class FloorServer:
    """The floor: a bare uvloop server in a subprocess (see the module's doc)."""

    def __init__(self, depth: int) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self.process = context.Process(target=_floor_serve, args=(depth, theirs), daemon=True)
        self.process.start()
        self.url = f"ws://127.0.0.1:{ours.recv()}/v1/ws"

    def cpu_split(self) -> tuple[float, float]:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / TICKS_PER_S, int(fields[12]) / TICKS_PER_S

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(timeout=30)


def _floor_serve(depth: int, pipe: Any) -> None:
    uvloop.install()
    asyncio.run(_floor_main(depth, pipe))


async def _floor_main(depth: int, pipe: Any) -> None:
    from obd.http.ws.hub import SnapshotFrame, _encoded
    from obd.model import Snapshot

    sys.path.insert(0, str(REPO / "plugins.d"))
    import sim  # the same books as the daemon's coin, so the same frame sizes

    exchange = sim.create("sim", None)
    subscribers: dict[str, list[asyncio.Transport]] = {"json": [], "msgpack": []}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FloorProtocol(subscribers), "127.0.0.1", 0)
    pipe.send(server.sockets[0].getsockname()[1])
    gc.collect()
    gc.freeze()
    while True:
        slot = (time.time_ns() // 1_000_000 // 1000 + 1) * 1000
        book = exchange.book_at("BTC/USDT", slot - 1, depth)  # computed before the slot
        while (left := slot / 1000 - time.time()) > 0:  # noqa: ASYNC110 (a deadline)
            await asyncio.sleep(left)
        snapshot = Snapshot(
            "sim", "BTC/USDT", slot, book.exchange_ts, slot, book.bids, book.asks, "synthetic"
        )
        for wire, transports in subscribers.items():
            if transports:
                _, framed = _encoded(SnapshotFrame(snapshot), wire)  # type: ignore[arg-type]
                for transport in transports:
                    transport.write(framed)


class _FloorProtocol(asyncio.Protocol):
    """Just enough of the server side for `_LeanClient`: the 101, then `subscribed`."""

    def __init__(self, subscribers: dict[str, list[asyncio.Transport]]) -> None:
        self._subscribers = subscribers
        self._buffer = b""
        self._wire: str | None = None
        self._subscribed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._wire is None:
            self._buffer += data
            head, found, _ = self._buffer.partition(b"\r\n\r\n")
            if not found:
                return
            self._wire = "msgpack" if b"obd.msgpack" in head else "json"
            msgpack = self._wire == "msgpack"
            protocol = b"Sec-WebSocket-Protocol: obd.msgpack\r\n" if msgpack else b""
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n" + protocol + b"\r\n"
            )
            return
        if not self._subscribed:  # the subscribe request: answered, then snapshots
            self._subscribed = True
            answer = {"type": "subscribed"}
            if self._wire == "msgpack":
                self.transport.write(frame(msgspec.msgpack.encode(answer), text=False))
            else:
                self.transport.write(frame(msgspec.json.encode(answer), text=True))
            self._subscribers[self._wire].append(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._subscribed and self._wire is not None:
            self._subscribers[self._wire].remove(self.transport)


def _fanout_row(
    daemon: "Daemon | FloorServer",
    clients: int,
    seconds: float,
    wire: str,
    idle: float,
    label: str = "",
) -> float:
    """One table row; returns the CPU per delivered message (µs)."""
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for n in range(CLIENT_PROCESSES):
        share = clients // CLIENT_PROCESSES + (n < clients % CLIENT_PROCESSES)
        ours, theirs = context.Pipe()
        process = context.Process(target=_subscribers, args=(daemon.url, share, wire, theirs))
        process.start()
        pipes.append(ours)
        processes.append(process)
    for pipe in pipes:
        assert pipe.recv() == "ready"
    time.sleep(1)
    # The window: every client subscribed, none connecting or leaving.
    (user_before, system_before), began = daemon.cpu_split(), time.time()
    time.sleep(seconds)
    (user, system), ended = daemon.cpu_split(), time.time()
    system -= system_before
    cpu = user - user_before + system
    for pipe in pipes:
        pipe.send("stop")
    received = [item for pipe in pipes for item in pipe.recv()]
    for process in processes:
        process.join()
    window = [(ts, at) for ts, at in received if began <= at < ended]
    latency = sorted(at * 1000 - ts for ts, at in window)
    first: dict[int, float] = {}
    for ts, at in window:
        first[ts] = min(first.get(ts, at), at)
    spread = sorted((at - first[ts]) * 1000 for ts, at in window)
    per_message = cpu / len(window) * 1e6
    kernel = system / len(window) * 1e6
    above = max(cpu - idle * (ended - began), 0) / len(window) * 1e6
    print(
        f"| {label}{wire} | {len(window)} | {_pct(latency, 50):.1f} / {_pct(latency, 99):.1f} ms "
        f"| {_pct(spread, 50):.1f} / {_pct(spread, 99):.1f} ms "
        f"| {per_message:.1f} µs | {kernel:.1f} µs | {above:.1f} µs |",
        flush=True,
    )
    return per_message


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))]


# -- history --


def _prefill(path: Path, count: int, depth: int) -> tuple[int, int]:
    """`count` 1 s snapshots of sim BTC/USDT ending a minute ago; 500 distinct books
    (encoded once: the codec's write speed is not what this measures)."""
    end = time.time_ns() // 1_000_000 // 1000 * 1000 - 60_000
    start = end - count * 1000
    books = [_book(n, depth) for n in range(500)]
    encoded = {id(book.bids): codec.encode(book.bids, book.asks) for book in books}
    real_encode = codec.encode
    codec.encode = lambda bids, asks, model=None: (
        encoded.get(id(bids)) or real_encode(bids, asks, model)
    )
    conn = open_writer(path)
    try:
        migrate(conn, start)
        want = coins.CoinRequest("sim", "BTC/USDT", 1000, "1s", depth, True, 0.01, 1e-5)
        with conn:
            coin, _ = coins.add_coin(conn, want, start - 1)
            for n, ts in enumerate(range(start, end, 1000)):
                book = books[n % len(books)]
                row = Book(book.bids, book.asks, exchange_ts=ts - 7)
                insert_snapshot(conn, SnapshotIn(coin, ts, row, ts - 3, "synthetic"))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        codec.encode = real_encode
        conn.close()
    return start, end


def _book(n: int, depth: int) -> Book:
    """A plausible book: a tick grid near 65000, sizes on a lot grid."""
    mid = 6_500_000 + (n * 37) % 2_000
    bids = [((mid - 1 - k) / 100, ((n + k) * 7919 % 5000 + 1) / 100_000) for k in range(depth)]
    asks = [
        ((mid + 1 + k) / 100, ((n + 3 * k) * 104_729 % 5000 + 1) / 100_000) for k in range(depth)
    ]
    return Book(bids, asks)


def _store_rate(path: Path, start: int, end: int) -> float:
    conn = open_reader(path)
    coin = reader.coin(conn, "sim", "BTC/USDT")
    assert coin is not None
    began, seen, at = time.perf_counter(), 0, start
    while rows := reader.books(conn, coin, at, end, 256):
        seen += len(rows)
        at = rows[-1].ts + 1
    conn.close()
    return seen / (time.perf_counter() - began)


async def _stream_rate(url: str, start: int, end: int, wire: str) -> tuple[float, int]:
    # A 500-snapshot chunk decodes into ~10^5 lists: with the cyclic GC on, msgspec's
    # decode spends most of its time in collections (~5x slower), which would measure
    # the client. A consumer of big frames turns it off (or decodes into Structs).
    gc.disable()
    options: dict[str, Any] = {"max_size": None, "compression": None}
    if wire == "msgpack":
        options["subprotocols"] = ["obd.msgpack"]
    decode = msgspec.msgpack.decode if wire == "msgpack" else msgspec.json.decode
    async with connect(url, **options) as ws:
        request = {"op": "history", "exchange": "sim", "symbol": "BTC/USDT"}
        await ws.send(json.dumps({**request, "start": start, "end": end}))
        began, seen, size = time.perf_counter(), 0, 0
        while True:
            frame = await ws.recv()
            size += len(frame)
            message = decode(frame)
            if message["type"] != "history_chunk":
                assert message["type"] == "history_complete", message
                gc.enable()
                return seen / (time.perf_counter() - began), size // max(seen, 1)
            seen += len(message["data"])


def history(count: int, depth: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        start, end = _prefill(Path(directory) / "obd.sqlite", count, depth)
        store = _store_rate(Path(directory) / "obd.sqlite", start, end)
        daemon = Daemon(Path(directory))
        try:
            print(f"## History: {count} stored snapshots, depth {depth}, one client\n")
            print("| path | snapshots/s | bytes/snapshot on the wire | vs. store alone |")
            print("| --- | --- | --- | --- |")
            print(f"| store alone: read + decode | {store:,.0f} | - | 1.00 |")
            for wire in ("json", "msgpack"):
                rate, size = asyncio.run(_stream_rate(daemon.url, start, end, wire))
                print(f"| `/v1/ws` history, {wire} | {rate:,.0f} | {size} | {rate / store:.2f} |")
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    fan = modes.add_parser("fanout")
    fan.add_argument("--clients", type=int, default=1000)
    fan.add_argument("--seconds", type=float, default=20)
    fan.add_argument("--depth", type=int, default=100)
    fan.add_argument(
        "--ws",
        help="run uvicorn's own WebSocket protocol instead: websockets-sansio, websockets, wsproto",
    )
    fan.add_argument(
        "--no-floor", action="store_true", help="skip the bare uvloop server's row (the floor)"
    )
    hist = modes.add_parser("history")
    hist.add_argument("--snapshots", type=int, default=50_000)
    hist.add_argument("--depth", type=int, default=100)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    if args.mode == "fanout":
        fanout(args.clients, args.seconds, args.depth, args.ws, not args.no_floor)
    else:
        history(args.snapshots, args.depth)


if __name__ == "__main__":
    main()
