"""What the MCP tools take and give: argument types (their JSON schema, via pydantic,
the SDK's boundary) and result Structs (msgspec, schema and encoding), with the limits
that keep every result small enough for a model's context."""

from typing import Annotated, Literal

import msgspec
from pydantic import BeforeValidator, Field

from obd.config import MAX_DEPTH
from obd.model import Gap
from obd.service import CoinView, SummaryRow

MAX_COINS = 200  # coins in one list_coins answer (~250 bytes each)
DEFAULT_LATEST_LEVELS = 10
MAX_LATEST_LEVELS = 100  # levels a side from get_latest: ~5 KB of JSON
DEFAULT_HISTORY_ROWS = 100
MAX_HISTORY_ROWS = 200
MAX_HISTORY_LEVELS = 20
HISTORY_BUDGET_BYTES = 48_000  # one get_history answer as JSON at most, ~12k tokens
# Worst cases, so the budget holds for any prices: a row is ~95 bytes of keys plus at
# most ~135 of values (24-character floats, rounded derived columns; BTC rows weigh
# ~165); a level a side is [price, size] with two 24-character floats (BTC: ~20).
ROW_BYTES = 240
LEVEL_BYTES = 2 * 52
MAX_GAPS = 100  # gaps in one coverage answer


def _no_bool(value: object) -> object:
    # pydantic's lax mode reads true as 1; a boolean here is always a mistake.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


ExchangeArg = Annotated[
    str,
    Field(
        description="Exchange id in lower case, e.g. 'binance', or 'sim' (obd's synthetic "
        "test market). list_coins shows the exchanges in use."
    ),
]
SymbolArg = Annotated[str, Field(description="Unified symbol BASE/QUOTE, e.g. 'BTC/USDT'.")]
TimeArg = Annotated[
    int | str,
    BeforeValidator(_no_bool),
    Field(
        description="Integer ms since the Unix epoch (UTC), or ISO 8601 such as "
        "'2026-11-25T12:00:00Z' (no zone means UTC)."
    ),
]
OptionalTime = Annotated[
    int | str | None,
    BeforeValidator(_no_bool),
    Field(description="Integer ms since the Unix epoch (UTC), or ISO 8601; omit for the default."),
]
IntervalArg = Annotated[
    int | str | None,
    BeforeValidator(_no_bool),
    Field(
        description="Cadence: '1s', '30s', '5m', '1h' or integer ms, from 1s to 1d "
        "(default from obd's config, often '5m')."
    ),
]
EveryArg = Annotated[
    int | str | None,
    BeforeValidator(_no_bool),
    Field(
        description="Sample the range: one row per bucket of this duration (its first "
        "snapshot), e.g. '1m' or '1h', 1s to 1d. Default: every stored snapshot."
    ),
]
DepthArg = Annotated[
    Annotated[int, Field(ge=1, le=MAX_DEPTH)] | None,
    BeforeValidator(_no_bool),
    Field(
        description=f"Levels a side to store, 1 to {MAX_DEPTH} (default from obd's config, "
        "often 100)."
    ),
]
LatestLevels = Annotated[
    Annotated[int, Field(ge=1, le=MAX_LATEST_LEVELS)] | None,
    BeforeValidator(_no_bool),
    Field(description=f"Levels a side to return, 1 to {MAX_LATEST_LEVELS} (default 10)."),
]
HistoryLimit = Annotated[
    Annotated[int, Field(ge=1, le=MAX_HISTORY_ROWS)] | None,
    BeforeValidator(_no_bool),
    Field(description=f"Rows to return, 1 to {MAX_HISTORY_ROWS} (default 100)."),
]
HistoryLevels = Annotated[
    Annotated[int, Field(ge=0, le=MAX_HISTORY_LEVELS)] | None,
    BeforeValidator(_no_bool),
    Field(
        description=f"Also return the top N levels a side of each book, 0 to "
        f"{MAX_HISTORY_LEVELS} (default 0: summary columns only; more levels, fewer rows)."
    ),
]
FormatArg = Annotated[
    Literal["parquet", "csv", "ndjson"],
    Field(
        description="'parquet' (needs pyarrow), 'csv' (one row per level) or 'ndjson' "
        "(one snapshot per line)."
    ),
]
PathArg = Annotated[
    str | None,
    Field(
        description="Where to write (stdio only). Relative paths are relative to obd's config "
        "directory; default downloads/<exchange>_<symbol>_<start>_<end>.<format> there. "
        "An existing file is never overwritten."
    ),
]


class CoinList(msgspec.Struct, frozen=True):
    """The coins obd collects."""

    coins: list[CoinView]
    truncated: bool  # more than MAX_COINS: the rest are left out


class AddedCoin(msgspec.Struct, frozen=True):
    coin: CoinView
    created: bool  # False: it was already collected with this interval and depth
    collecting: bool  # a process is collecting into this database right now
    note: str


class RemovedCoin(msgspec.Struct, frozen=True):
    coin: CoinView
    note: str


class History(msgspec.Struct, frozen=True):
    """Compact rows, oldest first: the summary columns of each stored snapshot."""

    rows: list[SummaryRow]
    truncated: bool  # the range holds more rows than these
    next_start: int | None  # pass as `start` to continue where these rows stop
    note: str | None


class Download(msgspec.Struct, frozen=True, omit_defaults=True):
    format: str
    count: int  # snapshots in the file (or behind the url)
    start: int
    end: int
    path: str | None = None
    url: str | None = None
    size_bytes: int | None = None
    note: str | None = None


class CoverageResult(msgspec.Struct, frozen=True):
    """Slots expected in [start, end) at the coin's interval, snapshots present, and why
    the missing ones are missing."""

    start: int
    end: int
    interval_ms: int
    expected: int
    present: int
    gaps: list[Gap]  # [start, end, reason], half-open ms, oldest first
    gaps_total: int
    truncated: bool  # more than MAX_GAPS gaps: narrow the range to see the rest
