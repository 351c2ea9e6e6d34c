"""Integrity checks ccxt does not make (or makes only when asked), one per exchange.

ccxt applies every book frame it receives; for several exchanges it never looks at
the checksum or sequence number the frame carries, so a lost frame would leave a
wrong book that obd stores as right. A check runs after ccxt handled a frame, with
the decoded frame and ccxt's books, and names the symbols whose book the frame
proves wrong; the plugin then throws that book away and resyncs, and the slots in
between are gaps (`checksum` or `not_synced`), never a wrong book.

Add an exchange by writing `def check(message, books) -> dict[symbol, error]` and
listing it in `CHECKS` under its ccxt id.
"""

from collections.abc import Callable, Mapping
from typing import Any

from . import check_bybit, check_coinbase, check_kraken, check_okx

# (decoded frame, ccxt's orderbooks by symbol) -> {symbol: the error to resync with}
Check = Callable[[Any, Mapping[str, Any]], dict[str, Exception]]

CHECKS: dict[str, Check] = {
    "bybit": check_bybit.check,
    "coinbase": check_coinbase.check,
    "kraken": check_kraken.check,
    "okx": check_okx.check,
}
