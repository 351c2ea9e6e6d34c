"""The OpenAPI 3.1 document at `/schema/openapi.json`, with Swagger UI at `/schema`.

Litestar lists the routes; obd's handlers parse their arguments in the service layer
and encode their answers themselves (JSON, or msgpack on `Accept`), so this adds what
Litestar cannot see: each `/v1` route's query parameters from its `opt["query"]` (the
very list the unknown-parameter guard enforces, so the document and the server cannot
disagree), with the constraints the service checks; the request and answer bodies, as
msgspec derives them from the Structs the handlers decode and encode; the error body;
the bearer scheme and each route's scope. A fuzzer (schemathesis, tests/test_fuzz.py)
holds the server to this document.
"""

import re
from typing import Any, Literal

import msgspec
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
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute

from obd import __version__
from obd.config import MAX_DEPTH
from obd.http.routes import AddCoinBody
from obd.model import Snapshot
from obd.plugin import Availability
from obd.service import CoinView, Coverage, Grid, Health, Liveness, Page

__all__ = ["PATH", "config", "describe"]

PATH = "/schema"
_REF = "#/components/schemas/{name}"
_JSON, _MSGPACK = "application/json", "application/msgpack"
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


# The service's own checks (obd/service/__init__.py: `_EXCHANGE_ID`, `_SYMBOL`).
_EXCHANGE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_SYMBOL = r"^[^\s\x00-\x1f]{1,100}$"


def _text(pattern: str | None = None, **more: Any) -> Schema:
    return Schema(type=OpenAPIType.STRING, pattern=pattern, **more)


# What the service accepts (obd/service/__init__.py): the document says what it can.
# Times cannot be a pattern (ms, ISO 8601, `now`, `-6h`): a string, and a 400 naming
# the argument for one that is not a time.
_PARAMETERS = {  # name: (required, schema, description)
    "exchange": (True, _text(_EXCHANGE), "exchange id, e.g. `binance`"),
    "symbol": (
        True,
        _text(_SYMBOL),
        "the exchange's unified symbol, e.g. `BTC/USDT`",
    ),
    "start": (False, _text(), "ms since the epoch, ISO 8601 or relative (`-1d`); inclusive"),
    "end": (False, _text(), "ms, ISO 8601 or `now`; exclusive"),
    "limit": (
        False,
        Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=1000),
        "rows a page, 1..1000 (default 100; `/v1/summary`: 1000)",
    ),
    "cursor": (False, _text(max_length=64), "the previous page's `next`"),
    "format": (
        False,
        Schema(type=OpenAPIType.STRING, enum=["json", "ndjson"]),
        "`json` (default, paged) or `ndjson` (the whole range, streamed)",
    ),
    "name": (True, _text(min_length=1), "the client's name"),
    "every": (False, _text(), "keep the first snapshot of each such bucket, e.g. `1m`, `1h`"),
    "bucket": (False, _text(), "the length of a bucket, e.g. `1h` (default), `1d`"),
    "sources": (False, _text(), "`true`: also list where present slots came from (capture runs)"),
    "fillable": (False, _text(), "`true`: also say per gap which history provider could fill it"),
    "interval": (
        False,
        _text(),
        "which series of a coin re-added at another interval (`1s`, `5m`); "
        "default: the active one, else the one collected last",
    ),
    "removed": (False, _text(), "`true`: list removed series too (status `removed`)"),
}
_ERRORS = {
    "400": "bad input, named: a malformed argument or an unknown query parameter",
    "401": "no bearer token, or a bad one (with `[auth] enabled`)",
    "403": "the token lacks the route's scope; with auth off, a foreign `Host` or `Origin`",
    "404": "unknown coin, exchange or route; a symbol the exchange does not list",
    "405": "a method the route does not take (`Allow` lists those it does)",
    "409": "a coin already collected at another interval or depth",
    "413": "a request body over the route's limit",
    "415": "a request body that is not `application/json`",
    "429": "too many requests (`Retry-After` says when to try again)",
    "503": "the exchange cannot be asked right now, or storage cannot take a write "
    "(`Retry-After` says when to try again)",
}


class CoinList(msgspec.Struct, frozen=True):
    items: list[CoinView]


