"""The exchange-plugin contract: the one obd module a plugin imports (docs/PLUGINS.md).

A plugin module exports `PLUGIN = PluginSpec(...)`. Its factory returns an
`Exchange`; beside it an instance may have the optional capabilities
`FetchesBooks` (REST snapshots), `FetchesHistory` (order-book history) and
`ListsMarkets` (market discovery), which the kernel finds with `isinstance`. The
errors a plugin raises and the data types it yields are re-exported here, so
`from obd.plugin import ...` is all it needs.
The kernel never names an exchange; it asks the loaded plugins for the one serving
an exchange id. `obd.testing.check_plugin` runs the contract's tests on a plugin.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

import msgspec

from obd.config import key_path_message
from obd.errors import (
    BadRequest,
    ChecksumFailed,
    ConfigError,
    Disconnected,
    ExchangeError,
    FeedError,
    HistoryNotAvailable,
    NoLiveStream,
    NotFound,
    NotSynced,
    ObdError,
    RateLimited,
)
from obd.model import Book, Level

__all__ = [
    "Availability",
    "BadRequest",
    "Book",
    "ChecksumFailed",
    "ConfigError",
    "Disconnected",
    "Exchange",
    "ExchangeError",
    "FeedError",
    "FetchesBooks",
    "FetchesHistory",
    "HistoryNotAvailable",
    "Level",
    "ListsMarkets",
    "Market",
    "NoLiveStream",
    "NotFound",
    "NotSynced",
    "ObdError",
    "PluginSpec",
    "RateLimited",
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

    async def check_availability(self, symbol: str) -> Availability:
        """Whether `symbol` is listed (and trading); never raises for an unlisted one."""
        ...

    def watch(self, symbol: str, depth: int) -> AsyncIterator[Book]:
        """Consistent books as they change, each at least `depth` levels a side where the
        market has them. Raises when the stream breaks; the kernel reconnects with backoff.

        Raise a `FeedError` subclass (`Disconnected`, `NotSynced`, `ChecksumFailed`,
        `RateLimited`, `ExchangeError`) to name why: it becomes the gap's reason.
        `NotFound` means the symbol is no longer listed. `NoLiveStream` means there is
        no live feed at all: the kernel then calls `fetch_book` at every slot."""
        ...

    async def close(self) -> None:
        """Release connections; the instance is not used after it."""
        ...


@runtime_checkable
class FetchesBooks(Protocol):
    """Optional, beside `Exchange`: a snapshot on request (a REST call). The kernel
    uses it at each slot when `watch` raised `NoLiveStream`, and for slots at which
    the live feed is down."""

    async def fetch_book(self, symbol: str, depth: int) -> Book:
        """The book now, cut to `depth` levels a side, with `received_ts` set to when
        the answer arrived. Raises the same errors as `watch`."""
        ...


@runtime_checkable
class FetchesHistory(Protocol):
    """Optional, beside `Exchange`: order-book history. A plugin without it needs no
    method at all: the kernel answers "history not available from <id>" itself and
    leaves the slots as gaps."""

    def fetch_history(
        self, symbol: str, start_ms: int, end_ms: int, interval_ms: int, depth: int
    ) -> AsyncIterator[tuple[int, Book]]:
        """`(slot_ts, book as it stood at slot_ts)` for the slots in [start_ms, end_ms) the
        source can give, oldest first; never synthesised. May raise `HistoryNotAvailable`
        for a range (or a symbol) it has none for."""
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
    # The type of its `[exchanges.<id>]` table: a msgspec Struct whose field types carry
    # the checks (`Annotated[int, msgspec.Meta(ge=10)]`), so `obd check` makes them.
    options: type[msgspec.Struct] | None = None
    serves: Callable[[str], bool] | None = None  # more exchange ids (a generic plugin)
    # The ids `serves` accepts, listed (cheaply: nothing imported) for list_exchanges.
    exchange_ids: Callable[[], list[str]] | None = None
    description: str = ""

    def options_for(self, exchange_id: str, table: dict[str, Any] | None) -> Any:
        """`[exchanges.<exchange_id>]` as this plugin's options (None if it takes none);
        a bad or unknown key is a ConfigError naming its path, as config errors do."""
        if self.options is None:
            if table:
                raise ConfigError(f"exchanges.{exchange_id}: plugin {self.name} takes no options")
            return None
        try:
            return msgspec.convert(table or {}, self.options)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"exchanges.{exchange_id}.{key_path_message(str(exc))}") from None

    def build(self, exchange_id: str, table: dict[str, Any] | None = None) -> Exchange:
        """An instance serving `exchange_id`, its options checked first."""
        return self.factory(exchange_id, self.options_for(exchange_id, table))
