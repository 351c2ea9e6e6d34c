"""Loopback is not a trust boundary for browsers: any page the user opens can send
requests to 127.0.0.1 (a cross-origin form POST needs no CORS preflight) or reach it
under its own name (DNS rebinding). With auth off, this middleware refuses, on `/v1`
and `/v1/ws`, a `Host` that does not name this machine and an `Origin` (when sent)
that is not this machine; on every `/v1` route a request body must be JSON, which a
page can only send after a preflight obd never answers. `/mcp` checks the same names
itself (`obd/mcp/http.py`)."""

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from obd.errors import Forbidden, ObdError, UnsupportedMediaType
from obd.http import errors

__all__ = ["BrowserGuard", "allowed_names", "public_base"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_names(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names that mean this machine: loopback names, the configured host, and
    `[server] allowed_hosts`."""
    names = {"localhost", "127.0.0.1", "::1", host, *extra}
    return frozenset(name.strip("[]").lower() for name in names)


def public_base(scope: Scope, public_url: str, names: frozenset[str]) -> str:
    """The URL obd names itself by in what it hands out (/mcp's `resource_metadata`, the
    OAuth metadata): `[server] public_url` if set; else the request's `Host` if it names
    this machine; else the address the connection came in on. Never a foreign Host: a
    client must not be sent to a server a forged header named."""
    if public_url:
        return public_url.rstrip("/")
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1").strip()
    name = _host_name(host)
    if host and (name in names or _is_loopback(name)) and _HOST.fullmatch(host):
        return f"{scheme}://{host}"
    address, port = scope.get("server") or ("127.0.0.1", 80)
    return f"{scheme}://{f'[{address}]' if ':' in address else address}:{port}"


_HOST = re.compile(r"[A-Za-z0-9._-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class BrowserGuard:
    """ASGI middleware: `check_names` (auth off) adds the Host and Origin checks to the
    JSON-body rule that always holds."""

    def __init__(self, app: ASGIApp, *, names: Iterable[str], check_names: bool) -> None:
        self._app = app
        self._names = frozenset(names)
        self._check_names = check_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET) and (
            path == "/v1" or path.startswith("/v1/")
        ):
            try:
                self._check(scope)
            except ObdError as exc:
                await _refuse(scope, receive, send, exc)
                return
        await self._app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        headers = {name.lower(): value for name, value in scope["headers"]}
        if self._check_names:
            host = headers.get(b"host")
            if host is not None and not self._is_local(_host_name(host.decode("latin-1"))):
                raise Forbidden(f"Host {host.decode('latin-1')!r:.80}: not this machine")
            origin = headers.get(b"origin")
            if origin is not None and not self._is_local_origin(origin.decode("latin-1")):
                raise Forbidden(f"Origin {origin.decode('latin-1')!r:.80}: not allowed")
        if scope["type"] == ScopeType.HTTP and scope.get("method") in _BODY_METHODS:
            sent = headers.get(b"content-length", b"0") not in (b"0", b"")
            if sent or b"transfer-encoding" in headers:
                media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
                if media != b"application/json":
                    raise UnsupportedMediaType("body: expected Content-Type application/json")

    def _is_local(self, name: str) -> bool:
        return name in self._names or _is_loopback(name)

    def _is_local_origin(self, origin: str) -> bool:
        try:
            parts = urlsplit(origin)
            name = parts.hostname
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and name is not None and self._is_local(name)


def _host_name(host: str) -> str:
    """`[::1]:8787` → `::1`, `Localhost:80` → `localhost`: any port is this machine's."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: ObdError) -> None:
    """The HTTP error answer; a WebSocket handshake gets the same one where the server
    can send it (the `websocket.http.response` extension), else a 1008 close."""
    status = errors.status(exc)
    accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
    body, media_type = errors.encoded(exc.code, str(exc), accept)
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    if scope["type"] == ScopeType.HTTP:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": str(exc)[:120]})
        return
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
