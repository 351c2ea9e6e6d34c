"""`binancecoinm` is served by the Binance venue (see `binance.py`)."""

from tests.emulator.replay.venues.binance import create

__all__ = ["create"]
