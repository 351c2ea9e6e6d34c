"""One error hierarchy, every class obd raises on purpose, each with its code listed
once here; each boundary (HTTP, WebSocket, CLI, MCP) maps it once.

`status` is the HTTP status a transport answers with; `code` is the stable name in
`{"error": {"code", "message"}}` (docs/HTTP.md lists every code). A `FeedError`'s
`gap_reason` is what the sampler records for the slots it cost (`obd.model.GapReason`).
"""

from typing import ClassVar

from obd.model import GapReason

__all__ = [
    "BadRequest",
    "ChecksumFailed",
    "ConfigError",
    "Conflict",
    "Disconnected",
    "ExchangeError",
    "FeedError",
    "Forbidden",
    "HistoryNotAvailable",
    "MethodNotAllowed",
    "MissingExtra",
    "NoLiveStream",
    "NotFound",
    "NotSynced",
    "ObdError",
    "RateLimited",
    "RequestError",
    "ScopeError",
    "StorageUnavailable",
    "StoreError",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "codes",
]


class ObdError(Exception):
    """Base of every error obd raises on purpose; the message is for a user."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    # When asking again may succeed, in seconds (HTTP `Retry-After`, a WebSocket error
    # frame's `retry_after_s`); None: the error does not say.
    retry_after_s: float | None = None


class BadRequest(ObdError):
    status = 400
    code = "bad_request"


class RequestError(BadRequest):
    """A WebSocket frame that is not a valid request; `request_id` is its id if one
    could be read (the error frame echoes it)."""

    def __init__(self, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class ScopeError(BadRequest):
    """A requested scope is unknown, or none of them may be granted."""

    code = "invalid_scope"


class Unauthorized(ObdError):
    """No credentials, or credentials that do not check out."""

    status = 401
    code = "unauthorized"


class Forbidden(ObdError):
    """Authenticated, but without the scope this needs."""

    status = 403
    code = "forbidden"


class NotFound(ObdError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ObdError):
    status = 405
    code = "method_not_allowed"


class Conflict(ObdError):
    status = 409
    code = "conflict"


class TooLarge(ObdError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(ObdError):
    """A request body that is not JSON (a page's cross-origin form post, say)."""

    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ObdError):
    """A client asked for more at once than it may have (WebSocket limits, back-fill
    meters); `retry_after_s` says when a retry may succeed, where a wait helps."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ObdError):
    """The exchange (or another upstream, or storage) cannot be used right now."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageUnavailable(Unavailable):
    """The file cannot take writes now (a full disk, an I/O error); reads go on."""


class ConfigError(ObdError):
    """The configuration is wrong; the message names the key's path."""

    code = "config"


class StoreError(ObdError):
    """The database file cannot be used (newer schema, not an obd file, ...)."""

    code = "store"


class MissingExtra(ObdError):
    """An optional library is not installed (the message names the extra)."""

    code = "missing_extra"


class HistoryNotAvailable(ObdError):
    """The source cannot give order-book history for this range."""

    status = 404
    code = "history_not_available"


class FeedError(Unavailable):
    """An exchange's data could not be had right now. Plugins raise a subclass; the
    sampler records the slots it costs as a gap with `gap_reason`."""

    code = "exchange_error"
    gap_reason: ClassVar[GapReason] = "exchange_error"
    # Set by a plugin when the error proves that the books it served since this time
    # (ms) may have been wrong: a lost frame, noticed only at the book's next frame.
    # The kernel retracts the live snapshots stored after it: gaps, never a wrong book.
    unverified_since_ms: int | None = None


class ExchangeError(FeedError):
    """The exchange answered with an error (5xx, maintenance, a malformed reply)."""


class Disconnected(FeedError):
    """The exchange cannot be reached, or the live connection broke or went silent."""

    code = "disconnected"
    gap_reason: ClassVar[GapReason] = "disconnected"


class NotSynced(FeedError):
    """The live book lost consistency (a sequence gap, a failed checksum): resyncing."""

    code = "not_synced"
    gap_reason: ClassVar[GapReason] = "not_synced"


class ChecksumFailed(NotSynced):
    """The exchange's checksum of its book disagrees with the book obd kept: resyncing."""

    code = "checksum"
    gap_reason: ClassVar[GapReason] = "checksum"


class RateLimited(FeedError):
    """The exchange refused for too many requests (HTTP 429/418)."""

    status = 429
    code = "rate_limited"
    gap_reason: ClassVar[GapReason] = "rate_limited"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s)  # the exchange's own wait, when it gave one


class NoLiveStream(ObdError):
    """The plugin has no live feed for this symbol: the kernel takes a REST snapshot
    (`fetch_book`) at every slot instead."""

    code = "no_live_stream"


def codes() -> dict[str, type[ObdError]]:
    """Every error code and the class here that defines it (the first, for a shared code)."""
    found: dict[str, type[ObdError]] = {}
    pending: list[type[ObdError]] = [ObdError]
    while pending:
        kind = pending.pop(0)
        if kind.__module__ == __name__:
            found.setdefault(kind.code, kind)
        pending += kind.__subclasses__()
    return found
