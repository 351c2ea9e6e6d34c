"""A Binance-spot exchange emulator for tests and benchmarks (127.0.0.1 only).

Its books are seeded from recorded Binance depth snapshots in `tests/data/emulator_*`
(from the MIT-licensed nkaz001/hftbacktest examples) and evolve by seeded random
changes. See `server.py` for the protocol it speaks and the controls it offers.
"""

from tests.emulator.book import Market
from tests.emulator.server import Emulator

__all__ = ["Emulator", "Market"]
