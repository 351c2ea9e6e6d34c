"""The `/v1/ws` protocol's messages: client requests (a tagged union on `op`) and the
server's answers (tagged on `type`), as msgspec Structs decoded and encoded at the edge.
"""

from typing import Annotated, Any

import msgspec

from obd.errors import RequestError
from obd.model import Gap, Snapshot
from obd.service.history import MAX_CHUNK

__all__ = [
    "Cancel",
    "Cancelled",
    "Error",
    "History",
    "HistoryChunk",
    "HistoryComplete",
    "Latest",
    "LatestAnswer",
    "Request",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "decode_request",
]

RequestId = str | int  # any id a client picks; echoed back as given

# -- client requests --


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: RequestId | None = None


class _Coin(_Request, frozen=True, kw_only=True):
    exchange: str
    symbol: str


class Subscribe(_Coin, frozen=True, kw_only=True, tag="subscribe", tag_field="op"):
    pass


class Unsubscribe(_Coin, frozen=True, kw_only=True, tag="unsubscribe", tag_field="op"):
    pass


class Latest(_Coin, frozen=True, kw_only=True, tag="latest", tag_field="op"):
    pass


class History(_Coin, frozen=True, kw_only=True, tag="history", tag_field="op"):
    start: int | str
    end: int | str
    chunk: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHUNK)] | None = None


class Cancel(_Request, frozen=True, kw_only=True, tag="cancel", tag_field="op"):
    id: RequestId  # the id of the running request to cancel


Request = Subscribe | Unsubscribe | Latest | History | Cancel
OPS = ("subscribe", "unsubscribe", "latest", "history", "cancel")


class _Envelope(msgspec.Struct, frozen=True):
    """Just enough of any frame to echo its id and name its op in an error."""

    op: Any = None
    id: Any = None


_json_requests = msgspec.json.Decoder(Request)
_msgpack_requests = msgspec.msgpack.Decoder(Request)
_json_envelope = msgspec.json.Decoder(_Envelope)
_msgpack_envelope = msgspec.msgpack.Decoder(_Envelope)


def decode_request(frame: str | bytes) -> Request:
    """A text frame is JSON, a binary frame msgpack; errors name the field at fault."""
    try:
        if isinstance(frame, bytes):
            return _msgpack_requests.decode(frame)
        return _json_requests.decode(frame)
    except msgspec.ValidationError as exc:
        envelope = _envelope(frame)
        if envelope is None:
            raise RequestError(_NOT_AN_OBJECT.format(_form(frame))) from None
        raise RequestError(_explain(str(exc), envelope), _echo(envelope.id)) from None
    except msgspec.DecodeError:
        raise RequestError(_NOT_AN_OBJECT.format(_form(frame))) from None


_NOT_AN_OBJECT = (
    "frame: not a {} object; send e.g. "
    '{{"op": "subscribe", "exchange": "sim", "symbol": "BTC/USDT"}}'
)


def _form(frame: str | bytes) -> str:
    return "msgpack" if isinstance(frame, bytes) else "JSON"


def _envelope(frame: str | bytes) -> _Envelope | None:
    """None when the frame is not an object at all (a JSON array, a number)."""
    try:
        if isinstance(frame, bytes):
            return _msgpack_envelope.decode(frame)
        return _json_envelope.decode(frame)
    except msgspec.MsgspecError:
        return None


def _echo(value: Any) -> RequestId | None:
    """The frame's id if it is one a request may carry (msgspec decodes a JSON integer
    of any size as `Any`, but a request's id, like every msgpack integer, fits 64 bits)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value if isinstance(value, str) or -(2**63) <= value < 2**64 else None


def _explain(error: str, envelope: _Envelope) -> str:
    """msgspec's "Object missing required field `end` - at `$`" as "end: required"."""
    if envelope.op is None:
        return f"op: required, one of {', '.join(OPS)}"
    if envelope.op not in OPS:
        return f"op: unknown {envelope.op!r:.40}; expected one of {', '.join(OPS)}"
    message, _, where = error.partition(" - at `$")
    if message.startswith("Object missing required field `"):
        return f"{message.split('`')[1]}: required (op {envelope.op})"
    if message.startswith("Object contains unknown field `"):
        return f"{message.split('`')[1]}: unknown field for op {envelope.op}"
    field = where.strip("`.").split(".")[0].split("[")[0]
    return f"{field or 'frame'}: {message[:1].lower()}{message[1:]}"


# -- server answers: `type` first, then `id` when the request had one --


class _Answer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    id: RequestId | None = None


class Subscribed(_Answer, frozen=True, kw_only=True, tag="subscribed"):
    exchange: str
    symbol: str


class Unsubscribed(_Answer, frozen=True, kw_only=True, tag="unsubscribed"):
    exchange: str
    symbol: str


class LatestAnswer(_Answer, frozen=True, kw_only=True, tag="latest"):
    data: Snapshot


class HistoryChunk(_Answer, frozen=True, kw_only=True, tag="history_chunk"):
    seq: int
    data: list[Snapshot]


class HistoryComplete(_Answer, frozen=True, kw_only=True, tag="history_complete"):
    count: int
    gaps: list[Gap]
    backfilled: int
    gaps_truncated: bool = False


class Cancelled(_Answer, frozen=True, kw_only=True, tag="cancelled"):
    pass


class Error(_Answer, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str
    retry_after_s: int | None = None  # whole seconds until asking again may succeed
