"""The Tardis.dev archive provider against a real HTTP archive on 127.0.0.1: day files
made from the Binance recording, books compared with an independent rebuild."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from obd.config import load
from obd.context import open_runtime
from obd.service import BackfillReport, Coverage
from obd.times import parse_time
from tests.conftest import write_config
from tests.history_support import Archive, Rebuilt, day_path, gz, l2_lines

DAY = "2024-08-08"
FILE = day_path("binance", "incremental_book_L2", DAY, "BTCUSDT")
NEXT_DAY_MS = parse_time("2024-08-09T00:00:00Z", "t")
DEPTH = 100


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return l2_lines("BTCUSDT")


@pytest.fixture
def archive() -> Any:
    served = Archive(key="secret-key")
    yield served
    served.close()


def _config(tmp_path: Path, archive: Archive, extra: str = "", key: str = "secret-key") -> Path:
    tmp_path.mkdir(exist_ok=True)
    return write_config(
        tmp_path,
        f"""
[history]
providers = ["tardis"]
[history.tardis]
base_url = "{archive.url}"
api_key = "{key}"
retries = 2
max_retry_after_s = 5
{extra}
""",
    )


def _backfill(
    config_path: Path, start: int, end: int, **kwargs: Any
) -> tuple[BackfillReport, list[Any], Coverage]:
    async def go() -> tuple[BackfillReport, list[Any], Coverage]:
        async with open_runtime(load(config_path)) as runtime:
            service = runtime.service
            report = await service.backfill(
                "binance", "BTC/USDT", start, end, interval="1s", depth=DEPTH, **kwargs
            )
            rows = []
            async for chunk in await service.stream_books("binance", "BTC/USDT", start, end):
                rows += chunk
            covered = await service.coverage("binance", "BTC/USDT", start, end, "true")
            return report, rows, covered

    return asyncio.run(go())


def _as_lists(levels: list[Any]) -> list[list[float]]:
    return [list(level) for level in levels]


def _check_rows_equal_rebuild(rows: list[Any], rebuilt: Rebuilt) -> None:
    expected = rebuilt.at([row.ts for row in rows], DEPTH)
    for row in rows:
        book = expected[row.ts]
        assert book is not None, row.ts
        assert _as_lists(row.bids) == book["bids"], row.ts
        assert _as_lists(row.asks) == book["asks"], row.ts
        assert (row.exchange_ts, row.received_ts) == (book["exchange_ts"], book["received_ts"])
        assert row.capture == "backfill:tardis"
        assert row.seq is None


def test_backfilled_books_equal_an_independent_rebuild(
    tmp_path: Path, archive: Archive, lines: list[str]
) -> None:
    rebuilt = Rebuilt(lines)
    archive.files[FILE] = gz(lines)
    archive.throttle[FILE] = 1  # one 429 (Retry-After: 1) first: waited out
    start = rebuilt.first_ms - rebuilt.first_ms % 1000 - 5_000
    end = NEXT_DAY_MS + 3_000  # into a day the archive does not have
    report, rows, covered = _backfill(_config(tmp_path, archive), start, end)

    first = rebuilt.first_ms - rebuilt.first_ms % 1000 + 1000  # first slot after the first row
    last_local_us = int(rebuilt.rows[-1]["local_timestamp"])
    served = [t for t in range(first, NEXT_DAY_MS, 1000) if t * 1000 < last_local_us]
    assert [row.ts for row in rows] == served
    _check_rows_equal_rebuild(rows, rebuilt)
    assert report.backfilled == len(served) == report.slots - report.unfilled_slots
    assert report.history_only
    whys = [(gap.start, gap.end, gap.why) for gap in report.unfilled]
    assert whys[0][:2] == (start, first)
    assert "before the file's first row" in whys[0][2]
    assert whys[1][:2] == (served[-1] + 1000, NEXT_DAY_MS)
    assert "after the file's last row" in whys[1][2]
    assert whys[2][:2] == (NEXT_DAY_MS, end)
    assert "no file for binance BTCUSDT 2024-08-09" in whys[2][2]
    assert "404" in whys[2][2]
    assert len(whys) == 3
    # 429 then 200, the API key sent each time
    assert [path for path, _ in archive.requests].count(f"/v1/{FILE}") == 2
    # coverage: which slots came from where
    assert covered.sources is not None
    assert [(s.start, s.end, s.capture) for s in covered.sources] == [
        (first, served[-1] + 1000, "backfill:tardis")
    ]
    assert covered.providers == ["tardis"]

    # Again: resumable, nothing fetched twice into the file.
    again, rows_again, _ = _backfill(_config(tmp_path, archive), start, end)
    assert again.backfilled == 0
    assert again.present == len(served)
    assert rows_again == rows


def test_a_truncated_file_serves_what_came_and_says_why(
    tmp_path: Path, archive: Archive, lines: list[str]
) -> None:
    rebuilt = Rebuilt(lines)
    whole = gz(lines)
    archive.files[FILE] = whole[: len(whole) // 2]
    start = rebuilt.first_ms - rebuilt.first_ms % 1000 + 1000
    report, rows, _ = _backfill(_config(tmp_path, archive), start, start + 120_000)
    assert 10 < len(rows) < 110
    _check_rows_equal_rebuild(rows, rebuilt)
    [gap] = report.unfilled
    assert gap.start == rows[-1].ts + 1000
    assert gap.end == start + 120_000
    assert "truncated" in gap.why


def test_a_corrupt_file_a_refused_key_and_a_long_retry_after_are_gaps(
    tmp_path: Path, archive: Archive
) -> None:
    start = parse_time("2024-08-08T23:55:00Z", "t")
    archive.files[FILE] = b"this is not gzip" * 100
    report, rows, _ = _backfill(_config(tmp_path / "a", archive), start, start + 10_000)
    assert rows == []
    assert "corrupt" in report.unfilled[0].why
    report, _, _ = _backfill(_config(tmp_path / "b", archive, key="wrong"), start, start + 10_000)
    assert "refused the request (401)" in report.unfilled[0].why
    archive.files[FILE] = gz(["x"])
    archive.throttle[FILE] = 5
    archive.retry_after = "3600"
    report, _, _ = _backfill(_config(tmp_path / "c", archive), start, start + 10_000)
    assert "rate limited (429): the archive asks to wait 3600 s" in report.unfilled[0].why


def test_crossed_books_are_refused_for_their_slots(tmp_path: Path, archive: Archive) -> None:
    t0 = parse_time("2024-08-08T12:00:00Z", "t") * 1000  # µs
    rows = [
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount",
        f"binance,BTCUSDT,{t0},{t0},true,bid,100.5,1",
        f"binance,BTCUSDT,{t0},{t0},true,ask,101,2",
        f"binance,BTCUSDT,{t0 + 1_500_000},{t0 + 1_500_000},false,bid,102,1",  # crosses
        f"binance,BTCUSDT,{t0 + 3_500_000},{t0 + 3_500_000},false,bid,102,0",
        f"binance,BTCUSDT,{t0 + 9_000_000},{t0 + 9_000_000},false,ask,101,3",
    ]
    archive.files[FILE] = gz(rows)
    start = t0 // 1000
    report, stored, _ = _backfill(_config(tmp_path, archive), start, start + 6_000)
    assert [row.ts - start for row in stored] == [0, 1000, 4000, 5000]
    assert all(row.bids == [(100.5, 1.0)] for row in stored)
    [refused] = report.unfilled
    assert (refused.start - start, refused.end - start) == (2000, 4000)
    assert "refused a crossed book (best bid 102.0 >= best ask 101.0)" in refused.why


def _snapshot_lines(rebuilt: Rebuilt, times_ms: list[int], levels: int) -> list[str]:
    """A `book_snapshot_<levels>` file: the rebuilt book at each time, one row each."""
    header = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for side in ("asks", "bids"):
        for i in range(levels):
            header += [f"{side}[{i}].price", f"{side}[{i}].amount"]
    lines = [",".join(header)]
    books = rebuilt.at(times_ms, levels)
    for t in times_ms:
        book = books[t]
        assert book is not None
        row = ["binance", "BTCUSDT", str(book["exchange_ts"] * 1000), str(t * 1000)]
        for side in ("asks", "bids"):
            cells = [[repr(p), repr(a)] for p, a in book[side]]
            cells += [["", ""]] * (levels - len(cells))
            row += [cell for pair in cells for cell in pair]
        lines.append(",".join(row))
    return lines


def test_book_snapshot_files_serve_when_no_incremental_file_exists(
    tmp_path: Path, archive: Archive, lines: list[str]
) -> None:
    rebuilt = Rebuilt(lines)
    base = rebuilt.first_ms - rebuilt.first_ms % 1000 + 1000
    times = [base + 250 + 700 * i for i in range(40)]  # every 0.7 s, off the grid
    snapshot_file = _snapshot_lines(rebuilt, times, 25)
    archive.files[day_path("binance", "book_snapshot_25", DAY, "BTCUSDT")] = gz(snapshot_file)
    extra = 'data_types = ["incremental_book_L2", "book_snapshot_25"]'
    report, rows, _ = _backfill(_config(tmp_path, archive, extra), base, base + 20_000)
    assert [row.ts for row in rows] == list(range(base + 1000, base + 20_000, 1000))
    want = rebuilt.at([max(t for t in times if t <= row.ts) for row in rows], 25)
    for row in rows:
        book = want[max(t for t in times if t <= row.ts)]
        assert book is not None
        assert _as_lists(row.bids) == book["bids"]
        assert _as_lists(row.asks) == book["asks"]
        assert row.capture == "backfill:tardis:book_snapshot_25"
        assert len(row.bids) == 25  # labelled with its depth: no deeper than the file
    [before] = report.unfilled
    assert (before.start, before.end) == (base, base + 1000)
    assert "before the file's first row" in before.why


def test_history_requests_fill_holes_from_the_archive(
    tmp_path: Path, archive: Archive, lines: list[str]
) -> None:
    """What WebSocket `history` and MCP `get_history` run: stored rows, and holes
    back-filled by the providers within the allowance."""
    from obd.errors import TooManyRequests
    from obd.service.history import Allowance

    rebuilt = Rebuilt(lines)
    archive.files[FILE] = gz(lines)
    base = rebuilt.first_ms - rebuilt.first_ms % 1000 + 1000
    config_path = _config(tmp_path, archive)

    async def go() -> tuple[list[Any], Any]:
        async with open_runtime(load(config_path)) as runtime:
            service = runtime.service
            await service.backfill(  # registers the series, fills [10 s, 20 s)
                "binance", "BTC/USDT", base + 10_000, base + 20_000, interval="1s", depth=DEPTH
            )
            stream = await service.history(
                "binance",
                "BTC/USDT",
                base,
                base + 30_000,
                may_add=False,
                backfill=Allowance(15, 100),
            )
            rows: list[Any] = []

            async def drain() -> None:
                async for chunk in stream.chunks():
                    rows.extend(chunk)

            with pytest.raises(TooManyRequests, match="limited to 15 rows a request"):
                await drain()
            return rows, stream

    rows, stream = asyncio.run(go())
    assert [row.ts - base for row in rows] == list(range(0, 25_000, 1000))
    assert stream.backfilled == 15
    _check_rows_equal_rebuild(rows, rebuilt)


def test_coverage_says_which_provider_could_fill_each_gap(
    tmp_path: Path, archive: Archive, lines: list[str]
) -> None:
    rebuilt = Rebuilt(lines)
    archive.files[FILE] = gz(lines)
    base = rebuilt.first_ms - rebuilt.first_ms % 1000 + 1000
    config_path = _config(tmp_path, archive)

    async def go() -> tuple[Any, Any]:
        async with open_runtime(load(config_path)) as runtime:
            service = runtime.service
            await service.backfill(
                "binance", "BTC/USDT", base + 5_000, base + 10_000, interval="1s", depth=DEPTH
            )
            same_day = await service.coverage(
                "binance", "BTC/USDT", base, base + 15_000, fillable="true"
            )
            next_day = await service.coverage(
                "binance", "BTC/USDT", NEXT_DAY_MS, NEXT_DAY_MS + 5_000, fillable=True
            )
            return same_day, next_day

    same_day, next_day = asyncio.run(go())
    assert [(g.start - base, g.end - base, g.reason) for g in same_day.gaps] == [
        (0, 5_000, "not_collected"),
        (10_000, 15_000, "not_collected"),
    ]
    assert [(f.start - base, f.provider, f.why) for f in same_day.fillable] == [
        (0, "tardis", ""),
        (10_000, "tardis", ""),
    ]
    [none] = next_day.fillable
    assert none.provider is None
    assert none.why == (
        "tardis: the archive has no file for binance BTCUSDT (2024-08-09 incremental_book_L2: 404)"
    )
    assert [path for path, _ in archive.requests].count(f"/v1/{FILE}") >= 1
