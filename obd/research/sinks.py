"""Writing a range of snapshots to one new file: NDJSON, CSV or Parquet.

Each chunk is encoded and written on a worker thread, so a long range neither sits
in memory nor stalls the event loop (samplers may share it). The file appears under
its name only when complete, and never replaces an existing file.
"""

import asyncio
import csv
import importlib
import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec
import numpy as np

from obd import ndjson
from obd.errors import BadRequest, Conflict
from obd.files import publishing
from obd.model import Gap, Snapshot
from obd.storage.codec import Levels
from obd.storage.summary import COLUMNS as SUMMARY_COLUMNS
from obd.storage.summary import summarize

FORMATS = ("parquet", "csv", "ndjson")
# `capture` says where each book came from (live, REST, which back-fill): provenance.
CSV_HEADER = (
    "ts",
    "exchange_ts",
    "received_ts",
    "seq",
    "capture",
    "side",
    "level",
    "price",
    "size",
)


def parquet_available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def check_format(form: str) -> None:
    if form not in FORMATS:
        raise BadRequest(f"format: expected one of {', '.join(FORMATS)}, got {form!r:.40}")
    if form == "parquet" and not parquet_available():
        raise BadRequest(
            "format: parquet needs pyarrow, which is not installed "
            "(pip install 'obd[research]'); ask for csv or ndjson instead"
        )


async def write(chunks: AsyncIterator[list[Snapshot]], target: Path, form: str) -> int:
    """Every snapshot of `chunks` into a new file at `target`; returns how many."""
    check_format(form)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with publishing(target) as partial:  # never replaces a file that appeared meanwhile
            sink = open_sink(form, partial)
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(sink.write, chunk)
                    count += len(chunk)
                await asyncio.to_thread(sink.close)
            finally:
                sink.close()
    except FileExistsError:
        raise Conflict(f"path: {target} already exists; pass another path") from None
    return count


class Sink(Protocol):
    def write(self, chunk: list[Snapshot]) -> None: ...
    def close(self) -> None: ...


def open_sink(
    form: str, path: Path, *, with_coin: bool = True, metadata: dict[str, str] | None = None
) -> Sink:
    """A writer of `form` into a new file at `path` (`obd export` shares it). Without
    `with_coin`, Parquet leaves out the exchange and symbol columns: a Hive-partitioned
    export carries them in its directory names, and readers refuse a column twice.
    `metadata` goes into a Parquet file's key-value metadata (CSV and NDJSON have none)."""
    check_format(form)
    if form == "parquet":
        return _Parquet(path, with_coin=with_coin, metadata=metadata)
    return _SINKS[form](path)


class _Ndjson:
    """One snapshot per line, the shape of GET /v1/books?format=ndjson."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")

    def write(self, chunk: list[Snapshot]) -> None:
        self._file.write(ndjson.lines(chunk))

    def close(self) -> None:
        self._file.close()


class _Csv:
    """One row per level (`CSV_HEADER`); floats as Python writes them, which round-trip."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_HEADER)

    def write(self, chunk: list[Snapshot]) -> None:
        self._writer.writerows(
            (*_stamps(snapshot), side, index, price, size)
            for snapshot in chunk
            for side, levels in (("bid", snapshot.bids), ("ask", snapshot.asks))
            for index, (price, size) in enumerate(levels)
        )

    def close(self) -> None:
        self._file.close()


def _stamps(snapshot: Snapshot) -> tuple[int, int | None, int, int | None, str]:
    return snapshot.ts, snapshot.exchange_ts, snapshot.received_ts, snapshot.seq, snapshot.capture


