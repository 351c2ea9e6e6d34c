"""`POST /oauth/token` (RFC 6749 §4.4 client credentials) and the public documents
beside it: `/.well-known/jwks.json`, the RFC 9728 metadata for /mcp, and the RFC 8414
metadata of obd as an authorization server. Mounted only with `[auth] enabled`.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import msgspec
import structlog
from litestar import Request, Response, get, post

from obd.auth import SCOPES, narrow
from obd.auth.clients import Client
from obd.auth.ratelimit import FailureLimit
from obd.auth.tokens import Issuer
from obd.errors import ScopeError

log = structlog.get_logger("obd.auth")
_json = msgspec.json.Encoder()
AnyRequest = Request[Any, Any, Any]
MAX_FORM_BYTES = 8 * 1024  # a token request is ~150 bytes
RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"

# (client_id, secret) -> the client if that is its secret (`Clients.verify`: scrypt off the loop)
VerifyClient = Callable[[str, str], Awaitable[Client | None]]


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: `{"error", "error_description"}` with its status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.status = status


class TokenEndpoint:
    """What `POST /oauth/token` needs: the clients, the signer, the failure limit."""

    def __init__(
        self,
        verify: VerifyClient,
        issuer: Issuer,
        limit: FailureLimit,
        jwks: dict[str, Any],
        forget: Callable[[str], None] = lambda client_id: None,
    ) -> None:
        self.verify = verify
        self.issuer = issuer
        self.limit = limit
        self.jwks = jwks
        self.forget = forget  # a client was removed: drop what the authenticator cached

    async def grant(self, request: AnyRequest) -> Response[bytes]:
        form = _form(await request.body())
        client_id, secret = _credentials(request.headers.get("authorization"), form)
        address = request.client.host if request.client else "?"
        keys = (f"client:{client_id}", f"address:{address}")
        if wait := self.limit.retry_after_s(*keys):
            return _too_many(wait)
        if _one(form, "grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
        with self.limit.attempt(*keys):
            client = await self.verify(client_id, secret)
            if client is None:
                self.limit.failed(*keys)
        if client is None:
            log.warning("token_refused", client_id=client_id[:64], address=address)
            raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
        try:
            scopes = narrow(client.scopes, _one(form, "scope"))
        except ScopeError as exc:
            raise OAuthError("invalid_scope", str(exc)) from None
        issued = self.issuer.issue(client.client_id, scopes)
        log.info("token_issued", client_id=client.client_id, scope=issued.scope)
        return _no_store(_json.encode(issued), 200)


def _form(body: bytes) -> dict[str, list[str]]:
    if len(body) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the request body is too large")
    try:
        return parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "expected a form-encoded body") from None


def _one(form: dict[str, list[str]], name: str) -> str | None:
    """RFC 6749 §3.2: a parameter must not be repeated."""
    values = form.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise OAuthError("invalid_request", f"{name} is repeated")
    return values[0]


def _credentials(authorization: str | None, form: dict[str, list[str]]) -> tuple[str, str]:
    """(client_id, secret) from HTTP Basic (RFC 6749 §2.3.1) or the form body; not both."""
    in_form = _one(form, "client_id"), _one(form, "client_secret")
    if authorization and authorization.lower().startswith("basic "):
        if in_form[1] is not None:
            raise OAuthError("invalid_request", "give the client secret once, not twice")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        name, colon, secret = decoded.partition(":")
        if not colon:
            raise OAuthError("invalid_client", "malformed Basic credentials", 401)
        return unquote(name), unquote(secret)  # §2.3.1: form-encoded, then Basic
    if in_form[0] is None or in_form[1] is None:
        raise OAuthError("invalid_client", "client_id and client_secret are required", 401)
    return in_form[0], in_form[1]


def _no_store(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response[bytes]:
    """RFC 6749 §5.1: token responses must not be cached."""
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
    )


def _too_many(wait_s: int) -> Response[bytes]:
    body = {"error": "too_many_requests", "error_description": "too many failed attempts"}
    return _no_store(_json.encode(body), 429, {"Retry-After": str(wait_s)})


def oauth_error(exc: OAuthError) -> Response[bytes]:
    body = {"error": exc.error, "error_description": str(exc)}
    headers = {"WWW-Authenticate": 'Basic realm="obd"'} if exc.status == 401 else None
    return _no_store(_json.encode(body), exc.status, headers)


def _endpoint(request: AnyRequest) -> TokenEndpoint:
    endpoint: TokenEndpoint = request.app.state.oauth
    return endpoint


@post("/oauth/token", status_code=200, request_max_body_size=MAX_FORM_BYTES)
async def token(request: AnyRequest) -> Response[bytes]:
    try:
        return await _endpoint(request).grant(request)
    except OAuthError as exc:
        return oauth_error(exc)


@get("/.well-known/jwks.json")
async def jwks(request: AnyRequest) -> dict[str, Any]:
    return _endpoint(request).jwks


@get(RESOURCE_METADATA_PATH)
async def mcp_resource(request: AnyRequest) -> dict[str, Any]:
    """RFC 9728: what an MCP client needs to get a token for /mcp."""
    base = base_url(request)
    return {
        "resource": f"{base}/mcp",
        "authorization_servers": [base],
        "scopes_supported": sorted(SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "obd",
    }


@get("/.well-known/oauth-authorization-server")
async def server_metadata(request: AnyRequest) -> dict[str, Any]:
    """RFC 8414: where the token endpoint and keys are, and what it supports."""
    base = base_url(request)
    return {
        "issuer": base,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": sorted(SCOPES),
    }


def base_url(request: Request[Any, Any, Any]) -> str:
    """obd's own URL: `[server] public_url`, or a Host naming this machine (origins.py)."""
    base: str = request.app.state.public_base(request.scope)
    return base


HANDLERS = [token, jwks, mcp_resource, server_metadata]
