"""The auth parts without a daemon: secrets, scopes, the failure limit, HS256 mode,
the key file, the external key cache and the config checks."""

import asyncio
import json
import os
import time
from pathlib import Path

import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from obd.auth import ScopeError, Unauthorized, jwks, narrow, parse_scopes, tokens
from obd.auth.bearer import ClientCache, TokenAuth, bearer_token
from obd.auth.ratelimit import FailureLimit
from obd.config import Auth, Config, ExternalIssuer, Server, _checked
from obd.context import check_bind_allowed
from obd.errors import ConfigError
from obd.storage import clients

SECRET = "s" * 32


def test_secrets_are_stored_as_salted_scrypt_hashes() -> None:
    stored = clients.hash_secret("hunter2")
    assert stored.startswith("scrypt$") and "hunter2" not in stored  # noqa: PT018
    assert stored != clients.hash_secret("hunter2")  # salted
    assert clients.check_secret("hunter2", stored)
    assert not clients.check_secret("hunter3", stored)
    assert not clients.check_secret("hunter2", "garbage")
    assert clients.verify(None, "anything") is None


def test_scopes_are_parsed_and_narrowed() -> None:
    assert parse_scopes("read,write") == parse_scopes("read write") == {"read", "write"}
    with pytest.raises(ScopeError):
        parse_scopes("read,root")
    allowed = frozenset({"read", "write"})
    assert narrow(allowed, None) == allowed
    assert narrow(allowed, "write admin") == {"write"}
    with pytest.raises(ScopeError):
        narrow(allowed, "admin")


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == bearer_token("bearer  abc ") == "abc"
    for bad in (None, "Basic abc", "Bearer", "Bearer   "):
        with pytest.raises(Unauthorized):
            bearer_token(bad)


def test_failure_limit_counts_per_key_within_a_window() -> None:
    limit = FailureLimit(2, 0.2)
    assert limit.retry_after_s("a", "x") == 0
    limit.failed("a", "x")
    limit.failed("a", "x")
    assert limit.retry_after_s("a", "y") == 1  # `a` is over
    assert limit.retry_after_s("b", "x") == 1  # so is address `x`
    assert limit.retry_after_s("b", "y") == 0
    time.sleep(0.25)
    assert limit.retry_after_s("a", "x") == 0


def test_concurrent_wrong_secrets_stop_at_the_limit() -> None:
    """Secrets are checked off the loop: attempts in flight count, so 14 wrong secrets
    sent at once get 5 checks, not 14 (issue 17)."""
    limit = FailureLimit(5, 60)
    checked = 0

    async def wrong_secret() -> None:
        nonlocal checked
        if limit.retry_after_s("client:c", "address:a"):
            return
        with limit.attempt("client:c", "address:a"):
            checked += 1
            await asyncio.sleep(0.01)  # scrypt in a thread
            limit.failed("client:c", "address:a")

    async def burst() -> None:
        await asyncio.gather(*(wrong_secret() for _ in range(14)))

    asyncio.run(burst())
    assert checked == 5
    assert limit.retry_after_s("client:c") > 1  # the failures now hold it


def _hs256_config() -> Config:
    return Config(auth=Auth(enabled=True, algorithm="HS256", secret=SECRET))


def test_hs256_tokens_verify_and_publish_no_key() -> None:
    config = _hs256_config()
    key = tokens.signing_key(config)
    issued = tokens.Issuer(key, config).issue("c1", frozenset({"read"}))
    verifier = tokens.Verifier(key, ["HS256"], "obd", "obd", 30)
    assert verifier.verify(issued.access_token).scopes == {"read"}
    assert tokens.public_jwks(key) == {"keys": []}
    es256 = tokens.Verifier(ECKey.generate_key("P-256"), ["ES256"], "obd", "obd", 30)
    with pytest.raises(Unauthorized):
        es256.verify(issued.access_token)


