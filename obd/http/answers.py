"""What every `/v1` handler does around its one service call: find the service, read a
query parameter as given, and answer in JSON, or msgpack when `Accept` names it."""

from typing import Any

import msgspec
from litestar import Request, Response

from obd.service import Service

__all__ = ["ENCODERS", "AnyRequest", "answer", "encoded", "query", "service_of", "wanted"]

AnyRequest = Request[Any, Any, Any]

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()
ENCODERS = {"application/msgpack": _msgpack.encode, "application/json": _json.encode}


def service_of(request: AnyRequest) -> Service:
    service: Service = request.app.state.service
    return service


def query(request: AnyRequest, name: str) -> str | None:
    """The parameter as the client wrote it (the service parses it, and names it when it
    is wrong); None when absent."""
    value = request.query_params.get(name)
    return None if value is None else str(value)


def wanted(request: AnyRequest) -> str:
    """The answer's media type: msgpack if `Accept` names it, else JSON."""
    if "application/msgpack" in request.headers.get("accept", ""):
        return "application/msgpack"
    return "application/json"


def encoded(body: bytes, media_type: str, status: int = 200) -> Response[bytes]:
    return Response(body, status_code=status, media_type=media_type)


def answer(request: AnyRequest, payload: Any, status: int = 200) -> Response[bytes]:
    """`payload` encoded as the client asked."""
    media_type = wanted(request)
    return encoded(ENCODERS[media_type](payload), media_type, status)
