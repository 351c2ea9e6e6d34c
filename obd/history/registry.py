"""Finding history providers and keeping one instance of each: the built-ins (`plugin`,
`tardis`, `peer`), those of the `obd.history` entry-point group and those the plugin
directories hold (a module exporting `PROVIDER`), configured from
`[history]`. Which ones serve an exchange, in order, is `[history] providers` or its
per-exchange override `[history.exchanges]`."""

import importlib
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import msgspec
import structlog

from obd.config import History
from obd.errors import ConfigError, HistoryNotAvailable
from obd.exchanges import Exchanges
from obd.history.provider import HistoryProvider, HistoryRequest, Item, ProviderSpec, Served
from obd.plugin import FetchesHistory

__all__ = ["ENTRY_POINT_GROUP", "PLUGIN", "Providers", "specs"]

log = structlog.get_logger("obd.history")

ENTRY_POINT_GROUP = "obd.history"
PLUGIN = "plugin"  # the exchange plugin's own history (FetchesHistory)
# Built-in providers by name: module and attribute, imported on first use.
_BUILT_IN = {"tardis": "obd.history.tardis", "peer": "obd.history.peer"}


def specs(dropins: dict[str, ProviderSpec] | None = None) -> dict[str, ProviderSpec | str]:
    """Every provider by name: its spec, or why it failed to load (an entry point).
    The built-ins, then entry points, then the plugin directories' (`dropins`): a later
    one of a name wins, as exchange plugins do (so a user's `tardis` replaces obd's)."""
    found: dict[str, ProviderSpec | str] = {}
    for name, module in _BUILT_IN.items():
        found[name] = getattr(importlib.import_module(module), "PROVIDER")  # noqa: B009
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = point.load()
        except (Exception, SystemExit) as exc:  # a broken provider must not take obd down
            found[point.name] = f"entry point {point.value}: {type(exc).__name__}: {exc}"
            continue
        if isinstance(spec, ProviderSpec):
            found[spec.name] = spec
        else:
            found[point.name] = f"entry point {point.value}: not an obd.history ProviderSpec"
    found.update(dropins or {})
    return found


class Providers:
    """The configured providers, built on first use; `for_exchange` in preference order."""

    def __init__(self, config: History, exchanges: Exchanges, base_dir: str = ".") -> None:
        self._config = config
        self._exchanges = exchanges
        self._base_dir = base_dir
        self._specs: dict[str, ProviderSpec | str] | None = None
        self._open: dict[str, HistoryProvider] = {}

    def names_for(self, exchange: str) -> list[str]:
        return list(self._config.exchanges.get(exchange, self._config.providers))

    def for_exchange(
        self, exchange: str, only: str | None = None
    ) -> list[tuple[str, HistoryProvider]]:
        """(name, provider) for `exchange` in the configured order (or just `only`)."""
        names = [only] if only is not None else self.names_for(exchange)
        return [(name, self.get(name, exchange)) for name in names]

    def get(self, name: str, exchange: str) -> HistoryProvider:
        if name == PLUGIN:
            return _PluginHistory(self._exchanges, exchange)
        if (instance := self._open.get(name)) is None:
            instance = self._open[name] = self._build(name)
        return instance

    def check(self) -> None:
        """Every named provider exists and its options are valid (`obd check`, `run`)."""
        named = set(self._config.providers)
        for names in self._config.exchanges.values():
            named |= set(names)
        for name in sorted(named - {PLUGIN}):
            self._spec(name)

    def _spec(self, name: str) -> ProviderSpec:
        if self._specs is None:
            self._specs = specs(self._exchanges.plugins.providers)
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted([PLUGIN, *self._specs]))
            raise ConfigError(f"history.providers: no history provider {name!r} ({known})")
        if isinstance(spec, str):
            raise ConfigError(f"history.providers: provider {name!r} failed to load: {spec}")
        return spec

    def _build(self, name: str) -> HistoryProvider:
        spec = self._spec(name)
        if name in _BUILT_IN:  # typed in obd.config, checked when the config loaded
            table: Any = getattr(self._config, name)
            if getattr(table, "cache_dir", ""):  # relative to the config file, as paths are
                cache = str(Path(self._base_dir, table.cache_dir))
                table = msgspec.structs.replace(table, cache_dir=cache)
            return spec.build(table, f"history.{name}")
        return spec.build(self._config.options.get(name), f"history.options.{name}")

    async def close(self) -> None:
        opened, self._open = list(self._open.values()), {}
        for provider in opened:
            try:
                await provider.close()
            except Exception as exc:  # closing must not hide what ended the process
                log.warning("provider_close_failed", error=f"{type(exc).__name__}: {exc}")


class _PluginHistory:
    """The exchange plugin's `fetch_history` as a provider (labelled with the plugin's name)."""

    def __init__(self, exchanges: Exchanges, exchange: str) -> None:
        self._exchanges = exchanges
        self._exchange = exchange

    async def history(self, request: HistoryRequest) -> AsyncIterator[Item]:
        source = self._exchanges.get(request.exchange)
        if not isinstance(source, FetchesHistory):  # the capability is optional
            raise HistoryNotAvailable(f"history not available from {request.exchange}")
        label = self._exchanges.plugins.spec_for(request.exchange).name
        books = source.fetch_history(
            request.symbol, request.start, request.end, request.interval_ms, request.depth
        )
        try:
            async for slot, book in books:
                yield Served(slot, book, label)
        finally:
            if (close := getattr(books, "aclose", None)) is not None:
                await close()  # an abandoned async generator would be closed late, by gc

    async def probe(self, request: HistoryRequest) -> str | None:
        if isinstance(self._exchanges.get(request.exchange), FetchesHistory):
            return None
        return f"history not available from {request.exchange}"

    async def close(self) -> None:
        return None