class _Parquet:
    """One row per snapshot: its stamps, the summary columns of the snapshots table
    (recomputed from the book by the function that wrote them, so they are equal), and
    prices and sizes as float64 list columns; zstd-compressed."""

    def __init__(
        self, path: Path, *, with_coin: bool = True, metadata: dict[str, str] | None = None
    ) -> None:
        # Imported here: pyarrow is optional (the `research` extra) and heavy.
        self._pa: Any = importlib.import_module("pyarrow")
        parquet: Any = importlib.import_module("pyarrow.parquet")
        pa = self._pa
        prices = pa.list_(pa.float64())
        coin = [("exchange", pa.string()), ("symbol", pa.string())] if with_coin else []
        summary = [(name, _SUMMARY_TYPES.get(name, "float64")) for name in SUMMARY_COLUMNS]
        self._schema = pa.schema(
            [
                *coin,
                ("ts", pa.int64()),
                ("ts_utc", pa.timestamp("ms", tz="UTC")),
                ("exchange_ts", pa.int64()),
                ("received_ts", pa.int64()),
                ("capture", pa.string()),
                ("seq", pa.int64()),
                *((name, pa.type_for_alias(kind)) for name, kind in summary),
                ("bid_price", prices),
                ("bid_size", prices),
                ("ask_price", prices),
                ("ask_size", prices),
            ],
            metadata=metadata,
        )
        self._stamps = [*(name for name, _ in coin), *_STAMPS]
        levels = ("bid_price", "bid_size", "ask_price", "ask_size")
        self._plain = [name for name in self._schema.names if name not in levels]
        # No dictionary for the float lists: Parquet would build one per page and drop
        # it (prices and sizes barely repeat), which took 60% of an export's time.
        self._writer = parquet.ParquetWriter(
            str(path), self._schema, compression="zstd", use_dictionary=self._plain
        )
        self._closed = False

    def write(self, chunk: list[Snapshot]) -> None:
        columns: dict[str, list[Any]] = {name: [] for name in self._schema.names}
        for snapshot in chunk:
            for name in self._stamps:
                columns[name].append(getattr(snapshot, name))
            for name, value in zip(
                SUMMARY_COLUMNS, _summary(snapshot.bids, snapshot.asks), strict=True
            ):
                columns[name].append(value)
            for side, levels in (("bid", snapshot.bids), ("ask", snapshot.asks)):
                columns[f"{side}_price"].append([level[0] for level in levels])
                columns[f"{side}_size"].append([level[1] for level in levels])
        columns["ts_utc"] = columns["ts"]  # the same ms, typed as a UTC timestamp
        self._writer.write_table(self._pa.table(columns, schema=self._schema))

    def write_levels(
        self, rows: list[tuple[Any, ...]], decoded: Levels, exchange: str = "", symbol: str = ""
    ) -> None:
        """Like `write`, from `Dataset.decoded(..., summary=True)`'s (rows, levels): the
        summary columns are the file's own, the list columns are built from the decoded
        arrays (Arrow takes them without a copy a level)."""
        pa = self._pa
        plain = dict(zip(_ROW_COLUMNS, zip(*rows, strict=True), strict=False))
        plain["exchange"], plain["symbol"] = (exchange,) * len(rows), (symbol,) * len(rows)
        plain["ts_utc"] = plain["ts"]  # the same ms, typed as a UTC timestamp
        stored = zip(*(row[_SUMMARY_AT:] for row in rows), strict=True)
        plain.update(zip(SUMMARY_COLUMNS, stored, strict=True))
        plain["crossed"] = tuple(bool(crossed) for crossed in plain["crossed"])  # 0/1 in SQLite
        columns: dict[str, Any] = {name: list(plain[name]) for name in self._plain}
        for side, count, values in zip(
            ("bid", "ask"), (decoded.n_bids, decoded.n_asks), decoded.sides(), strict=True
        ):
            offsets = np.zeros(len(count) + 1, dtype=np.int32)
            np.add.accumulate(count, out=offsets[1:])
            for name, flat in zip(("price", "size"), values, strict=True):
                columns[f"{side}_{name}"] = pa.ListArray.from_arrays(offsets, flat)
        self._writer.write_table(self._pa.table(columns, schema=self._schema))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()


_STAMPS = ("ts", "exchange_ts", "received_ts", "capture", "seq")
_SUMMARY_TYPES = {"bid_levels": "int32", "ask_levels": "int32", "crossed": "bool"}


def _summary(bids: Any, asks: Any) -> tuple[Any, ...]:
    return msgspec.structs.astuple(summarize(bids, asks))


# -- the gaps beside an export's data ---------------------------------------------------

GAP_COLUMNS = ("start_ts", "end_ts", "reason")


def write_gaps(form: str, path: Path, gaps: list[Gap], metadata: dict[str, str]) -> None:
    """`gaps` into a new file at `path` in `form`: start_ts and end_ts (ms, [start,
    end)) and reason; Parquet adds start_utc and end_utc as UTC timestamps."""
    if form == "parquet":
        pa: Any = importlib.import_module("pyarrow")
        parquet: Any = importlib.import_module("pyarrow.parquet")
        stamp = pa.timestamp("ms", tz="UTC")
        schema = pa.schema(
            [
                ("start_ts", pa.int64()),
                ("end_ts", pa.int64()),
                ("reason", pa.string()),
                ("start_utc", stamp),
                ("end_utc", stamp),
            ],
            metadata=metadata,
        )
        starts, ends = [g.start for g in gaps], [g.end for g in gaps]
        columns = [starts, ends, [g.reason for g in gaps], starts, ends]
        parquet.write_table(pa.table(columns, schema=schema), str(path), compression="zstd")
    elif form == "csv":
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(GAP_COLUMNS)
            writer.writerows((g.start, g.end, g.reason) for g in gaps)
    else:
        encode = msgspec.json.Encoder().encode
        with path.open("wb") as out:
            out.writelines(
                encode(dict(zip(GAP_COLUMNS, (g.start, g.end, g.reason), strict=True))) + b"\n"
                for g in gaps
            )


# What `Dataset.decoded` rows hold, in order (obd.storage.reader.book_rows): these,
# codec and book, then with `summary=True` the summary columns.
_ROW_COLUMNS = ("ts", "exchange_ts", "received_ts", "capture", "seq")
_SUMMARY_AT = len(_ROW_COLUMNS) + 2


_SINKS: dict[str, Callable[[Path], Sink]] = {"ndjson": _Ndjson, "csv": _Csv, "parquet": _Parquet}
