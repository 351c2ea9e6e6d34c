"""`/v1/summary` and `/v1/coverage/grid`: what the status page draws, from plain columns
and the gap ledger only (no book is decoded), each useful on its own."""

from typing import Any

import msgspec
from litestar import Request, Response, get

from obd.service import Service, SummaryRow

__all__ = ["HANDLERS", "SUMMARY_COLUMNS"]

_RANGE = ("exchange", "symbol", "start", "end")
# The summary columns `/v1/summary` answers, `ts` first (docs/FORMAT.md describes each).
SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    name for name in SummaryRow.__struct_fields__ if name not in ("bids", "asks")
)
DEFAULT_ROWS = "1000"  # the service's cap: one page draws a chart

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()
AnyRequest = Request[Any, Any, Any]


def _service(request: AnyRequest) -> Service:
    service: Service = request.app.state.service
    return service


def _query(request: AnyRequest, name: str) -> str | None:
    value = request.query_params.get(name)
    return None if value is None else str(value)


def _respond(request: AnyRequest, payload: Any) -> Response[bytes]:
    if "application/msgpack" in request.headers.get("accept", ""):
        return Response(_msgpack.encode(payload), media_type="application/msgpack")
    return Response(_json.encode(payload), media_type="application/json")


@get("/v1/summary", opt={"scope": "read", "query": (*_RANGE, "every", "limit")})
async def summary(request: AnyRequest) -> Response[bytes]:
    """Columnar: `{"columns": {"ts": [...], "mid": [...], ...}, "next"}`; `next` is the
    `start` of the following page (null: the range is done)."""
    page = await _service(request).summaries(
        _query(request, "exchange"),
        _query(request, "symbol"),
        _query(request, "start"),
        _query(request, "end"),
        _query(request, "limit") or DEFAULT_ROWS,
        _query(request, "every"),
    )
    columns: dict[str, list[Any]] = {name: [] for name in SUMMARY_COLUMNS}
    for row in page.rows:
        for name, values in columns.items():
            values.append(getattr(row, name))
    return _respond(request, {"columns": columns, "next": page.next_start})


@get("/v1/coverage/grid", opt={"scope": "read", "query": (*_RANGE, "bucket")})
async def coverage_grid(request: AnyRequest) -> Response[bytes]:
    found = await _service(request).coverage_grid(
        _query(request, "exchange"),
        _query(request, "symbol"),
        _query(request, "start"),
        _query(request, "end"),
        _query(request, "bucket"),
    )
    return _respond(request, found)


HANDLERS = [summary, coverage_grid]
