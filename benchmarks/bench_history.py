"""Back-filling a whole day file from a local Tardis-format archive: slots/s and RSS.

A day of `incremental_book_L2` rows (~2.5 M rows, ~21 MB gzip; made from the Binance
recording by `tests.history_support.write_day_file`) is served by the test archive on
127.0.0.1 and back-filled at 1 s, depth 100, into a new file through
`Service.backfill` (the code `obd backfill` runs): 86,400 slots. Measured in the same
run, as the baseline: parsing the same file into books alone (`csvbook.l2_books`, no
HTTP, no storage), so the ratio says what streaming and storing add.

RSS is sampled at every stored batch; growth is the peak minus the RSS once 2 % of
the day was stored (imports, connections and caches settled).

    python benchmarks/bench_history.py [--slots 86400] [--json]
"""

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from obd.history import csvbook
from obd.history.provider import Served
from tests.history_support import DAY_MS, measure_backfill, write_day_file


def parse_only(path: Path, slots: int) -> float:
    """Slots a second turned into books by the parser alone (the baseline)."""
    began = time.perf_counter()
    with gzip.open(path, "rt", newline="") as text:
        count = sum(
            isinstance(item, Served)
            for item in csvbook.l2_books(
                text,
                DAY_MS,
                DAY_MS + slots * 1000,
                1000,
                100,
                "tardis",
            )
        )
    return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=86_400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        day = work / "day.csv.gz"
        rows = write_day_file(day, day_ms=DAY_MS)
        baseline = parse_only(day, args.slots)
        result = measure_backfill(day, work, args.slots)
    result["rows_in_file"] = rows
    result["parse_only_slots_per_s"] = round(baseline)
    result["ratio_backfill_to_parse_only"] = round(result["slots_per_s"] / baseline, 2)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
