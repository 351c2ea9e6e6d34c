"""Builds the Litestar app: routes, the auth guard, and the one error mapping."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from litestar import Litestar, Request, Response, asgi
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers import ASGIRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.routes import HTTPRoute
from litestar.types import Message, Receive, Scope, Send

from obd.auth import Authenticator, OpenAccess, require
from obd.errors import BadRequest, ObdError
from obd.http import errors, openapi, page, routes, summary
from obd.http.metrics import instrument
from obd.http.origins import BrowserGuard, allowed_names, public_base
from obd.http.ws.hub import Hub
from obd.http.ws.route import ws
from obd.metrics import Metrics
from obd.service import Service

if TYPE_CHECKING:
    from obd.http.mcp_mount import McpApp
    from obd.http.oauth import TokenEndpoint

log = structlog.get_logger("obd.http")


def create_app(
    service: Service,
    authenticator: Authenticator,
    *,
    mcp: "McpApp | None" = None,
    hub: Hub | None = None,
    metrics: Metrics | None = None,
    oauth: "TokenEndpoint | None" = None,
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
    public_url: str = "",
) -> Litestar:
    """`oauth` (token auth on) adds /oauth/token and the /.well-known documents; `host`
    (the configured one) and `allowed_hosts` are, beside the loopback names, the names
    a request may use with auth off; `public_url` is what obd calls itself in links;
    `metrics` are the daemon's (its writer counts into them too)."""
    names = allowed_names(host, allowed_hosts)
    handlers = [
        *routes.HANDLERS,
        *summary.HANDLERS,
        *page.HANDLERS,
        ws,
        *([_mcp_mount(mcp)] if mcp else []),
    ]
    if oauth is not None:
        from obd.http import clients as client_routes
        from obd.http import oauth as oauth_routes

        handlers += [*oauth_routes.HANDLERS, *client_routes.HANDLERS]
    app = Litestar(
        route_handlers=handlers,
        lifespan=[mcp.lifespan] if mcp else [],
        guards=[_scope_guard, _known_query],
        middleware=[
            DefineMiddleware(
                BrowserGuard,
                names=names,
                check_names=isinstance(authenticator, OpenAccess),
            )
        ],
        before_send=[_options_allow],
        exception_handlers={ObdError: _obd_error, HTTPException: _http_error, Exception: _crash},
        logging_config=None,
        openapi_config=openapi.config(),
        debug=False,
    )
    openapi.describe(app, auth=not isinstance(authenticator, OpenAccess))
    app.state.methods = {
        route.path: ", ".join(sorted(route.methods))
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }
    app.state.service = service
    app.state.authenticator = authenticator
    app.state.oauth = oauth
    app.state.public_base = lambda scope: public_base(scope, public_url, names)
    app.state.hub = hub or Hub()  # the daemon's is fed by the writer; a bare app's stays quiet
    app.state.metrics = metrics or Metrics()  # the daemon's writer counts into the same one
    instrument(app, app.state.metrics)
    return app


async def _options_allow(message: Message, scope: Scope) -> None:
    """`OPTIONS` lists every method of the path in `Allow`, as a 405 does: Litestar's own
    OPTIONS answer lists only those of the first handler registered for the path."""
    if message["type"] == "http.response.start" and scope.get("method") == "OPTIONS":
        allow = scope["app"].state.methods.get(scope.get("path_template") or "")
        if allow is not None:
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            message["headers"] = [*headers, (b"allow", allow.encode())]


def _mcp_mount(mcp: "McpApp") -> ASGIRouteHandler:
    """MCP over streamable HTTP at /mcp, behind the same guard as every route: a token
    needs `read` to connect; add_coin and remove_coin check `write` per call."""

    @asgi("/mcp", is_mount=True, copy_scope=True, opt={"scope": "read"})
    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await mcp(scope, receive, send)

    return mcp_endpoint


async def _scope_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Every route names its scope in `opt`; routes without one (healthz) are open."""
    scope = handler.opt.get("scope")
    if scope is None:
        return
    authenticator: Authenticator = connection.app.state.authenticator
    principal = await authenticator.authenticate(connection.headers.get("authorization"))
    require(principal, scope)


async def _known_query(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """A route that lists its query parameters (`opt["query"]`) refuses any other, by
    name: a misspelt or unsupported one would otherwise be silently ignored."""
    takes = handler.opt.get("query")
    if takes is None:
        return
    unknown = sorted(set(connection.query_params) - set(takes))
    if unknown:
        listed = ", ".join(repr(name[:40]) for name in unknown[:5])
        allowed = ", ".join(takes) or "none"
        raise BadRequest(f"unknown query parameter {listed}; this route takes: {allowed}")


def error_response(
    status: int,
    code: str,
    message: str,
    accept: str | None = None,
    retry_after_s: float | None = None,
) -> Response[bytes]:
    """The error body in the media type the request's `accept` asked for (JSON else)."""
    content, media_type = errors.encoded(code, message, accept)
    headers = errors.headers(status, retry_after_s) or None
    return Response(content, status_code=status, media_type=media_type, headers=headers)


def _obd_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ObdError)
    status = errors.status(exc)
    accept = request.headers.get("accept")
    response = error_response(status, exc.code, str(exc), accept, exc.retry_after_s)
    if status == 401 and request.scope.get("raw_path", b"").startswith(b"/mcp"):
        # RFC 9728 §5.1: tell an MCP client where to learn how to get a token.
        # Never the request's own Host unchecked: a forged one would send the client
        # (and its credentials) to another server.
        base = request.app.state.public_base(request.scope)
        metadata = base + "/.well-known/oauth-protected-resource/mcp"
        challenge = f'{errors.CHALLENGE}, resource_metadata="{metadata}"'
        response.headers["WWW-Authenticate"] = challenge
    return response


def _http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    code = errors.code_for_status(exc.status_code)
    accept = request.headers.get("accept")
    response = error_response(exc.status_code, code, str(exc.detail), accept)
    for name, value in (exc.headers or {}).items():  # a 405's `Allow` (RFC 9110 §15.5.6)
        response.headers[name] = value
    return response


def _crash(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error(
        "request_failed", path=request.url.path, error=f"{type(exc).__name__}: {exc}", exc_info=exc
    )
    message = "internal error; the daemon log has the details"
    return error_response(500, ObdError.code, message, request.headers.get("accept"))