def test_the_key_file_is_private_and_reused(tmp_path: Path) -> None:
    config = Config(base_dir=str(tmp_path))
    key = tokens.signing_key(config)
    path = tmp_path / "obd-signing-key.jwk"
    assert path.stat().st_mode & 0o777 == 0o600
    assert tokens.signing_key(config).kid == key.kid
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        tokens.signing_key(config)


def test_token_auth_checks_the_client_and_narrows_its_scopes() -> None:
    config = _hs256_config()
    key = tokens.signing_key(config)
    token = tokens.Issuer(key, config).issue("c1", frozenset({"read", "write"})).access_token
    known: dict[str, clients.Client] = {
        "c1": clients.Client(client_id="c1", name="one", scopes=frozenset({"read"}), created_ts=0)
    }

    async def lookup(client_id: str) -> clients.Client | None:
        return known.get(client_id)

    auth = TokenAuth(
        tokens.Verifier(key, ["HS256"], "obd", "obd", 30), key.kid, ClientCache(lookup, 0)
    )

    async def go() -> None:
        principal = await auth.authenticate(f"Bearer {token}")
        assert principal.scopes == {"read"}
        known.clear()
        with pytest.raises(Unauthorized, match="removed"):
            await auth.authenticate(f"Bearer {token}")

    asyncio.run(go())


def test_remote_keys_refetch_unknown_kids_at_most_every_few_seconds(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    first = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    path.write_text(json.dumps(KeySet([first]).as_dict()))  # private parts are dropped
    keys = jwks.RemoteKeys(path=path, refresh_s=3600)

    async def go() -> None:
        got = await keys.keys_for("k1")
        assert [k.kid for k in got] == ["k1"]
        assert not got.keys[0].is_private
        second = ECKey.generate_key("P-256", parameters={"kid": "k2"})
        path.write_text(json.dumps(KeySet([first, second]).as_dict(private=False)))
        assert [k.kid for k in await keys.keys_for("k2")] == ["k1"]  # too soon to refetch

    asyncio.run(go())


def test_auth_config_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"auth\.secret"):
        _checked(Config(auth=Auth(algorithm="HS256", secret="short")))
    with pytest.raises(ConfigError, match=r"auth\.external\.audience"):
        _checked(Config(auth=Auth(external=ExternalIssuer(issuer="x", jwks_url="http://a"))))
    with pytest.raises(ConfigError, match="one of"):
        _checked(Config(auth=Auth(external=ExternalIssuer(issuer="x", audience="y"))))
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"auth": {"external": {"algorithms": ["HS256"]}}}, Config)


def test_auth_on_allows_any_address_auth_off_only_loopback() -> None:
    check_bind_allowed(Config(server=Server(host="0.0.0.0"), auth=Auth(enabled=True)))
    with pytest.raises(ConfigError, match="loopback"):
        check_bind_allowed(Config(server=Server(host="0.0.0.0")))


def test_a_remembered_token_still_expires() -> None:
    config = _hs256_config()
    key = tokens.signing_key(config)
    now = int(time.time())
    claims = {"iss": "obd", "aud": "obd", "sub": "c1", "exp": now + 1, "scope": "read"}
    token = jwt.encode({"alg": "HS256", "kid": key.kid}, claims, key, algorithms=["HS256"])
    one = clients.Client(client_id="c1", name="one", scopes=frozenset({"read"}), created_ts=0)

    async def lookup(client_id: str) -> clients.Client | None:
        return one

    verifier = tokens.Verifier(key, ["HS256"], "obd", "obd", 0)
    auth = TokenAuth(verifier, key.kid, ClientCache(lookup))

    async def go() -> None:
        assert (await auth.authenticate(f"Bearer {token}")).scopes == {"read"}
        await asyncio.sleep(now + 1.05 - time.time())
        with pytest.raises(Unauthorized, match="expired"):
            await auth.authenticate(f"Bearer {token}")

    asyncio.run(go())
