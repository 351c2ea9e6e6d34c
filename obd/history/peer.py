"""The peer provider: another obd's stored books over its `/v1/books` (NDJSON).

A pair of daemons on two machines heal each other's `daemon_down` holes this way: an
HA pair with no shared storage. A peer's row arrives with its own `received_ts`,
`exchange_ts` and `seq`, and is stored as `backfill:peer:<its capture>` (so
`backfill:peer:ws` is a book the peer took live). Rows the peer itself back-filled
(`backfill:...`) are not taken: they are not first-hand, and two peers would
otherwise hand each other's copies back and forth.

Blocking `urllib` on a worker thread, streaming line by line (why not an HTTP
package: see `obd.history.tardis`).
"""

import asyncio
import contextlib
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator

import msgspec

from obd import __version__
from obd.config import Peer
from obd.errors import HistoryNotAvailable, Unavailable
from obd.history.provider import HistoryRequest, Item, ProviderSpec, Served, Unserved
from obd.history.pull import pulled
from obd.model import Book, Snapshot

__all__ = ["PROVIDER", "PeerHistory"]

_decode = msgspec.json.Decoder(Snapshot)


class PeerHistory:
    """`[history.peer]` as a provider."""

    def __init__(self, options: Peer) -> None:
        self.options = options

    async def history(self, request: HistoryRequest) -> AsyncIterator[Item]:
        if not self.options.url:
            raise HistoryNotAvailable("no peer: set [history.peer] url")
        items = pulled(lambda: self._rows(request))
        async with contextlib.aclosing(items):
            async for item in items:
                yield item

    async def probe(self, request: HistoryRequest) -> str | None:
        """Whether the peer stores any slot of the range (its `/v1/coverage`)."""
        if not self.options.url:
            return "no peer: set [history.peer] url"
        return await asyncio.to_thread(self._probe, request)

    def _probe(self, request: HistoryRequest) -> str | None:
        query = {
            "exchange": request.exchange,
            "symbol": request.symbol,
            "start": request.start,
            "end": request.end,
        }
        url = f"{self.options.url.rstrip('/')}/v1/coverage?{urllib.parse.urlencode(query)}"
        try:
            with self._open(url, "application/json") as response:
                present = json.loads(response.read(1_000_000)).get("present", 0)
        except HistoryNotAvailable as exc:
            return str(exc)
        return None if present else "the peer has no snapshot there"

    def _rows(self, request: HistoryRequest) -> Iterator[Item]:
        """On a worker thread: the peer's rows of the range, checked one by one."""
        query = {
            "exchange": request.exchange,
            "symbol": request.symbol,
            "start": request.start,
            "end": request.end,
            "format": "ndjson",
        }
        url = f"{self.options.url.rstrip('/')}/v1/books?{urllib.parse.urlencode(query)}"
        interval = request.interval_ms
        expected = request.start
        with self._open(url) as response:
            for number, line in enumerate(response, start=1):
                try:
                    row = _decode.decode(line)
                except msgspec.DecodeError as exc:
                    raise Unavailable(f"the peer sent a bad line {number}: {exc}") from None
                if row.ts < expected or row.ts % interval:
                    continue  # off this coin's grid (another interval): not one of its slots
                if row.ts > expected:
                    yield Unserved(expected, row.ts, "the peer has no snapshot there")
                expected = row.ts + interval
                if row.capture.startswith("backfill:"):
                    why = f"the peer's row is itself a back-fill ({row.capture}), not first-hand"
                    yield Unserved(row.ts, expected, why)
                    continue
                book = Book(row.bids, row.asks, row.exchange_ts, row.received_ts, row.seq)
                yield Served(row.ts, book, f"peer:{row.capture}")
        if expected < request.end:
            yield Unserved(expected, request.end, "the peer has no snapshot there")

    def _open(self, url: str, accept: str = "application/x-ndjson") -> http.client.HTTPResponse:
        headers = {"User-Agent": f"obd/{__version__}", "Accept": accept}
        if self.options.token:
            headers["Authorization"] = f"Bearer {self.options.token}"
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=self.options.timeout_s
            )
        except urllib.error.HTTPError as exc:
            message = _error_message(exc)
            exc.close()
            if exc.code == 404:
                raise HistoryNotAvailable(f"the peer has none: {message}") from None
            raise Unavailable(f"the peer answered {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"cannot reach the peer {self.options.url}: {reason}") from None
        return response

    async def close(self) -> None:
        return None


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The peer's `{"error": {"message"}}`, or the status line."""
    with contextlib.suppress(Exception):
        body = json.loads(exc.read(4096))
        return str(body["error"]["message"])
    return str(exc.reason)


PROVIDER = ProviderSpec(
    name="peer",
    factory=PeerHistory,
    options=Peer,
    description="another obd's stored books (GET /v1/books), first-hand rows only",
)
