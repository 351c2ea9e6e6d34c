"""`/v1/ws`: live snapshots, the latest one, and history over one WebSocket
(docs/WEBSOCKET.md has the protocol).

A connection runs named tasks in one TaskGroup: the receiver (reads requests and
answers them in order), the sender (draining the connection's `Feed`), a watch for
the feed being dropped, and one task per running history request. A client that
leaves, or falls behind, takes all of them with it. The hub also writes live frames
straight to the socket (`protocol.DirectWriter`), but only while the feed is empty
and the sender holds nothing, so frames never overtake one another.
"""

import asyncio
import contextlib
import math
from typing import Any, Literal

import structlog
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.types.asgi_types import WebSocketResponseBodyEvent, WebSocketResponseStartEvent

from obd.auth import Authenticator, Principal, require
from obd.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ObdError,
    RequestError,
    TooLarge,
    TooManyRequests,
)
from obd.http import errors
from obd.http.ws import messages as msg
from obd.http.ws import protocol
from obd.http.ws.hub import Feed, Hub, Wire, encode
from obd.service import Service

log = structlog.get_logger("obd.ws")

MAX_REQUEST_BYTES = 16 * 1024  # a request is ~150 bytes: a larger one gets an error frame
MAX_FRAME_BYTES = 1024 * 1024  # beyond this uvicorn closes with 1009 (see daemon.py)
MAX_SUBSCRIPTIONS = 1_000  # coins per connection
MAX_HISTORY_STREAMS = 4  # history requests running at once per connection
IDLE_TIMEOUT_S = 300  # no subscription, history or request for this long: closed (1000)
PING_INTERVAL_S = 20  # uvicorn pings every connection this often...
PING_TIMEOUT_S = 20  # ...and closes it (1011) when the pong is this late
CLOSE_TIMEOUT_S = 10  # a dropped client has this long to take the close frame
CLOSE_TOO_SLOW = 1013  # "try again later": the client fell behind the live feed

SUBPROTOCOLS: dict[str, Wire] = {"obd.json": "json", "obd.msgpack": "msgpack"}
FORMATS: tuple[Wire, ...] = ("json", "msgpack")


