"""The one mapping of an error to an HTTP answer: its status, the body
`{"error": {"code", "message"}}` and the headers. HTTP routes and the WebSocket
handshake's refusal both answer with it (docs/HTTP.md, docs/WEBSOCKET.md)."""

import math

import msgspec

from obd.errors import BadRequest, MethodNotAllowed, NotFound, ObdError, TooLarge

__all__ = ["CHALLENGE", "body", "code_for_status", "encoded", "headers", "status", "wants_msgpack"]

CHALLENGE = 'Bearer realm="obd"'  # WWW-Authenticate on every 401
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()
MSGPACK = "application/msgpack"
# Litestar's own refusals (no route, wrong method, body too large) in obd's codes.
_BY_STATUS: dict[int, type[ObdError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: TooLarge,
}


def status(exc: ObdError) -> int:
    """The HTTP status for `exc`; an error without a client-facing one is a 500."""
    return exc.status if 400 <= exc.status < 600 else 500


def body(code: str, message: str) -> bytes:
    return _json.encode({"error": {"code": code, "message": message}})


def wants_msgpack(accept: str | None) -> bool:
    """Whether an `Accept` header asks for msgpack, as the routes' answers read it."""
    return accept is not None and MSGPACK in accept


def encoded(code: str, message: str, accept: str | None) -> tuple[bytes, str]:
    """(body, media type) of an error, in the media type the request asked for."""
    if wants_msgpack(accept):
        return _msgpack.encode({"error": {"code": code, "message": message}}), MSGPACK
    return body(code, message), "application/json"


def headers(status: int, retry_after_s: float | None = None) -> dict[str, str]:
    """A 401's challenge; `Retry-After` (whole seconds, RFC 9110 §10.2.3) where the
    error says when to ask again."""
    found = {"WWW-Authenticate": CHALLENGE} if status == 401 else {}
    if retry_after_s is not None:
        found["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return found


def code_for_status(status: int) -> str:
    """obd's code for a refusal the web framework made by status alone."""
    return _BY_STATUS.get(status, BadRequest).code
