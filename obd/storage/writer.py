"""The single writer: owns the only write connection, batches rows into transactions.

Everything that changes the file inside the daemon goes through here, on one
dedicated thread, so SQLite never sees two writers from this process and the
event loop never waits on a commit.
"""

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import apsw
import msgspec
import structlog

from obd.errors import StorageUnavailable
from obd.metrics import Metrics
from obd.model import Book, Coin, GapReason, Snapshot
from obd.storage import codec, dicts
from obd.storage.connect import open_writer
from obd.storage.schema import INLINE_BOOK_BYTES, TS_LIMIT, book_key, migrate
from obd.storage.summary import COLUMNS, summarize
from obd.times import now_ms

T = TypeVar("T")
log = structlog.get_logger("obd.writer")

BATCH_ROWS = 1_000  # rows per transaction at most; under light load each commit holds a few
QUEUE_ROWS = 20_000  # beyond this the samplers wait (backpressure, never dropped rows)
QUEUE_BYTES = 128 * 1024 * 1024  # 128 MiB of books waiting at most (`[storage] queue_mib`)
# A failing commit (disk full, I/O error) is retried, capped at 5 s: a failed write costs
# little, and collection resumes within seconds of space returning.
RETRY_S = (0.5, 1, 2, 5)
# What a queued row holds, roughly: a level is a tuple of two floats (~104 bytes) and its
# slot in the list; 20,000 rows of depth 1000 would be ~5 GB, hence a bound in bytes.
_ROW_BYTES = 512
_LEVEL_BYTES = 112


class SnapshotIn(msgspec.Struct, frozen=True):
    coin: Coin
    ts: int
    book: Book
    received_ts: int
    capture: str


class GapIn(msgspec.Struct, frozen=True):
    coin_id: int
    start: int
    end: int
    reason: GapReason


class RetractIn(msgspec.Struct, frozen=True):
    """Live snapshots of a coin in slots (after, until] turned out unverifiable: they
    are deleted and recorded as gaps with `reason` (REST captures stay: each is a book
    asked for on its own)."""

    coin_id: int
    after: int
    until: int
    reason: GapReason
    interval_ms: int


Row = SnapshotIn | GapIn | RetractIn


class _Call(msgspec.Struct):
    fn: Callable[[apsw.Connection], Any]
    future: asyncio.Future[Any]
    transaction: bool = True  # a checkpoint cannot run inside one


_STOP = object()
Committed = Callable[[Sequence[Snapshot]], None]


