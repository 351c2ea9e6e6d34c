"""Research reads and `obd export`, on a database of real books.

Builds a file of N snapshots (the 198 real 100-level Binance books of tests/data,
cycled, one a second over N seconds) with obd's own writer functions, then measures:

- export throughput: snapshots/s written to Parquet by `obd.research.export.run` (read + decode +
  Parquet zstd, one thread), and the same for gzip'd NDJSON;
- bytes per snapshot on disk: the SQLite file (after VACUUM), the exported Parquet
  tree, and gzip'd (level 6) NDJSON of the same range;
- `Dataset.to_numpy` snapshots/s (read + decode + fill the dense arrays).

    python benchmarks/bench_research.py [--snapshots 20000]
"""

import argparse
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from obd import research
from obd.research import export
from tests.research_support import build

T0 = 1_764_547_200_000  # 2025-12-01T00:00Z


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--snapshots", type=int, default=20_000)
    n = parser.parse_args().snapshots
    work = Path(tempfile.mkdtemp(prefix="obd-bench-research-"))
    try:
        database = work / "obd.sqlite"
        build(database, range(T0, T0 + n * 1_000, 1_000))
        conn = apsw.Connection(str(database))
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        print(f"{n:,} snapshots, 100 levels a side, 1 s apart")

        started = time.perf_counter()
        done = export.run(database, work / "parquet", "parquet")
        parquet_s = time.perf_counter() - started
        assert done.snapshots == n
        print(f"export parquet: {n / parquet_s:,.0f} snapshots/s")

        started = time.perf_counter()
        export.run(database, work / "ndjson", "ndjson")
        print(f"export ndjson: {n / (time.perf_counter() - started):,.0f} snapshots/s")
        for part in (work / "ndjson").rglob("part.ndjson"):
            with part.open("rb") as raw, gzip.open(f"{part}.gz", "wb", compresslevel=6) as gz:
                shutil.copyfileobj(raw, gz)
            part.unlink()

        with research.open(database) as dataset:
            started = time.perf_counter()
            arrays = dataset.to_numpy("sim", "BTC/USDT", levels=100)
            numpy_s = time.perf_counter() - started
        assert len(arrays.ts) == n
        print(f"to_numpy: {n / numpy_s:,.0f} snapshots/s")

        print("bytes per snapshot:")
        for name, size in (
            ("SQLite file", database.stat().st_size),
            ("Parquet (zstd)", _size(work / "parquet")),
            ("NDJSON gzip-6", _size(work / "ndjson")),
        ):
            print(f"  {name:<16}{size / n:>8,.0f}")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
