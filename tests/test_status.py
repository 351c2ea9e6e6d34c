"""`obd status`: the coins table and a 24 h coverage bar a coin, asked of the running
daemon over HTTP."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from obd.config import load
from obd.errors import Unavailable
from obd.status import bar, daemon_url, render
from tests.conftest import Daemon, obd, wait_for, write_config

COIN = {
    "exchange": "sim",
    "symbol": "BTC/USDT",
    "interval": "1s",
    "interval_ms": 1000,
    "depth": 10,
    "status": "live",
    "synthetic": True,
    "first_ts": 1_000,
    "last_ts": 9_000,
    "count": 9,
}


def _bucket(expected: int, present: int, **reasons: int) -> dict[str, object]:
    return {"start": 0, "expected": expected, "present": present, "reasons": reasons}


def test_a_bar_has_a_block_a_bucket_by_the_share_of_slots_present() -> None:
    buckets = [
        _bucket(1800, 0, not_collected=1800),  # before the coin was added
        _bucket(1800, 1800),
        _bucket(1800, 1790, daemon_down=10),  # 99.4 %
        _bucket(1800, 900, daemon_down=900),
        _bucket(1800, 0, daemon_down=1800),
        _bucket(1800, 10, pending=2, not_synced=1788),
        _bucket(0, 0),
    ]
    assert bar(buckets) == "·█▇▄×▁·"


def test_render_lists_coins_ages_and_gap_totals() -> None:
    grid = {"buckets": [_bucket(100, 90, daemon_down=10), _bucket(100, 99, pending=1)]}
    text = render([COIN], [grid], now=10_000)
    lines = text.splitlines()
    assert lines[0].split() == [
        "EXCHANGE",
        "SYMBOL",
        "INTERVAL",
        "DEPTH",
        "STATUS",
        "AGE",
        "COUNT",
        "LAST",
        "(UTC)",
    ]
    assert lines[1].split()[:7] == ["sim", "BTC/USDT", "1s", "10", "live", "1s", "9"]
    assert lines[-1].startswith("sim BTC/USDT  ▆█")
    assert lines[-1].endswith("94.97%  gaps: daemon_down 10")  # 189 of 200 - 1 pending
    stale = render([COIN], [grid], now=60_000).splitlines()[1]
    assert "51s STALE" in stale
    assert render([], [], now=0).startswith("no coins collected")


def test_the_daemon_address_comes_from_the_config(tmp_path: Path) -> None:
    config = load(write_config(tmp_path))
    with pytest.raises(Unavailable, match="--url"):
        daemon_url(config)  # port 0: chosen when the daemon starts
    (tmp_path / "c.toml").write_text('[server]\nhost = "0.0.0.0"\nport = 9000\n')
    assert daemon_url(load(tmp_path / "c.toml")) == "http://127.0.0.1:9000"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    coins = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
    running = Daemon(write_config(tmp_path_factory.mktemp("status"), coins=coins))
    try:
        wait_for(lambda: running.http.get("/v1/coins").json()["items"][0]["count"] >= 2)
        yield running
    finally:
        assert running.stop() == 0


def test_obd_status_asks_the_running_daemon(daemon: Daemon) -> None:
    done = obd("status", "--url", daemon.url, config=daemon.config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[:5] == ["sim", "BTC/USDT", "1s", "100", "live"]
    coverage = lines[-1]
    assert coverage.startswith("sim BTC/USDT  ")
    cells = coverage.split("  ")[1]
    assert len(cells) == 48  # 24 h of 30 min
    assert set(cells[:-2]) == {"·"}  # collected for seconds only
    assert cells[-1] in "█▇▆▅▄▃▂▁"


def test_obd_status_says_when_no_daemon_answers(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = obd("status", "--url", "http://127.0.0.1:9", config=config)
    assert done.returncode == 2
    assert "no obd daemon answers at http://127.0.0.1:9" in done.stderr


def test_obd_status_with_auth_on_needs_a_read_token(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[auth]\nenabled = true\n")
    running = Daemon(config)
    try:
        refused = obd("status", "--url", running.url, config=config)
        assert refused.returncode == 2
        assert "needs a token (--token or $OBD_TOKEN" in refused.stderr
        assert obd("client", "add", "ops", "--scope", "read", config=config).returncode == 0
        token = obd("token", "--client", "ops", config=config).stdout.strip()
        done = obd("status", "--url", running.url, "--token", token, config=config)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("no coins collected")
        wrong = obd("status", "--url", running.url, "--token", token[:-4], config=config)
        assert wrong.returncode == 2
        assert "needs a token" in wrong.stderr
    finally:
        assert running.stop() == 0
