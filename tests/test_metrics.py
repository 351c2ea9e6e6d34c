"""/metrics: prometheus_client's exposition of the live daemon, parsed by its parser and
held to promtool's `check metrics` rules (re-implemented below: promtool is a Go binary,
not a pip package), counting what the daemon did."""

import re
import time
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from obd import __version__
from obd.metrics import Metrics
from tests.conftest import wait_for, write_config

COINS = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
MCP_HELLO = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}

# promtool's lint (prometheus/client_golang prometheus/testutil/promlint/validations).
_BASE_UNITS = {"amperes", "bytes", "celsius", "grams", "joules", "kelvin", "meters"}
_BASE_UNITS |= {"metres", "seconds", "volts"}
_OTHER_UNITS = {
    **dict.fromkeys(("minutes", "hours", "days", "weeks"), "seconds"),
    **{"kelvins": "kelvin", "fahrenheit": "celsius", "rankine": "celsius", "bits": "bytes"},
    **dict.fromkeys(("inches", "yards", "miles"), "meters"),
    **{"calories": "joules", "pounds": "grams", "ounces": "grams"},
}
_PREFIXES = ("pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo")
_PREFIXES += ("kibi", "mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi")
_ABBREVIATIONS = ("s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d")
_TYPES = ("counter", "gauge", "summary", "histogram", "gauge_histogram")
_CAMEL = re.compile(r"[a-z][A-Z]")


