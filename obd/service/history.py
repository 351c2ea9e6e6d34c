"""History of one coin over a range: the stored snapshots, plus what storage lacks
back-filled from the exchange plugin where it serves history, oldest first.

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

Only slots that collection is done with are back-filled: those before the coin was
first collected and those already recorded as gaps (or missing) before the last
slot the collector accounted for. Later slots belong to the running sampler: a
back-filled row there would take the slot from the live snapshot.
"""

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import apsw
import msgspec
import structlog

from obd.errors import HistoryNotAvailable, ObdError, TooManyRequests
from obd.model import Book, Coin, Gap, GapReason, Snapshot
from obd.plugin import Exchange, FetchesHistory
from obd.service.coverage import join
from obd.storage import reader
from obd.storage.reader import Reader
from obd.storage.writer import SnapshotIn, Writer, as_snapshot, clear_gaps, insert_snapshot
from obd.times import now_ms, slot_at_or_after

__all__ = ["DEFAULT_CHUNK", "MAX_CHUNK", "Allowance", "HistoryStream", "Pages"]

# (coin, start, end, size) -> the stored snapshots of [start, end), `size` at a time
Pages = Callable[[Coin, int, int, int], AsyncGenerator[list[Snapshot], None]]

log = structlog.get_logger("obd.service.history")

DEFAULT_CHUNK = 500  # snapshots per chunk unless asked otherwise
MAX_CHUNK = 5_000  # at most: a chunk is held in memory whole (x depth x 2 sides)
READ_ROWS = 256  # stored snapshots read per step
BACKFILL_ROWS = 128  # back-filled snapshots per writer transaction: live rows wait behind it
MAX_GAPS = 1_000  # gaps reported per request; a range in shreds says so instead


class Allowance:
    """Rows one client may still have back-filled: `per_request` each request, and
    `left` in all (shared by the requests of its connection)."""

    def __init__(self, per_request: int, total: int) -> None:
        self.per_request = per_request
        self.total = total
        self.left = total


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
        source: Exchange,
        plugin: str,
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
        self.backfill_error: str | None = None  # why the plugin could not fill, if it said
        self._read = read
        self._pages = pages or read.book_pages
        self._writer = writer
        self._source = source
        self._capture = f"backfill:{plugin}"
        self._allowance = backfill
        self._fetched = 0  # rows back-filled (fetched and written) by this request
        self._horizon = self.start  # slots before this are final; set when streaming starts

    async def chunks(self) -> AsyncGenerator[list[Snapshot], None]:
        """The range oldest first, `chunk` snapshots at a time (the last one shorter)."""
        self._horizon = await self._read.run(_horizon, self.coin)
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
        return self.backfill_error is None and self._allowance is not None

    def _over(self, fetched: int) -> TooManyRequests | None:
        """The error if one more row would exceed the allowance (`fetched` this request)."""
        allowance = self._allowance
        assert allowance is not None
        if fetched >= allowance.per_request:
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
        return None

    async def _backfill(self, start: int, end: int) -> AsyncGenerator[list[Snapshot], None]:
        interval, depth = self.coin.interval_ms, self.coin.depth
        expected = start
        batch: list[SnapshotIn] = []
        books: AsyncIterator[tuple[int, Book]] | None = None
        source = self._source
        over: TooManyRequests | None = None
        try:
            if not isinstance(source, FetchesHistory):  # the capability is optional
                raise HistoryNotAvailable(f"history not available from {self.coin.exchange}")
            books = source.fetch_history(self.coin.symbol, start, end, interval, depth)
            async for slot, book in books:
                if slot < expected or slot >= end or slot % interval:
                    continue  # not a slot of this hole: the plugin overreached
                if (over := self._over(self._fetched)) is not None:
                    break
                if slot > expected:
                    await self._missing(expected, slot)
                self._fetched += 1
                assert self._allowance is not None
                self._allowance.left -= 1
                batch.append(self._row(slot, book))
                expected = slot + interval
                if len(batch) == BACKFILL_ROWS:
                    yield await self._store(batch)
                    batch = []
        except ObdError as exc:  # no history there (or not now): the slots stay gaps
            self.backfill_error = str(exc)
            log.info("backfill_unavailable", exchange=self.coin.exchange, error=str(exc))
        finally:
            if (close := getattr(books, "aclose", None)) is not None:
                await close()  # an abandoned async generator would be closed late, by gc
        if batch:
            yield await self._store(batch)
        if over is not None:
            raise over
        await self._missing(expected, end)

    def _row(self, slot: int, book: Book) -> SnapshotIn:
        depth = self.coin.depth
        if len(book.bids) > depth or len(book.asks) > depth:
            book = msgspec.structs.replace(book, bids=book.bids[:depth], asks=book.asks[:depth])
        return SnapshotIn(self.coin, slot, book, book.received_ts or now_ms(), self._capture)

    async def _store(self, batch: list[SnapshotIn]) -> list[Snapshot]:
        rows = list(batch)
        stored, inserted = await self._writer.call(lambda conn: _store_backfill(conn, rows))
        self.backfilled += inserted
        return stored

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


def _horizon(conn: apsw.Connection, coin: Coin) -> int:
    """The first slot collection may still fill: before it, what is missing stays missing."""
    first_slot = slot_at_or_after(coin.added_ts + 1, coin.interval_ms)
    until = reader.accounted_until(conn, coin)
    return min(max(first_slot, until or 0), slot_at_or_after(now_ms(), coin.interval_ms))


def _store_backfill(conn: apsw.Connection, rows: list[SnapshotIn]) -> tuple[list[Snapshot], int]:
    """Insert back-filled rows (a slot that already holds one keeps it, and that one is
    what streams), cut the filled slots out of the recorded gaps; (rows, inserted)."""
    out: list[Snapshot] = []
    inserted = 0
    coin = rows[0].coin
    for row in rows:
        if insert_snapshot(conn, row):
            inserted += 1
            out.append(as_snapshot(row))
        else:
            out += reader.books(conn, coin, row.ts, row.ts + 1, 1)
    for start, end in _runs([row.ts for row in rows], coin.interval_ms):
        clear_gaps(conn, coin.id, start, end)
    return out, inserted


def _runs(slots: list[int], interval: int) -> list[tuple[int, int]]:
    """Ascending slots as [start, end) runs of consecutive slots."""
    runs: list[tuple[int, int]] = []
    for slot in slots:
        if runs and runs[-1][1] == slot:
            runs[-1] = (runs[-1][0], slot + interval)
        else:
            runs.append((slot, slot + interval))
    return runs
