"""Token auth against the real daemon: the token endpoint, the refusal matrix over
HTTP, WebSocket and MCP, revocation, and an external issuer's JWKS on loopback."""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeySet
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from obd.auth import tokens
from obd.config import load
from obd.storage import clients
from obd.storage.connect import open_writer
from obd.storage.schema import migrate
from tests.conftest import Daemon, obd, wait_for, write_config

EXT_ISSUER = "https://issuer.test"
EXT_AUDIENCE = "obd-api"
SIM = {"exchange": "sim", "symbol": "BTC/USDT"}
WRONG = "wrong-secret-4f1c9a"


class Env:
    """One daemon with auth on, its signing key, clients and an external issuer."""

    def __init__(self, directory: Path, key: Key, ext_key: Key, jwks_url: str) -> None:
        self.directory = directory
        self.config = directory / "config.toml"
        self.key = key
        self.ext_key = ext_key
        self.jwks_url = jwks_url
        self.ids: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.daemon: Daemon

    def claims(self, name: str = "reader", **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": "obd", "aud": "obd", "sub": self.ids.get(name, name)}
        claims |= {"iat": now, "exp": now + 300, "jti": "t", "scope": "read write admin"}
        return {k: v for k, v in (claims | changes).items() if v is not None}

    def token(self, name: str = "reader", *, key: Key | None = None, **changes: Any) -> str:
        key = key or self.key
        header = {"alg": "ES256", "kid": self.key.kid}
        return jwt.encode(header, self.claims(name, **changes), key, algorithms=["ES256"])

    def ext_token(self, *, key: Key | None = None, **changes: Any) -> str:
        key = key or self.ext_key
        claims = self.claims("someone", iss=EXT_ISSUER, aud=EXT_AUDIENCE) | changes
        return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key, algorithms=["ES256"])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _payload(env: Env) -> str:
    return _b64(json.dumps(env.claims()).encode())


def _unsigned(env: Env) -> str:
    return _b64(b'{"alg":"none","typ":"JWT"}') + "." + _payload(env) + "."


def _hs256_with_public_key(env: Env) -> str:
    """Key confusion: HMAC keyed with the public key a verifier might take as a secret."""
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _payload(env)
    secret = env.key.as_pem(private=False)  # type: ignore[attr-defined]
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


