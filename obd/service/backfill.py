"""Filling a hole of a coin from its history providers, in order of preference.

A hole [start, end) goes to the first provider; the slots it does not serve (or
whose book the kernel refuses) go to the next, and so on; what none serves is handed
back with every provider's reason. Books are checked here, not trusted: a crossed or
empty book, levels out of order, or a slot off the coin's grid is refused for that
slot. Accepted books are stored through the writer with `capture =
"backfill:<label>"` (never published live) in batches, in slot order.
"""

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import apsw
import msgspec
import structlog

from obd.errors import ObdError, TooManyRequests
from obd.history.provider import (
    HistoryProvider,
    HistoryRequest,
    ProbesHistory,
    Served,
    Unserved,
)
from obd.history.registry import PLUGIN
from obd.model import Book, Coin, Gap, Snapshot
from obd.service.coverage import Fillable
from obd.storage import reader
from obd.storage.reader import Reader
from obd.storage.writer import SnapshotIn, Writer, as_snapshot, clear_gaps, insert_snapshot
from obd.times import now_ms, slot_at_or_after

__all__ = [
    "BACKFILL_ROWS",
    "BackfillReport",
    "Filler",
    "Unfilled",
    "backfill_range",
    "horizon",
    "probe_gaps",
    "refusal",
    "store_backfill",
]

log = structlog.get_logger("obd.service.backfill")

BACKFILL_ROWS = 128  # back-filled snapshots per writer transaction: live rows wait behind it

NotFilled = Callable[[int, int, str], Awaitable[None]]  # (start, end, why): none could fill
MAX_UNFILLED = 1_000  # unfilled runs listed in a report


class Unfilled(msgspec.Struct, frozen=True, array_like=True):
    """Slots [start, end) no provider could fill, and every provider's reason."""

    start: int
    end: int
    why: str


class BackfillReport(msgspec.Struct, frozen=True):
    """What `obd backfill` did over [start, end) of one series."""

    exchange: str
    symbol: str
    interval_ms: int
    depth: int
    start: int
    end: int  # the first slot not asked for (or not yet final, for a collected coin)
    history_only: bool
    slots: int  # in the range
    present: int  # already stored before this run
    backfilled: int  # stored by this run
    unfilled: list[Unfilled]  # oldest first, at most MAX_UNFILLED runs
    unfilled_slots: int
    seconds: float
    providers: list[str]


Budget = Callable[[], TooManyRequests | None]  # takes a row, or says why it cannot


