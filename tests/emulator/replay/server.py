"""The generic replay server: one venue, one recording, on 127.0.0.1.

It owns what every exchange shares: the socket (REST and websockets on one port),
the pace (each `recv` at its recorded offset from the first, divided by `speed`),
applying every recorded frame to the venue's true books whether anyone listens or
not, the sent log, and the fault controls (in-process methods, and the same as
loopback HTTP under `/__emulator__/`: see the package docstring). The venue says
what each thing looks like on the wire (`venue.py`).
"""

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import msgspec
from aiohttp import WSMsgType, web

from tests.emulator.replay import recording as rec
from tests.emulator.replay.venue import (
    FAULTS,
    Book,
    Conn,
    Fault,
    Frame,
    RestRequest,
    Venue,
    create_venue,
)

__all__ = ["FAST", "ReplayEmulator"]

# Quick to notice trouble in tests: listings reloaded every 2 s, pings every second,
# a silent connection declared dead after 3 s, requests given up after 2 s.
FAST = {"markets_ttl_s": 2, "ping_interval_s": 1, "stale_after_s": 3, "timeout_s": 2}
CONTROL = "/__emulator__"


class _Client:
    def __init__(self, conn: Conn, ws: web.WebSocketResponse) -> None:
        self.conn, self.ws = conn, ws
        self.stalled = False


