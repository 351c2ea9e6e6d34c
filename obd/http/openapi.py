"""The OpenAPI 3.1 document at `/schema/openapi.json`, with Swagger UI at `/schema`.

Litestar lists the routes; obd's handlers parse their arguments in the service layer
rather than in their signatures, so this adds what Litestar cannot see: each `/v1`
route's query parameters from its `opt["query"]` (the very list the unknown-parameter
guard enforces, so the document and the server cannot disagree), the error body, the
bearer scheme and each route's scope.
"""

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute

from obd import __version__

__all__ = ["PATH", "config", "describe"]

PATH = "/schema"
_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["code", "message"],
            properties={
                "code": Schema(
                    type=OpenAPIType.STRING, description="stable; docs/HTTP.md lists every code"
                ),
                "message": Schema(
                    type=OpenAPIType.STRING, description="names the argument at fault"
                ),
            },
        )
    },
)
_PARAMETERS = {  # name: (required, description)
    "exchange": (True, "exchange id, e.g. `binance`"),
    "symbol": (True, "the exchange's unified symbol, e.g. `BTC/USDT`"),
    "start": (False, "ms since the epoch, ISO 8601 or relative (`-1d`); inclusive"),
    "end": (False, "ms, ISO 8601 or `now`; exclusive"),
    "limit": (False, "snapshots a page, 1..1000 (default 100)"),
    "cursor": (False, "the previous page's `next`"),
    "format": (False, "`json` (default, paged) or `ndjson` (the whole range, streamed)"),
    "name": (True, "the client's name"),
    "interval": (
        False,
        "which series of a coin re-added at another interval (`1s`, `5m`); "
        "default: the active one, else the one collected last",
    ),
    "removed": (False, "`true`: list removed series too (status `removed`)"),
}
_ERRORS = {
    "400": "bad input, named: a malformed argument or an unknown query parameter",
    "401": "no bearer token, or a bad one (with `[auth] enabled`)",
    "403": "the token lacks the route's scope",
    "404": "unknown coin, exchange or route; a symbol the exchange does not list",
    "503": "the exchange cannot be asked right now",
}


def config() -> OpenAPIConfig:
    bearer = SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="with `[auth] enabled`: a token from `POST /oauth/token` or `obd token` "
        "(docs/AUTH.md); on loopback with auth off no token is needed",
    )
    return OpenAPIConfig(
        title="obd",
        version=__version__,
        description="The order-book daemon's HTTP API (docs/HTTP.md).",
        path=PATH,
        render_plugins=[SwaggerRenderPlugin()],
        components=Components(security_schemes={"bearer": bearer}),
    )


def describe(app: Litestar) -> None:
    """Add query parameters, scopes and error bodies to the `/v1` operations; call once
    every route is registered (Litestar builds the document then and keeps it)."""
    document = app.openapi_schema
    document.components.schemas["Error"] = _ERROR  # Litestar fills `schemas` as it builds
    paths = document.paths or {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path not in paths:
            continue
        for handler in route.route_handlers:
            takes = handler.opt.get("query")
            if takes is None:
                continue
            for method in handler.http_methods:
                operation = getattr(paths[route.path], method.lower(), None)
                if isinstance(operation, Operation):
                    _annotate(operation, takes, handler.opt.get("scope"))


def _annotate(operation: Operation, takes: tuple[str, ...], scope: str | None) -> None:
    operation.parameters = [
        Parameter(
            name=name,
            param_in="query",
            required=_PARAMETERS[name][0],
            description=_PARAMETERS[name][1],
            schema=Schema(type=OpenAPIType.STRING),
        )
        for name in takes
    ]
    if scope is not None:
        operation.security = [{"bearer": [scope]}]
        operation.description = f"Scope: `{scope}`. " + (operation.description or "")
    error = OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Error"))
    responses = operation.responses if operation.responses is not None else {}
    for status, meaning in _ERRORS.items():
        responses.setdefault(
            status, OpenAPIResponse(description=meaning, content={"application/json": error})
        )
    operation.responses = responses