class Filler:
    """Back-fills holes of one coin; `backfilled` counts rows inserted, `served` rows
    the providers gave and the kernel accepted (a slot filled meanwhile keeps its row)."""

    def __init__(
        self,
        coin: Coin,
        providers: list[tuple[str, HistoryProvider]],
        writer: Writer,
        *,
        unfilled: NotFilled,
        budget: Budget | None = None,
    ) -> None:
        self.coin = coin
        self.backfilled = 0
        self.served = 0
        self._providers = providers
        self._writer = writer
        self._unfilled = unfilled
        self._budget = budget

    async def fill(self, start: int, end: int) -> AsyncGenerator[list[Snapshot], None]:
        """Slots [start, end), stored batch by batch and yielded as stored; raises the
        budget's TooManyRequests once what was fetched before it is stored."""
        batch: list[SnapshotIn] = []
        over: TooManyRequests | None = None
        async with contextlib.aclosing(self._walk(0, start, end, [])) as rows:
            async for row in rows:
                if self._budget is not None and (over := self._budget()) is not None:
                    break
                self.served += 1
                batch.append(row)
                if len(batch) == BACKFILL_ROWS:
                    yield await self._store(batch)
                    batch = []
        if batch:
            yield await self._store(batch)
        if over is not None:
            raise over

    async def _walk(
        self, index: int, start: int, end: int, whys: list[str]
    ) -> AsyncGenerator[SnapshotIn, None]:
        """Rows for [start, end) from providers[index:], oldest first; what none of
        them serves is reported through `unfilled`."""
        if start >= end:
            return
        if index == len(self._providers):
            await self._unfilled(start, end, "; ".join(whys) or "no history provider configured")
            return
        name, provider = self._providers[index]
        interval = self.coin.interval_ms
        request = HistoryRequest(
            self.coin.exchange, self.coin.symbol, start, end, interval, self.coin.depth
        )
        expected = start  # the first slot not yet served nor handed on
        # The exchange plugin's own errors name the exchange already.
        who = "" if name == PLUGIN else f"{name}: "
        rest = f"{who}not served"
        items: AsyncIterator[Served | Unserved] | None = None
        try:
            items = provider.history(request)
            async for item in items:
                if isinstance(item, Unserved):
                    lo = max(slot_at_or_after(item.start, interval), expected)
                    hi = min(slot_at_or_after(item.end, interval), end)
                    if lo < hi:
                        async for row in self._next(index, expected, lo, whys, rest):
                            yield row
                        async for row in self._next(index, lo, hi, whys, f"{who}{item.why}"):
                            yield row
                        expected = hi
                    continue
                slot = item.slot - item.slot % interval  # an off-grid book is refused there
                if slot < expected or slot >= end:
                    continue  # not a slot of this hole (or already passed): overreach
                async for row in self._next(index, expected, slot, whys, rest):
                    yield row
                expected = slot + interval
                if (problem := refusal(item.slot, item.book, interval)) is not None:
                    why = f"{who}refused {problem}"
                    log.warning("backfill_refused", provider=name, slot=slot, why=problem)
                    async for row in self._next(index, slot, expected, whys, why):
                        yield row
                    continue
                yield self._row(slot, item)
        except ObdError as exc:  # none of this series there (or not now): the next one
            rest = f"{who}{exc}"
            log.info("provider_unavailable", provider=name, error=str(exc))
        finally:
            if (close := getattr(items, "aclose", None)) is not None:
                await close()  # an abandoned async generator would be closed late, by gc
        async for row in self._next(index, expected, end, whys, rest):
            yield row

    def _next(
        self, index: int, start: int, end: int, whys: list[str], why: str
    ) -> AsyncGenerator[SnapshotIn, None]:
        return self._walk(index + 1, start, end, [*whys, why])

    def _row(self, slot: int, item: Served) -> SnapshotIn:
        book, depth = item.book, self.coin.depth
        if len(book.bids) > depth or len(book.asks) > depth:
            book = msgspec.structs.replace(book, bids=book.bids[:depth], asks=book.asks[:depth])
        received = book.received_ts if book.received_ts is not None else now_ms()
        return SnapshotIn(self.coin, slot, book, received, f"backfill:{item.label}")

    async def _store(self, batch: list[SnapshotIn]) -> list[Snapshot]:
        rows = list(batch)
        stored, inserted = await self._writer.call(lambda conn: store_backfill(conn, rows))
        self.backfilled += inserted
        return stored


def refusal(slot: int, book: Book, interval_ms: int) -> str | None:
    """Why a provider's book cannot be stored for its slot (None: it can)."""
    if slot % interval_ms:
        return f"a book at {slot} ms, off the {interval_ms} ms slot grid"
    if not book.bids and not book.asks:
        return "an empty book"
    if book.bids and book.asks and book.bids[0][0] >= book.asks[0][0]:
        return f"a crossed book (best bid {book.bids[0][0]} >= best ask {book.asks[0][0]})"
    if any(nxt[0] >= prev[0] for prev, nxt in zip(book.bids, book.bids[1:], strict=False)) or any(
        nxt[0] <= prev[0] for prev, nxt in zip(book.asks, book.asks[1:], strict=False)
    ):
        return "a book with levels out of order"
    return None


def store_backfill(conn: apsw.Connection, rows: list[SnapshotIn]) -> tuple[list[Snapshot], int]:
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


def horizon(conn: apsw.Connection, coin: Coin) -> int:
    """The first slot collection may still fill: before it, what is missing stays missing
    (a history-only series is never collected: every slot until now is final)."""
    if coin.history_only:
        return slot_at_or_after(now_ms(), coin.interval_ms)
    first_slot = slot_at_or_after(coin.added_ts + 1, coin.interval_ms)
    until = reader.accounted_until(conn, coin)
    return min(max(first_slot, until or 0), slot_at_or_after(now_ms(), coin.interval_ms))


