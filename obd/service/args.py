"""The service's arguments, as users typed them (strings from a query, JSON values):
each checked once, here, with errors that name the argument."""

import base64
import binascii
import re

from obd.errors import BadRequest
from obd.times import now_ms, parse_time

__all__ = ["bounded", "cursor_ts", "encode_cursor", "exchange", "symbol", "time_range"]

_EXCHANGE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_SYMBOL = re.compile(r"[^\s\x00-\x1f]{1,100}")


def exchange(value: object) -> str:
    if value is None or value == "":
        raise BadRequest("exchange: required")
    if not isinstance(value, str) or not _EXCHANGE_ID.fullmatch(value):
        raise BadRequest(
            f"exchange: expected a lower-case exchange id like 'binance', got {value!r:.60}"
        )
    return value


def symbol(value: object) -> str:
    if value is None or value == "":
        raise BadRequest("symbol: required")
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise BadRequest(f"symbol: expected a unified symbol like 'BTC/USDT', got {value!r:.60}")
    return value


def bounded(name: str, value: object, lo: int, hi: int, default: int | None = None) -> int:
    """An integer argument (or its decimal string) in [lo, hi]; the error names it."""
    if value is None and default is not None:
        return default
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"{name}: expected an integer from {lo} to {hi}, got {value!r:.60}")
    return value


def time_range(start: object, end: object) -> tuple[int, int]:
    begin = 0 if start is None else parse_time(start, "start")
    stop = now_ms() + 1 if end is None else parse_time(end, "end")
    if begin >= stop:
        raise BadRequest("start: must be before end")
    return begin, stop


_CURSOR_PREFIX = b"obd1:"


def encode_cursor(ts: int) -> str:
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + str(ts).encode()).decode().rstrip("=")


def cursor_ts(cursor: object, begin: int, stop: int) -> int:
    """The ts a cursor resumes at; it must lie inside the requested range."""
    malformed = BadRequest("cursor: malformed; pass the `next` value of the previous page")
    if not isinstance(cursor, str) or len(cursor) > 64:
        raise malformed
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, binascii.Error):
        raise malformed from None
    digits = raw.removeprefix(_CURSOR_PREFIX)
    if digits == raw or not digits.isdigit():
        raise malformed
    ts = int(digits)
    if not begin <= ts < stop:
        raise BadRequest("cursor: does not belong to this range")
    return ts
