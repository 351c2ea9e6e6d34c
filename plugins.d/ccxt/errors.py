"""ccxt's errors as obd's: the kernel turns each into a gap reason and a retry."""

from typing import Any

from obd.plugin import Disconnected, ExchangeError, NotFound, NotSynced, RateLimited

_MESSAGE_CHARS = 300  # of an exchange's error text kept (a 503 can be a whole HTML page)


def mapped(ccxt: Any, exc: Exception, exchange_id: str, wait_s: float) -> Exception:
    """`exc` as obd's error; `wait_s` is how long a rate-limited exchange is left alone.
    Anything that is neither a ccxt error nor a network error is returned as is."""
    name = exchange_id
    text = str(exc)[:_MESSAGE_CHARS] or type(exc).__name__
    if ccxt is None or not isinstance(exc, ccxt.BaseError):
        if isinstance(exc, (OSError, TimeoutError)):
            return Disconnected(f"{name}: {type(exc).__name__}: {text}")
        return exc
    if isinstance(exc, ccxt.BadSymbol):
        return NotFound(f"{name}: {text}")
    if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        return RateLimited(f"{name} is rate limiting obd: {text}", wait_s)
    if isinstance(exc, ccxt.InvalidNonce):  # ChecksumError included: a sequence gap
        return NotSynced(f"{name} book lost its sequence: {text}")
    if isinstance(exc, ccxt.RequestTimeout):
        return Disconnected(f"{name} did not answer in time: {text}")
    if isinstance(exc, ccxt.ExchangeNotAvailable) and exc.__cause__ is None:
        return ExchangeError(f"{name} is not available: {text}")  # a 5xx answer
    if isinstance(exc, ccxt.NetworkError):
        return Disconnected(f"{name} unreachable: {text}")
    return ExchangeError(f"{name}: {text}")


def is_rate_limit(ccxt: Any, exc: Exception) -> bool:
    return ccxt is not None and isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded))
