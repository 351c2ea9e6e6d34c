"""The history-provider contract (public): what a provider yields and how it is found.

A provider serves books of the past for slots of a range: `history(request)` yields,
oldest first, a `Served` book for each slot it can give and an `Unserved` run for the
slots it cannot (with why). It never invents or copies a book forward; the kernel
checks each book again (crossed, empty, off the slot grid: refused) before storing it
with `capture = "backfill:<label>"`.

Third-party providers export `PROVIDER = ProviderSpec(...)` from a module named in the
`obd.history` entry-point group (docs/HISTORY.md).
"""

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

import msgspec

from obd.config import key_path_message
from obd.errors import ConfigError
from obd.model import Book

__all__ = [
    "HistoryProvider",
    "HistoryRequest",
    "Item",
    "ProbesHistory",
    "ProviderSpec",
    "Served",
    "Unserved",
]


class HistoryRequest(msgspec.Struct, frozen=True):
    """Slots [start, end) of one series: `start` and `end` are multiples of `interval_ms`."""

    exchange: str  # obd's (ccxt's) exchange id
    symbol: str  # the unified symbol, as obd stores it
    start: int  # ms, the first slot
    end: int  # ms, the first slot not asked for
    interval_ms: int
    depth: int  # levels a side obd keeps (a deeper book is cut)


class Served(msgspec.Struct, frozen=True):
    """The book as it stood at `slot`. `label` is its provenance after `backfill:`
    (the provider's name, or more: `peer:ws`, `tardis:book_snapshot_25`)."""

    slot: int
    book: Book  # received_ts: when a collector would have had it (None: unknown)
    label: str


class Unserved(msgspec.Struct, frozen=True):
    """Slots [start, end) this provider cannot give, and why (one line a user reads)."""

    start: int
    end: int
    why: str


Item = Served | Unserved


class HistoryProvider(Protocol):
    """One configured provider. Created once per process; `close` releases it."""

    def history(self, request: HistoryRequest) -> AsyncIterator[Item]:
        """Books at the slots of the range this provider can give, oldest first, and
        `Unserved` runs for the others (a slot neither served nor named is taken as
        unserved, "not served"). Raise `HistoryNotAvailable` to say it serves nothing
        of this series at all (an unknown exchange or symbol)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ProbesHistory(Protocol):
    """Optional, beside `HistoryProvider`: a cheap look (no books fetched) at whether
    it could serve some of a range, for `/v1/coverage?fillable=true`."""

    async def probe(self, request: HistoryRequest) -> str | None:
        """None if it could serve some of the range, else why not (one line)."""
        ...


class ProviderSpec(msgspec.Struct, frozen=True):
    """What a provider module exports as `PROVIDER`."""

    name: str  # as `[history] providers` names it
    factory: Callable[[Any], HistoryProvider]  # (options) -> provider
    # `[history.options.<name>]` (or a built-in's own table) as a msgspec Struct.
    options: type[msgspec.Struct] | None = None
    description: str = ""

    def build(self, table: dict[str, Any] | msgspec.Struct | None, key: str) -> HistoryProvider:
        """An instance; a bad option is a ConfigError naming `key` and the option."""
        if isinstance(table, msgspec.Struct) or self.options is None:
            if self.options is None and table:
                raise ConfigError(f"{key}: provider {self.name} takes no options")
            return self.factory(table)
        try:
            return self.factory(msgspec.convert(table or {}, self.options))
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{key}.{key_path_message(str(exc))}") from None
