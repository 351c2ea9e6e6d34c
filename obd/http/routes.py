"""The `/v1` routes, `/healthz` and `/readyz`. Each handler parses its request, calls the
service layer once, and encodes the answer (JSON, or msgpack on `Accept`)."""

from typing import Any

import msgspec
from litestar import HttpMethod, Response, delete, get, post, route
from litestar.response import Stream

from obd import ndjson
from obd.errors import BadRequest
from obd.http import metrics as prometheus
from obd.http.answers import ENCODERS, AnyRequest, answer, encoded, query, service_of, wanted
from obd.service import BOOKS_PATH

MAX_BODY_BYTES = 64 * 1024  # a coin request is ~100 bytes

# The query parameters each /v1 route takes, in its `opt["query"]`: any other is a
# 400 naming it (app.py's guard), not silently ignored (`levels=5` is no depth limit).
_COIN = ("exchange", "symbol")
_RANGE = (*_COIN, "start", "end")
_SERIES = (*_COIN, "interval")  # reads may name one series of a coin by its interval


class AddCoinBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    exchange: str
    symbol: str
    interval: str | int | None = None
    depth: int | None = None


_add_coin_body = msgspec.json.Decoder(AddCoinBody)


@get("/v1/coins", opt={"scope": "read", "query": ("removed",)})
async def list_coins(request: AnyRequest) -> Response[bytes]:
    coins = await service_of(request).list_coins(query(request, "removed"))
    return answer(request, {"items": coins})


@post(
    "/v1/coins",
    opt={"scope": "write", "query": ()},
    request_max_body_size=MAX_BODY_BYTES,
)
async def add_coin(request: AnyRequest) -> Response[bytes]:
    try:
        body = _add_coin_body.decode(await request.body())
    except msgspec.ValidationError as exc:
        raise BadRequest(f"body: {exc}".replace(" - at `$.", " - at `")) from None
    except msgspec.DecodeError:
        raise BadRequest(
            'body: expected a JSON object like {"exchange": "sim", "symbol": "BTC/USDT"}'
        ) from None
    coin, created = await service_of(request).add_coin(
        body.exchange, body.symbol, body.interval, body.depth
    )
    return answer(request, coin, 201 if created else 200)


@delete("/v1/coins", opt={"scope": "write", "query": _COIN}, status_code=200)
async def remove_coin(request: AnyRequest) -> Response[bytes]:
    coin = await service_of(request).remove_coin(
        query(request, "exchange"), query(request, "symbol")
    )
    return answer(request, coin)


@get("/v1/availability", opt={"scope": "read", "query": _COIN})
async def availability(request: AnyRequest) -> Response[bytes]:
    found = await service_of(request).availability(
        query(request, "exchange"), query(request, "symbol")
    )
    return answer(request, found)


@get(
    BOOKS_PATH,
    opt={"scope": "read", "query": (*_RANGE, "interval", "format", "limit", "cursor")},
)
async def books(request: AnyRequest) -> Response[Any]:
    service = service_of(request)
    exchange, symbol = query(request, "exchange"), query(request, "symbol")
    start, end = query(request, "start"), query(request, "end")
    interval = query(request, "interval")
    form = query(request, "format") or "json"
    # Books are read, decoded and encoded on a worker thread (a bounded few at once):
    # at depth 1000 a page costs tens of ms, which the loop owes to the live feeds.
    if form == "ndjson":
        lines = await service.stream_books_as(ndjson.lines, exchange, symbol, start, end, interval)
        return Stream(lines, media_type="application/x-ndjson")
    if form != "json":
        raise BadRequest(f"format: expected 'json' or 'ndjson', got {form!r:.40}")
    media_type = wanted(request)
    body = await service.books_as(
        ENCODERS[media_type],
        exchange,
        symbol,
        start,
        end,
        query(request, "limit"),
        query(request, "cursor"),
        interval,
    )
    return encoded(body, media_type)


@get(f"{BOOKS_PATH}/latest", opt={"scope": "read", "query": _SERIES})
async def latest(request: AnyRequest) -> Response[bytes]:
    snapshot = await service_of(request).latest(
        query(request, "exchange"), query(request, "symbol"), query(request, "interval")
    )
    return answer(request, snapshot)


@get("/v1/coverage", opt={"scope": "read", "query": (*_RANGE, "interval", "sources", "fillable")})
async def coverage(request: AnyRequest) -> Response[bytes]:
    found = await service_of(request).coverage(
        query(request, "exchange"),
        query(request, "symbol"),
        query(request, "start"),
        query(request, "end"),
        query(request, "sources"),
        query(request, "fillable"),
        interval=query(request, "interval"),
    )
    return answer(request, found)


_PROBE = [HttpMethod.GET, HttpMethod.HEAD]  # HEAD: the status alone, for a supervisor


@route("/healthz", http_method=_PROBE)
async def healthz(request: AnyRequest) -> Response[bytes]:
    """Liveness: the loop answered and the writer commits. A stale exchange is not a
    reason to restart the daemon, so it does not fail this (it fails `/readyz`)."""
    alive = service_of(request).liveness()
    return answer(request, alive, 200 if alive.status == "ok" else 503)


@route("/readyz", http_method=_PROBE)
async def readyz(request: AnyRequest) -> Response[bytes]:
    """Readiness: every coin fresh (a snapshot within 3 intervals + 30 s) and the writer ok."""
    health = await service_of(request).health()
    return answer(request, health, 200 if health.status == "ok" else 503)


@get("/metrics", opt={"scope": "read"})
async def metrics(request: AnyRequest) -> Response[bytes]:
    """prometheus_client's text exposition; its content type names the charset itself."""
    service = service_of(request)
    health = await service.health()  # each coin's newest snapshot, read off the loop
    state = request.app.state
    body = prometheus.exposition(state.metrics, service.stats(), health, state.hub)
    return Response(body, headers={"content-type": prometheus.CONTENT_TYPE})


HANDLERS = [
    *(list_coins, add_coin, remove_coin, availability, books, latest, coverage),
    *(healthz, readyz, metrics),
]
