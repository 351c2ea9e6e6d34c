"""`TokenAuth`: the `Authenticator` for bearer JWTs — obd's own, and optionally those
of an external OAuth server (its JWKS). Every transport calls it through the seam.
"""

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from joserfc.jwk import Key

from obd.auth import Principal
from obd.auth.jwks import RemoteKeys
from obd.auth.tokens import Verified, Verifier, token_header
from obd.config import Config
from obd.errors import Unauthorized
from obd.storage.clients import Client

CLIENT_CACHE_S = 1.0  # a removed client's tokens fail within this (other processes too)
CLIENT_CACHE_ENTRIES = 10_000  # only verified subjects get in; cleared when full
VERIFIED_CACHE_ENTRIES = 4_096  # tokens (~500 bytes each) kept verified; cleared when full

Lookup = Callable[[str], Awaitable[Client | None]]


def bearer_token(authorization: str | None) -> str:
    if authorization is None:
        raise Unauthorized("this needs a bearer token (Authorization: Bearer ...)")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected an Authorization: Bearer token")
    return token.strip()


class ClientCache:
    """Which clients exist, asked of the database at most once per `CLIENT_CACHE_S`
    per client: a token check then costs no query, and a removal still bites fast."""

    def __init__(self, lookup: Lookup, ttl_s: float = CLIENT_CACHE_S) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._seen: dict[str, tuple[float, Client | None]] = {}

    async def get(self, client_id: str) -> Client | None:
        now = time.monotonic()
        hit = self._seen.get(client_id)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        client = await self._lookup(client_id)
        if len(self._seen) >= CLIENT_CACHE_ENTRIES:
            self._seen.clear()
        self._seen[client_id] = (now, client)
        return client

    def forget(self, client_id: str) -> None:
        self._seen.pop(client_id, None)


class TokenAuth:
    """Tokens obd signed (checked against the clients table), or, with `external`, the
    tokens an external issuer signed (its subjects are not obd clients)."""

    def __init__(
        self,
        local: Verifier,
        local_kid: str | None,
        known: ClientCache,
        external: tuple[Verifier, RemoteKeys] | None = None,
        *,
        leeway_s: int = 0,
    ) -> None:
        self._local = local
        self._local_kid = local_kid
        self._known = known
        self._external = external
        self._leeway_s = leeway_s
        # Tokens that verified, until they expire: a client sends the same token on
        # every request, and a signature check costs ~250 us (ES256), a lookup ~1 us.
        # Only successes are kept: failures are the attacker's to vary without end.
        self._verified: dict[str, tuple[Verified, bool]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        hit = self._verified.get(token)
        if hit is None or hit[0].expires_at <= time.time() - self._leeway_s:
            hit = await self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_ENTRIES:
                self._verified.clear()
            self._verified[token] = hit
        verified, local = hit
        if not local:
            return Principal(subject=verified.subject, scopes=verified.scopes)
        client = await self._known.get(verified.subject)
        if client is None:
            raise Unauthorized("invalid token: its client was removed")
        # Scopes narrowed since the token was issued apply at once, too.
        return Principal(subject=verified.subject, scopes=verified.scopes & client.scopes)

    def forget(self, client_id: str) -> None:
        """The client was removed in this process: its tokens fail from now on."""
        self._known.forget(client_id)

    async def _verify(self, token: str) -> tuple[Verified, bool]:
        """(claims, signed by obd): routed by `kid`, obd's own or the external issuer's."""
        kid = token_header(token).get("kid")
        if self._external is None or kid == self._local_kid:
            return self._local.verify(token), True
        verifier, keys = self._external
        found = await keys.keys_for(kid if isinstance(kid, str) else None)
        return verifier.verify(token, found), False


def build(config: Config, key: Key, lookup: Lookup) -> TokenAuth:
    auth = config.auth
    local = Verifier(key, [auth.algorithm], auth.issuer, auth.audience, auth.leeway_s)
    return TokenAuth(local, key.kid, ClientCache(lookup), _external(config), leeway_s=auth.leeway_s)


def _external(config: Config) -> tuple[Verifier, RemoteKeys] | None:
    ext = config.auth.external
    if not ext.issuer:
        return None
    path = Path(config.base_dir, ext.jwks_file) if ext.jwks_file else None
    keys = RemoteKeys(url=ext.jwks_url, path=path, refresh_s=ext.refresh_s)
    verifier = Verifier(None, list(ext.algorithms), ext.issuer, ext.audience, config.auth.leeway_s)
    return verifier, keys
