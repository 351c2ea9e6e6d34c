"""uvicorn's sans-I/O WebSocket protocol with one addition: a direct writer in the
connection's ASGI scope (`extensions["obd.direct"]`), so the hub can put one
pre-framed message on many sockets without a task switch, an ASGI event and a
re-framing per socket.

A server frame is never masked (RFC 6455 §5.1), so a message's frame is the same bytes
for every client: the hub frames it once (`frame`) and each write is one
`transport.write` (a C call under uvloop). Flow control is uvicorn's: while a
socket's transport is paused the writer refuses, the frame is queued on the client's
`Feed` instead, and its sender waits for `writable` before writing.

Keepalive is uvicorn's (a ping every `ws_ping_interval`, closed with 1011 when the pong
is `ws_ping_timeout` late), with two savings for a daemon with many subscribers: a
connection whose TCP peer acknowledged data within the last quarter of the interval
is alive (its kernel answered; a peer that stops reading is dropped as too slow), so
it is not pinged this time; and pings fall on a whole-second grid, so many connections'
pings share one wake-up. A live subscriber then costs no ping, pong or timer wake-up
at all (a ping and its pong cost ~50 µs of CPU, 50 a second at 1,000 connections).

Under another ASGI server the extension is absent and frames go through the ASGI `send`.
"""

import math
import socket
import struct
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["DIRECT", "DirectWriter", "Protocol", "frame"]

DIRECT = "obd.direct"  # the scope extension's name

_TEXT, _BINARY = 0x81, 0x82  # FIN + opcode: every message is one unfragmented frame
# struct tcp_info (linux/tcp.h): tcpi_last_ack_recv, ms since the peer's last ACK
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_LAST_ACK_RECV = struct.Struct("=I")
_LAST_ACK_RECV_AT = 56


def frame(payload: bytes, text: bool) -> bytes:
    """`payload` as one unmasked WebSocket frame (RFC 6455 §5.2), header included."""
    head = _TEXT if text else _BINARY
    size = len(payload)
    if size < 126:
        return bytes((head, size)) + payload
    if size < 65_536:
        return struct.pack("!BBH", head, 126, size) + payload
    return struct.pack("!BBQ", head, 127, size) + payload


class DirectWriter:
    """Writes whole frames to one connection's transport, bypassing ASGI `send`.

    `send` is the transport's own `write` while the socket takes frames now, and None
    while it is paused (the peer reads slowly), closing or gone; the protocol keeps it
    current, so the hub's loop over a thousand sockets reads one attribute per socket
    and makes one C call (cold objects, not the code, are what that loop costs)."""

    __slots__ = ("_protocol", "send")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        self.send: Callable[[bytes], object] | None = None

    def write(self, data: bytes) -> bool:
        """Write `data` (whole frames) now if the socket takes it; False when it is paused,
        closing or gone: queue it and wait for `wait_writable`."""
        send = self.send
        if send is None:
            return False
        send(data)
        return True

    @property
    def gone(self) -> bool:
        """Closing or closed: nothing written now would reach the client."""
        return self._protocol.close_sent or self._protocol.disconnected

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()


class Protocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol that also offers a `DirectWriter`, and
    pings only connections that have not shown they are alive (module doc)."""

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = self.loop.call_at(
            math.ceil(self.loop.time() + delay), self.send_keepalive_ping
        )

    def send_keepalive_ping(self) -> None:
        assert self.ping_interval is not None
        if self.close_sent or self.transport.is_closing():
            self.ping_timer = None  # as uvicorn's: no ping, no next one
            return
        if _acked_within_ms(self.transport, self.ping_interval * 250):
            self.ping_timer = None
            self.last_ping_rtt = 0.0
            self.schedule_ping()
            return
        super().send_keepalive_ping()

    _direct: DirectWriter | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet: the extension is there before
        # the handshake reaches it. A refused handshake never made a scope.
        if self.handshake_initiated and not self.close_sent:
            extensions: dict[str, Any] = self.scope["extensions"]
            self._direct = extensions[DIRECT] = DirectWriter(self)
            self._update_direct()

    def _update_direct(self) -> None:
        """The direct writer's `send`: the transport's `write` while frames go out now."""
        direct = self._direct
        if direct is not None:
            takes = self.writable.is_set() and not self.close_sent and not self.disconnected
            direct.send = self.transport.write if takes else None

    # close_sent is set in several of uvicorn's methods: a property sees every one.
    @property
    def close_sent(self) -> bool:
        return bool(self.__dict__.get("_close_sent", False))

    @close_sent.setter
    def close_sent(self, value: bool) -> None:
        self.__dict__["_close_sent"] = value
        self._update_direct()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._update_direct()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._update_direct()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._update_direct()


def _acked_within_ms(transport: Any, limit_ms: float) -> bool:
    """Whether the TCP peer acknowledged something within `limit_ms` (Linux's
    TCP_INFO); False where that cannot be told, so the connection is pinged."""
    sock = transport.get_extra_info("socket")
    if _TCP_INFO is None or sock is None:
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return False
    if len(info) < _LAST_ACK_RECV_AT + 4:
        return False
    (since_ms,) = _LAST_ACK_RECV.unpack_from(info, _LAST_ACK_RECV_AT)
    return bool(since_ms < limit_ms)
