"""What the MCP tools take and give: argument types (their JSON schema, via pydantic,
the SDK's boundary) and result Structs (msgspec, schema and encoding), with the limits
that keep every result small enough for a model's context, and the functions that
build results from the service's values."""

import math
from typing import Annotated, Literal

import msgspec
from pydantic import BeforeValidator, Field

from obd.config import MAX_DEPTH
from obd.model import Gap, Snapshot
from obd.service import CoinView, ExchangeView, MarketView, SummaryRow
from obd.service.coverage import Fillable, Source
from obd.times import iso

MAX_COINS = 200  # coins in one list_coins answer (~250 bytes each)
DEFAULT_LATEST_LEVELS = 10
MAX_LATEST_LEVELS = 100  # levels a side from get_latest: ~5 KB of JSON
DEFAULT_HISTORY_ROWS = 100
MAX_HISTORY_ROWS = 200
MAX_HISTORY_LEVELS = 20
HISTORY_BUDGET_BYTES = 56_000  # one get_history answer as JSON at most, ~14k tokens: 200 rows
# Worst cases, so the budget holds for any prices: a row is ~105 bytes of keys plus at
# most ~165 of values (24-character floats, rounded derived columns, a 24-character
# ts_iso; BTC rows weigh ~200); a level a side is [price, size] with two
# 24-character floats (BTC: ~20).
ROW_BYTES = 280
LEVEL_BYTES = 2 * 52
MAX_GAPS = 100  # gaps in one coverage answer
DEFAULT_MARKETS = 50
MAX_MARKETS = 200  # markets in one list_markets answer (~120 bytes each at most)
MAX_EXCHANGES = 400  # exchange ids in one list_exchanges answer (~70 bytes each); ccxt has ~110


def _no_bool(value: object) -> object:
    # pydantic's lax mode reads true as 1; a boolean here is always a mistake.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


ExchangeArg = Annotated[
    str,
    Field(
        description="Exchange id in lower case, e.g. 'binance', or 'sim' (obd's synthetic "
        "test market). list_exchanges lists them; list_coins shows those in use."
    ),
]
SymbolArg = Annotated[
    str,
    Field(description="Unified symbol BASE/QUOTE, e.g. 'BTC/USDT'; list_markets lists them."),
]
_TIMES = (
    "Integer ms since the Unix epoch (UTC), ISO 8601 such as '2026-11-25T12:00:00Z' "
    "(no zone means UTC), or relative to now: 'now', '-30m', '-6h', '-1d', '-2w'."
)
TimeArg = Annotated[int | str, BeforeValidator(_no_bool), Field(description=_TIMES)]
OptionalTime = Annotated[
    int | str | None,
    BeforeValidator(_no_bool),
    Field(description=f"{_TIMES} Omit for the default."),
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
        "(one snapshot per line). Over HTTP (/mcp) only 'ndjson' is served."
    ),
]
PathArg = Annotated[
    str | None,
    Field(
        description="File name to write (stdio only), relative to obd's download directory "
        "([mcp] download_dir); subfolders are made inside it, and a path leaving it is "
        "refused. Default <exchange>_<symbol>_<start>_<end>.<format>. An existing file is "
        "never overwritten."
    ),
]
BackfillArg = Annotated[
    bool,
    Field(
        description="Also fill the range's holes (slots collection is done with) from obd's "
        "history providers first, storing what they serve (labelled backfill:<provider>) "
        "within obd's back-fill limits; needs the 'write' scope over HTTP. Default false: "
        "only what is stored is read."
    ),
]
QueryArg = Annotated[
    str | None,
    Field(
        max_length=100,
        description="Filter: part of the symbol ('btc', 'BTC/', '/USDC', 'BTC/USDT:USDT'), "
        "case-insensitive. Omit for every market.",
    ),
]
MarketsLimit = Annotated[
    Annotated[int, Field(ge=1, le=MAX_MARKETS)] | None,
    BeforeValidator(_no_bool),
    Field(description=f"Markets to return, 1 to {MAX_MARKETS} (default {DEFAULT_MARKETS})."),
]
OffsetArg = Annotated[
    Annotated[int, Field(ge=0, le=1_000_000)] | None,
    BeforeValidator(_no_bool),
    Field(description="Skip this many matches: pass `next_offset` of the previous answer."),
]


class CoinEntry(CoinView, frozen=True):
    """A coin, its stored range also as ISO 8601."""

    first_ts_iso: str | None
    last_ts_iso: str | None


class CoinList(msgspec.Struct, frozen=True):
    """The coins obd collects."""

    coins: list[CoinEntry]
    truncated: bool  # more than MAX_COINS: the rest are left out
    collecting: bool  # a process (a daemon, or `obd mcp --collect`) collects right now
    note: str | None


