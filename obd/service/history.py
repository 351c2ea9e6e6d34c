"""History of one coin over a range: the stored snapshots, plus what storage lacks
back-filled from the history providers where they serve it, oldest first.

Memory stays flat however long the range: storage is read a few hundred rows at a
time (`pages`, by default `Reader.book_pages`: the next read already running while the
current rows go out), and back-filled books are stored and streamed in batches of the
same size.
Back-filled rows go through the writer with their provenance (`capture =
"backfill:<plugin>"`), never to live subscribers.

Back-filling fetches from the exchange and grows the file, so it is metered: a
request back-fills only within an `Allowance` (rows per request, and rows in all
for the client's connection, from `[history]`), and a request that needs more ends
with `TooManyRequests` once what it fetched is stored and sent. Without an
allowance (a token lacking `write`) holes stay gaps.

Holes go to the coin's history providers in order (`obd.service.backfill`): the
exchange plugin's own history, an archive, a peer obd (docs/HISTORY.md).

Only slots that collection is done with are back-filled: those before the coin was
first collected and those already recorded as gaps (or missing) before the last
slot the collector accounted for. Later slots belong to the running sampler: a
back-filled row there would take the slot from the live snapshot.
"""

import contextlib
from collections.abc import AsyncGenerator, Callable

import structlog

from obd.errors import TooManyRequests
from obd.history.provider import HistoryProvider
from obd.model import Coin, Gap, GapReason, Snapshot
from obd.service.backfill import Filler, horizon
from obd.service.backfill_limits import BackfillMeter
from obd.service.coverage import join
from obd.storage import reader
from obd.storage.reader import Reader
from obd.storage.writer import Writer
from obd.times import slot_at_or_after

__all__ = ["DEFAULT_CHUNK", "MAX_CHUNK", "Allowance", "HistoryStream", "Pages"]

# (coin, start, end, size) -> the stored snapshots of [start, end), `size` at a time
Pages = Callable[[Coin, int, int, int], AsyncGenerator[list[Snapshot], None]]

log = structlog.get_logger("obd.service.history")

DEFAULT_CHUNK = 500  # snapshots per chunk unless asked otherwise
MAX_CHUNK = 5_000  # at most: a chunk is held in memory whole (x depth x 2 sides)
READ_ROWS = 256  # stored snapshots read per step
MAX_GAPS = 1_000  # gaps reported per request; a range in shreds says so instead


class Allowance:
    """Rows one client may still have back-filled: `per_request` each request, and
    `left` in all (shared by the requests of its connection); and the daemon's shared
    `meter` (rows a minute, back-fills at once), where `client` is counted."""

    def __init__(
        self, per_request: int, total: int, meter: BackfillMeter | None = None, client: str = ""
    ) -> None:
        self.per_request = per_request
        self.total = total
        self.left = total
        self.meter = meter
        self.client = client

    def begin(self) -> TooManyRequests | None:
        return None if self.meter is None else self.meter.begin(self.client)

    def end(self) -> None:
        if self.meter is not None:
            self.meter.end(self.client)

    def metered(self) -> TooManyRequests | None:
        """The shared meters' error if one more row would go past them."""
        return None if self.meter is None else self.meter.check(self.client)

    def spend(self) -> None:
        self.left -= 1
        if self.meter is not None:
            self.meter.spend(self.client)


