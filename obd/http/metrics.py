"""`/metrics` in Prometheus text format: the counters of `obd.metrics`, and gauges of
what the service reports (`Service.stats`) and of the live hub when scraped. No client
library: the format is a line per sample
(https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

import os
import resource
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from obd.metrics import METRICS, Labels
from obd.service import Stats

if TYPE_CHECKING:
    from obd.http.ws.hub import Hub


def render(stats: Stats, hub: "Hub") -> str:
    lines: list[str] = []
    for name, counted in sorted(METRICS.counters.items()):
        lines += _family(name, "counter", METRICS.help[name], counted.items())
    for name, kind, help_text, samples in _gauges(stats, hub):
        lines += _family(name, kind, help_text, samples)
    return "\n".join(lines) + "\n"


Family = tuple[str, str, str, list[tuple[Labels, float]]]  # name, type, help, samples


def _gauges(stats: Stats, hub: "Hub") -> Iterator[Family]:
    yield (
        "obd_writer_queue_rows",
        "gauge",
        "Rows waiting for the writer.",
        [((), stats.writer_backlog)],
    )
    yield "obd_writer_rows_total", "counter", "Rows committed.", [((), stats.rows_written)]
    yield (
        "obd_writer_failing",
        "gauge",
        "1 while commits fail.",
        [((), float(stats.writer_failing))],
    )
    yield (
        "obd_writer_batch_seconds",
        "gauge",
        "Duration of the last commit.",
        [((), stats.last_batch_s)],
    )
    yield (
        "obd_database_bytes",
        "gauge",
        "Size of the database file and its WAL.",
        [
            ((("file", "main"),), float(stats.database_bytes)),
            ((("file", "wal"),), float(stats.wal_bytes)),
        ],
    )
    yield "obd_process_resident_memory_bytes", "gauge", "Resident set size.", [((), _rss_bytes())]
    yield (
        "obd_ws_subscriptions",
        "gauge",
        "Live WebSocket subscriptions.",
        [((), hub.subscriptions)],
    )
    yield "obd_ws_published_total", "counter", "Snapshots published live.", [((), hub.published)]
    yield "obd_ws_delivered_total", "counter", "Frames queued to clients.", [((), hub.delivered)]
    yield (
        "obd_ws_dropped_total",
        "counter",
        "Clients dropped for falling behind.",
        [((), hub.dropped)],
    )
    if stats.coins is not None:
        coin = [((("exchange", c.exchange), ("symbol", c.symbol)), c) for c in stats.coins]
        yield (
            "obd_stream_failures_total",
            "counter",
            "Times a coin's live feed broke.",
            [(labels, c.failures) for labels, c in coin],
        )
        yield (
            "obd_slot_lag_seconds",
            "gauge",
            "Delay between a slot and its being taken.",
            [(labels, c.slot_lag_s) for labels, c in coin],
        )
        yield (
            "obd_coin_live",
            "gauge",
            "1 while a coin's feed is live.",
            [(labels, float(c.live)) for labels, c in coin],
        )


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lines.append(f"{name}{_labels(labels)} {float(value)!r}")
    return lines


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _rss_bytes() -> float:
    try:  # Linux: the current RSS, not the peak getrusage gives
        with open("/proc/self/statm") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