class TokenForm(msgspec.Struct, frozen=True):
    """RFC 6749 §4.4.2; the client's credentials here or as HTTP Basic (§2.3.1)."""

    grant_type: Literal["client_credentials"]
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None  # space-separated, within the client's own scopes


class OAuthError(msgspec.Struct, frozen=True):
    """RFC 6749 §5.2: the token endpoint's errors (not obd's error body)."""

    error: str
    error_description: str


class SummaryColumns(msgspec.Struct, frozen=True):
    """`/v1/summary`: each summary column of the page as a list, oldest first."""

    columns: dict[str, list[int | float | bool | None]]
    next: int | None  # the `start` of the following page; null: the range is done


# (path, method): (the request body's type or None, {status: the answer's type}).
_BODIES: dict[tuple[str, str], tuple[type | None, dict[str, type]]] = {
    ("/v1/coins", "get"): (None, {"200": CoinList}),
    ("/v1/coins", "post"): (AddCoinBody, {"200": CoinView, "201": CoinView}),
    ("/v1/coins", "delete"): (None, {"200": CoinView}),
    ("/v1/availability", "get"): (None, {"200": Availability}),
    ("/v1/books", "get"): (None, {"200": Page}),
    ("/v1/books/latest", "get"): (None, {"200": Snapshot}),
    ("/v1/coverage", "get"): (None, {"200": Coverage}),
    ("/v1/coverage/grid", "get"): (None, {"200": Grid}),
    ("/v1/summary", "get"): (None, {"200": SummaryColumns}),
    ("/healthz", "get"): (None, {"200": Liveness, "503": Liveness}),
    ("/readyz", "get"): (None, {"200": Health, "503": Health}),
    ("/healthz", "head"): (None, {"200": Liveness, "503": Liveness}),  # the headers of GET
    ("/readyz", "head"): (None, {"200": Health, "503": Health}),
}
_FORM = "application/x-www-form-urlencoded"
_FORM_BODIES = {("/oauth/token", "post")}  # request bodies that are forms, not JSON
# What the service checks of a body's fields beyond their types (as for the query).
_COIN_FIELDS = {
    "exchange": {"type": "string", "pattern": _EXCHANGE},
    "symbol": {"type": "string", "pattern": _SYMBOL},
    "depth": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_DEPTH}, {"type": "null"}]},
}
_BODY_FIELDS = {"AddCoinBody": _COIN_FIELDS}
_TEXT_ANSWERS = {  # (path, method): the media type of a 200 that is not JSON
    ("/metrics", "get"): "text/plain",
}