class Writer:
    """Queue in, batched commits out; listeners hear of snapshots only after they commit."""

    def __init__(
        self, path: Path, *, queue_bytes: int = QUEUE_BYTES, metrics: Metrics | None = None
    ) -> None:
        self.path = path
        self.metrics = metrics or Metrics()  # the daemon's: its /metrics shows them
        self.queue_bytes = queue_bytes
        self.queued_bytes = 0  # held by rows put and not yet committed (an estimate)
        self.failing: str | None = None  # the last commit or checkpoint error while it persists
        self.rows_written = 0
        self.last_batch_s = 0.0  # how long the last commit took
        self._queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_ROWS)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="obd-write")
        self._conn: apsw.Connection | None = None
        self._listeners: list[Committed] = []
        self._full = False  # books are being refused for want of queue space
        # Set while a batch's commit fails and is retried: a call would queue behind it.
        self._retrying = asyncio.Event()
        self._stopping = asyncio.Event()  # set by stop(): a failing commit is not retried

    async def open(self) -> None:
        """Create or migrate the file; errors here are start-up errors (StoreError)."""
        self._conn = await self._in_thread(open_writer, self.path)
        await self._in_thread(migrate, self._conn, now_ms())

    def on_commit(self, listener: Committed) -> None:
        self._listeners.append(listener)

    async def put(self, item: Row) -> None:
        """Queue a row. A book that would take what waits past `queue_bytes` (commits are
        failing, or too slow) is queued as a `storage_full` gap of its slot instead:
        memory stays bounded and every slot is still accounted for."""
        size = _held_bytes(item)
        if isinstance(item, SnapshotIn):
            # Once full, books wait for a quarter to drain: not one in, one out, at the edge.
            limit = self.queue_bytes * 3 // 4 if self._full else self.queue_bytes
            full = self.queued_bytes + size > limit
            if full != self._full:
                self._full = full
                event = "queue_full" if full else "queue_accepting"
                log.warning(event, queued_bytes=self.queued_bytes, limit=self.queue_bytes)
            if full:
                item = GapIn(item.coin.id, item.ts, item.ts + item.coin.interval_ms, "storage_full")
                size = _held_bytes(item)
        self.queued_bytes += size
        await self._queue.put(item)

    async def call(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Run `fn(conn)` in its own transaction, in order with the queued rows.

        While commits fail (a full disk) the queue does not move, so a call would wait
        for the outage to end: it is refused at once instead (`StorageUnavailable`, with the
        retry cap as `retry_after_s`: the HTTP 503's `Retry-After`), and a call that
        was waiting when commits began to fail is withdrawn and refused the same way.
        A withdrawn call never runs."""
        if self._retrying.is_set():
            raise self._unavailable()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Call(fn, future))
        outage: asyncio.Future[Any] = asyncio.ensure_future(self._retrying.wait())
        try:
            waiting: list[asyncio.Future[Any]] = [future, outage]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            outage.cancel()
        if not future.done():
            future.cancel()  # withdrawn: `_run_call` skips it
            raise self._unavailable()
        return future.result()

    def _unavailable(self) -> StorageUnavailable:
        return StorageUnavailable(
            f"storage cannot take writes now ({self.failing}); the daemon retries every "
            f"{RETRY_S[-1]:.0f} s and writes again once there is space; ask again then",
            retry_after_s=RETRY_S[-1],
        )

    async def checkpoint(self) -> None:
        """Copy committed pages from the WAL into the main file without waiting for
        readers (PASSIVE), so a plain copy of the main file is never far behind."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Call(_passive_checkpoint, future, transaction=False))
        await future

    async def checkpoint_every(self, interval_s: float) -> None:
        """SQLite checkpoints by WAL size (1000 pages); at a 5-minute cadence that can
        take hours, so the daemon also checkpoints on a timer. A failing checkpoint (disk
        full, I/O error) is logged and tried again, backing off to `interval_s`: it must
        not end the process (issue 17)."""
        pause_s = interval_s
        retries = _pauses()
        while True:
            await asyncio.sleep(pause_s)
            try:
                await self.checkpoint()
            except apsw.Error as exc:
                self.failing = f"checkpoint: {type(exc).__name__}: {exc}"
                log.error("checkpoint_failed", error=self.failing)
                pause_s = min(interval_s, next(retries))
            else:
                if self.failing is not None and self.failing.startswith("checkpoint:"):
                    self.failing = None
                pause_s, retries = interval_s, _pauses()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Commit until `stop()`; the queue is drained before this returns."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_ROWS and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = _STOP in batch
            await self._commit([item for item in batch if item is not _STOP])
            self.queued_bytes -= sum(_held_bytes(item) for item in batch if _is_row(item))
            if stop:
                return

    async def stop(self) -> None:
        """Ask `run()` to finish once what is queued now is committed; from now on a
        commit that fails is not retried (its rows are logged as lost), so a stop during
        a disk-full outage ends within a few seconds."""
        self._stopping.set()
        await self._queue.put(_STOP)

    async def close(self) -> None:
        """Checkpoint the WAL into the main file and close (after `run()` returned)."""
        if self._conn is not None:
            await self._in_thread(_checkpoint_and_close, self._conn)
            self._conn = None
        self._thread.shutdown(wait=True)

    async def _commit(self, items: list[Any]) -> None:
        rows: list[Row] = []
        for item in items:
            if isinstance(item, _Call):
                await self._write_rows(rows)
                rows = []
                await self._run_call(item)
            else:
                rows.append(item)
        await self._write_rows(rows)

    async def _write_rows(self, rows: list[Row]) -> None:
        if not rows:
            return
        pauses = _pauses()
        while True:
            try:
                began = time.perf_counter()
                stored = await self._in_thread(_write_batch, self._conn, rows)
                self.last_batch_s = time.perf_counter() - began
                self.metrics.commit_seconds.observe(self.last_batch_s)
                break
            except apsw.Error as exc:
                self.failing = f"{type(exc).__name__}: {exc}"
                self._retrying.set()
                if self._stopping.is_set():
                    log.error("rows_not_written", error=self.failing, rows=len(rows))
                    return
                log.error("commit_failed", error=self.failing, rows=len(rows))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), next(pauses))
        self.failing = None
        self._retrying.clear()
        self.rows_written += len(stored)
        _count(self.metrics, rows, stored)
        for listener in self._listeners:
            listener(stored)

    async def _run_call(self, call: _Call) -> None:
        if call.future.done():  # withdrawn by its caller (`call` during an outage)
            return
        try:
            if call.transaction:
                result = await self._in_thread(_transaction, self._conn, call.fn)
            else:
                result = await self._in_thread(call.fn, self._conn)
        except Exception as exc:  # handed to the caller, who owns the error
            if call.transaction and isinstance(exc, apsw.FullError | apsw.IOError):
                # A full disk is the caller's 503 (add a coin, back-fill), not a crash.
                exc = StorageUnavailable(
                    f"storage: {exc}; the daemon's health says more", retry_after_s=RETRY_S[-1]
                )
            if not call.future.done():
                call.future.set_exception(exc)
        else:
            if not call.future.done():
                call.future.set_result(result)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def _pauses() -> Iterator[float]:
    return itertools.chain(RETRY_S, itertools.repeat(RETRY_S[-1]))


