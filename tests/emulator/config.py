"""TOML for pointing an obd exchange at the emulator (no TOML writer ships with obd)."""

import json
from typing import Any

from tests.emulator.server import Emulator

# Quick to notice trouble in tests: listings reloaded every second, pings every
# second, a silent connection declared dead after 3 s, requests given up after 2 s.
FAST = {"markets_ttl_s": 1, "ping_interval_s": 1, "stale_after_s": 3, "timeout_s": 2}


def toml_value(value: Any) -> str:
    """A TOML inline value; strings, numbers and booleans are spelled as in JSON."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def binance_table(emulator: Emulator, **options: Any) -> str:
    """`[exchanges.binance]` with every ccxt REST and websocket URL on the emulator,
    spot markets only, and `options` (obd's ccxt plugin keys) over FAST."""
    table: dict[str, Any] = {
        "urls": emulator.ccxt_urls(),
        "options": {"fetchMarkets": {"types": ["spot"]}},
        **FAST,
        **options,
    }
    lines = [f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items()]
    return "[exchanges.binance]\n" + "\n".join(lines) + "\n"