BAD_TOKENS: dict[str, Callable[[Env], str]] = {
    "expired": lambda e: e.token(exp=int(time.time()) - 120, iat=int(time.time()) - 600),
    "not_yet_valid": lambda e: e.token(nbf=int(time.time()) + 600),
    "wrong_signature": lambda e: e.token(key=ECKey.generate_key("P-256")),
    "wrong_iss": lambda e: e.token(iss="someone-else"),
    "wrong_aud": lambda e: e.token(aud="another-service"),
    "no_exp": lambda e: e.token(exp=None),
    "alg_none": _unsigned,
    "hs256_public_key": _hs256_with_public_key,
    "truncated": lambda e: e.token()[:-10],
    "garbage": lambda e: "not-a-token",
    "garbage_segments": lambda e: "e30.e30.e30",
    "unknown_client": lambda e: e.token("nobody"),
    "external_unknown_kid": lambda e: e.ext_token(key=ECKey.generate_key("P-256", auto_kid=True)),
    "external_wrong_aud": lambda e: e.ext_token(aud="obd"),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("auth")
    ext_key = ECKey.generate_key("P-256", parameters={"kid": "ext-1"})
    with _serve_jwks(ext_key) as jwks_url:
        config = write_config(directory, _auth_toml(jwks_url))
        key = tokens.signing_key(load(config))  # the key the daemon will find and use
        env = Env(directory, key, ext_key, jwks_url)
        _add_clients(env, {"reader": "read", "writer": "write", "admin": "read write admin"})
        _add_clients(env, {"doomed": "read"})
        env.daemon = Daemon(config)
        try:
            yield env
        finally:
            env.daemon.stop()


def _auth_toml(jwks_url: str, extra: str = "") -> str:
    return f"""
[auth]
enabled = true
{extra}
[auth.external]
issuer = "{EXT_ISSUER}"
audience = "{EXT_AUDIENCE}"
jwks_url = "{jwks_url}"
"""


def _add_clients(env: Env, scopes: dict[str, str]) -> None:
    conn = open_writer(env.directory / "obd.sqlite")
    migrate(conn, 0)
    with conn:
        for name, scope in scopes.items():
            env.secrets[name] = clients.new_secret()
            hashed = clients.hash_secret(env.secrets[name])
            added = clients.add(conn, name, frozenset(scope.split()), hashed, 0)
            env.ids[name] = added.client_id
    conn.close()


@contextlib.contextmanager
def _serve_jwks(key: Key) -> Iterator[str]:
    """An external issuer's JWKS on loopback; yields its URL."""
    body = json.dumps(KeySet([key]).as_dict(private=False)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- HTTP --


def test_valid_tokens_are_accepted_and_healthz_is_open(env: Env) -> None:
    http = env.daemon.http
    assert http.get("/v1/coins", headers=_bearer(env.token())).status_code == 200
    assert http.get("/v1/coins", headers=_bearer(env.ext_token())).status_code == 200
    assert http.get("/healthz").status_code == 200


def test_no_token_is_401_with_a_bearer_challenge(env: Env) -> None:
    refused = env.daemon.http.get("/v1/coins")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("bad", BAD_TOKENS)
def test_bad_tokens_are_401(env: Env, bad: str) -> None:
    refused = env.daemon.http.get("/v1/coins", headers=_bearer(BAD_TOKENS[bad](env)))
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_missing_scope_is_403(env: Env) -> None:
    http = env.daemon.http
    reader = _bearer(_issued(env, "reader"))
    assert http.post("/v1/coins", json=SIM, headers=reader).status_code == 403
    assert http.get("/v1/coins", headers=_bearer(_issued(env, "writer"))).status_code == 403
    # A token claiming more than its client may have gets only what the client has.
    assert http.post("/v1/coins", json=SIM, headers=_bearer(env.token())).status_code == 403


def _issued(env: Env, name: str, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    auth = (env.ids[name], env.secrets[name])
    answer = env.daemon.http.post("/oauth/token", data=form, auth=auth)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_token_endpoint(env: Env) -> None:
    http = env.daemon.http
    form = {"grant_type": "client_credentials", "client_id": env.ids["admin"]}
    granted = http.post("/oauth/token", data=form | {"client_secret": env.secrets["admin"]})
    assert granted.status_code == 200
    body = granted.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == (
        "Bearer",
        3600,
        "admin read write",
    )
    assert granted.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], env.key, algorithms=["ES256"]).claims
    assert {"iss", "aud", "sub", "exp", "iat", "jti", "scope"} <= set(claims)
    narrowed = http.post(
        "/oauth/token", data=form | {"client_secret": env.secrets["admin"], "scope": "write"}
    )
    assert narrowed.json()["scope"] == "write"
    auth = (env.ids["reader"], env.secrets["reader"])
    for data, error in [
        ({"grant_type": "client_credentials", "scope": "write"}, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "root"}, "invalid_scope"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": ["client_credentials", "client_credentials"]}, "invalid_request"),
    ]:
        refused = http.post("/oauth/token", data=data, auth=auth)
        assert (refused.status_code, refused.json()["error"]) == (400, error), data
        assert refused.json()["error_description"]
    anonymous = http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")


def test_jwks_publishes_the_public_key_only(env: Env) -> None:
    keys = env.daemon.http.get("/.well-known/jwks.json").json()["keys"]
    assert [k["kid"] for k in keys] == [env.key.kid]
    assert "d" not in keys[0]
    assert keys[0]["alg"] == "ES256"


def test_cli_clients_and_tokens(env: Env) -> None:
    added = obd("client", "add", "cli-made", "--scope", "read,write", config=env.config)
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert set(shown) == {"client_id", "client_secret", "scopes"}
    assert shown["scopes"] == ["read", "write"]
    form = {"grant_type": "client_credentials"}
    answer = env.daemon.http.post(
        "/oauth/token", data=form, auth=(shown["client_id"], shown["client_secret"])
    )
    assert answer.json()["scope"] == "read write"
    listed = obd("client", "list", config=env.config)
    assert "cli-made" in listed.stdout
    assert shown["client_secret"] not in listed.stdout
    printed = obd("token", "--client", "cli-made", "--scope", "read", config=env.config)
    token = printed.stdout.strip()
    assert printed.returncode == 0, printed.stderr
    assert token.count(".") == 2
    assert env.daemon.http.get("/v1/coins", headers=_bearer(token)).status_code == 200
    assert obd("client", "add", "cli-made", config=env.config).returncode == 2  # name taken


def test_removed_client_tokens_fail_at_once(env: Env) -> None:
    token = _issued(env, "doomed")
    http = env.daemon.http
    assert http.get("/v1/coins", headers=_bearer(token)).status_code == 200
    assert obd("client", "remove", "doomed", config=env.config).returncode == 0
    wait_for(lambda: http.get("/v1/coins", headers=_bearer(token)).status_code == 401, 3)


# -- WebSocket --


def _ws_status(env: Env, *, headers: dict[str, str] | None = None, query: str = "") -> int:
    async def go() -> int:
        url = env.daemon.url.replace("http://", "ws://") + "/v1/ws" + query
        try:
            async with connect(url, additional_headers=headers or {}) as ws:
                await ws.send(json.dumps({"op": "latest", **SIM, "id": 1}))
                answer = json.loads(await ws.recv())
                assert answer["id"] == 1
                return 101
        except InvalidStatus as exc:
            return int(exc.response.status_code)

    return asyncio.run(go())


@pytest.mark.parametrize("bad", ["none", *BAD_TOKENS])
def test_ws_refuses_bad_tokens_at_the_handshake(env: Env, bad: str) -> None:
    if bad == "none":
        assert _ws_status(env) == 401
        return
    token = BAD_TOKENS[bad](env)
    assert _ws_status(env, headers=_bearer(token)) == 401
    assert _ws_status(env, query=f"?access_token={token}") == 401


def test_ws_scopes(env: Env) -> None:
    assert _ws_status(env, headers=_bearer(_issued(env, "reader"))) == 101
    assert _ws_status(env, query=f"?access_token={_issued(env, 'reader')}") == 101
    assert _ws_status(env, headers=_bearer(_issued(env, "writer"))) == 403


def test_ws_history_backfills_only_with_write(env: Env) -> None:
    """Back-fill fetches and stores: a `read` token gets what is stored, holes as gaps."""
    admin = _bearer(_issued(env, "admin"))
    added = env.daemon.http.post("/v1/coins", json={**SIM, "interval": "1s"}, headers=admin)
    assert added.status_code in (200, 201), added.text
    end = int(time.time()) * 1000 - 60_000  # before the coin was added: final slots
    request = {"op": "history", **SIM, "start": end - 10_000, "end": end, "id": "h"}

    async def history(token: str) -> dict[str, Any]:
        url = env.daemon.url.replace("http://", "ws://") + "/v1/ws"
        async with connect(url, additional_headers=_bearer(token)) as ws:
            await ws.send(json.dumps(request))
            while (answer := json.loads(await ws.recv()))["type"] == "history_chunk":
                pass
            return dict(answer)

    read_only = asyncio.run(history(_issued(env, "reader")))
    assert read_only["type"] == "history_complete", read_only
    assert (read_only["count"], read_only["backfilled"]) == (0, 0)
    assert [gap[2] for gap in read_only["gaps"]] == ["not_collected"]
    written = asyncio.run(history(_issued(env, "admin")))
    assert (written["count"], written["backfilled"]) == (10, 10), written


# -- MCP over HTTP --


def _mcp_post(env: Env, token: str | None) -> httpx.Response:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"accept": "application/json, text/event-stream"} | (_bearer(token) if token else {})
    return env.daemon.http.post("/mcp/", json=hello, headers=headers)


