"""The exchange-plugin contract: the one module (with `obd.model` and `obd.errors`) plugins import.

A plugin module exports `PLUGIN = PluginSpec(...)`. The kernel never names an
exchange; it asks the registry for the plugin serving an exchange id and talks
to the `Exchange` its factory returns.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

import msgspec

from obd.errors import HistoryNotAvailable
from obd.model import Book

__all__ = [
    "Availability",
    "Book",
    "Exchange",
    "FetchesBooks",
    "HistoryNotAvailable",
    "ListsMarkets",
    "Market",
    "PluginSpec",
]


class Availability(msgspec.Struct, frozen=True):
    """Whether a symbol can be collected, and the instrument's grid if known."""

    available: bool
    reason: str | None = None
    tick_size: float | None = None
    lot_size: float | None = None


class Exchange(Protocol):
    """One exchange id's market data, as a plugin serves it."""

    @property
    def synthetic(self) -> bool:
        """True when the data is made up (the `sim` plugin); obd labels it wherever it shows."""
        ...

    async def check_availability(self, symbol: str) -> Availability: ...

    def watch(self, symbol: str, depth: int) -> AsyncIterator[Book]:
        """Consistent books as they change, each at least `depth` levels a side where the
        market has them. Raises when the stream breaks; the kernel reconnects with backoff.

        Raise an `obd.errors.FeedError` subclass (`Disconnected`, `NotSynced`,
        `RateLimited`, `ExchangeError`) to name why: it becomes the gap's reason.
        `NotFound` means the symbol is no longer listed. `NoLiveStream` means there is
        no live feed at all: the kernel then calls `fetch_book` at every slot."""
        ...

    def fetch_history(
        self, symbol: str, start_ms: int, end_ms: int, interval_ms: int, depth: int
    ) -> AsyncIterator[tuple[int, Book]]:
        """`(slot_ts, book as it stood at slot_ts)` for the slots in [start_ms, end_ms) the
        source can give, oldest first. Raises `HistoryNotAvailable` where it has none."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class FetchesBooks(Protocol):
    """Optional, beside `Exchange`: a snapshot on request (a REST call). The kernel
    uses it at each slot when `watch` raised `NoLiveStream`, and for slots at which
    the live feed is down."""

    async def fetch_book(self, symbol: str, depth: int) -> Book:
        """The book now, cut to `depth` levels a side, with `received_ts` set to when
        the answer arrived. Raises the same errors as `watch`."""
        ...


# -- optional: market discovery (list_markets) --


class Market(msgspec.Struct, frozen=True):
    """One instrument an exchange lists, as an agent picks a symbol from."""

    symbol: str  # unified, as check_availability and add_coin take it
    base: str
    quote: str
    type: str  # "spot", "swap", "future", "option" (ccxt's words)
    active: bool  # trading now; False: listed but halted or delisting


@runtime_checkable
class ListsMarkets(Protocol):
    """Optional, beside `Exchange`: every instrument the exchange lists, so an agent
    never has to guess a symbol. Served by `list_markets`."""

    async def list_markets(self) -> list[Market]: ...


class PluginSpec(msgspec.Struct, frozen=True):
    """What a plugin module exports as `PLUGIN`."""

    name: str  # the exchange id it serves (and the plugin's name)
    factory: Callable[[str, Any], Exchange]  # (exchange_id, options) -> Exchange
    options: type[msgspec.Struct] | None = None  # type of its `[exchanges.<id>]` table
    serves: Callable[[str], bool] | None = None  # more exchange ids (a generic plugin)
    # The ids `serves` accepts, listed (cheaply: nothing imported) for list_exchanges.
    exchange_ids: Callable[[], list[str]] | None = None
    description: str = ""