def _auth_bodies() -> dict[tuple[str, str], tuple[type | None, dict[str, type]]]:
    """The routes mounted with `[auth] enabled` (imported then only: joserfc is heavy)."""
    from obd.auth.tokens import IssuedToken
    from obd.http.clients import ClientView, NewClient

    class ClientList(msgspec.Struct, frozen=True):
        items: list[ClientView]

    class NewClientSecret(msgspec.Struct, frozen=True):
        client_id: str
        client_secret: str
        scopes: list[str]

    errors = {"400": OAuthError, "401": OAuthError, "429": OAuthError}
    return {
        ("/v1/clients", "get"): (None, {"200": ClientList}),
        ("/v1/clients", "post"): (NewClient, {"201": NewClientSecret}),
        ("/v1/clients", "delete"): (None, {"200": ClientView}),
        ("/oauth/token", "post"): (TokenForm, {"200": IssuedToken, **errors}),
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


def describe(app: Litestar, *, auth: bool) -> None:
    """Add query parameters, bodies, scopes and error bodies to the operations; call once
    every route is registered (Litestar builds the document then and keeps it). Without
    `auth` (loopback, auth off) a request needs no token: the document says so."""
    document = app.openapi_schema
    schemas = document.components.schemas  # Litestar fills `schemas` as it builds
    schemas["Error"] = _ERROR
    paths = document.paths or {}
    bodies = {**_BODIES, **(_auth_bodies() if "/oauth/token" in paths else {})}
    types = [t for body, answers in bodies.values() for t in (body, *answers.values()) if t]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    for name, fields in _BODY_FIELDS.items():
        components[name]["properties"].update(fields)
    schemas.update({name: _schema(found) for name, found in components.items()})
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path not in paths:
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = getattr(paths[route.path], method.lower(), None)
                if not isinstance(operation, Operation):
                    continue
                _bodies(operation, (route.path, method.lower()), bodies)
                takes, scope = handler.opt.get("query"), handler.opt.get("scope")
                if takes is not None or scope is not None:  # /metrics: a scope, no query
                    _annotate(operation, takes or (), scope, auth)


def _bodies(
    operation: Operation,
    key: tuple[str, str],
    bodies: dict[tuple[str, str], tuple[type | None, dict[str, type]]],
) -> None:
    """The answers' bodies (JSON, or msgpack of the same shape on `Accept`) and the
    request body, where the handler encodes and decodes them itself."""
    responses = operation.responses if operation.responses is not None else {}
    if key in _TEXT_ANSWERS:
        media = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        responses["200"] = OpenAPIResponse(description="OK", content={_TEXT_ANSWERS[key]: media})
    body, answers = bodies.get(key, (None, {}))
    for status, kind in answers.items():
        media = OpenAPIMediaType(schema=Reference(ref=_REF.format(name=kind.__name__)))
        # The token endpoint answers JSON only (RFC 6749 §5.1); the rest honour Accept.
        content = {_JSON: media} if key in _FORM_BODIES else {_JSON: media, _MSGPACK: media}
        if kind is Page:  # `format=ndjson` streams the range, one snapshot a line
            content["application/x-ndjson"] = OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING)
            )
        found = responses.get(status)
        description = found.description if isinstance(found, OpenAPIResponse) else "OK"
        responses[status] = OpenAPIResponse(description=description, content=content)
    operation.responses = responses
    if body is not None:
        reference = Reference(ref=_REF.format(name=body.__name__))
        media_type = _FORM if key in _FORM_BODIES else _JSON
        operation.request_body = RequestBody(
            content={media_type: OpenAPIMediaType(schema=reference)}, required=True
        )
    if key in _FORM_BODIES:  # a body over the limit: obd's own error body
        error = OpenAPIMediaType(schema=Reference(ref=_REF.format(name="Error")))
        responses.setdefault("413", OpenAPIResponse(_ERRORS["413"], content={_JSON: error}))


def _annotate(operation: Operation, takes: tuple[str, ...], scope: str | None, auth: bool) -> None:
    operation.parameters = [
        Parameter(
            name=name,
            param_in="query",
            required=_PARAMETERS[name][0],
            description=_PARAMETERS[name][2],
            schema=_PARAMETERS[name][1],
        )
        for name in takes
    ]
    if scope is not None:
        # `{}`: no token is an alternative, where auth is off (OpenAPI 3.1 §4.8.30).
        operation.security = [{"bearer": [scope]}] if auth else [{"bearer": [scope]}, {}]
        operation.description = f"Scope: `{scope}`. " + (operation.description or "")
    error = OpenAPIMediaType(schema=Reference(ref=_REF.format(name="Error")))
    responses = operation.responses if operation.responses is not None else {}
    for status, meaning in _ERRORS.items():
        responses.setdefault(
            status, OpenAPIResponse(description=meaning, content={_JSON: error, _MSGPACK: error})
        )
    operation.responses = responses


_KEYWORDS = {"not": "schema_not", "if": "schema_if", "else": "schema_else"}


def _schema(found: Any) -> Any:
    """msgspec's JSON Schema (plain dicts) as Litestar's spec objects, which it renders."""
    if isinstance(found, list):
        return [_schema(item) for item in found]
    if not isinstance(found, dict):
        return found
    if "$ref" in found:
        return Reference(ref=found["$ref"])
    fields: dict[str, Any] = {}
    for key, value in found.items():
        name = _KEYWORDS.get(key) or re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
        if key == "items" and value is False:
            continue  # after prefixItems: min/maxItems already bound the length
        if key == "prefixItems" and all(item == value[0] for item in value):
            fields["items"] = _schema(value[0])  # a level [price, size]: read alike by all
            continue
        if key == "type":
            fields[name] = OpenAPIType(value)
        elif key in ("properties", "patternProperties"):
            fields[name] = {prop: _schema(sub) for prop, sub in value.items()}
        else:
            fields[name] = _schema(value)
    return Schema(**fields)
