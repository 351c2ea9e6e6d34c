"""The JWTs obd signs and checks: the signing key, issuing, and verification pinned to
one algorithm list, one issuer and one audience (docs/AUTH.md)."""

import base64
import contextlib
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

import msgspec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, OctKey

from obd.auth import SCOPES
from obd.config import Config
from obd.errors import ConfigError, Unauthorized
from obd.files import publishing

MAX_TOKEN_BYTES = 8 * 1024  # obd's are ~500 bytes; a huge "token" is refused unparsed
HS256_KID = "obd-hs256"  # not a thumbprint: that would be a hash of the secret


class IssuedToken(msgspec.Struct, frozen=True):
    """RFC 6749 §5.1 success body."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"


def signing_key(config: Config) -> Key:
    """The key obd signs with: the HS256 secret, or the ES256 key file (made on first use)."""
    if config.auth.algorithm == "HS256":
        return OctKey.import_key(config.auth.secret.encode(), {"kid": HS256_KID})
    path = config.signing_key_path
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    """A new P-256 key, mode 0600, published whole: a concurrent `obd token` sees
    either no file or the whole file, and the first writer wins."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    body = json.dumps(key.as_dict(private=True)).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError), publishing(path) as partial:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(body)


def _read_key_file(path: Path) -> Key:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"auth.key_file: {path} is readable by others; chmod 600 it")
    try:
        key = ECKey.import_key(json.loads(path.read_bytes()))
    except (ValueError, JoseError) as exc:
        raise ConfigError(f"auth.key_file: {path} is not an EC private key (JWK)") from exc
    if not key.is_private:
        raise ConfigError(f"auth.key_file: {path} holds no private key")
    key.ensure_kid()
    return key


def public_jwks(key: Key) -> dict[str, Any]:
    """`/.well-known/jwks.json`: the public half; an HS256 secret is never published."""
    if isinstance(key, OctKey):
        return {"keys": []}
    return dict(KeySet([key]).as_dict(private=False, use="sig", alg="ES256"))


class Issuer:
    """Signs access tokens for clients."""

    def __init__(self, key: Key, config: Config) -> None:
        self._key = key
        self._alg = config.auth.algorithm
        self._issuer = config.auth.issuer
        self._audience = config.auth.audience
        self.lifetime_s = config.auth.token_lifetime_s

    def issue(self, subject: str, scopes: frozenset[str]) -> IssuedToken:
        now = int(time.time())
        scope = " ".join(sorted(scopes))
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_s,
            "jti": secrets.token_urlsafe(12),
            "scope": scope,
        }
        header = {"alg": self._alg, "kid": self._key.kid}
        token = jwt.encode(header, claims, self._key, algorithms=[self._alg])
        return IssuedToken(access_token=token, expires_in=self.lifetime_s, scope=scope)


class Verified(msgspec.Struct, frozen=True):
    subject: str
    scopes: frozenset[str]
    expires_at: int  # `exp`, s since the epoch


class Verifier:
    """Checks a token's signature against `keys` with the pinned `algorithms`, then its
    exp/nbf/iat (with `leeway_s`), iss and aud. Every failure is Unauthorized."""

    def __init__(
        self,
        keys: Key | KeySet | None,
        algorithms: list[str],
        issuer: str,
        audience: str,
        leeway_s: int,
    ) -> None:
        self.keys = keys
        self._algorithms = list(algorithms)  # never "none": joserfc refuses it unless listed
        self._claims = jwt.JWTClaimsRegistry(
            leeway=leeway_s,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        )

    def verify(self, token: str, keys: Key | KeySet | None = None) -> Verified:
        """`keys` overrides the verifier's own (an external issuer's, freshly fetched)."""
        use = keys or self.keys
        if use is None:
            raise Unauthorized("invalid token: no keys to check it with")
        try:
            claims = jwt.decode(token, use, algorithms=self._algorithms).claims
            self._claims.validate(claims)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            # ValueError covers bad base64, bad JSON and joserfc's "Invalid key".
            raise Unauthorized(f"invalid token: {_reason(exc)}") from None
        return Verified(
            subject=claims["sub"],
            scopes=_scopes(claims),
            expires_at=_int(claims["exp"]),
        )


def token_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header: only to pick which keys to verify with."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise Unauthorized("invalid token: not a JWT")
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:
        raise Unauthorized("invalid token: not a JWT") from None
    if not isinstance(header, dict):
        raise Unauthorized("invalid token: not a JWT")
    return header


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """`scope` (RFC 8693/9068: space-separated) or `scp` (a list, some issuers), kept to
    the scopes obd knows."""
    raw = claims.get("scope", claims.get("scp", ""))
    names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(name for name in names if isinstance(name, str)) & SCOPES


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _reason(exc: Exception) -> str:
    """A short, safe reason: joserfc's error names (never the token's content)."""
    if isinstance(exc, JoseError):
        return (exc.error + (f" ({exc.description})" if exc.description else ""))[:120]
    return "malformed"
