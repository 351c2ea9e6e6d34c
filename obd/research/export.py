"""`obd export`: a range of the database as files, one per series and UTC day, in a Hive
layout that Parquet readers (pyarrow, polars, DuckDB, Spark) take as one dataset:

    DIR/exchange=<E>/symbol=<S>/interval=<I>/date=<YYYY-MM-DD>/part.<parquet|csv|ndjson>

A series is a coin at one interval (`1s`, `5m`): a coin collected at two intervals
exports as two series, never mixed.

Values are URI-encoded (`BTC/USDT` is `symbol=BTC%2FUSDT`), which is how those readers
decode Hive segments. The file formats are those of download_history (obd/research/sinks.py),
except that Parquet leaves exchange and symbol to the path and says what it holds in
its key-value metadata. Each coin's gaps in the range go beside its dates, in
`_gaps.<ext>` (the `_` keeps it out of the dataset).

Resumable: a partition is written to `.part.<ext>.partial` beside its final name and
renamed when complete, so a present `part.<ext>` is whole. A re-run skips those, except
for days the data may still grow into or that the range cut (today, or a day the start
or end falls inside): those are always rewritten. Reads go through obd.research (the
file opened read-only, CHUNK snapshots a query), so memory stays flat, and a running
daemon neither blocks the export nor is blocked by it.
"""

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import msgspec

from obd import __version__, research
from obd.errors import NotFound
from obd.files import publishing
from obd.research import sinks as download
from obd.research.instants import When, to_ms
from obd.times import format_interval, now_ms

__all__ = ["DAY_MS", "Partition", "Result", "gaps_path", "partitions", "run", "series_directory"]

DAY_MS = 86_400_000
CHUNK = 1_024  # snapshots a read and a Parquet row group: ~20 MB at 100 levels a side
_EXTENSIONS = {"parquet": "parquet", "csv": "csv", "ndjson": "ndjson"}


class Partition(msgspec.Struct, frozen=True):
    """One series' snapshots with start <= ts < end, all in one UTC day."""

    exchange: str
    symbol: str
    interval: str  # the canonical spelling of the series' interval ("1s", "5m")
    date: str  # YYYY-MM-DD, UTC
    start: int
    end: int
    final: bool  # a whole day in the past: once written, never rewritten

    def path(self, out: Path, form: str) -> Path:
        directory = series_directory(out, self.exchange, self.symbol, self.interval)
        return directory / f"date={self.date}" / f"part.{_EXTENSIONS[form]}"


def series_directory(out: Path, exchange: str, symbol: str, interval: str) -> Path:
    """`out/exchange=<E>/symbol=<S>/interval=<I>`, the values URI-encoded as Hive
    readers decode them."""
    return out.joinpath(
        f"exchange={quote(exchange, safe='')}",
        f"symbol={quote(symbol, safe='')}",
        f"interval={interval}",
    )


class Result(msgspec.Struct):
    written: int = 0  # partitions (re)written
    skipped: int = 0  # complete partitions left as they were
    snapshots: int = 0  # snapshots written


def run(
    database: Path,
    out: Path,
    form: str,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    start: When = None,
    end: When = None,
    progress: TextIO | None = None,
) -> Result:
    """Export the range of every matching coin, and each coin's gaps in it; `progress`
    gets a bar if it is a terminal. `start`/`end` take what obd.research takes."""
    download.check_format(form)  # before any work: parquet without pyarrow fails here
    low, high = to_ms(start, "start"), to_ms(end, "end")
    with research.open(database) as dataset:
        keys = _matching(dataset, exchange, symbol)
        plan = partitions(dataset, exchange, symbol, low, high, now_ms())
        about = {key: _metadata(dataset, *key) for key in keys}
        bar = _Progress(progress, len(plan))
        result = Result()
        for part in plan:
            target = part.path(out, form)
            partial = target.with_name(f".{target.name}.partial")
            if part.final and target.exists():
                partial.unlink(missing_ok=True)  # a stray from an interrupted run
                result.skipped += 1
            else:
                metadata = {**about[(part.exchange, part.symbol, part.interval)], "date": part.date}
                result.snapshots += _write(dataset, part, target, partial, form, metadata, bar)
                result.written += 1
            bar.partition_done()
        for key, metadata in about.items():
            _write_gaps(dataset, key, out, form, low, high, metadata)
        bar.close()
    return result


def gaps_path(out: Path, exchange: str, symbol: str, interval: str, form: str) -> Path:
    """Where a series' gaps go: `_gaps.<ext>` in its `interval=` directory, beside its
    dates. The leading `_` keeps it out of a Hive dataset (pyarrow skips such files)."""
    return series_directory(out, exchange, symbol, interval) / f"_gaps.{_EXTENSIONS[form]}"


def _metadata(
    dataset: research.Dataset, exchange: str, symbol: str, interval: str
) -> dict[str, str]:
    """What a Parquet file of this series says of itself (its key-value metadata)."""
    info = dataset.info(exchange, symbol, interval=interval)
    return {
        "exchange": exchange,
        "symbol": symbol,
        "interval": format_interval(info.interval_ms),
        "interval_ms": str(info.interval_ms),
        "depth": str(info.depth),
        "synthetic": "true" if info.synthetic else "false",
        "obd_version": __version__,
        "schema_version": str(dataset.schema_version),
    }


