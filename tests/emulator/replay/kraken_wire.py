"""Kraken's WebSocket v2 `book` channel on the wire: levels, frames and the CRC32.

What ccxt 4.5.90 speaks (`ccxt/pro/kraken.py`: `watch_order_book` subscribes on
`urls.api.ws.publicV2`, `{"method": "subscribe", "params": {"channel": "book",
"symbol": ["BTC/USD"], "depth": 10}, "req_id": N}`), as Kraken documents it:

    {"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":
     61234.56,"qty":0.12345000}, ...],"asks":[...],"checksum":1234567890,"timestamp":
     "2024-08-08T23:54:12.345000Z"}]}
    {"channel":"book","type":"update","data":[{... only the levels that changed ...}]}

Prices and sizes are JSON numbers written with the pair's full precision (trailing
zeros kept: `0.12345000`); a size of zero removes the level; the client truncates its
book to the subscribed depth after each frame (a level pushed out gets no zero). The
checksum is over the top 10 levels a side: asks best first then bids best first, each
price and size with the decimal point removed and leading zeros stripped, CRC32 as an
unsigned integer. There is no sequence number: the checksum is the only integrity check.
"""

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["CHECKSUM_LEVELS", "checksum", "frame", "level", "levels_text", "timestamp"]

CHECKSUM_LEVELS = 10  # levels a side the checksum covers, whatever the depth

Level = tuple[str, str]  # (price, size) as written on the wire


def _digits(number: str) -> str:
    return number.replace(".", "").lstrip("0")


def checksum(asks: Sequence[Level], bids: Sequence[Level]) -> int:
    """Kraken's CRC32 of a book whose levels are the wire strings, best first."""
    payload = "".join(
        _digits(price) + _digits(size)
        for side in (asks, bids)
        for price, size in side[:CHECKSUM_LEVELS]
    )
    return zlib.crc32(payload.encode()) & 0xFFFFFFFF


def level(price: str, size: str) -> str:
    """One level as JSON text, the numbers exactly as given (trailing zeros kept)."""
    return f'{{"price":{price},"qty":{size}}}'


def levels_text(levels: Sequence[Level]) -> str:
    return "[" + ",".join(level(price, size) for price, size in levels) + "]"


def timestamp(ms: int | float) -> str:
    """RFC 3339 with microseconds, as Kraken v2 writes times."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def frame(
    kind: str,
    symbol: str,
    bids: Sequence[Level],
    asks: Sequence[Level],
    crc: int,
    time_ms: int | None,
) -> str:
    """A `book` frame (`kind` "snapshot" or "update") as Kraken writes it."""
    stamp = "" if time_ms is None else f',"timestamp":"{timestamp(time_ms)}"'
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":{levels_text(bids)},"asks":{levels_text(asks)},"checksum":{crc}{stamp}}}]}}'
    )
