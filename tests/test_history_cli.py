"""`obd backfill` as a user runs it: from a local archive into the file a running
daemon serves, a series registered history-only, provenance kept through export."""

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import Daemon, obd, write_config
from tests.history_support import Archive, Rebuilt, day_path, gz, l2_lines
from tests.ws_support import coin_toml

FILE = day_path("binance", "incremental_book_L2", "2024-08-08", "BTCUSDT")


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return l2_lines("BTCUSDT")


def test_obd_backfill_beside_a_running_daemon(tmp_path: Path, lines: list[str]) -> None:
    archive = Archive()
    archive.files[FILE] = gz(lines)
    config = write_config(
        tmp_path,
        f"""
[history]
providers = ["plugin"]
[history.exchanges]
binance = ["tardis"]
[history.tardis]
base_url = "{archive.url}"
""",
        coins=coin_toml("BTC/USDT", 10),
    )
    rebuilt = Rebuilt(lines)
    start = rebuilt.first_ms - rebuilt.first_ms % 1000 + 1000
    end = start + 60_000
    daemon = Daemon(config)
    try:
        args = ("backfill", "binance", "BTC/USDT", "--start", str(start), "--end", str(end))
        done = obd(*args, "--interval", "1s", "--depth", "50", "--json", config=config)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert (report["slots"], report["backfilled"], report["unfilled"]) == (60, 60, [])
        assert report["history_only"] is True
        assert report["providers"] == ["tardis"]

        # The running daemon serves what the command stored, exactly as rebuilt.
        query = {"exchange": "binance", "symbol": "BTC/USDT", "start": start, "end": end}
        page = daemon.http.get("/v1/books", params={**query, "limit": 1000}).json()
        assert [item["ts"] for item in page["items"]] == list(range(start, end, 1000))
        expected = rebuilt.at(list(range(start, end, 1000)), 50)
        for item in page["items"]:
            book = expected[item["ts"]]
            assert book is not None
            assert (item["bids"], item["asks"]) == (book["bids"], book["asks"])
            assert item["capture"] == "backfill:tardis"
        covered = daemon.http.get("/v1/coverage", params={**query, "sources": "true"}).json()
        assert covered["sources"] == [[start, end, "backfill:tardis"]]
        assert covered["providers"] == ["tardis"]
        assert covered["gaps"] == []
        coins = daemon.http.get("/v1/coins").json()
        listed = {(c["exchange"], c["symbol"]): c["status"] for c in coins["items"]}
        assert listed[("binance", "BTC/USDT")] == "history-only"

        # Again, as text: resumable, nothing fetched twice.
        again = obd(*args, config=config)
        assert again.returncode == 0, again.stderr
        assert "60 already stored, 0 back-filled" in again.stdout

        # A different interval for a stored series is refused, naming it.
        wrong = obd(*args, "--interval", "5s", config=config)
        assert wrong.returncode == 2
        assert "interval:" in wrong.stderr
        assert "every 1s" in wrong.stderr
    finally:
        daemon.stop()
        archive.close()

    # Provenance survives export.
    out = tmp_path / "export"
    exported = obd(
        "export", "--format", "csv", "--out", str(out), "--exchange", "binance", config=config
    )
    assert exported.returncode == 0, exported.stderr
    [csv_file] = list(out.rglob("part.csv"))
    raw = csv_file.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    assert "backfill:tardis" in text
    assert ",ws," not in text


def test_obd_backfill_says_why_a_range_stays_empty(tmp_path: Path) -> None:
    archive = Archive()
    config = write_config(
        tmp_path,
        f"""
[history.tardis]
base_url = "{archive.url}"
""",
    )
    try:
        done = obd(
            "backfill",
            "kraken",
            "BTC/USD",
            "--start",
            "2024-08-08T00:00:00Z",
            "--end",
            "2024-08-08T00:00:10Z",
            "--interval",
            "1s",
            "--provider",
            "tardis",
            config=config,
        )
        assert done.returncode == 0, done.stderr
        assert "10 slots, 0 already stored, 0 back-filled" in done.stdout
        assert "tardis: the archive has no file for kraken XBT/USD 2024-08-08" in done.stdout
        unknown = obd(
            "backfill",
            "kraken",
            "BTC/USD",
            "--start",
            "0",
            "--end",
            "1000",
            "--provider",
            "nope",
            config=config,
        )
        assert unknown.returncode == 2
        assert "provider:" in unknown.stderr
        assert "'nope'" in unknown.stderr
    finally:
        archive.close()