class ReplayEmulator:
    """A recording replayed by its venue, served from its own thread and event loop.
    All controls are thread-safe (they run on the server's loop)."""

    def __init__(
        self,
        exchange_id: str,
        recording: Path | str | rec.Recording,
        *,
        speed: float = 1.0,
        port: int = 0,
        sent_log: Path | str | None = None,
        start_on: str = "listen",
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.recording = recording if isinstance(recording, rec.Recording) else rec.load(recording)
        self.venue: Venue = create_venue(exchange_id, self.recording)
        if start_on not in ("listen", "connect"):
            raise ValueError("start_on is 'listen' or 'connect'")
        self.exchange_id, self.speed = exchange_id, speed
        # "connect": the recording's clock starts at the first websocket connection, so
        # a client that takes long to start (a daemon importing ccxt on a busy host)
        # still gets the whole recording
        self.start_on = start_on
        self._connected: asyncio.Event | None = None
        self._recv = self.recording.recv
        if not self._recv:
            raise rec.RecordingError(self.recording.path, 1, "no recv entries to replay")
        self._want_port, self._sent_log_path = port, sent_log
        self.port = 0
        self.applied: dict[int, int] = {}  # recording line -> wall ms it was applied at
        self.done = threading.Event()  # every recorded frame applied
        self.stats: Counter[str] = Counter()
        self.unexpected: list[str] = []  # REST paths the venue does not emulate
        self._clients: dict[str, _Client] = {}
        self._conn_count = 0
        self._drops: Counter[str] = Counter()  # symbol -> frames still to drop
        self._faults: dict[str, list[Fault]] = {}  # symbol -> pending frame faults
        self.delisted: dict[str, int] = {}  # symbol -> wall ms it was delisted
        self._errors: list[tuple[int, int, str]] = []  # (status, retry_after_s, path part)
        self._log: IO[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="replay", daemon=True)

    # -- lifecycle --

    def start(self) -> "ReplayEmulator":
        if self._sent_log_path is not None:  # line-buffered: readable while it runs
            self._log = Path(self._sent_log_path).open("w", buffering=1)  # noqa: SIM115 (closed on stop)
        self._thread.start()
        if not self._ready.wait(10) or self._failed is not None:
            raise RuntimeError(f"replay emulator did not start: {self._failed!r}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> "ReplayEmulator":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def symbols(self) -> list[str]:
        return self.venue.symbols()

    def exchanges_config(self) -> dict[str, Any]:
        """The `[exchanges.<id>]` table pointing ccxt (and obd) here."""
        return {**FAST, **self.venue.exchanges_config(self.url)}

    def info(self) -> dict[str, Any]:
        """What the command line prints once listening."""
        return {
            "port": self.port,
            "exchange": self.exchange_id,
            "symbols": self.symbols(),
            "exchanges_config": self.exchanges_config(),
        }

    # -- controls (any thread) --

    def drop(self, symbol: str, n: int = 1) -> None:
        """The next `n` frames of `symbol` reach no one (the true book still moves)."""
        self._run(lambda: self._drops.update({self._known(symbol): n}))

    def stall(self) -> None:
        """Every open socket goes silent: no frames, no replies, no pongs."""
        self._run(self._stall)

    def _stall(self) -> None:
        for client in self._clients.values():
            client.stalled = True

    def close_sockets(self) -> None:
        """Close every websocket (code 1001), as an exchange does when it restarts."""
        self._call(self._close_all())

    def rest_errors(self, status: int, n: int = 1, retry_after_s: int = 1, path: str = "") -> None:
        """Answer the next `n` REST calls (whose path contains `path`) with 429 or 503."""
        if status not in (429, 503):
            raise ValueError("status must be 429 or 503")
        self._run(lambda: self._errors.extend([(status, retry_after_s, path)] * n))

    def fault(self, kind: Fault, symbol: str) -> None:
        """The next frame of `symbol` carries fault `kind` (if the venue can make it)."""
        if kind not in self.venue.faults:
            raise ValueError(f"{self.exchange_id} cannot make a {kind!r} fault")
        self._run(lambda: self._faults.setdefault(self._known(symbol), []).append(kind))

    def delist(self, symbol: str) -> None:
        self._run(lambda: self._delist(self._known(symbol)))

    def _delist(self, symbol: str) -> None:
        """Halt `symbol`: its frames stop and its true book freezes from now (logged,
        so the truth read from the sent log freezes it too)."""
        if symbol not in self.delisted:
            self.delisted[symbol] = wall_ms = _now_ms()
            self.venue.delist(symbol)
            if self._log is not None:
                entry = {"wall_ms": wall_ms, "line": None, "conn": None, "delisted": symbol}
                self._log.write(json.dumps(entry) + "\n")

    def book(self, symbol: str, depth: int | None = None) -> Book:
        """The true book now (as of the last applied frame)."""
        return self._run(lambda: self.venue.book(self._known(symbol), depth))  # type: ignore[no-any-return]

    def _known(self, symbol: str) -> str:
        if symbol not in self.venue.symbols():
            raise ValueError(f"{symbol!r} is not in the recording")
        return symbol

    def _run(self, work: Any) -> Any:
        async def run() -> Any:
            return work()

        return self._call(run())

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "start() the emulator first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- serving --

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._failed = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", CONTROL + "/{control}", self._control)
        app.router.add_route("*", "/{tail:.*}", self._http)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._want_port)
        await site.start()
        self.port = runner.addresses[0][1]
        replaying = asyncio.create_task(self._replay(), name="replay")
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            replaying.cancel()
            await self._close_all()
            await runner.cleanup()
            if self._log is not None:
                self._log.close()

    async def _replay(self) -> None:
        """Apply each recorded frame at its recorded offset / speed, and send it."""
        loop = asyncio.get_running_loop()
        if self.start_on == "connect" and self._connected is not None:
            await self._connected.wait()
        start_s, first_ts = loop.time(), self._recv[0].ts
        for entry in self._recv:
            delay_s = start_s + (entry.ts - first_ts) / self.speed - loop.time()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            await self._send(self._step(entry))
        self.done.set()

    def _step(self, entry: rec.WsEntry) -> list[tuple[_Client, Frame]]:
        """Apply one frame to the true books and decide, at once, who gets what (so a
        subscription arriving while frames are written cannot see this one twice)."""
        concerned = self.venue.apply(entry)
        wall_ms = _now_ms()
        self.applied[entry.line] = wall_ms
        symbols = [s for s in concerned if s not in self.delisted and not self._dropping(s)]
        out: list[tuple[_Client, Frame]] = []
        if concerned and not symbols:
            self._write(wall_ms, entry.line, None)
            return out
        faults = [(s, kind) for s in symbols for kind in self._faults.get(s, [])[:1]]
        made: set[tuple[str, Fault]] = set()
        for client in list(self._clients.values()):
            if client.stalled or client.ws.closed:
                continue
            frame = self.venue.frame_for(client.conn, entry, symbols)
            if frame is None:
                continue
            for symbol, kind in faults:
                faulty = self.venue.fault(kind, symbol, frame)
                if faulty is not None:
                    frame = faulty
                    made.add((symbol, kind))
            out.append((client, frame))
            self._write(wall_ms, entry.line, client.conn.id)
        for symbol, kind in made:
            self._faults[symbol].remove(kind)
            self.stats[f"fault_{kind}"] += 1
        if not out:
            self._write(wall_ms, entry.line, None)
        return out

    def _dropping(self, symbol: str) -> bool:
        if self._drops[symbol] <= 0:
            return False
        self._drops[symbol] -= 1
        self.stats["frames_dropped"] += 1
        return True

    async def _send(self, out: list[tuple[_Client, Frame]]) -> None:
        for client, frame in out:
            try:
                await _send_frame(client.ws, frame)
                self.stats["frames_sent"] += 1
            except ConnectionError:
                pass  # the client went away mid-write; its handler cleans up

    def _write(self, wall_ms: int, line: int | None, conn: str | None) -> None:
        if self._log is not None:
            self._log.write(json.dumps({"wall_ms": wall_ms, "line": line, "conn": conn}) + "\n")

    async def _close_all(self) -> None:
        for client in list(self._clients.values()):
            await client.ws.close(code=1001, message=b"going away")

    # -- REST and websockets --

    async def _http(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        self.stats["rest_calls"] += 1
        error = next((e for e in self._errors if e[2] in request.path), None)
        if error is not None:
            self._errors.remove(error)
            status, retry_after_s, _ = error
            refusal = self.venue.rest_error(status, retry_after_s)
            headers = dict(refusal.headers)
            if status == 429:
                headers.setdefault("Retry-After", str(retry_after_s))
            self.stats[f"rest_{status}"] += 1
            return _response(refusal.status, refusal.body, refusal.content_type, headers)
        body = await request.text() if request.can_read_body else ""
        asked = RestRequest(
            request.method, request.path, dict(request.query), body, dict(request.headers)
        )
        reply = self.venue.rest(asked)
        if reply is None:
            self.unexpected.append(request.path_qs)
            return web.json_response({"error": "not emulated", "path": request.path}, status=404)
        return _response(reply.status, reply.body, reply.content_type, dict(reply.headers))

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=0)
        await ws.prepare(request)
        self._conn_count += 1
        conn = Conn(f"c{self._conn_count}", request.path, dict(request.query))
        client = self._clients[conn.id] = _Client(conn, ws)
        self.stats["connections"] += 1
        if self._connected is not None:
            self._connected.set()
        try:
            await self._reply(client, self.venue.on_open(conn))
            async for message in ws:
                if message.type == WSMsgType.PING:
                    if not client.stalled:
                        await ws.pong(message.data)
                elif message.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not client.stalled:
                    await self._reply(client, self.venue.on_message(conn, message.data))
        finally:
            del self._clients[conn.id]
        return ws

    async def _reply(self, client: _Client, frames: list[Frame]) -> None:
        for frame in frames:
            self._write(_now_ms(), None, client.conn.id)
            await _send_frame(client.ws, frame)

    # -- controls over HTTP --

    async def _control(self, request: web.Request) -> web.Response:
        name, query = request.match_info["control"], request.query
        try:
            if name == "book":
                depth = int(query["depth"]) if "depth" in query else None
                book = self.venue.book(self._known(query["symbol"]), depth)
                return web.Response(body=msgspec.json.encode(book), content_type="application/json")
            if name == "stats":
                return web.json_response(
                    {
                        **self.stats,
                        "applied": len(self.applied),
                        "recv": len(self._recv),
                        "done": self.done.is_set(),
                        "open": len(self._clients),
                        "unexpected": self.unexpected,
                    }
                )
            if request.method != "POST":
                raise ValueError("controls are POST")
            self._control_post(name, query)
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": f"{name}: {exc!s}"}, status=400)
        if name == "close":
            await self._close_all()
        return web.json_response({"ok": True})

    def _control_post(self, name: str, query: Any) -> None:
        if name == "drop":
            self._drops[self._known(query["symbol"])] += int(query.get("n", 1))
        elif name == "stall":
            self._stall()
        elif name == "rest-errors":
            status, retry_after_s = int(query["status"]), int(query.get("retry_after_s", 1))
            if status not in (429, 503):
                raise ValueError("status must be 429 or 503")
            self._errors += [(status, retry_after_s, query.get("path", ""))] * int(
                query.get("n", 1)
            )
        elif name == "fault":
            kind = query["kind"]
            if kind not in FAULTS or kind not in self.venue.faults:
                raise ValueError(f"{self.exchange_id} cannot make a {kind!r} fault")
            self._faults.setdefault(self._known(query["symbol"]), []).append(kind)
        elif name == "delist":
            self._delist(self._known(query["symbol"]))
        elif name != "close":
            raise ValueError("unknown control")


async def _send_frame(ws: web.WebSocketResponse, frame: Frame) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)


def _response(status: int, body: str, content_type: str, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=body, content_type=content_type, headers=headers)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
