"""Research without a config: `obd export --database FILE` on a copied file, times as
people write them, and exported files that describe themselves (summary columns, a UTC
timestamp, key-value metadata) with the range's gaps beside them."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apsw
import pytest
from numpy import datetime64, float64, int64

from obd import __version__, research
from obd.model import Gap
from obd.research import export
from obd.research import sinks as download
from obd.storage import schema
from obd.storage.reader import PLAIN_COLUMNS
from tests.research_support import build

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z
COIN = ("sim", "BTC/USDT")
# Three days at an hourly cadence with the second day missing, recorded as a gap.
SLOTS = [t for t in range(T0, T0 + 3 * DAY_MS, HOUR_MS) if not T0 + DAY_MS <= t < T0 + 2 * DAY_MS]
GAP = (T0 + DAY_MS, T0 + 2 * DAY_MS, "daemon_down")

needs_pyarrow = pytest.mark.skipif(
    not download.parquet_available(), reason="pyarrow is not installed"
)


def _database(directory: Path) -> Path:
    path = directory / "copy.sqlite"
    build(path, SLOTS)
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute("INSERT INTO gaps (series, start_ts, end_ts, reason) VALUES (1, ?, ?, ?)", GAP)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):  # a copy as `obd backup` or `cp` after a stop leaves it
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored(path: Path) -> list[dict[str, Any]]:
    """The snapshots table's plain columns, straight from SQLite."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        query = f"SELECT {', '.join(PLAIN_COLUMNS)}, seq FROM snapshots ORDER BY ts"
        return [dict(zip((*PLAIN_COLUMNS, "seq"), row, strict=True)) for row in conn.execute(query)]
    finally:
        conn.close()


