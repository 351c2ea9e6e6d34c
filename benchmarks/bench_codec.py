"""pytest-benchmark of the book codec on the real books in tests/data, per core.

    pytest benchmarks/bench_codec.py --benchmark-columns=mean,ops

Each round encodes (or decodes) all 198 depth-100 books of the test slice; ops/s x 198 is
snapshots/s. `compiled` is obd.storage._scaled (skipped where it is not built), `python`
the NumPy reference. `decode_many` is one batch into arrays, `+books` also builds the
Python tuples. `scaled` is codec 1; `modeled` codec 2, each book with a size model of
its series trained on the series' first 8 books of the slice. benchmarks/bench_paths.py
puts the whole paths beside their limits; benchmarks/compare_codec.py the sizes beside
gzip, zstd and Parquet, and codec 2 as the writer stores it.
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

from obd.storage import codec, scaled, sizecode

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CORES: list[Any] = [scaled]
if importlib.util.find_spec("obd.storage._scaled") is not None:
    from obd.storage import _scaled

    CORES.insert(0, _scaled)
IDS = ["compiled" if core is not scaled else "python" for core in CORES]


def _books() -> list[dict[str, Any]]:
    with gzip.open(DATA / "binance_depth100_every15.ndjson.gz", "rt") as lines:
        return list(map(json.loads, lines))


def _models(books: list[dict[str, Any]]) -> list[sizecode.SizeModel]:
    """Each book's series model, trained on the series' first 8 books."""
    training: dict[str, list[dict[str, Any]]] = {}
    for book in books:
        training.setdefault(f"{book['exchange']} {book['symbol']}", []).append(book)
    models = {}
    for i, (name, series) in enumerate(sorted(training.items()), start=1):
        counts = sum(
            sizecode.count(codec.size_symbols(*codec.encode(b["bids"], b["asks"])) or b"")
            for b in series[:8]
        )
        models[name] = sizecode.SizeModel(i, sizecode.train(counts))
    return [models[f"{book['exchange']} {book['symbol']}"] for book in books]


_ALL = _books()
BOOKS = [(book["bids"], book["asks"]) for book in _ALL]
MODELS = _models(_ALL)
RESOLVE = {model.id: model for model in MODELS}.__getitem__
SCALED = [codec.encode(bids, asks) for bids, asks in BOOKS]
MODELED = [codec.encode(bids, asks, m) for (bids, asks), m in zip(BOOKS, MODELS, strict=True)]
RAW = [(codec.RAW, zstandard.compress(msgspec.msgpack.encode(book), 3)) for book in BOOKS]


@pytest.mark.parametrize("core", CORES, ids=IDS)
@pytest.mark.parametrize("blobs", [SCALED, MODELED, RAW], ids=["scaled", "modeled", "raw"])
def test_decode_one_by_one(
    benchmark: Any, core: ModuleType, blobs: list[tuple[int, bytes]]
) -> None:
    books = benchmark(
        lambda: [codec.decode_with(core, [blob], RESOLVE).books()[0] for blob in blobs]
    )
    assert len(books) == len(BOOKS)


@pytest.mark.parametrize("core", CORES, ids=IDS)
@pytest.mark.parametrize("blobs", [SCALED, MODELED], ids=["scaled", "modeled"])
@pytest.mark.parametrize("books", [False, True], ids=["arrays", "+books"])
def test_decode_many(
    benchmark: Any, core: ModuleType, blobs: list[tuple[int, bytes]], books: bool
) -> None:
    def run() -> object:
        levels = codec.decode_with(core, blobs, RESOLVE)
        return levels.books() if books else levels

    benchmark(run)


@pytest.mark.parametrize("core", CORES, ids=IDS)
@pytest.mark.parametrize("modeled", [False, True], ids=["scaled", "modeled"])
def test_encode(benchmark: Any, core: ModuleType, modeled: bool) -> None:
    models = MODELS if modeled else [None] * len(BOOKS)

    def run() -> list[tuple[int, bytes]]:
        return [
            codec.encode_with(core, bids, asks, m)
            for (bids, asks), m in zip(BOOKS, models, strict=True)
        ]

    encoded = benchmark(run)
    assert encoded == (MODELED if modeled else SCALED)
    benchmark.extra_info["bytes_per_snapshot"] = sum(len(b) for _, b in encoded) / len(encoded)
