"""Logging: structlog, one event per line; JSON lines off a terminal (journald), console on one.

Standard-library records (uvicorn, ccxt, mcp) go through the same pipeline. Every JSON
line carries obd's `version` and `pid`, so lines from a log shipper that mixes hosts,
restarts and upgrades can be told apart and tied to the process that wrote them.
"""

import logging
import os
import sys
from typing import Any

import structlog

from obd import __version__


def configure(level: str = "info", *, json: bool | None = None) -> None:
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        *([_stamp_process] if as_json else []),  # a terminal shows one process: keep it short
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates what /metrics counts, and its "connection open /
    # closed" lines are three per WebSocket client; its warnings and errors still show.
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _stamp_process(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """`version` and `pid` on every line; the pid is read each time (a fork changes it)."""
    event.setdefault("version", __version__)
    event.setdefault("pid", os.getpid())
    return event
