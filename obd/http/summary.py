"""`/v1/summary` and `/v1/coverage/grid`: what the status page draws, from plain columns
and the gap ledger only (no book is decoded), each useful on its own."""

from typing import Any

from litestar import Response, get

from obd.http.answers import AnyRequest, answer, query, service_of
from obd.service import SummaryRow

__all__ = ["HANDLERS", "SUMMARY_COLUMNS"]

_RANGE = ("exchange", "symbol", "start", "end")
# The summary columns `/v1/summary` answers, `ts` first (docs/FORMAT.md describes each).
SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    name for name in SummaryRow.__struct_fields__ if name not in ("bids", "asks")
)
DEFAULT_ROWS = "1000"  # the service's cap: one page draws a chart


@get("/v1/summary", opt={"scope": "read", "query": (*_RANGE, "every", "limit")})
async def summary(request: AnyRequest) -> Response[bytes]:
    """Columnar: `{"columns": {"ts": [...], "mid": [...], ...}, "next"}`; `next` is the
    `start` of the following page (null: the range is done)."""
    page = await service_of(request).summaries(
        query(request, "exchange"),
        query(request, "symbol"),
        query(request, "start"),
        query(request, "end"),
        query(request, "limit") or DEFAULT_ROWS,
        query(request, "every"),
    )
    columns: dict[str, list[Any]] = {name: [] for name in SUMMARY_COLUMNS}
    for row in page.rows:
        for name, values in columns.items():
            values.append(getattr(row, name))
    return answer(request, {"columns": columns, "next": page.next_start})


@get("/v1/coverage/grid", opt={"scope": "read", "query": (*_RANGE, "bucket")})
async def coverage_grid(request: AnyRequest) -> Response[bytes]:
    found = await service_of(request).coverage_grid(
        query(request, "exchange"),
        query(request, "symbol"),
        query(request, "start"),
        query(request, "end"),
        query(request, "bucket"),
    )
    return answer(request, found)


HANDLERS = [summary, coverage_grid]
