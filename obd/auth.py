"""Who may do what: the authentication seam every transport checks in one place.

Scopes: `read` for data, `write` for adding/removing coins, `admin` for clients.
The token-issuing implementation (OAuth2 client credentials, JWTs) plugs in here
beside `OpenAccess`, which serves a daemon bound to loopback with auth disabled.
"""

from typing import Protocol

import msgspec

from obd.errors import ObdError

SCOPES = frozenset({"read", "write", "admin"})


class Unauthorized(ObdError):
    status = 401
    code = "unauthorized"


class Forbidden(ObdError):
    status = 403
    code = "forbidden"


class Principal(msgspec.Struct, frozen=True):
    subject: str
    scopes: frozenset[str]


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an `Authorization` header value; raises Unauthorized."""
        ...


class OpenAccess:
    """Auth disabled: every caller holds every scope. Only allowed on loopback."""

    async def authenticate(self, authorization: str | None) -> Principal:
        return Principal(subject="anonymous", scopes=SCOPES)


def require(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden(f"this needs the {scope!r} scope")