def _export(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`obd export` as a user runs it, in a directory without a config file."""
    env = {k: v for k, v in os.environ.items() if k != "OBD_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "obd", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**env, "OBD_LOG_LEVEL": "warning"},
    )


# -- times ------------------------------------------------------------------------------


def test_research_takes_times_as_http_mcp_and_the_cli_do(tmp_path: Path) -> None:
    path = _database(tmp_path)
    day2 = T0 + 2 * DAY_MS
    paris = timezone(timedelta(hours=1))
    with research.open(path) as dataset:

        def times(start: Any = None, end: Any = None) -> list[int]:
            return [s.ts for s in dataset.snapshots(*COIN, start, end)]

        want = [t for t in SLOTS if t >= day2]
        assert times(day2) == want
        assert times("2025-12-03") == want  # ISO 8601, naive: UTC
        assert times("2025-12-03T01:00:00+01:00") == want
        assert times(datetime(2025, 12, 3)) == want  # naive datetime: UTC
        assert times(datetime(2025, 12, 3, 1, tzinfo=paris)) == want  # aware: converted
        assert times(date(2025, 12, 3)) == want  # a date: its UTC midnight
        assert times(int64(day2)) == want
        assert times(datetime64("2025-12-03T00:00:00")) == want
        assert times(str(day2)) == want
        assert times("-1000d", "now") == SLOTS  # relative to now
        assert times(end=datetime(2025, 12, 1, 2, tzinfo=UTC)) == [T0, T0 + HOUR_MS]
        assert dataset.count(*COIN, "2025-12-03", None) == len(want)
        assert dataset.to_numpy(*COIN, "-1000d", "now", levels=2).ts.tolist() == SLOTS
        assert dataset.gaps(*COIN, "2025-12-01", "2025-12-04") == [Gap(*GAP)]

        for wrong in (1.7646e12, float64(T0), True, object(), [T0]):
            with pytest.raises(TypeError, match="start: expected"):
                dataset.count(*COIN, wrong)
        with pytest.raises(TypeError, match="got float"):
            list(dataset.snapshots(*COIN, end=1_764_547_200.5))  # seconds are not ms
        for unparsable in ("yesterday", "2025-13-01", "-6x"):
            with pytest.raises(ValueError, match="start:"):
                dataset.count(*COIN, unparsable)
        with pytest.raises(ValueError, match="out of range"):
            dataset.count(*COIN, datetime(1969, 12, 31, tzinfo=UTC))
        with pytest.raises(ValueError, match="end:"):
            dataset.count(*COIN, None, -1)


# -- obd export --database --------------------------------------------------------------


@needs_pyarrow
def test_export_database_reads_a_copy_without_a_config(tmp_path: Path) -> None:
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    path = _database(tmp_path)
    before, version = _digest(path), schema.SCHEMA_VERSION
    out = tmp_path / "out"
    done = _export("--database", str(path), "--format", "parquet", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"exported {len(SLOTS)} snapshots" in done.stdout
    assert _digest(path) == before  # read, never written nor migrated

    files = sorted(out.rglob("part.parquet"))
    assert [f.parent.name for f in files] == ["date=2025-12-01", "date=2025-12-03"]
    metadata = pq.read_schema(files[0]).metadata
    assert {k.decode(): v.decode() for k, v in metadata.items()} == {
        "exchange": "sim",
        "symbol": "BTC/USDT",
        "interval": "1s",
        "interval_ms": "1000",
        "depth": "100",
        "synthetic": "false",
        "obd_version": __version__,
        "schema_version": str(version),
        "date": "2025-12-01",
    }
    table = pads.dataset(out, format="parquet", partitioning="hive").to_table()
    assert str(table.schema.field("ts_utc").type) == "timestamp[ms, tz=UTC]"
    rows = sorted(table.to_pylist(), key=lambda row: row["ts"])
    stored = _stored(path)
    assert [row["ts"] for row in rows] == [row["ts"] for row in stored] == SLOTS
    for row, want in zip(rows, stored, strict=True):
        assert {name: row[name] for name in want} == want  # summary, seq, capture: equal
        assert row["ts_utc"] == datetime.fromtimestamp(want["ts"] / 1000, UTC)
    with research.open(path) as dataset:
        books = list(dataset.snapshots(*COIN))
    assert [row["bid_price"] for row in rows] == [[lv[0] for lv in b.bids] for b in books]
    assert [row["ask_size"] for row in rows] == [[lv[1] for lv in b.asks] for b in books]

    gaps_file = out / "exchange=sim" / "symbol=BTC%2FUSDT" / "interval=1s" / "_gaps.parquet"
    gaps = pq.read_table(gaps_file)
    assert gaps.to_pylist() == [
        {
            "start_ts": GAP[0],
            "end_ts": GAP[1],
            "reason": GAP[2],
            "start_utc": datetime(2025, 12, 2, tzinfo=UTC),
            "end_utc": datetime(2025, 12, 3, tzinfo=UTC),
        }
    ]
    assert gaps.schema.metadata[b"symbol"] == b"BTC/USDT"
    assert gaps.schema.metadata[b"start_ms"] == b""  # the whole stored range


@needs_pyarrow
def test_export_database_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    path = _database(tmp_path)
    newer = tmp_path / "newer.sqlite"
    shutil.copy(path, newer)
    conn = apsw.Connection(str(newer))
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    before = _digest(newer)
    out = str(tmp_path / "out")
    refused = _export("--database", str(newer), "--format", "csv", "--out", out, cwd=tmp_path)
    assert refused.returncode == 2
    assert "is newer than this obd understands" in refused.stderr
    assert "internal error" not in refused.stderr
    assert _digest(newer) == before
    both = _export(
        "--database", str(path), "--config", "x.toml", "--format", "csv", "--out", out,
        cwd=tmp_path,
    )  # fmt: skip
    assert both.returncode == 2
    assert "give --database or --config, not both" in both.stderr
    missing = _export("--database", "nope.sqlite", "--format", "csv", "--out", out, cwd=tmp_path)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


def test_a_copy_in_a_directory_it_cannot_write_is_read_as_immutable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite needs a `-shm` beside a WAL-mode file; where it cannot make one (a
    read-only mount), obd reads the copy as immutable and creates nothing beside it."""
    path = _database(tmp_path)
    monkeypatch.setattr(research.os, "access", lambda *args: False)  # as if read-only
    result = export.run(path, tmp_path / "out", "ndjson", start="2025-12-03")
    assert result.snapshots == len([t for t in SLOTS if t >= T0 + 2 * DAY_MS])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.sqlite", "out"]


def test_csv_and_ndjson_exports_carry_the_gaps_too(tmp_path: Path) -> None:
    path = _database(tmp_path)
    start, end = T0 + 12 * HOUR_MS, T0 + 2 * DAY_MS + HOUR_MS
    for form in ("csv", "ndjson"):
        out = tmp_path / form
        export.run(path, out, form, start=start, end=end)
        gaps = export.gaps_path(out, *COIN, "1s", form)
        assert gaps.name == f"_gaps.{form}"
        lines = gaps.read_text().splitlines()
        if form == "csv":
            assert lines == ["start_ts,end_ts,reason", ",".join(map(str, GAP))]
        else:
            assert [json.loads(line) for line in lines] == [
                {"start_ts": GAP[0], "end_ts": GAP[1], "reason": GAP[2]}
            ]
    clipped = export.run(path, tmp_path / "clip", "csv", start=T0 + 36 * HOUR_MS, end=end)
    assert clipped.snapshots == 1  # the 2nd day has no file (no data), its gap is listed
    assert len(list((tmp_path / "clip").rglob("part.csv"))) == 1
    text = export.gaps_path(tmp_path / "clip", *COIN, "1s", "csv").read_text()
    assert text.splitlines()[1] == f"{T0 + 36 * HOUR_MS},{GAP[1]},{GAP[2]}"


# -- reading ahead ----------------------------------------------------------------------


def _reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "obd-export-read"]


def test_read_ahead_gives_every_item_in_order_then_the_error_and_ends_its_thread() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise ValueError("corrupt book blob")

    got: list[int] = []
    with pytest.raises(ValueError, match="corrupt"):
        got.extend(export._read_ahead(items()))
    assert got == [0, 1, 2, 3, 4]
    assert _reader_threads() == []


def test_read_ahead_stopped_early_ends_its_thread_and_closes_the_source() -> None:
    closed = []

    def items() -> Iterator[int]:
        try:
            yield from range(1_000)
        finally:
            closed.append(True)

    with contextlib.closing(export._read_ahead(items())) as ahead:
        assert next(ahead) == 0
    assert _reader_threads() == []
    assert closed == [True]


@needs_pyarrow
def test_a_corrupt_book_fails_the_export_and_publishes_no_file(tmp_path: Path) -> None:
    path = _database(tmp_path)
    conn = apsw.Connection(str(path))
    with conn:  # one book of the third day: its partition cannot be written whole
        conn.execute("UPDATE snapshot_rows SET book = x'0badc0de' WHERE ts = ?", (SLOTS[-3],))
    conn.close()
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="corrupt"):
        export.run(path, out, "parquet")
    assert _reader_threads() == []
    assert not [p for p in out.rglob("*.parquet") if "date=2025-12-03" in str(p)]
