"""`/metrics` in Prometheus text format: the counters of `obd.metrics`, and gauges
read from the running parts when scraped. No client library: the format is a line
per sample (https://prometheus.io/docs/instrumenting/exposition_formats/).
"""

import os
import resource
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from obd.metrics import METRICS, Labels

if TYPE_CHECKING:
    from obd.http.ws.hub import Hub
    from obd.service import Service


def render(service: "Service", hub: "Hub") -> str:
    lines: list[str] = []
    for name, counted in sorted(METRICS.counters.items()):
        lines += _family(name, "counter", METRICS.help[name], counted.items())
    for name, kind, help_text, samples in _gauges(service, hub):
        lines += _family(name, kind, help_text, samples)
    return "\n".join(lines) + "\n"


Family = tuple[str, str, str, list[tuple[Labels, float]]]  # name, type, help, samples


def _gauges(service: "Service", hub: "Hub") -> Iterator[Family]:
    writer = service.writer
    yield "obd_writer_queue_rows", "gauge", "Rows waiting for the writer.", [((), writer.backlog)]
    yield "obd_writer_rows_total", "counter", "Rows committed.", [((), writer.rows_written)]
    yield (
        "obd_writer_failing",
        "gauge",
        "1 while commits fail.",
        [((), float(writer.failing is not None))],
    )
    yield (
        "obd_writer_batch_seconds",
        "gauge",
        "Duration of the last commit.",
        [((), writer.last_batch_s)],
    )
    yield (
        "obd_database_bytes",
        "gauge",
        "Size of the database file and its WAL.",
        [
            ((("file", "main"),), _size(writer.path)),
            ((("file", "wal"),), _size(writer.path.with_name(writer.path.name + "-wal"))),
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
    if service.collector is not None:
        samplers = service.collector.samplers()
        coin = [((("exchange", s.coin.exchange), ("symbol", s.coin.symbol)), s) for s in samplers]
        yield (
            "obd_stream_failures_total",
            "counter",
            "Times a coin's live feed broke.",
            [(labels, s.failures) for labels, s in coin],
        )
        yield (
            "obd_slot_lag_seconds",
            "gauge",
            "Delay between a slot and its being taken.",
            [(labels, s.last_lag_s) for labels, s in coin],
        )
        yield (
            "obd_coin_live",
            "gauge",
            "1 while a coin's feed is live.",
            [(labels, float(s.state == "live")) for labels, s in coin],
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


def _size(path: Path) -> float:
    try:
        return float(path.stat().st_size)
    except OSError:
        return 0.0


def _rss_bytes() -> float:
    try:  # Linux: the current RSS, not the peak getrusage gives
        with open("/proc/self/statm") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