def _is_row(item: object) -> bool:
    return isinstance(item, SnapshotIn | GapIn | RetractIn)


def _held_bytes(item: Row) -> int:
    if isinstance(item, SnapshotIn):
        return _ROW_BYTES + _LEVEL_BYTES * (len(item.book.bids) + len(item.book.asks))
    return _ROW_BYTES


def _count(metrics: Metrics, rows: list[Row], stored: list[Snapshot]) -> None:
    for snapshot in stored:
        metrics.snapshot_stored(
            snapshot.exchange, snapshot.symbol, snapshot.ts, snapshot.received_ts
        )
    for row in rows:
        if isinstance(row, GapIn):
            # Gap rows carry the coin id only; time missing is what a scraper can sum.
            metrics.gap_recorded(row.reason, row.end - row.start)


@contextlib.contextmanager
def _atomic(conn: apsw.Connection) -> Iterator[None]:
    """A transaction that keeps the error that ended it: on a full disk SQLite may have
    rolled back already, and `with conn:` would report "cannot rollback - no transaction
    is active" instead of "database or disk is full"."""
    conn.execute("BEGIN")
    try:
        yield
        conn.execute("COMMIT")
        dicts.writing(conn).committed()
    except BaseException:
        if not conn.getautocommit():
            conn.execute("ROLLBACK")
        raise


def _transaction(conn: apsw.Connection, fn: Callable[[apsw.Connection], T]) -> T:
    with _atomic(conn):
        result = fn(conn)
    return result


def _write_batch(conn: apsw.Connection, rows: list[Row]) -> list[Snapshot]:
    stored: list[Snapshot] = []
    with _atomic(conn):
        for row in rows:
            if isinstance(row, RetractIn):
                retract(conn, row)
            elif isinstance(row, GapIn):
                record_gap(conn, row.coin_id, row.start, row.end, row.reason)
            elif insert_snapshot(conn, row):
                stored.append(as_snapshot(row))
    return stored


_INSERT_COLUMNS = (
    "series",
    "ts",
    "exchange_ts",
    "received_ts",
    "capture",
    *COLUMNS,
    "codec",
    "book",
    "seq",
)
_INSERT = (
    f"INSERT OR IGNORE INTO snapshot_rows ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_INSERT_COLUMNS))})"
)
_INSERT_BOOK = "INSERT INTO books (id, book) VALUES (?, ?)"


def insert_snapshot(conn: apsw.Connection, row: SnapshotIn) -> bool:
    """Store one book; False if the slot already holds one (the first one stays).

    A blob over INLINE_BOOK_BYTES goes to `books`, its row keeping an empty `book`
    (docs/FORMAT.md), in the caller's transaction; a trigger keeps the series' counts."""
    if not 0 <= row.ts < TS_LIMIT:  # outside the book key's range: never stored
        log.error("snapshot_ts_out_of_range", coin_id=row.coin.id, ts=row.ts)
        return False
    bids, asks = row.book.bids, row.book.asks
    models = dicts.writing(conn)
    codec_id, blob = codec.encode(bids, asks, models.model_for(row.coin.id, row.ts))
    summary = summarize(bids, asks)
    inline = len(blob) <= INLINE_BOOK_BYTES
    conn.execute(
        _INSERT,
        (
            row.coin.id,
            row.ts,
            row.book.exchange_ts,
            row.received_ts,
            row.capture,
            *msgspec.structs.astuple(summary),
            codec_id,
            blob if inline else b"",
            row.book.seq,
        ),
    )
    if conn.changes() != 1:
        return False
    if not inline:
        conn.execute(_INSERT_BOOK, (book_key(row.coin.id, row.ts), blob))
    models.stored(row.coin.id, row.ts, codec_id, blob)
    return True