class HistoryStream:
    """One history request, as it streams. Iterate `chunks()` once; `count`, `gaps` and `backfilled`
    then describe what came and what is still missing, each gap with its reason."""

    def __init__(
        self,
        coin: Coin,
        start: int,
        end: int,
        chunk: int,
        *,
        read: Reader,
        writer: Writer,
        providers: list[tuple[str, HistoryProvider]],
        backfill: Allowance | None = None,
        pages: Pages | None = None,
    ) -> None:
        self.coin = coin
        self.start = slot_at_or_after(start, coin.interval_ms)
        self.end = slot_at_or_after(end, coin.interval_ms)  # the first slot not asked for
        self._stop = end  # rows are read up to here (a series may hold rows off its grid)
        self.chunk = chunk
        self.count = 0
        self.backfilled = 0
        self.gaps: list[Gap] = []
        self.gaps_truncated = False
        self.backfill_error: str | None = None  # why the providers could not fill, if they said
        self._read = read
        self._pages = pages or read.book_pages
        self._writer = writer
        self._allowance = backfill
        self._fetched = 0  # rows back-filled (fetched and written) by this request
        self._filler = Filler(coin, providers, writer, unfilled=self._not_filled, budget=self._take)
        self._horizon = self.start  # slots before this are final; set when streaming starts

    async def chunks(self) -> AsyncGenerator[list[Snapshot], None]:
        """The range oldest first, `chunk` snapshots at a time (the last one shorter)."""
        self._horizon = await self._read.run(horizon, self.coin)
        out: list[Snapshot] = []
        try:
            async with contextlib.aclosing(self._pieces()) as pieces:
                async for piece in pieces:
                    self.count += len(piece)
                    out += piece
                    while len(out) >= self.chunk:
                        yield out[: self.chunk]
                        out = out[self.chunk :]
        except TooManyRequests:  # over the back-fill allowance: what was stored goes out
            if out:
                yield out
            raise
        if out:
            yield out

    async def fill(self) -> None:
        """Back-fill the range's holes as `chunks()` would (the same meters, providers and
        gaps), without reading the stored books: where rows are stored is read from the
        index alone. `count` is then the rows the range holds. Raises TooManyRequests
        past the allowance, once what was fetched before it is stored."""
        self._horizon = await self._read.run(horizon, self.coin)
        interval = self.coin.interval_ms
        stored = await self._read.run(reader.runs, self.coin.id, self.start, self._stop, interval)
        expected = self.start  # the next slot not yet accounted for
        for run_start, run_end in [*stored, (self.end, self.end)]:
            async with contextlib.aclosing(self._fill(expected, run_start)) as filled:
                async for piece in filled:
                    self.count += len(piece)
            self.count += (run_end - run_start) // interval
            expected = max(expected, run_end)

    async def _pieces(self) -> AsyncGenerator[list[Snapshot], None]:
        """Runs of stored rows, with each hole between them filled (or noted) in place."""
        interval = self.coin.interval_ms
        expected = self.start  # the next slot not yet accounted for
        ahead = self._pages(self.coin, self.start, self._stop, READ_ROWS)
        async with contextlib.aclosing(ahead) as rows_ahead:
            async for rows in rows_ahead:
                run: list[Snapshot] = []
                for row in rows:
                    if row.ts > expected:
                        if run:
                            yield run
                            run = []
                        async with contextlib.aclosing(self._fill(expected, row.ts)) as filled:
                            async for piece in filled:
                                yield piece
                    run.append(row)
                    expected = max(expected, row.ts + interval)
                if run:
                    yield run
        async with contextlib.aclosing(self._fill(expected, self.end)) as filled:
            async for piece in filled:
                yield piece

    async def _fill(self, start: int, end: int) -> AsyncGenerator[list[Snapshot], None]:
        """Slots [start, end) hold no snapshot: back-fill the final part, note the rest."""
        final = min(end, self._horizon)
        if start < final:
            if self._may_backfill():
                async with contextlib.aclosing(self._backfill(start, final)) as filled:
                    async for piece in filled:
                        yield piece
            else:
                await self._missing(start, final)
        # Collection has not reached these slots (or had not when this request began).
        await self._missing(max(start, self._horizon), end, otherwise="pending")

    def _may_backfill(self) -> bool:
        # Once a hole found no provider, the others are not asked again in this request.
        return self.backfill_error is None and self._allowance is not None

    def _take(self) -> TooManyRequests | None:
        """Count one more back-filled row, or the error if it would exceed the allowance."""
        allowance = self._allowance
        assert allowance is not None
        if self._fetched >= allowance.per_request:
            return TooManyRequests(
                f"history: back-fill is limited to {allowance.per_request} rows a request "
                "([history] backfill_rows_per_request); what was fetched is stored and sent, "
                "ask again for the rest"
            )
        if allowance.left <= 0:
            return TooManyRequests(
                f"history: back-fill is limited to {allowance.total} rows a connection "
                "([history] backfill_rows_per_connection)"
            )
        if (over := allowance.metered()) is not None:
            return over
        self._fetched += 1
        allowance.spend()
        return None

    async def _backfill(self, start: int, end: int) -> AsyncGenerator[list[Snapshot], None]:
        allowance = self._allowance
        assert allowance is not None
        if (over := allowance.begin()) is not None:  # the daemon's back-fills at once
            raise over
        try:
            async with contextlib.aclosing(self._filler.fill(start, end)) as filled:
                async for piece in filled:
                    yield piece
        finally:
            allowance.end()
            self.backfilled = self._filler.backfilled

    async def _not_filled(self, start: int, end: int, why: str) -> None:
        """No provider could fill [start, end): the slots stay gaps with their reasons."""
        if self.backfill_error is None:
            self.backfill_error = why
            log.info("backfill_unavailable", exchange=self.coin.exchange, error=why)
        await self._missing(start, end)

    async def _missing(self, start: int, end: int, otherwise: GapReason = "missing") -> None:
        """Note [start, end) as missing, with the reasons storage recorded for it; slots
        without one are `not_collected` before the coin's first slot, else `otherwise`."""
        if start >= end:
            return
        first_slot = slot_at_or_after(self.coin.added_ts + 1, self.coin.interval_ms)
        recorded = await self._read.run(reader.gaps, self.coin.id, start, end)
        at = start
        for gap in [*recorded, Gap(end, end, "")]:
            if gap.start > at:
                if at < first_slot:
                    self._note(Gap(at, min(gap.start, first_slot), "not_collected"))
                self._note(Gap(max(at, first_slot), gap.start, otherwise))
            self._note(gap)
            at = max(at, gap.end)

    def _note(self, gap: Gap) -> None:
        if not join(self.gaps, gap, MAX_GAPS):
            self.gaps_truncated = True
