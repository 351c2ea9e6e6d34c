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
