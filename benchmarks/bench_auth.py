"""Cost of checking one bearer token: `TokenAuth.authenticate` as every request pays it
(header parsed, kid read, signature and claims verified, client found in the cache),
for ES256 (the default) and HS256: a token seen for the first time, and the same
token again (verified tokens are kept until they expire).

    python benchmarks/bench_auth.py [--n 3000]
"""

import argparse
import asyncio
import tempfile
import time

from obd.auth import tokens
from obd.auth.bearer import ClientCache, TokenAuth
from obd.config import Auth, Config
from obd.storage.clients import Client


def _setup(config: Config, n: int) -> tuple[TokenAuth, list[str]]:
    key = tokens.signing_key(config)
    issuer = tokens.Issuer(key, config)
    headers = [f"Bearer {issuer.issue('c1', frozenset({'read'})).access_token}" for _ in range(n)]
    client = Client(client_id="c1", name="c1", scopes=frozenset({"read"}), created_ts=0)

    async def lookup(client_id: str) -> Client | None:
        return client

    verifier = tokens.Verifier(key, [config.auth.algorithm], "obd", "obd", 30)
    return TokenAuth(verifier, key.kid, ClientCache(lookup, 3600)), headers


async def _us_per_call(auth: TokenAuth, headers: list[str]) -> float:
    start = time.perf_counter()
    for header in headers:
        await auth.authenticate(header)
    return (time.perf_counter() - start) / len(headers) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory() as state:
        for name, config in [
            ("ES256", Config(base_dir=state)),
            ("HS256", Config(auth=Auth(algorithm="HS256", secret="s" * 32))),
        ]:
            auth, headers = _setup(config, n)
            first = asyncio.run(_us_per_call(auth, headers))  # n distinct tokens
            again = asyncio.run(_us_per_call(auth, [headers[0]] * n))
            print(f"{name}: new token {first:.1f} us/request, same token again {again:.1f} us")


if __name__ == "__main__":
    main()
