"""OAuth client administration: the one place `obd client`, `obd token`, `/v1/clients`,
`POST /oauth/token` and the bearer authenticator reach the clients table.

The SQL lives in `obd.storage.clients`; this runs it through the process's reader and
writer, and runs scrypt (~50 ms a hash) on a worker thread, never on the loop.
"""

import asyncio

from obd.storage import clients as table
from obd.storage.clients import Client
from obd.storage.reader import Reader
from obd.storage.writer import Writer
from obd.times import now_ms

__all__ = ["Client", "Clients"]


class Clients:
    """Who may ask for tokens, with which scopes (docs/AUTH.md)."""

    def __init__(self, read: Reader, writer: Writer) -> None:
        self._read = read
        self._writer = writer

    async def add(self, name: str, scopes: frozenset[str]) -> tuple[Client, str]:
        """(client, secret): the secret exists only in this answer; the file keeps its hash."""
        secret = table.new_secret()
        hashed = await asyncio.to_thread(table.hash_secret, secret)
        now = now_ms()
        client = await self._writer.call(lambda conn: table.add(conn, name, scopes, hashed, now))
        return client, secret

    async def listing(self) -> list[Client]:
        return await self._read.run(table.listing)

    async def remove(self, name: str) -> Client:
        """NotFound if no client has that name; its tokens stop working."""
        return await self._writer.call(lambda conn: table.remove(conn, name))

    async def named(self, name: str) -> Client | None:
        return await self._read.run(table.by_name, name)

    async def get(self, client_id: str) -> Client | None:
        """The client, while it exists (the bearer authenticator asks this per token)."""
        return await self._read.run(table.by_id, client_id)

    async def verify(self, client_id: str, secret: str) -> Client | None:
        """The client if `secret` is its secret; an unknown id costs as much as a known one."""
        found = await self._read.run(table.with_hash, client_id)
        return await asyncio.to_thread(table.verify, found, secret)
