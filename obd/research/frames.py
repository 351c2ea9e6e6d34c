"""DataFrames of a research dataset's ranges (obd.research): the levels in a long layout
and the plain summary columns. polars and pandas are optional (the `research` extra):
imported on first use, with an error naming the extra when missing.

Columns are built chunk by chunk as numpy arrays and joined once at the end, so the
peak is about twice the frame, never a Python object per value.
"""

import importlib
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from obd.errors import MissingExtra
from obd.storage.codec import Levels
from obd.storage.reader import PLAIN_COLUMNS

__all__ = ["SUMMARY_COLUMNS", "MissingExtra", "levels", "require", "summary"]

SIDES = ("bid", "ask")  # `side` codes 0 and 1
SUMMARY_COLUMNS = PLAIN_COLUMNS  # ts, exchange_ts, received_ts, capture, then the summary
_FLOATS = SUMMARY_COLUMNS[6:13]

DataFrameKind = Literal["polars", "pandas"]  # which DataFrame library


def require(module: str) -> Any:
    """The module, or MissingExtra naming the `research` extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{module} is not installed; install the research extra: pip install 'obd[research]'"
        ) from exc


# -- levels: one row per level ----------------------------------------------------------


def levels(
    chunks: Iterable[tuple[list[tuple[Any, ...]], Levels]],
    depth: int | None,
    frame: DataFrameKind,
) -> Any:
    """ts (int64), side ("bid"/"ask"), level (int16, 0 = best), price, size (float64);
    rows by ts, then bids before asks, then level. `chunks` as `Dataset.decoded`."""
    library = require(frame)  # fail before reading anything
    parts = [_level_columns(rows, decoded, depth) for rows, decoded in chunks]
    columns = {
        name: np.concatenate([part[name] for part in parts]) if parts else np.empty(0, dtype)
        for name, dtype in _LEVEL_DTYPES.items()
    }
    return (
        _polars_levels(library, columns) if frame == "polars" else _pandas_levels(library, columns)
    )


_LEVEL_DTYPES = {
    "ts": np.int64,
    "side": np.uint32,
    "level": np.int16,
    "price": np.float64,
    "size": np.float64,
}


def _level_columns(
    rows: list[tuple[Any, ...]], decoded: Levels, depth: int | None
) -> dict[str, npt.NDArray[Any]]:
    """The chunk's columns straight from the decoded arrays (no Python object a level)."""
    counts = decoded.counts()
    ts = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    level = np.arange(len(decoded.prices)) - np.repeat(decoded.offsets[:-1], counts)
    n_bids = np.repeat(decoded.n_bids, counts)
    side = (level >= n_bids).view(np.uint8)
    level -= n_bids * side
    columns: dict[str, npt.NDArray[Any]] = {
        "ts": np.repeat(ts, counts),
        "side": side.astype(np.uint32),
        "level": level.astype(np.int16),
        "price": decoded.prices,
        "size": decoded.sizes,
    }
    if depth is not None:
        keep = level < depth
        columns = {name: column[keep] for name, column in columns.items()}
    return columns


def _polars_levels(pl: Any, columns: dict[str, npt.NDArray[Any]]) -> Any:
    side = pl.Series("side", SIDES, dtype=pl.Enum(SIDES)).gather(columns["side"])
    return pl.DataFrame({**columns, "side": side})


def _pandas_levels(pd: Any, columns: dict[str, npt.NDArray[Any]]) -> Any:
    side = pd.Categorical.from_codes(columns["side"].astype(np.int8), categories=SIDES)
    return pd.DataFrame({**columns, "side": side})


# -- summary: the plain columns, no blob decoded ----------------------------------------


def summary(rows: Iterable[tuple[Any, ...]], frame: DataFrameKind) -> Any:
    """SUMMARY_COLUMNS as a DataFrame: NULL is null in polars, NaN/<NA> in pandas."""
    library = require(frame)
    parts = [_summary_columns(chunk) for chunk in _batches(rows, 4096)]
    columns = {
        name: np.concatenate([part[name] for part in parts])
        if parts
        else np.empty(0, _SUMMARY_DTYPES.get(name, np.float64))
        for name in (*SUMMARY_COLUMNS, "exchange_ts_null")
    }
    return (
        _polars_summary(library, columns)
        if frame == "polars"
        else _pandas_summary(library, columns)
    )


_SUMMARY_DTYPES: dict[str, Any] = {
    "ts": np.int64,
    "exchange_ts": np.int64,
    "exchange_ts_null": np.bool_,
    "received_ts": np.int64,
    "capture": object,
    "bid_levels": np.int32,
    "ask_levels": np.int32,
    "crossed": np.bool_,
}


def _batches(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _summary_columns(batch: list[tuple[Any, ...]]) -> dict[str, npt.NDArray[Any]]:
    raw = dict(zip(SUMMARY_COLUMNS, zip(*batch, strict=True), strict=True))
    exchange_ts = raw["exchange_ts"]
    columns = {
        name: np.array(raw[name], dtype=_SUMMARY_DTYPES.get(name, np.float64))  # None -> NaN
        for name in SUMMARY_COLUMNS
        if name != "exchange_ts"
    }
    columns["exchange_ts_null"] = np.array([v is None for v in exchange_ts], dtype=np.bool_)
    columns["exchange_ts"] = np.array([v or 0 for v in exchange_ts], dtype=np.int64)
    return columns


def _polars_summary(pl: Any, columns: dict[str, npt.NDArray[Any]]) -> Any:
    series = [
        pl.Series(name, columns[name], nan_to_null=name in _FLOATS) for name in SUMMARY_COLUMNS
    ]
    frame = pl.DataFrame(series).with_columns(pl.col("capture").cast(pl.String))
    nulls = pl.Series(columns["exchange_ts_null"])
    return frame.with_columns(
        pl.when(nulls).then(None).otherwise(pl.col("exchange_ts")).alias("exchange_ts")
    )


def _pandas_summary(pd: Any, columns: dict[str, npt.NDArray[Any]]) -> Any:
    data: dict[str, Any] = {name: columns[name] for name in SUMMARY_COLUMNS}
    data["exchange_ts"] = pd.arrays.IntegerArray(
        columns["exchange_ts"], columns["exchange_ts_null"]
    )
    return pd.DataFrame(data)