Progress = Callable[[int, int, int], None]  # (the slot reached, first slot, end)


async def backfill_range(
    coin: Coin,
    start: int,
    end: int,
    providers: list[tuple[str, HistoryProvider]],
    read: Reader,
    writer: Writer,
    progress: Progress | None = None,
) -> BackfillReport:
    """Fill every hole of [start, end) that collection is done with; resumable: what is
    stored (by an earlier run, or live) is kept and skipped."""
    began = time.perf_counter()
    interval = coin.interval_ms
    final = await read.run(horizon, coin)
    lo = slot_at_or_after(start, interval)
    hi = max(lo, min(slot_at_or_after(end, interval), final))
    stored = await read.run(reader.runs, coin.id, lo, hi, interval)
    unfilled: list[Unfilled] = []
    missing = 0

    async def not_filled(gap_start: int, gap_end: int, why: str) -> None:
        nonlocal missing
        missing += (gap_end - gap_start) // interval
        last = unfilled[-1] if unfilled else None
        if last is not None and last.end == gap_start and last.why == why:
            unfilled[-1] = Unfilled(last.start, gap_end, why)
        elif len(unfilled) < MAX_UNFILLED:
            unfilled.append(Unfilled(gap_start, gap_end, why))
        if progress is not None:
            progress(gap_end, lo, hi)

    filler = Filler(coin, providers, writer, unfilled=not_filled)
    for hole_start, hole_end in _holes(lo, hi, stored):
        async with contextlib.aclosing(filler.fill(hole_start, hole_end)) as filled:
            async for batch in filled:
                if progress is not None and batch:
                    progress(batch[-1].ts + interval, lo, hi)
    if progress is not None:
        progress(hi, lo, hi)
    return BackfillReport(
        exchange=coin.exchange,
        symbol=coin.symbol,
        interval_ms=interval,
        depth=coin.depth,
        start=lo,
        end=hi,
        history_only=coin.history_only,
        slots=(hi - lo) // interval,
        present=sum((b - a) // interval for a, b in stored),
        backfilled=filler.backfilled,
        unfilled=unfilled,
        unfilled_slots=missing,
        seconds=time.perf_counter() - began,
        providers=[name for name, _ in providers],
    )


def _holes(lo: int, hi: int, stored: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[lo, hi) less the stored runs."""
    holes: list[tuple[int, int]] = []
    at = lo
    for run_start, run_end in stored:
        if run_start > at:
            holes.append((at, run_start))
        at = max(at, run_end)
    if at < hi:
        holes.append((at, hi))
    return holes


MAX_PROBED = 20  # gaps probed per coverage answer: each probe may ask a remote source


async def probe_gaps(
    coin: Coin, gaps: list[Gap], providers: list[tuple[str, HistoryProvider]], final: int
) -> list[Fillable]:
    """For each of the first MAX_PROBED gaps, the first provider that says it could
    serve some of it (without fetching books), or every provider's reason it could not.
    A provider without `probe` is named as the one that would be asked ("not probed")."""
    out: list[Fillable] = []
    for gap in gaps[:MAX_PROBED]:
        if gap.start >= final:
            later = "collection has not reached it: the live feed fills it"
            out.append(Fillable(gap.start, gap.end, None, later))
            continue
        request = HistoryRequest(
            coin.exchange, coin.symbol, gap.start, min(gap.end, final), coin.interval_ms, coin.depth
        )
        whys: list[str] = []
        chosen: Fillable | None = None
        for name, provider in providers:
            if not isinstance(provider, ProbesHistory):
                chosen = Fillable(gap.start, gap.end, name, "not probed: asked when back-filling")
                break
            why: str | None
            try:
                why = await provider.probe(request)
            except ObdError as exc:
                why = str(exc)
            if why is None:
                chosen = Fillable(gap.start, gap.end, name, "")
                break
            whys.append(f"{name}: {why}")
        out.append(
            chosen
            or Fillable(
                gap.start, gap.end, None, "; ".join(whys) or "no history provider configured"
            )
        )
    return out
