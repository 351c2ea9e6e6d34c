"""obd.research and `obd export` on real files: one written by the real daemon, and
files of real Binance books written by obd's own writer functions."""

import importlib
import importlib.util
import io
import math
import shutil
from pathlib import Path
from typing import Any

import apsw
import msgspec
import pytest

from obd import research
from obd.errors import BadRequest, StoreError
from obd.research import export, frames
from obd.research import sinks as download
from obd.storage import schema
from tests.conftest import obd, wait_for, write_config
from tests.research_support import build

COIN = {"exchange": "sim", "symbol": "BTC/USDT"}
ONE_SECOND_COIN = """
[[coins]]
exchange = "sim"
symbol = "BTC/USDT"
interval = "1s"
depth = 20
"""
DAY_MS = 86_400_000
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z: whole days in the past, so final partitions


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _pages(http: Any, end: int) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        params = {**COIN, "end": end, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = http.get("/v1/books", params=params).raise_for_status().json()
        items += page["items"]
        if not (cursor := page["next"]):
            return items


def _long(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The documented long layout, built from /v1/books items."""
    return [
        (item["ts"], side, level, price, size)
        for item in items
        for side in ("bid", "ask")
        for level, (price, size) in enumerate(item[f"{side}s"])
    ]


@pytest.fixture(scope="module")
def daemon_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The daemon's file after a clean stop, and what /v1/books served for its range."""
    from tests.conftest import Daemon

    directory = tmp_path_factory.mktemp("daemon")
    daemon = Daemon(write_config(directory, coins=ONE_SECOND_COIN))
    try:
        wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 4)
        latest = daemon.http.get("/v1/books/latest", params=COIN).json()
        items = _pages(daemon.http, end=latest["ts"] + 1)
    finally:
        assert daemon.stop() == 0
    return directory / "obd.sqlite", items


def test_snapshots_and_numpy_equal_what_the_daemon_served(
    daemon_file: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, items = daemon_file
    start, end = items[0]["ts"], items[-1]["ts"] + 1
    with research.open(path) as dataset:
        (info,) = dataset.series()
        assert (info.exchange, info.symbol, info.depth) == ("sim", "BTC/USDT", 20)
        assert info.count >= len(items)
        snapshots = list(dataset.snapshots("sim", "BTC/USDT", start, end))
        served = [msgspec.json.decode(msgspec.json.encode(s)) for s in snapshots]
        assert served == items
        arrays = dataset.to_numpy("sim", "BTC/USDT", start, end, levels=25)
    assert arrays.ts.tolist() == [item["ts"] for item in items]
    assert arrays.bids.shape == (len(items), 25, 2)
    assert arrays.bids.dtype.name == "float64"
    assert arrays.bid_mask.dtype.name == "bool"
    for i, item in enumerate(items):
        for side, values, mask in (
            ("bids", arrays.bids, arrays.bid_mask),
            ("asks", arrays.asks, arrays.ask_mask),
        ):
            n = len(item[side])
            assert values[i, :n].tolist() == item[side]
            assert mask[i].tolist() == [True] * n + [False] * (25 - n)
            assert all(math.isnan(x) for x in values[i, n:].ravel())


@pytest.mark.skipif(not _has("polars"), reason="polars is not installed")
def test_polars_long_layout_equals_what_the_daemon_served(
    daemon_file: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, items = daemon_file
    with research.open(path) as dataset:
        frame = dataset.to_polars("sim", "BTC/USDT", items[0]["ts"], items[-1]["ts"] + 1)
        summary = dataset.summary("sim", "BTC/USDT", items[0]["ts"], items[-1]["ts"] + 1)
    assert frame.columns == ["ts", "side", "level", "price", "size"]
    assert frame.rows() == _long(items)
    assert summary["ts"].to_list() == [item["ts"] for item in items]
    assert summary["best_bid"].to_list() == [item["bids"][0][0] for item in items]


@pytest.mark.skipif(not _has("pandas"), reason="pandas is not installed")
def test_pandas_long_layout_equals_what_the_daemon_served(
    daemon_file: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, items = daemon_file
    with research.open(path) as dataset:
        frame = dataset.to_pandas("sim", "BTC/USDT", items[0]["ts"], items[-1]["ts"] + 1)
        summary = dataset.summary("sim", "BTC/USDT", frame="pandas")
    rows = [(int(t), str(s), int(lv), p, z) for t, s, lv, p, z in frame.itertuples(index=False)]
    assert rows == _long(items)
    assert summary["ts"].tolist()[: len(items)] == [item["ts"] for item in items]


@pytest.mark.skipif(not download.parquet_available(), reason="pyarrow is not installed")
def test_cli_export_parquet_reads_back_as_what_the_daemon_served(
    daemon_file: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    import pyarrow.dataset as pads

    path, items = daemon_file
    config = write_config(path.parent)
    out = tmp_path / "out"
    start, end = str(items[0]["ts"]), str(items[-1]["ts"] + 1)
    done = obd(
        "export", "--start", start, "--end", end, "--format", "parquet", "--out", str(out),
        config=config,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no progress bar
    table = pads.dataset(out, format="parquet", partitioning="hive").to_table().to_pylist()
    table.sort(key=lambda row: row["ts"])
    assert [row["ts"] for row in table] == [item["ts"] for item in items]
    for row, item in zip(table, items, strict=True):
        assert (row["exchange"], row["symbol"]) == ("sim", "BTC/USDT")
        assert row["bid_price"] == [level[0] for level in item["bids"]]
        assert row["ask_size"] == [level[1] for level in item["asks"]]
        assert row["received_ts"] == item["received_ts"]


@pytest.mark.skipif(not download.parquet_available(), reason="pyarrow is not installed")
def test_interrupted_parquet_export_resumes_to_identical_files(tmp_path: Path) -> None:
    import pyarrow.dataset as pads

    database = tmp_path / "obd.sqlite"
    build(database, range(T0 + DAY_MS // 2, T0 + 3 * DAY_MS, 600_000))  # 2.5 days, every 10 min
    out = tmp_path / "out"
    first = export.run(database, out, "parquet", start=T0, end=T0 + 3 * DAY_MS)
    assert (first.written, first.skipped) == (3, 0)
    files = sorted(out.rglob("part.parquet"))
    assert [f.parent.name for f in files] == [
        "date=2025-12-01",
        "date=2025-12-02",
        "date=2025-12-03",
    ]
    assert files[0].parent.parent.name == "interval=1s"
    assert files[0].parent.parent.parent.name == "symbol=BTC%2FUSDT"
    before = {f: f.read_bytes() for f in files}

    files[1].unlink()  # the partition an interrupted run was writing ...
    (files[1].parent / ".part.parquet.partial").write_bytes(b"half a file")
    (files[0].parent / ".part.parquet.partial").write_bytes(b"stray")
    again = export.run(database, out, "parquet", start=T0, end=T0 + 3 * DAY_MS)
    assert (again.written, again.skipped) == (1, 2)
    assert {f: f.read_bytes() for f in sorted(out.rglob("part.parquet"))} == before
    assert list(out.rglob("*.partial")) == []

    table = pads.dataset(out, format="parquet", partitioning="hive").to_table()
    with research.open(database) as dataset:
        stored = list(dataset.snapshots("sim", "BTC/USDT"))
    assert sorted(table["ts"].to_pylist()) == [s.ts for s in stored]
    rows = sorted(table.to_pylist(), key=lambda row: row["ts"])
    assert [r["bid_size"] for r in rows] == [[lv[1] for lv in s.bids] for s in stored]
    assert [r["exchange_ts"] for r in rows] == [s.exchange_ts for s in stored]


def test_days_cut_by_the_range_are_rewritten_and_csv_ndjson_have_one_file_each(
    tmp_path: Path,
) -> None:
    database = tmp_path / "obd.sqlite"
    build(database, range(T0, T0 + 2 * DAY_MS, 3_600_000))
    for form in ("csv", "ndjson"):
        out = tmp_path / form
        end = T0 + DAY_MS + 5 * 3_600_000  # cuts the second day
        assert export.run(database, out, form, end=end).written == 2
        again = export.run(database, out, form, end=end, progress=io.StringIO())
        assert (again.written, again.skipped) == (1, 1)
        assert len(list(out.rglob(f"part.{form}"))) == 2
    lines = next((tmp_path / "ndjson").rglob("date=2025-12-02/part.ndjson")).read_text()
    assert len(lines.splitlines()) == 5


def test_shards_open_as_one_dataset(tmp_path: Path) -> None:
    build(tmp_path / "a.sqlite", range(0, 300_000, 1_000))
    build(tmp_path / "b.sqlite", range(200_000, 500_000, 1_000))
    with research.open([tmp_path / "a.sqlite", tmp_path / "b.sqlite"]) as dataset:
        (info,) = dataset.series()
        assert (info.first_ts, info.last_ts, info.count) == (0, 499_000, 500)
        times = [s.ts for s in dataset.snapshots("sim", "BTC/USDT", 100_000, 400_000)]
        assert times == list(range(100_000, 400_000, 1_000))
        assert dataset.to_numpy("sim", "BTC/USDT", levels=3).bids.shape == (500, 3, 2)


def test_newer_and_foreign_files_are_refused(tmp_path: Path) -> None:
    build(tmp_path / "obd.sqlite", range(0, 5_000, 1_000))
    newer = tmp_path / "newer.sqlite"
    shutil.copy(tmp_path / "obd.sqlite", newer)
    conn = apsw.Connection(str(newer))
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        research.open(newer)
    foreign = tmp_path / "foreign.sqlite"
    apsw.Connection(str(foreign)).execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not an obd file"):
        research.open(foreign)
    with pytest.raises(StoreError, match="does not exist"):
        research.open(tmp_path / "missing.sqlite")


def test_missing_optional_libraries_name_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path / "obd.sqlite", range(0, 5_000, 1_000))
    real = importlib.import_module

    def without_frames(name: str, *args: Any) -> Any:
        if name in ("polars", "pandas"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(frames.importlib, "import_module", without_frames)
    with research.open(tmp_path / "obd.sqlite") as dataset:
        with pytest.raises(frames.MissingExtra, match=r"obd\[research\]"):
            dataset.to_polars("sim", "BTC/USDT")
        with pytest.raises(frames.MissingExtra, match=r"obd\[research\]"):
            dataset.summary("sim", "BTC/USDT", frame="pandas")
    monkeypatch.setattr(download, "parquet_available", lambda: False)
    with pytest.raises(BadRequest, match=r"obd\[research\]"):
        export.run(tmp_path / "obd.sqlite", tmp_path / "out", "parquet")
    assert not (tmp_path / "out").exists()
