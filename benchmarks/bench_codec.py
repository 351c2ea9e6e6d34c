"""pytest-benchmark of the book codec on the real books in tests/data, per core.

    pytest benchmarks/bench_codec.py --benchmark-columns=mean,ops

Each round encodes (or decodes) all 198 depth-100 books of the test slice; ops/s x 198 is
snapshots/s. `compiled` is obd.storage._scaled (skipped where it is not built), `python`
the NumPy reference. `decode_many` is one batch into arrays, `+books` also builds the
Python tuples. benchmarks/bench_paths.py puts the whole paths beside their limits;
benchmarks/compare_codec.py the sizes beside gzip, zstd and Parquet.
"""

import gzip
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
import zstandard

from obd.storage import codec, scaled

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CORES: list[Any] = [scaled]
if importlib.util.find_spec("obd.storage._scaled") is not None:
    from obd.storage import _scaled

    CORES.insert(0, _scaled)
IDS = ["compiled" if core is not scaled else "python" for core in CORES]


def _books() -> list[tuple[list[Any], list[Any]]]:
    with gzip.open(DATA / "binance_depth100_every15.ndjson.gz", "rt") as lines:
        return [(book["bids"], book["asks"]) for book in map(json.loads, lines)]


BOOKS = _books()
SCALED = [codec.encode(bids, asks) for bids, asks in BOOKS]
RAW = [(codec.RAW, zstandard.compress(msgspec.msgpack.encode(book), 3)) for book in BOOKS]


@pytest.mark.parametrize("core", CORES, ids=IDS)
@pytest.mark.parametrize("blobs", [SCALED, RAW], ids=["scaled", "raw"])
def test_decode_one_by_one(
    benchmark: Any, core: ModuleType, blobs: list[tuple[int, bytes]]
) -> None:
    books = benchmark(lambda: [codec.decode_with(core, [blob]).books()[0] for blob in blobs])
    assert len(books) == len(BOOKS)


@pytest.mark.parametrize("core", CORES, ids=IDS)
@pytest.mark.parametrize("books", [False, True], ids=["arrays", "+books"])
def test_decode_many(benchmark: Any, core: ModuleType, books: bool) -> None:
    def run() -> object:
        levels = codec.decode_with(core, SCALED)
        return levels.books() if books else levels

    benchmark(run)


@pytest.mark.parametrize("core", CORES, ids=IDS)
def test_encode(benchmark: Any, core: ModuleType) -> None:
    encoded = benchmark(lambda: [codec.encode_with(core, bids, asks) for bids, asks in BOOKS])
    assert encoded == SCALED
    benchmark.extra_info["bytes_per_snapshot"] = sum(len(b) for _, b in encoded) / len(encoded)
