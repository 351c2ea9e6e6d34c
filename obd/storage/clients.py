"""The OAuth clients table: who may ask for tokens, with which scopes.

Plain functions of a connection. A secret is stored only as a salted scrypt hash,
slow on purpose: a copied database file must not hand out working credentials.
"""

import base64
import functools
import hashlib
import hmac
import re
import secrets

import apsw
import msgspec

from obd.errors import BadRequest, Conflict, NotFound

# scrypt cost: n=2**14, r=8 takes ~40 ms and 16 MiB per check, so a guessed secret
# costs an attacker the same; the token endpoint also rate-limits failures.
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024  # bytes: above the 16 MiB these parameters need
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
SECRET_BYTES = 32  # 256 bits of randomness: the secret is never typed by hand


class Client(msgspec.Struct, frozen=True):
    client_id: str
    name: str
    scopes: frozenset[str]
    created_ts: int


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash`, parameters kept so they can be raised later."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.urlsafe_b64decode(digest + "==")
        salt_bytes = base64.urlsafe_b64decode(salt + "==")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    return hmac.compare_digest(_scrypt(secret, salt_bytes, int(n), int(r), int(p)), expected)


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown client ids against, so they cost what known ones do."""
    return hash_secret(new_secret())


def add(
    conn: apsw.Connection, name: str, scopes: frozenset[str], secret_hash: str, now: int
) -> Client:
    """A new client; hash its secret first (`hash_secret`, ~50 ms: not in a transaction)."""
    if not _NAME.fullmatch(name):
        raise BadRequest(f"name: expected 1-64 letters, digits, '.', '_' or '-', got {name!r:.80}")
    client = Client(
        client_id=f"obd-{secrets.token_hex(8)}", name=name, scopes=scopes, created_ts=now
    )
    try:
        conn.execute(
            "INSERT INTO clients (id, name, secret_hash, scopes, created_ts) "
            "VALUES (?, ?, ?, ?, ?)",
            (client.client_id, name, secret_hash, _join(scopes), now),
        )
    except apsw.ConstraintError:
        raise Conflict(f"a client named {name!r} exists; remove it first") from None
    return client


def remove(conn: apsw.Connection, name: str) -> Client:
    client = by_name(conn, name)
    if client is None:
        raise NotFound(f"no client named {name!r}")
    conn.execute("DELETE FROM clients WHERE id = ?", (client.client_id,))
    return client


def listing(conn: apsw.Connection) -> list[Client]:
    rows = conn.execute("SELECT id, name, scopes, created_ts FROM clients ORDER BY name")
    return [_client(row) for row in rows]


def by_name(conn: apsw.Connection, name: str) -> Client | None:
    row = conn.execute(
        "SELECT id, name, scopes, created_ts FROM clients WHERE name = ?", (name,)
    ).fetchone()
    return _client(row) if row else None


def by_id(conn: apsw.Connection, client_id: str) -> Client | None:
    row = conn.execute(
        "SELECT id, name, scopes, created_ts FROM clients WHERE id = ?", (client_id,)
    ).fetchone()
    return _client(row) if row else None


def with_hash(conn: apsw.Connection, client_id: str) -> tuple[Client, str] | None:
    """The client and its stored secret hash, for `verify` (run that off the loop)."""
    row = conn.execute(
        "SELECT id, name, scopes, created_ts, secret_hash FROM clients WHERE id = ?", (client_id,)
    ).fetchone()
    return (_client(row[:4]), str(row[4])) if row else None


def verify(found: tuple[Client, str] | None, secret: str) -> Client | None:
    """The client if `secret` is its secret; unknown clients cost the same ~50 ms."""
    ok = check_secret(secret, found[1] if found else _dummy_hash())
    return found[0] if found and ok else None


def _client(row: tuple[object, ...]) -> Client:
    client_id, name, scopes, created_ts = row
    return Client(
        client_id=str(client_id),
        name=str(name),
        scopes=frozenset(str(scopes).split()),
        created_ts=int(str(created_ts)),
    )


def _join(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