class _Closing(Exception):
    """Ends a connection's TaskGroup; `code` None when the client is already gone."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@websocket("/v1/ws")
async def ws(socket: WebSocket[Any, Any, Any]) -> None:
    state = socket.app.state
    try:
        wire, subprotocol = _wire(socket)
        authenticator: Authenticator = state.authenticator
        principal = await authenticator.authenticate(_authorization(socket))
        require(principal, "read")
    except ObdError as exc:
        await _reject(socket, exc)
        return
    await socket.accept(subprotocols=subprotocol)
    await Connection(socket, state.service, state.hub, principal, wire).serve()


def _wire(socket: WebSocket[Any, Any, Any]) -> tuple[Wire, str | None]:
    """(wire format, subprotocol to confirm): `obd.msgpack` / `obd.json` as offered
    subprotocols win; else `?format=`; else JSON."""
    for offered in socket.scope.get("subprotocols", []):
        if offered in SUBPROTOCOLS:
            return SUBPROTOCOLS[offered], offered
    form = socket.query_params.get("format", "json")
    for wire in FORMATS:
        if form == wire:
            return wire, None
    raise BadRequest(f"format: expected 'json' or 'msgpack', got {form!r:.40}")


def _authorization(socket: WebSocket[Any, Any, Any]) -> str | None:
    """The `Authorization` header, or `?access_token=` (browsers cannot set headers)."""
    header = socket.headers.get("authorization")
    token = socket.query_params.get("access_token")
    return header if header is not None or token is None else f"Bearer {token}"


async def _reject(socket: WebSocket[Any, Any, Any], exc: ObdError) -> None:
    """Refuse the handshake with the HTTP status, body and headers HTTP routes give."""
    status = errors.status(exc)
    if "websocket.http.response" not in (socket.scope.get("extensions") or {}):
        await socket.close(code=1008, reason=str(exc)[:120])  # the server shows a 403
        return
    headers = [(b"content-type", b"application/json")] + [
        (name.lower().encode(), value.encode()) for name, value in errors.headers(status).items()
    ]
    body = errors.body(exc.code, str(exc))
    start: WebSocketResponseStartEvent = {
        "type": "websocket.http.response.start",
        "status": status,
        "headers": headers,
    }
    await socket.send(start)
    end: WebSocketResponseBodyEvent = {
        "type": "websocket.http.response.body",
        "body": body,
        "more_body": False,
    }
    await socket.send(end)


class Connection:
    """One accepted client: its feed, its subscriptions and its running requests."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        service: Service,
        hub: Hub,
        principal: Principal,
        wire: Wire,
    ) -> None:
        direct = (socket.scope.get("extensions") or {}).get(protocol.DIRECT)
        self.feed = Feed(wire, direct if isinstance(direct, protocol.DirectWriter) else None)
        self._socket = socket
        self._service = service
        self._hub = hub
        self._principal = principal
        self._histories: dict[object, asyncio.Task[None]] = {}
        self._tasks = asyncio.TaskGroup()
        client = socket.scope.get("client")
        self._peer = f"{client[0]}:{client[1]}" if client else "?"
        # Back-fill is a write: only with `write`, within the connection's allowance and
        # the daemon's meters, which count a client by its token's subject (auth off:
        # everyone is "anonymous", so by address).
        who = principal.subject if principal.subject != "anonymous" else (client or ["?"])[0]
        allowed = "write" in principal.scopes
        self._backfill = service.backfill_allowance(who) if allowed else None

    async def serve(self) -> None:
        closing = _Closing(None)
        try:
            async with self._tasks as tasks:
                tasks.create_task(self._send_all(), name=f"ws send {self._peer}")
                tasks.create_task(self._receive_all(), name=f"ws receive {self._peer}")
                tasks.create_task(self._watch_drop(), name=f"ws drop {self._peer}")
        except* _Closing as group:
            endings = [e for e in group.exceptions if isinstance(e, _Closing)]
            closing = next((e for e in endings if e.code is not None), endings[0])
        finally:
            self._hub.detach(self.feed)
        if closing.code is not None:
            await self._close(closing.code, closing.reason)

    async def _close(self, code: int, reason: str) -> None:
        # The close frame queues behind whatever the client has not read yet: a client
        # that never reads again never gets it, and is left to uvicorn's timeouts.
        with contextlib.suppress(TimeoutError, WebSocketDisconnect, OSError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._socket.close(code, reason)

    async def _watch_drop(self) -> None:
        reason = await self.feed.wait_dropped()
        log.warning("ws_dropped", peer=self._peer, reason=reason)
        raise _Closing(CLOSE_TOO_SLOW, reason)

    async def _send_all(self) -> None:
        """Writes what the feed queued (live frames the socket could not take at once,
        answers, history), in order."""
        feed, direct = self.feed, self.feed.direct
        mode: Literal["text", "binary"] = "binary" if feed.wire == "msgpack" else "text"
        try:
            while True:
                frame = await feed.next()
                if direct is None:
                    await self._socket.send_data(frame, mode)
                else:
                    await direct.wait_writable()
                    if isinstance(frame, str):
                        framed = protocol.frame(frame.encode(), text=True)
                    else:
                        framed = protocol.frame(frame, text=False)
                    if not direct.write(framed):
                        raise _Closing(None)  # closing or gone, as uvicorn's `send` would say
                feed.sent()
        except (WebSocketDisconnect, OSError):  # uvicorn's ClientDisconnected is an OSError
            raise _Closing(None) from None

    async def _receive_all(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                raise _Closing(None)
            text = message.get("text")
            await self._answer(text if text is not None else message.get("bytes") or b"")

    async def _receive(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            try:
                # On a whole-second grid: subscribers' idle timers (one per connection,
                # firing every IDLE_TIMEOUT_S while they only listen) share wake-ups.
                async with asyncio.timeout_at(math.ceil(loop.time() + IDLE_TIMEOUT_S)):
                    return await self._socket.receive()
            except TimeoutError:
                if not self.feed.keys and not self._histories:
                    raise _Closing(1000, f"idle for {IDLE_TIMEOUT_S} s") from None
            except WebSocketDisconnect:
                raise _Closing(None) from None

    async def _answer(self, frame: str | bytes) -> None:
        request_id: msg.RequestId | None = None
        try:
            if len(frame) > MAX_REQUEST_BYTES:
                raise TooLarge(
                    f"frame: {len(frame)} bytes; requests are {MAX_REQUEST_BYTES} at most"
                )
            request = msg.decode_request(frame)
            request_id = request.id
            await self._dispatch(request)
        except RequestError as exc:
            self._error(exc, exc.request_id)
        except ObdError as exc:
            self._error(exc, request_id)
        except Exception as exc:  # one request's bug must not end the connection
            log.error("ws_request_failed", peer=self._peer, error=repr(exc), exc_info=exc)
            self._send(msg.Error(code="internal", message="internal error"))

    async def _dispatch(self, request: msg.Request) -> None:
        match request:
            case msg.Subscribe():
                await self._subscribe(request)
            case msg.Unsubscribe():
                exchange, symbol = request.exchange, request.symbol
                self._hub.unsubscribe(self.feed, (exchange, symbol))
                self._send(msg.Unsubscribed(id=request.id, exchange=exchange, symbol=symbol))
            case msg.Latest():
                require(self._principal, "read")
                snapshot = await self._service.latest(request.exchange, request.symbol)
                self._send(msg.LatestAnswer(id=request.id, data=snapshot))
            case msg.History():
                self._start_history(request)
            case msg.Cancel():
                await self._cancel(request.id)

    async def _subscribe(self, request: msg.Subscribe) -> None:
        require(self._principal, "read")
        coin = await self._service.collected(request.exchange, request.symbol)
        key = (coin.exchange, coin.symbol)
        if key not in self.feed.keys and len(self.feed.keys) >= MAX_SUBSCRIPTIONS:
            raise TooManyRequests(f"subscribe: {MAX_SUBSCRIPTIONS} coins per connection at most")
        # The answer is queued before the first snapshot can be: the feed keeps order.
        self._send(msg.Subscribed(id=request.id, exchange=coin.exchange, symbol=coin.symbol))
        self._hub.subscribe(self.feed, key)

    def _start_history(self, request: msg.History) -> None:
        require(self._principal, "read")
        if request.id is not None and request.id in self._histories:
            raise Conflict(f"id: a request with id {request.id!r} is still running")
        if len(self._histories) >= MAX_HISTORY_STREAMS:
            raise TooManyRequests(
                f"history: {MAX_HISTORY_STREAMS} at once per connection; cancel one or wait"
            )
        key = request.id if request.id is not None else object()
        name = f"ws history {self._peer} {request.id}"
        self._histories[key] = self._tasks.create_task(self._history(request, key), name=name)

    async def _history(self, request: msg.History, key: object) -> None:
        try:
            await self._stream_history(request)
        except ObdError as exc:
            self._error(exc, request.id)
        except Exception as exc:  # one request's bug must not end the connection's live feed
            log.error("ws_history_failed", peer=self._peer, error=repr(exc), exc_info=exc)
            self._send(msg.Error(id=request.id, code="internal", message="internal error"))
        finally:
            self._histories.pop(key, None)

    async def _stream_history(self, request: msg.History) -> None:
        history = await self._service.history(
            request.exchange,
            request.symbol,
            request.start,
            request.end,
            request.chunk,
            may_add="write" in self._principal.scopes,
            backfill=self._backfill,
        )
        wire = self.feed.wire
        seq = 0
        async with contextlib.aclosing(history.chunks()) as chunks:
            async for chunk in chunks:
                # Deep books take as long to encode as to decode: off the loop, bounded.
                message = msg.HistoryChunk(id=request.id, seq=seq, data=chunk)
                await self.feed.put_history(await self._service.offload(encode, message, wire))
                seq += 1
        done = msg.HistoryComplete(
            id=request.id,
            count=history.count,
            gaps=history.gaps,
            backfilled=history.backfilled,
            gaps_truncated=history.gaps_truncated,
        )
        self._send(done)

    async def _cancel(self, request_id: msg.RequestId) -> None:
        task = self._histories.get(request_id)
        if task is None:
            raise NotFound(f"id: no running request with id {request_id!r}")
        task.cancel()
        await asyncio.wait([task])
        # Chunks queued before the cancel still go out first; none follow this answer.
        self._send(msg.Cancelled(id=request_id))

    def _send(self, answer: Any) -> None:
        self.feed.offer(encode(answer, self.feed.wire))

    def _error(self, exc: ObdError, request_id: msg.RequestId | None) -> None:
        wait = exc.retry_after_s
        retry = None if wait is None else max(1, math.ceil(wait))
        self._send(msg.Error(id=request_id, code=exc.code, message=str(exc), retry_after_s=retry))