def record_gap(
    conn: apsw.Connection, coin_id: int, start: int, end: int, reason: GapReason
) -> None:
    """Record [start, end) as missing, extending the previous gap if it touches with the
    same reason, so a long outage is one row, not one per slot."""
    if end <= start:
        return
    # Gaps never overlap, so only the last one starting before `start` can touch it: one
    # index seek, where matching on end_ts would walk every gap of the coin.
    before = conn.execute(
        "SELECT start_ts, end_ts, reason FROM gaps WHERE series = ? AND start_ts < ? "
        "ORDER BY start_ts DESC LIMIT 1",
        (coin_id, start),
    ).fetchone()
    if before is not None and before[1] == start and before[2] == reason:
        conn.execute(
            "UPDATE gaps SET end_ts = ? WHERE series = ? AND start_ts = ?",
            (end, coin_id, before[0]),
        )
    else:
        conn.execute(
            "INSERT OR IGNORE INTO gaps (series, start_ts, end_ts, reason) VALUES (?, ?, ?, ?)",
            (coin_id, start, end, reason),
        )


def retract(conn: apsw.Connection, row: RetractIn) -> None:
    """Delete the live snapshots of (after, until] and record their slots as gaps."""
    where = "series = ? AND ts > ? AND ts <= ? AND capture IN ('ws', 'synthetic')"
    bounds = (row.coin_id, row.after, row.until)
    slots = [ts for (ts,) in conn.execute(f"SELECT ts FROM snapshot_rows WHERE {where}", bounds)]
    conn.execute(f"DELETE FROM snapshot_rows WHERE {where}", bounds)  # triggers: books, counts
    for ts in slots:
        record_gap(conn, row.coin_id, ts, ts + row.interval_ms, row.reason)
    if slots:
        log.warning("retracted", coin_id=row.coin_id, slots=len(slots), reason=row.reason)


def clear_gaps(conn: apsw.Connection, coin_id: int, start: int, end: int) -> None:
    """[start, end) now holds snapshots (back-filled): cut it out of the recorded gaps,
    keeping the parts of each gap on either side."""
    overlapping = conn.execute(
        "SELECT start_ts, end_ts, reason FROM gaps "
        "WHERE series = ? AND start_ts < ? AND end_ts > ?",
        (coin_id, end, start),
    ).fetchall()
    for row in overlapping:
        gap_start, gap_end, reason = row[0], row[1], row[2]
        assert isinstance(gap_start, int)
        assert isinstance(gap_end, int)
        conn.execute("DELETE FROM gaps WHERE series = ? AND start_ts = ?", (coin_id, gap_start))
        for piece_start, piece_end in ((gap_start, start), (end, gap_end)):
            if piece_start < piece_end:
                conn.execute(
                    "INSERT OR IGNORE INTO gaps (series, start_ts, end_ts, reason) "
                    "VALUES (?, ?, ?, ?)",
                    (coin_id, piece_start, piece_end, reason),
                )


def as_snapshot(row: SnapshotIn) -> Snapshot:
    return Snapshot(
        exchange=row.coin.exchange,
        symbol=row.coin.symbol,
        ts=row.ts,
        exchange_ts=row.book.exchange_ts,
        received_ts=row.received_ts,
        bids=row.book.bids,
        asks=row.book.asks,
        capture=row.capture,
        seq=row.book.seq,
    )


def _passive_checkpoint(conn: apsw.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _checkpoint_and_close(conn: apsw.Connection) -> None:
    """A checkpoint that fails (disk full) leaves the WAL for the next open to apply."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except apsw.Error as exc:
        log.error("checkpoint_failed", error=f"{type(exc).__name__}: {exc}", at="close")
    finally:
        conn.close()