@pytest.mark.parametrize("bad", ["none", "expired", "alg_none", "wrong_aud", "unknown_client"])
def test_mcp_refuses_bad_tokens_with_resource_metadata(env: Env, bad: str) -> None:
    refused = _mcp_post(env, None if bad == "none" else BAD_TOKENS[bad](env))
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert "/.well-known/oauth-protected-resource/mcp" in challenge
    metadata = env.daemon.http.get("/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"].endswith("/mcp")
    assert metadata["authorization_servers"]


def test_mcp_checks_scopes(env: Env) -> None:
    assert _mcp_post(env, _issued(env, "writer")).status_code == 403

    async def go() -> tuple[bool, str]:
        headers = _bearer(_issued(env, "reader"))
        async with (
            httpx2.AsyncClient(timeout=30, headers=headers) as http,
            streamable_http_client(f"{env.daemon.url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.call_tool("list_coins", {})
            added = await session.call_tool("add_coin", SIM)
            return listed.is_error, str(added.content[0])

    listed_failed, added = asyncio.run(go())
    assert not listed_failed
    assert "write" in added


def test_mcp_backfill_needs_write(env: Env) -> None:
    """get_history's back-fill stores rows: a `read` token is refused, saying so, and
    its plain read still works; a token with `write` fills the hole."""
    admin = _bearer(_issued(env, "admin"))
    added = env.daemon.http.post("/v1/coins", json={**SIM, "interval": "1s"}, headers=admin)
    assert added.status_code in (200, 201), added.text
    end = int(time.time()) * 1000 - 3_600_000  # long before the coin was added
    span = {**SIM, "start": end - 10_000, "end": end}

    async def go(token: str, arguments: dict[str, Any]) -> Any:
        async with (
            httpx2.AsyncClient(timeout=30, headers=_bearer(token)) as http,
            streamable_http_client(f"{env.daemon.url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await session.call_tool("get_history", arguments)

    refused = asyncio.run(go(_issued(env, "reader"), {**span, "backfill": True}))
    assert refused.is_error
    message = str(refused.content[0].text)  # type: ignore[union-attr]
    assert message.startswith("backfill: back-filling stores rows"), message
    assert "needs the 'write' scope (this token has: read)" in message
    plain = asyncio.run(go(_issued(env, "reader"), span))
    assert plain.structured_content["rows"] == []  # type: ignore[index]
    filled = asyncio.run(go(_issued(env, "admin"), {**span, "backfill": True}))
    assert filled.structured_content["backfilled"] == 10, filled.content  # type: ignore[index]
    assert len(filled.structured_content["rows"]) == 10  # type: ignore[index]


# -- rate limit and logs (a daemon of its own: failures count per address) --


def test_failed_secrets_are_rate_limited_and_secrets_never_logged(
    tmp_path: Path, start_daemon: Any
) -> None:
    with _serve_jwks(ECKey.generate_key("P-256", auto_kid=True)) as jwks_url:
        config = write_config(tmp_path, _auth_toml(jwks_url, "max_failures = 3"))
        env = Env(tmp_path, tokens.signing_key(load(config)), ECKey.generate_key("P-256"), jwks_url)
        _add_clients(env, {"reader": "read"})
        daemon = start_daemon(config)
        form = {"grant_type": "client_credentials"}
        good = (env.ids["reader"], env.secrets["reader"])
        token = daemon.http.post("/oauth/token", data=form, auth=good).json()["access_token"]
        for _ in range(3):
            wrong = daemon.http.post("/oauth/token", data=form, auth=(env.ids["reader"], WRONG))
            assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
        limited = daemon.http.post("/oauth/token", data=form, auth=good)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        daemon.http.get("/v1/coins", headers=_bearer(token))
        assert daemon.stop() == 0
    logged = json.dumps(daemon.log)
    assert "token_refused" in logged
    for secret in (env.secrets["reader"], token, WRONG):
        assert secret not in logged


def test_clients_over_http_need_admin_and_removal_bites_at_once(env: Env) -> None:
    http = env.daemon.http
    admin = _bearer(_issued(env, "admin"))
    assert http.get("/v1/clients", headers=_bearer(_issued(env, "reader"))).status_code == 403
    made = http.post("/v1/clients", json={"name": "via-http", "scopes": ["read"]}, headers=admin)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert shown["scopes"] == ["read"]
    form = {"grant_type": "client_credentials"}
    auth = (shown["client_id"], shown["client_secret"])
    token = http.post("/oauth/token", data=form, auth=auth).json()["access_token"]
    assert http.get("/v1/coins", headers=_bearer(token)).status_code == 200
    names = [c["name"] for c in http.get("/v1/clients", headers=admin).json()["items"]]
    assert "via-http" in names
    assert "client_secret" not in http.get("/v1/clients", headers=admin).text
    bad = http.post("/v1/clients", json={"name": "x", "scopes": "root"}, headers=admin)
    assert bad.status_code == 400
    gone = http.delete("/v1/clients", params={"name": "via-http"}, headers=admin)
    assert gone.status_code == 200
    assert http.get("/v1/coins", headers=_bearer(token)).status_code == 401  # no waiting
