"""`/metrics`: the daemon's registry (`obd.metrics.Metrics`) plus what is read when
scraped (the service's stats and per-coin last snapshot, the live hub), rendered by
prometheus_client; and the wrapper that counts and times every HTTP request.
"""

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from obd.metrics import Metrics
from obd.service import Health, Stats

if TYPE_CHECKING:
    from prometheus_client import Metric

    from obd.http.ws.hub import Hub

__all__ = ["CONTENT_TYPE", "UNMATCHED", "exposition", "instrument", "route_label"]

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text format, its version and charset, once
UNMATCHED = "unmatched"  # the route label of every path no route serves: one series, bounded
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def exposition(metrics: Metrics, stats: Stats, health: Health, hub: "Hub") -> bytes:
    """The text exposition of the registry and of the state read for this scrape."""
    return generate_latest(_Scrape(metrics, _State(stats, health, hub)))


class _Scrape:
    """The daemon's registry, then the scrape-time families: one `collect()` for
    `generate_latest`, built per scrape so nothing is kept between two."""

    def __init__(self, metrics: Metrics, state: Collector) -> None:
        self._parts: tuple[Collector, ...] = (metrics.registry, state)

    def collect(self) -> Iterable["Metric"]:
        for part in self._parts:
            yield from part.collect()


class _State:
    """Gauges and counters the service and the hub keep themselves, read now rather
    than mirrored into instruments on every write."""

    def __init__(self, stats: Stats, health: Health, hub: "Hub") -> None:
        self._stats, self._health, self._hub = stats, health, hub

    def collect(self) -> Iterator["Metric"]:
        yield from self._storage()
        yield from self._feed()
        yield from self._coins()

    def _storage(self) -> Iterator["Metric"]:
        stats = self._stats
        yield GaugeMetricFamily(
            "obd_writer_queue_rows", "Rows waiting for the writer.", stats.writer_backlog
        )
        yield CounterMetricFamily("obd_writer_rows", "Rows committed.", stats.rows_written)
        yield GaugeMetricFamily(
            "obd_writer_failing", "1 while commits fail.", float(stats.writer_failing)
        )
        yield GaugeMetricFamily(
            "obd_writer_batch_seconds", "Duration of the last commit.", stats.last_batch_s
        )
        size = GaugeMetricFamily(
            "obd_database_bytes", "Size of the database file and its WAL.", labels=["file"]
        )
        size.add_metric(["main"], stats.database_bytes)
        size.add_metric(["wal"], stats.wal_bytes)
        yield size
        if stats.disk_free_bytes is not None:  # unknown where statvfs fails
            yield GaugeMetricFamily(
                "obd_disk_free_bytes",
                "Free space on the database's filesystem.",
                stats.disk_free_bytes,
            )
        yield GaugeMetricFamily(
            "obd_disk_low",
            "1 while free space is under [storage] low_disk_mib.",
            float(stats.disk_low),
        )

    def _feed(self) -> Iterator["Metric"]:
        hub = self._hub
        yield GaugeMetricFamily(
            "obd_ws_subscriptions", "Live WebSocket subscriptions.", hub.subscriptions
        )
        yield CounterMetricFamily("obd_ws_published", "Snapshots published live.", hub.published)
        yield CounterMetricFamily("obd_ws_delivered", "Frames queued to clients.", hub.delivered)
        yield CounterMetricFamily(
            "obd_ws_dropped", "Clients dropped for falling behind.", hub.dropped
        )

    def _coins(self) -> Iterator["Metric"]:
        coin = ["exchange", "symbol"]
        last = GaugeMetricFamily(
            "obd_last_snapshot_timestamp_seconds",
            "Slot time of each collected coin's newest stored snapshot (Unix seconds).",
            labels=coin,
        )
        for view in self._health.coins:
            if view["last_ts"] is not None:
                last.add_metric([view["exchange"], view["symbol"]], view["last_ts"] / 1000)
        yield last
        if self._stats.coins is None:  # this process does not collect
            return
        failures = CounterMetricFamily(
            "obd_stream_failures", "Times a coin's live feed broke.", labels=coin
        )
        delay = GaugeMetricFamily(
            "obd_slot_delay_seconds", "How late a coin's last slot was taken.", labels=coin
        )
        live = GaugeMetricFamily("obd_coin_live", "1 while a coin's feed is live.", labels=coin)
        for feed in self._stats.coins:
            labels = [feed.exchange, feed.symbol]
            failures.add_metric(labels, feed.failures)
            delay.add_metric(labels, feed.slot_lag_s)
            live.add_metric(labels, float(feed.live))
        yield from (failures, delay, live)


def instrument(app: Litestar, metrics: Metrics) -> None:
    """Count and time every HTTP request at the app's outermost handler, so 404s and
    405s (which no route's middleware sees) are counted too."""
    app.asgi_handler = _timed(app.asgi_handler, metrics)


def _timed(inner: ASGIApp, metrics: Metrics) -> ASGIApp:
    async def timed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await inner(scope, receive, send)
            return
        began = time.perf_counter()
        status = ""

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await inner(scope, receive, send_status)
        finally:
            route = route_label(scope)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            metrics.http_seconds.labels(route, method).observe(time.perf_counter() - began)
            if status:  # a client gone before any response: timed, but no status to count
                metrics.http_responses.labels(route, method, status).inc()

    return timed


def route_label(scope: Scope) -> str:
    """The route's path template (`/v1/books`), never the raw path: labels stay bounded.
    A mounted app (`/mcp`) is labelled with its mount path: Litestar gives a mount the
    root's template instead."""
    handler = scope.get("route_handler")
    if handler is not None and getattr(handler, "is_mount", False):
        return min(handler.paths)
    return scope.get("path_template") or UNMATCHED
