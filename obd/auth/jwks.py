"""An external issuer's public keys (its JWKS), from a URL or a file, cached.

Keys are fetched on first use and again after `refresh_s`, or when a token names a
`kid` not in the cache (the issuer rotated its keys) — but at most once per
`MIN_REFETCH_S`, so tokens with made-up kids cannot make obd hammer the issuer.
"""

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import structlog
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from obd.errors import Unauthorized

log = structlog.get_logger("obd.auth")

MIN_REFETCH_S = 10.0  # at most one fetch per 10 s however many unknown kids arrive
FETCH_TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 1024 * 1024  # a JWKS is a few KiB


class RemoteKeys:
    """The keys at `url` (http/https) or in `path`; `keys_for(kid)` refreshes as needed."""

    def __init__(self, *, url: str = "", path: Path | None = None, refresh_s: float) -> None:
        self._url = url
        self._path = path
        self._refresh_s = refresh_s
        self._keys: KeySet | None = None
        self._fetched_at = -float("inf")  # monotonic s
        self._lock = asyncio.Lock()

    async def keys_for(self, kid: str | None) -> KeySet:
        """The key set, fresh enough to hold `kid` if the issuer has it."""
        if self._has(kid) and time.monotonic() - self._fetched_at < self._refresh_s:
            return self._checked(self._keys)
        async with self._lock:  # one fetch however many requests wait
            if not self._has(kid) and time.monotonic() - self._fetched_at >= MIN_REFETCH_S:
                await self._fetch()
        return self._checked(self._keys)

    def _has(self, kid: str | None) -> bool:
        if self._keys is None:
            return False
        return any(key.kid == kid for key in self._keys) or (
            kid is None and len(self._keys.keys) == 1
        )

    def _checked(self, keys: KeySet | None) -> KeySet:
        if keys is None:
            raise Unauthorized("invalid token: the issuer's keys are not available")
        return keys

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            raw = await asyncio.to_thread(self._read)
            self._keys = KeySet.import_key_set(_key_set(json.loads(raw)))
        except (OSError, ValueError, JoseError) as exc:
            # Keep the old keys: an issuer that is briefly down must not lock users out.
            log.warning("jwks_fetch_failed", source=self._url or str(self._path), error=str(exc))

    def _read(self) -> bytes:
        if self._path is not None:
            return self._path.read_bytes()[:MAX_JWKS_BYTES]
        request = urllib.request.Request(self._url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            return bytes(response.read(MAX_JWKS_BYTES))


_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "k")  # JWK members that hold secrets


def _key_set(value: Any) -> Any:
    """Only public keys, and never symmetric ones: a JWKS is public."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise ValueError("not a JWKS")
    public = [k for k in value["keys"] if isinstance(k, dict) and k.get("kty") != "oct"]
    return {"keys": [{n: v for n, v in k.items() if n not in _PRIVATE} for k in public]}
