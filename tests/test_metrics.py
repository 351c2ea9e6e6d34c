"""/metrics parses as Prometheus text format and says what the daemon did."""

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for, write_config

COINS = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'


def test_metrics_parse_and_count(tmp_path: Path, start_daemon: Any) -> None:
    daemon = start_daemon(write_config(tmp_path, coins=COINS))
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 2)
    daemon.http.get("/v1/books", params={"exchange": "nosuch", "symbol": "X/Y"})
    response = daemon.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert all(name.startswith("obd_") for name in families)

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in families[name].samples if labels.items() <= s.labels.items())

    assert value("obd_snapshots", exchange="sim", symbol="BTC/USDT") >= 2
    assert value("obd_http_responses", route="/v1/books", status="404") == 1
    assert value("obd_http_responses", route="/v1/coins", status="200") >= 1
    assert value("obd_coin_live", symbol="BTC/USDT") == 1
    assert value("obd_database_bytes", file="main") > 0
    assert value("obd_process_resident_memory_bytes") > 10_000_000
    assert "obd_writer_queue_rows" in families
    assert "obd_ws_subscriptions" in families
    assert daemon.stop() == 0
