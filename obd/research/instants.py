"""`start`/`end` as a researcher passes them to obd.research, as integer ms.

The forms HTTP, MCP and the CLI take (integer ms, ISO 8601, `now`, `-6h`: obd.times),
plus `datetime`/`date` objects. A naive datetime is UTC, as a naive ISO string is
everywhere in obd; an aware one is converted. A float is refused rather than guessed
at: 1.7e9 is seconds to one person and ms to another.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np

from obd.errors import BadRequest
from obd.times import MAX_TS, TIME_FORMS, parse_time

__all__ = ["When", "to_ms"]

# What a `start`/`end` may be: None is unbounded.
When = int | str | datetime | date | None

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_ACCEPTED = f"{TIME_FORMS}, a datetime (naive is UTC) or a date (its UTC midnight)"


def to_ms(value: Any, name: str) -> int | None:
    """`value` as ms since the epoch; TypeError for a type that is not a time (a float
    included), ValueError for a string that does not parse or a time out of range."""
    if value is None:
        return None
    if isinstance(value, bool | float | np.floating):
        raise TypeError(f"{name}: expected {_ACCEPTED}; got {type(value).__name__} {value!r}")
    if isinstance(value, datetime):
        ms = _datetime_ms(value)
    elif isinstance(value, date):
        ms = _datetime_ms(datetime.combine(value, time(), UTC))
    elif isinstance(value, np.datetime64):
        ms = int(value.astype("datetime64[ms]").astype(np.int64))
    elif isinstance(value, int | np.integer | str):
        try:
            return parse_time(int(value) if isinstance(value, np.integer) else value, name)
        except BadRequest as exc:
            raise ValueError(str(exc)) from None
    else:
        raise TypeError(f"{name}: expected {_ACCEPTED}; got {type(value).__name__}")
    if not 0 <= ms <= MAX_TS:
        raise ValueError(f"{name}: out of range (1970 to year 3000), got {value!r}")
    return ms


def _datetime_ms(value: datetime) -> int:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MS  # exact: no float seconds in between
