"""A process's instruments, in a registry of its own (prometheus_client).

The writer and the HTTP app count and time into one `Metrics`; `obd.http.metrics` adds
what is read at scrape time and renders the exposition. Each daemon builds its own
(`CollectorRegistry`, not the library's global one), so several daemons in one process
(the tests) keep separate counts.
"""

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector

from obd import __version__

__all__ = ["Metrics"]

# `_created` series double every counter and histogram for a start time no dashboard of
# obd's reads; the library's switch is process-wide, and this process is obd's.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds. A commit holds a few rows to a thousand: ms normally, seconds when the disk
# is slow or full.
COMMIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Seconds. A live book is replaced every 10 ms to a few seconds; a quiet market's
# book can be minutes old at its slot and still be the book as it stood.
SLOT_LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Seconds. Most routes answer in ms; streamed ranges and MCP sessions take longer.
HTTP_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)


class Metrics:
    """The counters and histograms one daemon updates as things happen, and its
    registry (which also holds build info and the process collector)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.snapshots = Counter(
            "obd_snapshots", "Snapshots stored.", ["exchange", "symbol"], registry=registry
        )
        self.gap_seconds = Counter(
            "obd_gap_seconds", "Time recorded as gaps, by reason.", ["reason"], registry=registry
        )
        self.commit_seconds = Histogram(
            "obd_writer_commit_seconds",
            "Duration of the writer's commits.",
            buckets=COMMIT_BUCKETS_S,
            registry=registry,
        )
        self.slot_lag_seconds = Histogram(
            "obd_slot_lag_seconds",
            "Age of each stored book at its slot (slot time minus receive time); books "
            "fetched after their slot (REST, back-fill) are not observed.",
            ["exchange"],
            buckets=SLOT_LAG_BUCKETS_S,
            registry=registry,
        )
        self.http_responses = Counter(
            "obd_http_responses",
            "HTTP responses, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "obd_http_request_duration_seconds",
            "Time from request to the end of the response, by route template and method.",
            ["route", "method"],
            buckets=HTTP_BUCKETS_S,
            registry=registry,
        )
        Info("obd_build", "The running obd.", registry=registry).info({"version": __version__})
        ProcessCollector(namespace="obd", registry=registry)

    def snapshot_stored(self, exchange: str, symbol: str, ts: int, received_ts: int) -> None:
        self.snapshots.labels(exchange, symbol).inc()
        if received_ts <= ts:  # a book taken as it stood at its slot
            self.slot_lag_seconds.labels(exchange).observe((ts - received_ts) / 1000)

    def gap_recorded(self, reason: str, span_ms: int) -> None:
        self.gap_seconds.labels(reason).inc(span_ms / 1000)
