"""Memory stays flat while a whole day file is back-filled (86,400 slots at 1 s from a
~21 MB gzip day of ~2.7 M rows): the file is streamed, never held. Slow (~1 min);
`benchmarks/bench_history.py` reports the same run's rate and RSS."""

from pathlib import Path

import pytest

from tests.history_support import measure_backfill, write_day_file


@pytest.mark.slow
def test_backfilling_a_whole_day_keeps_memory_flat(tmp_path: Path) -> None:
    day = tmp_path / "day.csv.gz"
    write_day_file(day)
    result = measure_backfill(day, tmp_path)
    assert result["slots"] == 86_400
    assert result["backfilled"] + result["unfilled_slots"] == 86_400
    assert result["backfilled"] > 86_000
    assert result["rss_growth_mib"] < 50, result
