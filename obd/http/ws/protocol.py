"""uvicorn's sans-I/O WebSocket protocol with one addition: a direct writer in the
connection's ASGI scope (`extensions["obd.direct"]`), so the hub can put one
pre-framed message on many sockets without a task switch, an ASGI event and a
re-framing per socket.

A server frame is never masked (RFC 6455 §5.1), so a message's frame is the same bytes
for every client: the hub frames it once (`frame`) and each write is one
`transport.write` (a C call under uvloop). Flow control is uvicorn's: while a
socket's transport is paused the writer refuses, the frame is queued on the client's
`Feed` instead, and its sender waits for `writable` before writing.

Under another ASGI server the extension is absent and frames go through the ASGI `send`.
"""

import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["DIRECT", "DirectWriter", "Protocol", "frame"]

DIRECT = "obd.direct"  # the scope extension's name

_TEXT, _BINARY = 0x81, 0x82  # FIN + opcode: every message is one unfragmented frame


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
    """Writes whole frames to one connection's transport, bypassing ASGI `send`."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> bool:
        """Write `data` (whole frames) now if the socket takes it; False when it is paused
        (the peer reads slowly), closing or gone: queue it and wait for `wait_writable`."""
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or not protocol.writable.is_set():
            return False
        protocol.transport.write(data)
        return True

    @property
    def gone(self) -> bool:
        """Closing or closed: nothing written now would reach the client."""
        return self._protocol.close_sent or self._protocol.disconnected

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()


class Protocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol that also offers a `DirectWriter`."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The app's task is created but has not run yet: the extension is there before
        # the handshake reaches it. A refused handshake never made a scope.
        if self.handshake_initiated and not self.close_sent:
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[DIRECT] = DirectWriter(self)
