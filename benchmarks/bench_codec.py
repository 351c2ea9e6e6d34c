"""pytest-benchmark of the book codec on the real books in tests/data.

    pytest benchmarks/bench_codec.py --benchmark-columns=mean,ops

Each round encodes (or decodes) all 198 depth-100 books of the test slice; ops/s x 198 is
snapshots/s. benchmarks/compare_codec.py puts these next to zstd, gzip, Parquet and apsw.
"""

import gzip
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from obd.storage import codec

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def _books() -> list[tuple[list[Any], list[Any]]]:
    with gzip.open(DATA / "binance_depth100_every15.ndjson.gz", "rt") as lines:
        return [(book["bids"], book["asks"]) for book in map(json.loads, lines)]


BOOKS = _books()
SCALED = [codec.encode(bids, asks) for bids, asks in BOOKS]
RAW = [(codec.RAW, zstandard.compress(msgspec.msgpack.encode(book), 3)) for book in BOOKS]


def _encode_all() -> list[tuple[int, bytes]]:
    return [codec.encode(bids, asks) for bids, asks in BOOKS]


@pytest.mark.parametrize("blobs", [SCALED, RAW], ids=["scaled", "raw"])
def test_decode(benchmark: Any, blobs: list[tuple[int, bytes]]) -> None:
    books = benchmark(lambda: [codec.decode(codec_id, blob) for codec_id, blob in blobs])
    assert len(books) == len(BOOKS)


def test_encode(benchmark: Any) -> None:
    encoded = benchmark(_encode_all)
    assert encoded == SCALED
    benchmark.extra_info["bytes_per_snapshot"] = sum(len(b) for _, b in encoded) / len(encoded)
