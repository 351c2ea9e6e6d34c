"""One error hierarchy; each boundary (HTTP, CLI, MCP) maps it once."""


class ObdError(Exception):
    """Base of every error obd raises on purpose; the message is for a user."""

    status = 500
    code = "internal"


class BadRequest(ObdError):
    status = 400
    code = "bad_request"


class NotFound(ObdError):
    status = 404
    code = "not_found"


class Conflict(ObdError):
    status = 409
    code = "conflict"


class TooLarge(ObdError):
    status = 413
    code = "too_large"


class Unavailable(ObdError):
    """The exchange (or another upstream) cannot be reached right now."""

    status = 503
    code = "unavailable"


class ConfigError(ObdError):
    """The configuration is wrong; the message names the key's path."""

    code = "config"


class StoreError(ObdError):
    """The database file cannot be used (newer schema, not an obd file, ...)."""

    code = "store"


class HistoryNotAvailable(ObdError):
    """The source cannot give order-book history for this range."""

    status = 404
    code = "history_not_available"


class FeedError(Unavailable):
    """An exchange's data could not be had right now. Plugins raise a subclass; the
    sampler records the slots it costs as a gap with `gap_reason`."""

    code = "exchange_error"
    gap_reason = "exchange_error"


class ExchangeError(FeedError):
    """The exchange answered with an error (5xx, maintenance, a malformed reply)."""


class Disconnected(FeedError):
    """The exchange cannot be reached, or the live connection broke or went silent."""

    code = "disconnected"
    gap_reason = "disconnected"


class NotSynced(FeedError):
    """The live book lost consistency (a sequence gap, a failed checksum): resyncing."""

    code = "not_synced"
    gap_reason = "not_synced"


class ChecksumFailed(NotSynced):
    """The exchange's checksum of its book disagrees with the book obd kept: resyncing."""

    code = "checksum"
    gap_reason = "checksum"


class RateLimited(FeedError):
    """The exchange refused for too many requests (HTTP 429/418)."""

    status = 429
    code = "rate_limited"
    gap_reason = "rate_limited"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # the exchange's own wait, when it gave one


class NoLiveStream(ObdError):
    """The plugin has no live feed for this symbol: the kernel takes a REST snapshot
    (`fetch_book`) at every slot instead."""

    code = "no_live_stream"
