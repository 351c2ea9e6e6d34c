"""Times are integer ms since the Unix epoch (UTC); intervals are ms too.

Wherever a time is taken (HTTP, CLI, MCP, WebSocket) it may also be written as
ISO 8601 or relative to now: `now`, `-90s`, `-15m`, `-6h`, `-1d`, `-2w`."""

import re
import time
from datetime import UTC, datetime

from obd.errors import BadRequest

MIN_INTERVAL_MS = 1_000  # 1 s: finer cadences are a tick store, not a snapshot store
MAX_INTERVAL_MS = 86_400_000  # 1 day
MAX_TS = 32_503_680_000_000  # year 3000: anything later is a typo (or seconds*1000 twice)

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# ASCII digits only: `\d` and str.isdigit() also take '²' or '٣', which int() refuses.
_INTERVAL = re.compile(r"([0-9]{1,9})(ms|s|m|h|d)")
_AGO = re.compile(r"-([0-9]{1,9})(ms|s|m|h|d|w)")  # `-6h`: six hours before now
_MS = re.compile(r"-?[0-9]{1,16}")  # an integer ms, as text
_AGO_UNIT_MS = {**_UNIT_MS, "w": 7 * 86_400_000}
TIME_FORMS = "ms since the epoch or ISO 8601, or relative to now ('now', '-6h', '-1d')"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_digits(text: str) -> bool:
    """Whether `text` is a non-negative integer in ASCII digits (what int() surely takes)."""
    return text.isascii() and text.isdigit()


def parse_interval(value: object, name: str = "interval") -> int:
    """`"30s"`, `"5m"`, `"1h"` or integer ms -> ms, within [1 s, 1 d]."""
    if isinstance(value, bool):
        raise BadRequest(f"{name}: expected a duration like '5m' or integer ms, got {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str) and is_digits(value):
        ms = int(value)
    elif isinstance(value, str) and (match := _INTERVAL.fullmatch(value.strip())):
        ms = int(match[1]) * _UNIT_MS[match[2]]
    else:
        raise BadRequest(
            f"{name}: expected a duration like '30s', '5m', '1h' or integer ms, got {value!r}"
        )
    if not MIN_INTERVAL_MS <= ms <= MAX_INTERVAL_MS:
        raise BadRequest(f"{name}: must be between 1s and 1d, got {value!r}")
    if ms % MIN_INTERVAL_MS:
        raise BadRequest(f"{name}: must be a whole number of seconds, got {value!r}")
    return ms


def parse_time(value: object, name: str) -> int:
    """Integer ms since the epoch, ISO 8601 (naive means UTC), `now` or `-<n><unit>`
    (units ms, s, m, h, d, w: that long before now) -> ms."""
    if isinstance(value, bool):
        raise BadRequest(f"{name}: expected {TIME_FORMS}, got {value!r}")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str) and _MS.fullmatch(value):
        ms = int(value)
    elif isinstance(value, str):
        ms = _parse_text(value.strip(), name)
    else:
        raise BadRequest(f"{name}: expected {TIME_FORMS}, got {value!r:.60}")
    if not 0 <= ms <= MAX_TS:
        raise BadRequest(f"{name}: out of range (0 to year 3000), got {value!r:.60}")
    return ms


def _parse_text(text: str, name: str) -> int:
    if text.lower() == "now":
        return now_ms()
    if match := _AGO.fullmatch(text):
        return now_ms() - int(match[1]) * _AGO_UNIT_MS[match[2]]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}: expected {TIME_FORMS}, got {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso(ms: int) -> str:
    """`1767225600000` -> `'2026-01-01T00:00:00Z'` (milliseconds shown only when not 0)."""
    seconds, rest = divmod(ms, 1000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{rest:03d}Z" if rest else f"{text}Z"


def format_interval(ms: int) -> str:
    """The shortest exact spelling: 300000 -> '5m'."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def slot_at_or_after(ts: int, interval_ms: int) -> int:
    return -(-ts // interval_ms) * interval_ms


def slot_at_or_before(ts: int, interval_ms: int) -> int:
    return ts // interval_ms * interval_ms