def _write_gaps(
    dataset: research.Dataset,
    key: tuple[str, str, str],
    out: Path,
    form: str,
    start: int | None,
    end: int | None,
    metadata: dict[str, str],
) -> None:
    """The series' recorded gaps in [start, end) (unbounded where None), rewritten on
    every run: a day with no snapshot at all has no partition, but its gap is here."""
    exchange, symbol, interval = key
    gaps = dataset.gaps(exchange, symbol, start, end, interval=interval)
    target = gaps_path(out, *key, form)
    target.parent.mkdir(parents=True, exist_ok=True)
    bounds = {
        "start_ms": "" if start is None else str(start),
        "end_ms": "" if end is None else str(end),
    }
    with publishing(target, replace=True) as partial:
        download.write_gaps(form, partial, gaps, {**metadata, **bounds})


def partitions(
    dataset: research.Dataset,
    exchange: str | None,
    symbol: str | None,
    start: int | None,
    end: int | None,
    now: int,
) -> list[Partition]:
    """The series-days of the range that hold data, by exchange, symbol, interval, date."""
    keys = _matching(dataset, exchange, symbol)
    today = now // DAY_MS * DAY_MS
    plan: list[Partition] = []
    for key in keys:
        span = dataset.span(*key)
        if span is None:
            continue
        low = max(span[0], start if start is not None else span[0])
        high = min(span[1] + 1, end if end is not None else span[1] + 1)
        plan += _days(key, low, high, start, end, today)
    return plan


def _matching(
    dataset: research.Dataset, exchange: str | None, symbol: str | None
) -> list[tuple[str, str, str]]:
    """(exchange, symbol, interval) of each matching series: a coin at two intervals is
    two series, exported apart."""
    keys = [
        (key[0], key[1], format_interval(key[2]))
        for key in dataset.series_keys()
        if exchange in (None, key[0]) and symbol in (None, key[1])
    ]
    if not keys:
        raise NotFound(f"export: no series matches exchange={exchange} symbol={symbol}")
    return keys


def _days(
    key: tuple[str, str, str], low: int, high: int, start: int | None, end: int | None, today: int
) -> Iterator[Partition]:
    for day in range(low // DAY_MS * DAY_MS, high, DAY_MS):
        cut = (start is not None and start > day) or (end is not None and end < day + DAY_MS)
        yield Partition(
            exchange=key[0],
            symbol=key[1],
            interval=key[2],
            date=datetime.fromtimestamp(day / 1000, UTC).strftime("%Y-%m-%d"),
            start=max(day, low),
            end=min(day + DAY_MS, high),
            final=not cut and day + DAY_MS <= today,
        )


def _write(
    dataset: research.Dataset,
    part: Partition,
    target: Path,
    partial: Path,
    form: str,
    metadata: dict[str, str],
    bar: "_Progress",
) -> int:
    """The partition into `partial`, then renamed to `target`; no file if it is empty."""
    # Parquet is built from the books decoded as arrays; the text formats need Snapshots.
    where = (part.exchange, part.symbol, part.start, part.end, CHUNK)
    reading = _read_ahead(
        dataset.decoded(*where, interval=part.interval, summary=True)
        if form == "parquet"
        else dataset.chunks(*where, interval=part.interval)
    )
    with contextlib.closing(reading) as chunks:  # the reader thread ends here, always
        first = next(chunks, None)
        if first is None:
            target.unlink(missing_ok=True)
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with publishing(target, partial=partial, replace=True):
            sink = download.open_sink(form, partial, with_coin=False, metadata=metadata)
            try:
                for chunk in itertools.chain([first], chunks):
                    if form == "parquet":
                        sink.write_levels(*chunk)  # type: ignore[attr-defined]
                        done = len(chunk[0])
                    else:
                        sink.write(chunk)
                        done = len(chunk)
                    count += done
                    bar.add(done)
            finally:
                sink.close()
        return count


def _read_ahead(items: Iterator[Any]) -> Generator[Any, None, None]:
    """`items`, each read on a worker thread while the consumer writes the one before:
    SQLite, zstd and the codec core read and decode a chunk without the GIL while
    pyarrow's writer compresses the last one without it too. The worker is the only user
    of the dataset until it ends, and it has ended when this returns or raises."""
    ahead: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(more: bool, item: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ahead.put((more, item), timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(True, item):
                    return
            hand_over(False, None)
        except BaseException as exc:  # raised again in the consumer's thread
            hand_over(False, exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator stopped early lets go of its cursor now
                close()

    worker = threading.Thread(target=produce, name="obd-export-read", daemon=True)
    worker.start()
    try:
        while True:
            more, item = ahead.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        worker.join()


class _Progress:
    """A one-line bar on a terminal, redrawn at most 5 times a second; silent otherwise."""

    def __init__(self, stream: TextIO | None, partitions: int) -> None:
        self._stream = stream if stream is not None and stream.isatty() else None
        self._total = partitions
        self._done = 0
        self._snapshots = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def add(self, snapshots: int) -> None:
        self._snapshots += snapshots
        self._draw()

    def partition_done(self) -> None:
        self._done += 1
        self._draw(force=self._done == self._total)

    def close(self) -> None:
        if self._stream is not None and self._total:
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._stream is None or (not force and now - self._drawn < 0.2):
            return
        self._drawn = now
        filled = 30 * self._done // max(self._total, 1)
        rate = self._snapshots / max(now - self._started, 1e-9)
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {self._done}/{self._total} days"
            f"  {self._snapshots:,} snapshots  {rate:,.0f}/s "
        )
        self._stream.flush()
