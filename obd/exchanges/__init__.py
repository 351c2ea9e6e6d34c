"""Open exchanges: one plugin instance per exchange id, created on first use."""

from typing import Any

from obd.exchanges.discovery import Plugins
from obd.plugin import Exchange


class Exchanges:
    """Maps exchange ids to live plugin instances, configured from `[exchanges.<id>]`."""

    def __init__(self, plugins: Plugins, options: dict[str, dict[str, Any]]) -> None:
        self.plugins = plugins
        self._options = options
        self._open: dict[str, Exchange] = {}

    def get(self, exchange: str) -> Exchange:
        """The instance serving `exchange`; NotFound if no plugin serves it."""
        if (instance := self._open.get(exchange)) is None:
            spec = self.plugins.spec_for(exchange)
            instance = self._open[exchange] = spec.build(exchange, self._options.get(exchange))
        return instance

    def check_options(self) -> None:
        """Validate every configured `[exchanges.<id>]` table by its plugin's options
        type, without opening anything (`obd check` and `obd run` alike)."""
        for exchange, table in self._options.items():
            self.plugins.spec_for(exchange).options_for(exchange, table)

    async def close(self) -> None:
        instances, self._open = list(self._open.values()), {}
        for instance in instances:
            await instance.close()
