"""Who may do what: the authentication seam every transport checks in one place.

Scopes: `read` for data, `write` for adding/removing coins, `admin` for clients.
`obd.auth.bearer.TokenAuth` (bearer JWTs, docs/AUTH.md) implements the seam beside
`OpenAccess`, which serves a daemon bound to loopback with auth disabled.
"""

from typing import Protocol

import msgspec

from obd.errors import Forbidden, ScopeError, Unauthorized

__all__ = [
    "SCOPES",
    "Authenticator",
    "Forbidden",
    "OpenAccess",
    "Principal",
    "ScopeError",
    "Unauthorized",
    "narrow",
    "parse_scopes",
    "require",
]

SCOPES = frozenset({"read", "write", "admin"})


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


def parse_scopes(text: str) -> frozenset[str]:
    """`read,write` or `read write` (OAuth's form); unknown names are an error."""
    names = frozenset(text.replace(",", " ").split())
    if unknown := names - SCOPES:
        raise ScopeError(f"unknown scope {sorted(unknown)[0][:40]!r}; expected read, write, admin")
    return names


def narrow(allowed: frozenset[str], requested: str | None) -> frozenset[str]:
    """What a client asking for `requested` gets: all it may have when it names none,
    else the requested scopes it may have; none of them is an error."""
    if requested is None or not requested.strip():
        return allowed
    granted = parse_scopes(requested) & allowed
    if not granted:
        raise ScopeError("the client may have none of the requested scopes")
    return granted
