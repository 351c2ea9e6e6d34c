"""Kraken's book checksum (WebSocket v2 `book`), checked by obd since ccxt cannot.

Kraken's v2 book frames have no sequence number: a CRC32 of the top 10 levels a side,
in every snapshot and update, is the only way to notice a lost or mangled frame. ccxt
4.5.90 has the check behind `options.watchOrderBook.checksum` (off: "exchange checksum
not reliable"), but turned on it raises `AttributeError: 'float' object has no
attribute 'split'` on the first frame (it formats the floats it keeps as if they were
the wire strings), and the raise ends the socket's receive loop. So obd leaves it off
and checks here, after ccxt applied the frame, against ccxt's own book.

The CRC is over each price and size written at the pair's precision (trailing zeros
kept), decimal point removed, leading zeros stripped: asks best first, then bids. ccxt
parses the frames as floats, so the precision is not in what it keeps; it is learnt
from the frame itself: the precisions (decimals of price, of size) under which the
book's CRC equals the one Kraken sent (the smallest that hold every level exactly,
and up). A snapshot relearns them; updates are checked with the learnt ones. A wrong
book matches some precision by chance with odds of about 1 in 2**32 / 169.
"""

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from obd.plugin import ChecksumFailed

__all__ = ["check", "crc", "unsubscribe"]

_LEVELS = 10  # the checksum covers the top 10 levels a side, whatever the depth
_MAX_DECIMALS = 12
_precisions: dict[str, tuple[int, int]] = {}  # symbol -> (price decimals, size decimals)


def check(message: Any, books: Mapping[str, Any]) -> dict[str, Exception]:
    """The symbols whose book (as ccxt now keeps it) disagrees with the frame's CRC32."""
    if not isinstance(message, dict) or message.get("channel") != "book":
        return {}
    failed: dict[str, Exception] = {}
    snapshot = message.get("type") == "snapshot"
    for item in message.get("data") or []:
        symbol, sent = item.get("symbol"), item.get("checksum")
        book = books.get(symbol) if isinstance(symbol, str) else None
        if book is None or not isinstance(sent, int):
            continue  # no book: ccxt was not keeping it (obd already resyncing)
        asks, bids = book["asks"][:_LEVELS], book["bids"][:_LEVELS]
        known = None if snapshot else _precisions.get(symbol)
        if known is not None and crc(asks, bids, *known) == sent:
            continue
        found = _learn(asks, bids, sent) if known is None else None
        if found is not None:
            _precisions[symbol] = found
            continue
        failed[symbol] = ChecksumFailed(
            f"kraken {symbol} book fails the exchange's checksum {sent}: a frame was lost"
            " or mangled; resyncing"
        )
    return failed


def crc(asks: Sequence[Any], bids: Sequence[Any], price_dp: int, size_dp: int) -> int:
    """Kraken's CRC32 of ccxt levels `[price, size, ...]` (floats) at those precisions."""
    payload = "".join(
        _digits(level[0], price_dp) + _digits(level[1], size_dp)
        for side in (asks, bids)
        for level in side[:_LEVELS]
    )
    return zlib.crc32(payload.encode()) & 0xFFFFFFFF


def unsubscribe(symbol: str, limit: int | None) -> dict[str, Any]:
    """The frame that stops a book's stream, so that a new subscribe gets a new snapshot
    (Kraken refuses a second subscribe to a book the socket already streams)."""
    params: dict[str, Any] = {"channel": "book", "symbol": [symbol]}
    if limit is not None:
        params["depth"] = limit
    return {"method": "unsubscribe", "params": params}


def _digits(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}".replace(".", "").lstrip("0")


def _learn(asks: Sequence[Any], bids: Sequence[Any], sent: int) -> tuple[int, int] | None:
    """The (price, size) decimals under which the book's CRC is `sent`, if any."""
    levels = [*asks, *bids]
    price_from = max((_least_decimals(level[0]) for level in levels), default=0)
    size_from = max((_least_decimals(level[1]) for level in levels), default=0)
    for price_dp in range(price_from, _MAX_DECIMALS + 1):
        for size_dp in range(size_from, _MAX_DECIMALS + 1):
            if crc(asks, bids, price_dp, size_dp) == sent:
                return price_dp, size_dp
    return None


def _least_decimals(value: float) -> int:
    """The fewest decimals that write `value` exactly (as the float it is)."""
    for decimals in range(_MAX_DECIMALS + 1):
        if float(f"{value:.{decimals}f}") == value:
            return decimals
    return _MAX_DECIMALS
