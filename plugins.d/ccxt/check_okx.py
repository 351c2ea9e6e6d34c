"""OKX v5 order books: the CRC32 checksum each `books` frame carries, which ccxt
(4.5.90, ccxt/pro/okx.py `handle_order_book_message`) never verifies.

ccxt does chain `prevSeqId` to the book's nonce (a dropped or renumbered frame is an
InvalidNonce, and ccxt resyncs), but a frame whose levels are wrong or lost with its
numbering intact would leave a wrong book that only the checksum reveals.

OKX's checksum is CRC32 (signed 32-bit) of `bid1px:bid1sz:ask1px:ask1sz:...` over the
top 25 levels a side, a shorter side simply ending, in the exchange's own strings:
"0.10" and "0.1" give different checksums. ccxt keeps floats, so the check rebuilds
each level's strings: those the frames themselves carried (remembered per instrument
from every frame seen since its snapshot: exact), else the float written plainly
("61837.6", "0.00001"; exact wherever OKX writes no trailing zeros, as on its spot
books). A level this check never saw in a frame and that OKX wrote with trailing zeros
would fail the check: a needless resync, after which every level is known; never a
wrong book passed as right.

The frame's book in ccxt is the one whose nonce ccxt just set to the frame's seqId;
a frame ccxt refused (its own sequence check dropped the book) is not checked here.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from zlib import crc32

from obd.plugin import ChecksumFailed

_LEVELS = 25  # per side, in OKX's checksum
_KEPT = 1000  # strings remembered a side, at most (the channel keeps 400 levels)

# (channel, instId) -> (bids, asks), each price -> (price, size) as OKX wrote them
_seen: dict[tuple[str, str], tuple[dict[float, tuple[str, str]], ...]] = {}


def check(message: Any, books: Mapping[str, Any]) -> dict[str, Exception]:
    """The symbols whose ccxt book this frame's checksum proves wrong."""
    if not isinstance(message, dict) or message.get("action") not in ("snapshot", "update"):
        return {}
    arg = message.get("arg") or {}
    channel, inst_id = str(arg.get("channel")), str(arg.get("instId"))
    failed: dict[str, Exception] = {}
    for data in message.get("data") or []:
        strings = _remember((channel, inst_id), data, message["action"] == "snapshot")
        expected = data.get("checksum")
        symbol = _symbol(inst_id, data.get("seqId"), books)
        if expected is None or symbol is None:
            continue  # no checksum sent (bbo-tbt, books5), or ccxt refused the frame
        got = checksum(books[symbol], strings)
        if got != int(expected):
            failed[symbol] = ChecksumFailed(
                f"okx {symbol} book fails its checksum at seqId {data.get('seqId')}: "
                f"{got} computed, {expected} sent"
            )
    return failed


def checksum(book: Any, strings: tuple[dict[float, tuple[str, str]], ...] = ({}, {})) -> int:
    """OKX's checksum of a ccxt book (levels `[price, size]`, floats, best first)."""
    sides = [
        [_text(known, level[0], level[1]) for level in book[side][:_LEVELS]]
        for side, known in zip(("bids", "asks"), strings, strict=True)
    ]
    parts = []
    for i in range(_LEVELS):
        parts += [f"{side[i][0]}:{side[i][1]}" for side in sides if i < len(side)]
    value = crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def plain(value: float) -> str:
    """A float as OKX writes a decimal: plain digits, no trailing zeros, no exponent."""
    return format(Decimal(repr(value)).normalize(), "f")


def _text(known: dict[float, tuple[str, str]], price: float, size: float) -> tuple[str, str]:
    sent = known.get(price)
    if sent is not None and float(sent[1]) == size:
        return sent
    return plain(price), plain(size)


def _remember(
    key: tuple[str, str], data: dict[str, Any], snapshot: bool
) -> tuple[dict[float, tuple[str, str]], ...]:
    """Note the strings of the levels the frame carries; returns (bids, asks)."""
    if snapshot or key not in _seen:
        _seen[key] = ({}, {})
    sides = _seen[key]
    for known, name, best_first in ((sides[0], "bids", True), (sides[1], "asks", False)):
        for level in data.get(name) or []:
            price, size = str(level[0]), str(level[1])
            if float(size) == 0:
                known.pop(float(price), None)
            else:
                known[float(price)] = (price, size)
        if len(known) > _KEPT:  # levels OKX let fall out of its window without a delete
            for stale in sorted(known, reverse=best_first)[_KEPT // 2 :]:
                del known[stale]
    return sides


def _symbol(inst_id: str, seq: Any, books: Mapping[str, Any]) -> str | None:
    """The ccxt symbol of `inst_id` ("BTC-USDT" -> "BTC/USDT", "BTC-USDT-SWAP" ->
    "BTC/USDT:USDT", ...) whose book ccxt just moved to `seq`; None if there is not
    exactly one."""
    base, _, rest = inst_id.partition("-")
    quote = rest.split("-")[0]
    found = [
        symbol
        for symbol, book in list(books.items())
        if symbol.split(":")[0] == f"{base}/{quote}" and book.get("nonce") == seq
    ]
    return found[0] if len(found) == 1 else None
