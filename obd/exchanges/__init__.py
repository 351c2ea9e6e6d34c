"""Open exchanges: one plugin instance per exchange id, created on first use."""

from typing import Any

import msgspec

from obd.config import key_path_message
from obd.errors import ConfigError
from obd.exchanges.discovery import Registry
from obd.plugin import Exchange, PluginSpec


class Exchanges:
    """Maps exchange ids to live plugin instances, configured from `[exchanges.<id>]`."""

    def __init__(self, registry: Registry, options: dict[str, dict[str, Any]]) -> None:
        self.registry = registry
        self._options = options
        self._open: dict[str, Exchange] = {}

    def get(self, exchange: str) -> Exchange:
        """The instance serving `exchange`; NotFound if no plugin serves it."""
        if (instance := self._open.get(exchange)) is None:
            spec = self.registry.spec_for(exchange)
            instance = self._open[exchange] = spec.factory(
                exchange, self.options_for(spec, exchange)
            )
        return instance

    def options_for(self, spec: PluginSpec, exchange: str) -> Any:
        """The `[exchanges.<id>]` table as the plugin's options type (errors name the key)."""
        raw = self._options.get(exchange)
        if spec.options is None:
            if raw:
                raise ConfigError(f"exchanges.{exchange}: plugin {spec.name} takes no options")
            return None
        try:
            return msgspec.convert(raw or {}, spec.options)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"exchanges.{exchange}.{key_path_message(str(exc))}") from None

    def check_options(self) -> None:
        """Validate every configured `[exchanges.<id>]` table without opening anything."""
        for exchange in self._options:
            self.options_for(self.registry.spec_for(exchange), exchange)

    async def close(self) -> None:
        instances, self._open = list(self._open.values()), {}
        for instance in instances:
            await instance.close()