class Latest(Snapshot, frozen=True, gc=False):
    """A snapshot, its slot also as ISO 8601."""

    ts_iso: str = ""


class HistoryRow(SummaryRow, frozen=True, omit_defaults=True):
    """A row of get_history, its ts also as ISO 8601."""

    ts_iso: str = ""


class AddedCoin(msgspec.Struct, frozen=True):
    coin: CoinView
    created: bool  # False: it was already collected with this interval and depth
    collecting: bool  # a process is collecting into this database right now
    note: str


class RemovedCoin(msgspec.Struct, frozen=True):
    coin: CoinView
    note: str


class History(msgspec.Struct, frozen=True, omit_defaults=True):
    """Compact rows, oldest first: the summary columns of each stored snapshot."""

    rows: list[HistoryRow]
    truncated: bool  # the range holds more rows than these
    next_start: int | None  # pass as `start` to continue where these rows stop
    note: str | None
    # With backfill=true: what the back-fill did (`Backfilled`'s fields).
    backfilled: int | None = None
    gaps: list[Gap] | None = None
    gaps_truncated: bool | None = None
    unfilled_why: str | None = None


class Download(msgspec.Struct, frozen=True, omit_defaults=True):
    format: str
    count: int  # snapshots in the file (or behind the url)
    start: int
    end: int
    start_iso: str
    end_iso: str
    path: str | None = None
    url: str | None = None
    size_bytes: int | None = None
    note: str | None = None
    # With backfill=true: what the back-fill did (`Backfilled`'s fields).
    backfilled: int | None = None
    gaps: list[Gap] | None = None
    gaps_truncated: bool | None = None
    unfilled_why: str | None = None


class Backfilled(msgspec.Struct, frozen=True):
    """What back-filling a range did before a tool read it."""

    backfilled: int  # rows fetched from the history providers and stored by this call
    # What stays missing in [start, end) afterwards, [start, end, reason], the first
    # MAX_GAPS (`gaps_truncated` when there are more).
    gaps: list[Gap]
    gaps_truncated: bool
    # Why the providers could not fill what stays missing (each one's reason), if they said.
    unfilled_why: str | None


class CoverageResult(msgspec.Struct, frozen=True):
    """Slots expected in [start, end) at the coin's interval, snapshots present, and why
    the missing ones are missing."""

    start: int
    end: int
    start_iso: str
    end_iso: str
    interval_ms: int
    expected: int
    present: int
    gaps: list[Gap]  # [start, end, reason], half-open ms, oldest first
    gaps_total: int
    truncated: bool  # more than MAX_GAPS gaps: narrow the range to see the rest
    # The history providers a history request asks to fill gaps, in order (docs/HISTORY.md).
    providers: list[str] = msgspec.field(default_factory=list)
    # Asked for with `sources`: [start, end, capture] runs of present slots by capture
    # (live "ws"/"rest"/"synthetic", or "backfill:<provider>"), at most MAX_GAPS.
    sources: list[Source] | None = None
    # Asked for with `fillable`: [start, end, provider or null, why] for the first 20 gaps.
    fillable: list[Fillable] | None = None


class MarketList(msgspec.Struct, frozen=True):
    """One page of the markets an exchange lists, best matches first."""

    exchange: str
    markets: list[MarketView]
    total: int  # markets matching the query
    truncated: bool  # more match: call again with offset=next_offset
    next_offset: int | None


class ExchangeList(msgspec.Struct, frozen=True):
    """The exchange ids obd can collect from."""

    exchanges: list[ExchangeView]
    truncated: bool  # more than MAX_EXCHANGES: the rest are left out


# -- building results --


def coin_entry(coin: CoinView, collecting: bool) -> CoinEntry:
    fields = msgspec.structs.asdict(coin)
    if not collecting and coin.status == "active":
        fields["status"] = "idle"  # added, but no process collects into this file now
    return CoinEntry(
        **fields,
        first_ts_iso=None if coin.first_ts is None else iso(coin.first_ts),
        last_ts_iso=None if coin.last_ts is None else iso(coin.last_ts),
    )


def row_cap(levels: int) -> int:
    return max(1, min(MAX_HISTORY_ROWS, HISTORY_BUDGET_BYTES // (ROW_BYTES + levels * LEVEL_BYTES)))


def compact(row: SummaryRow) -> HistoryRow:
    """Derived columns rounded for reading (the file keeps full precision); prices stay exact."""
    fields = msgspec.structs.asdict(row)
    fields.update(
        mid=_significant(row.mid, 12),
        spread_bps=_significant(row.spread_bps, 4),
        bid_size_10=_significant(row.bid_size_10, 12) or 0.0,
        ask_size_10=_significant(row.ask_size_10, 12) or 0.0,
        imbalance_10=_significant(row.imbalance_10, 4),
    )
    return HistoryRow(**fields, ts_iso=iso(row.ts))


def _significant(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")