def lint(text: str) -> list[str]:
    """promtool check metrics' problems with an exposition, as `name: problem` lines."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
    problems = [f"{name}: no help text" for name in types if not helps.get(name)]
    for name, kind in types.items():
        problems += [f"{name}: {problem}" for problem in _name_problems(name, kind)]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            problems += [
                f"{family.name}: label names should be written in 'snake_case' not 'camelCase'"
                for label in sample.labels
                if _CAMEL.search(label)
            ]
            if family.type not in ("histogram", "gaugehistogram") and "le" in sample.labels:
                problems.append(f'{family.name}: non-histogram metrics should not have "le" label')
    return problems


def _name_problems(name: str, kind: str) -> list[str]:
    problems = []
    if kind == "counter" and not name.endswith("_total"):
        problems.append('counter metrics should have "_total" suffix')
    if kind not in ("counter", "untyped") and name.endswith("_total"):
        problems.append('non-counter metrics should not have "_total" suffix')
    if kind != "gauge" and kind != "untyped" and name.endswith("_timestamp_seconds"):
        problems.append('non-gauge metrics should not have "_timestamp_seconds" suffix')
    if kind != "histogram" and name.endswith("_bucket"):
        problems.append('non-histogram metrics should not have "_bucket" suffix')
    if kind not in ("histogram", "summary") and name.endswith(("_count", "_sum")):
        problems.append("non-histogram and non-summary metrics should not have that suffix")
    problems += [problem for word in name.split("_") if (problem := _unit_problem(word))]
    lowered = name.lower()
    if any(f"_{a}_" in lowered or lowered.endswith(f"_{a}") for a in _ABBREVIATIONS):
        problems.append("metric names should not contain abbreviated units")
    if any(f"_{t}_" in lowered or lowered.endswith(f"_{t}") for t in _TYPES):
        problems.append("metric name should not include its type")
    if ":" in name:
        problems.append("metric names should not contain ':'")
    if _CAMEL.search(name):
        problems.append("metric names should be written in 'snake_case' not 'camelCase'")
    return problems


def _unit_problem(word: str) -> str | None:
    """A known unit not in its base ("milliseconds", "hours"), prefixed or not."""
    for unit in (word, *(word[len(p) :] for p in _PREFIXES if word.startswith(p))):
        base = unit if unit in _BASE_UNITS else _OTHER_UNITS.get(unit)
        if base is not None:
            return None if word == base else f'use base unit "{base}" instead of "{word}"'
    return None


def test_the_lint_catches_what_promtool_rejects() -> None:
    """The re-implemented rules flag what promtool flagged in the hand-written exposition."""
    bad = (
        "# HELP obd_gap_ms_total Time in gaps.\n# TYPE obd_gap_ms_total counter\n"
        "obd_gap_ms_total 1.0\n"
        "# HELP obd_rows Rows.\n# TYPE obd_rows counter\nobd_rows 1.0\n"
        "# HELP obd_queue_total Queue.\n# TYPE obd_queue_total gauge\nobd_queue_total 1.0\n"
        "# HELP obd_wait_milliseconds Wait.\n# TYPE obd_wait_milliseconds gauge\n"
        "obd_wait_milliseconds 1.0\n"
        "# TYPE obd_fooBar gauge\nobd_fooBar 1.0\n"
    )
    problems = "\n".join(lint(bad))
    assert "obd_gap_ms_total: metric names should not contain abbreviated units" in problems
    assert 'obd_rows: counter metrics should have "_total" suffix' in problems
    assert 'obd_queue_total: non-counter metrics should not have "_total" suffix' in problems
    assert 'obd_wait_milliseconds: use base unit "seconds" instead of "milliseconds"' in problems
    assert "obd_fooBar: no help text" in problems
    assert "obd_fooBar: metric names should be written in 'snake_case'" in problems


def test_each_daemon_has_its_own_registry() -> None:
    """Two daemons in one process (the tests) keep separate counts."""
    first, second = Metrics(), Metrics()
    first.snapshot_stored("sim", "BTC/USDT", 2_000, 1_500)
    assert first.registry.get_sample_value(
        "obd_snapshots_total", {"exchange": "sim", "symbol": "BTC/USDT"}
    )
    assert not second.registry.get_sample_value(
        "obd_snapshots_total", {"exchange": "sim", "symbol": "BTC/USDT"}
    )
    assert first.registry.get_sample_value("obd_slot_lag_seconds_sum", {"exchange": "sim"}) == 0.5
    first.snapshot_stored("sim", "BTC/USDT", 2_000, 2_300)  # fetched after its slot: no age
    assert first.registry.get_sample_value("obd_slot_lag_seconds_count", {"exchange": "sim"}) == 1


def test_metrics_are_promtool_clean_and_count(tmp_path: Path, start_daemon: Any) -> None:
    daemon = start_daemon(write_config(tmp_path, coins=COINS))
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 2)
    daemon.http.get("/v1/books", params={"exchange": "nosuch", "symbol": "X/Y"})
    assert daemon.http.get("/no/such/path").status_code == 404
    accept = {"accept": "application/json, text/event-stream"}
    assert daemon.http.post("/mcp/", json=MCP_HELLO, headers=accept).status_code == 200
    # A response is counted when its handler returns, which for MCP's streamed answer
    # can be just after the client has read it all.
    wait_for(lambda: 'route="/mcp"' in daemon.http.get("/metrics").text)
    response = daemon.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers.get_list("content-type") == [CONTENT_TYPE_LATEST]
    assert lint(response.text) == []
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert all(name.startswith("obd_") for name in families)

    def value(sample: str, **labels: str) -> float:
        return sum(
            s.value
            for f in families.values()
            for s in f.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )

    coin = {"exchange": "sim", "symbol": "BTC/USDT"}
    assert value("obd_snapshots_total", **coin) >= 2
    assert value("obd_http_responses_total", route="/v1/books", status="404") == 1
    assert value("obd_http_responses_total", route="/v1/coins", status="200") >= 1
    assert value("obd_http_responses_total", route="unmatched", status="404") == 1
    assert value("obd_http_responses_total", route="/mcp", method="POST", status="200") == 1
    assert value("obd_http_request_duration_seconds_count", route="/v1/coins") >= 1
    assert value("obd_http_request_duration_seconds_count", route="/mcp") == 1
    assert value("obd_writer_commit_seconds_count") >= 1
    assert value("obd_slot_lag_seconds_count", exchange="sim") >= 2
    assert value("obd_build_info", version=__version__) == 1
    last = value("obd_last_snapshot_timestamp_seconds", **coin)
    assert time.time() - 60 < last <= time.time()
    assert value("obd_coin_live", symbol="BTC/USDT") == 1
    assert value("obd_database_bytes", file="main") > 0
    assert value("obd_disk_free_bytes") > 0
    assert value("obd_disk_low") in (0, 1)  # this machine's free space is what it is
    assert value("obd_process_resident_memory_bytes") > 10_000_000
    assert value("obd_process_cpu_seconds_total") > 0
    present = ("obd_writer_queue_rows", "obd_ws_subscriptions", "obd_ws_dropped")
    present += ("obd_gap_seconds", "obd_slot_delay_seconds")
    assert set(present) <= families.keys()
    assert daemon.stop() == 0
