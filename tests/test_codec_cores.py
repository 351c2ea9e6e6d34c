"""The compiled codec core and the NumPy reference give the same bytes and the same floats.

`obd.storage._scaled` (C, built by `pip install` where a compiler is present) and
`obd.storage.scaled` (NumPy) are driven through the same codec functions
(`codec.encode_with`, `codec.decode_with`): identical blobs, identical float64 bits
(-0.0 and NaN payloads included, through RAW), identical RAW/SCALED/MODELED choices,
and on corrupt input the same outcome: both raise ValueError, or both decode the same
book.
"""

import gzip
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obd.model import Level
from obd.storage import codec, scaled, sizecode

compiled: ModuleType = pytest.importorskip("obd.storage._scaled")  # type: ignore[assignment]

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
CORES = (compiled, scaled)


def load(name: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / name, "rt") as lines:
        return [json.loads(line) for line in lines]


BOOKS = load("binance_depth100_every15.ndjson.gz") + load("binance_depth1000_five.ndjson.gz")


def bits(levels: list[Level]) -> bytes:
    return b"".join(struct.pack("<dd", price, size) for price, size in levels)


def outcome(
    core: ModuleType, rows: list[tuple[int, bytes]], models: codec.Models | None = None
) -> object:
    """What decoding `rows` through `core` gives: the books' bits, or the error class."""
    try:
        books = codec.decode_with(core, rows, models).books()
    except Exception as exc:  # the class is what is compared
        return type(exc)
    return [(bits(bids), bits(asks)) for bids, asks in books]


def same_everywhere(
    bids: Any, asks: Any, model: sizecode.SizeModel | None = None
) -> tuple[int, bytes]:
    """Both cores encode to the same blob, and both decode it to the input's bits."""
    blobs = [codec.encode_with(core, bids, asks, model) for core in CORES]
    assert blobs[0] == blobs[1]
    want = (
        bits([(float(p), float(s)) for p, s in bids]),
        bits([(float(p), float(s)) for p, s in asks]),
    )
    models = None if model is None else {model.id: model}.__getitem__
    for core in CORES:
        assert outcome(core, [blobs[0]], models) == [want]
    return blobs[0]


def trained(books: list[tuple[Any, Any]], model_id: int = 1) -> sizecode.SizeModel:
    """A size model trained on the size symbols of `books`."""
    counts = sizecode.count(b"")
    for bids, asks in books:
        counts += sizecode.count(codec.size_symbols(*codec.encode(bids, asks)) or b"")
    return sizecode.SizeModel(model_id, sizecode.train(counts))


SERIES: dict[str, list[dict[str, Any]]] = {}
for _book in BOOKS:
    SERIES.setdefault(f"{_book['exchange']} {_book['symbol']}", []).append(_book)
MODELS = {
    name: trained([(b["bids"], b["asks"]) for b in books[:8]], i)
    for i, (name, books) in enumerate(sorted(SERIES.items()), start=1)
}
RESOLVE = {model.id: model for model in MODELS.values()}.__getitem__


# --- identical bytes and floats -------------------------------------------------------------


def test_the_shared_data_slices_are_identical_in_both_cores() -> None:
    blobs = [same_everywhere(book["bids"], book["asks"]) for book in BOOKS]
    assert {codec_id for codec_id, _ in blobs} == {codec.SCALED}
    assert outcome(compiled, blobs) == outcome(scaled, blobs)  # as one batch too


def test_the_shared_data_slices_are_identical_in_both_cores_with_models() -> None:
    blobs, books = [], []
    for name, series in SERIES.items():
        books += series
        blobs += [same_everywhere(b["bids"], b["asks"], MODELS[name]) for b in series]
    modeled = [codec_id == codec.MODELED for codec_id, _ in blobs]
    assert sum(modeled) == len(books) - 5  # all but the 1000-level books
    assert outcome(compiled, blobs, RESOLVE) == outcome(scaled, blobs, RESOLVE)
    for (codec_id, blob), book in zip(blobs, books, strict=True):  # what the writer trains on
        if codec_id == codec.MODELED:
            header = codec._modeled_decoder.decode(blob)
            want = codec.size_symbols(*codec.encode(book["bids"], book["asks"]))
            for core in CORES:
                assert core.size_symbols(header, codec._table(core, RESOLVE(header[11]))) == want


EDGES: list[tuple[list[Any], list[Any]]] = [
    ([], []),
    ([[1.0, 2.0]], []),
    ([], [[1.0, 2.0]]),
    ([[100.0, 0.0]], [[100.0, 0.0]]),
    ([[-0.0, 1.0]], [[1.0, 2.0]]),  # -0.0: RAW
    ([[1.0, -0.0]], []),
    ([[math.nan, 1.0]], [[math.inf, 2.0]]),
    ([[1.0, 1.0]], [[-math.inf, 2.0]]),
    ([[1e-300, 1e300]], [[5e-324, 1.7976931348623157e308]]),
    ([[2.0**53, 1.0]], [[2.0**53 + 2, 1.0]]),
    ([[1e-22, 1e22]], [[1e-12, 1e12]]),
    ([[0.30000000000000004, 1.0]], [[0.1, 0.2]]),
    ([[99.0, 1.0], [101.0, 1.0]], [[98.0, 1.0], [97.0, 1.0]]),  # crossed, wrong way round
    ([[5.0, 1.0], [5.0, 1.0], [5.0, 1.0]], [[6.0, 1.0]] * 3),  # repeated levels
    ([[-1.5, -2.0], [-3.0, 4.0]], [[0.0, -0.5]]),  # negative prices and sizes
    ([[1000 - i * 0.01, 1.0] for i in range(300)] + [[0.01, 1.0]], []),  # steps as symbols
    ([], [[12354.0, 0.0], [-38859.0, 0.0], [1e-11, 0.0]]),  # steps near 2**54
    ([[30000.0 - i * 0.5, 7.5] for i in range(1500)], [[30001.0 + i, 100.0] for i in range(1200)]),
    ([[100.0 - i, float(64 + i % 5)] for i in range(2000)], [[101.0, 64.0]]),  # references
    ([[100.0 - i, float(2**40 + i % 3)] for i in range(50)], []),  # far references
    ([[1.0, 1.0]], [[2.0, 2.0**52 + 1]]),  # sizes near 2**53
    ([[1.0, 0.001 * i] for i in range(1, 40)], [[2.0, 1e-22]]),  # size_exp 22
]


@pytest.mark.parametrize(("bids", "asks"), EDGES, ids=range(len(EDGES)))
def test_edge_books_are_identical_in_both_cores(bids: list[Any], asks: list[Any]) -> None:
    same_everywhere(bids, asks)
    same_everywhere([tuple(level) for level in bids], [tuple(level) for level in asks])


def test_ints_and_other_sequences_take_the_grid_path_in_both_cores() -> None:
    book = BOOKS[0]
    asks = [[int(price), size] for price, size in book["asks"]]
    same_everywhere(book["bids"], asks)


ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
NICE = st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e-8, 123.456, 2.0**52, 1e15, 7.0, 64.0, 100.0])


@st.composite
def decimal(draw: st.DrawFn) -> float:
    digits = draw(st.integers(0, 12))
    magnitude = draw(st.sampled_from([10, 10**3, 10**6, 10**9, 10**12, 10**15]))
    return float(f"{draw(st.integers(-magnitude, magnitude))}e-{digits}")


@st.composite
def books(draw: st.DrawFn) -> tuple[list[Level], list[Level]]:
    """Grid books (sorted or not, with repeated sizes), any floats, and mixtures."""
    value = draw(st.sampled_from(["decimal", "any", "nice", "mixed"]))
    number = {
        "decimal": decimal(),
        "any": ANY_FLOAT,
        "nice": NICE,
        "mixed": st.one_of(decimal(), NICE, ANY_FLOAT),
    }[value]
    size_pool = draw(st.lists(number, min_size=1, max_size=4))
    size = st.one_of(number, st.sampled_from(size_pool))  # repeated sizes
    side = st.lists(st.tuples(number, size), max_size=draw(st.sampled_from([2, 40, 1200])))
    bids, asks = draw(side), draw(side)
    if draw(st.booleans()):
        bids.sort(key=lambda level: (math.isnan(level[0]), level[0]), reverse=True)
        asks.sort(key=lambda level: (math.isnan(level[0]), level[0]))
    return bids, asks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books())
def test_random_books_are_identical_in_both_cores(book: tuple[list[Level], list[Level]]) -> None:
    same_everywhere(*book)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books(), training=st.lists(books(), max_size=3))
def test_random_books_with_models_of_other_books_are_identical_in_both_cores(
    book: tuple[list[Level], list[Level]], training: list[tuple[list[Level], list[Level]]]
) -> None:
    same_everywhere(*book, trained(training))


@pytest.mark.parametrize(
    "lengths",
    [
        bytes([8] * 236),  # incomplete
        bytes([1, 1, 1] + [15] * 233),  # over-full
        bytes([0] + [8] * 235),
        bytes([16] * 236),
        bytes([8] * 235),
        bytes(range(1, 16)) + bytes([15] * 221),
    ],
)
def test_both_cores_refuse_the_same_size_codes(lengths: bytes) -> None:
    for core in CORES:
        with pytest.raises(ValueError, match="code length"):
            core.size_table(lengths)


# --- corrupt input: the same outcome, never a crash -----------------------------------------


def _blobs() -> list[tuple[int, bytes]]:
    picks = [BOOKS[0], BOOKS[-1], BOOKS[40]]
    blobs = [codec.encode(book["bids"], book["asks"]) for book in picks]
    blobs += [codec.encode(*EDGES[15]), codec.encode(*EDGES[18]), codec.encode(*EDGES[16])]
    blobs.append(codec.encode([(math.nan, 1.0)], [(2.0, 3.0)]))
    return blobs


BLOBS = _blobs()


def forced(bids: Any, asks: Any, model: sizecode.SizeModel) -> tuple[int, bytes]:
    """The MODELED blob of a book even where SCALED is smaller (tiny books)."""
    import msgspec

    fields = scaled.encode(
        msgspec.msgpack.encode((bids, asks)), len(bids), len(asks), True, model.lengths
    )
    assert isinstance(fields, tuple)
    header = (fields[0], len(bids), len(asks), *fields[1:8])
    return codec.MODELED, msgspec.msgpack.encode((*header, fields[11], model.id))


def _modeled_blobs() -> list[tuple[int, bytes]]:
    model = MODELS["binance-futures BTCUSDT"]
    book = SERIES["binance-futures BTCUSDT"][30]
    first = codec.encode(book["bids"], book["asks"], model)
    assert first[0] == codec.MODELED
    deep = SERIES["binance-futures BTCUSDT"][-1]  # 1000 levels
    return (
        [first]
        + [forced(*edge, model) for edge in (EDGES[1], EDGES[0], EDGES[13], EDGES[14], EDGES[18])]
        + [forced(deep["bids"], deep["asks"], model)]
    )


MODELED_BLOBS = _modeled_blobs()
MODEL_1 = MODELS["binance-futures BTCUSDT"]


def same_outcome(codec_id: int, blob: bytes, model: sizecode.SizeModel = MODEL_1) -> None:
    """Both cores decode alike, and give the same size symbols (or both fail)."""
    resolve = {model.id: model}.__getitem__
    got = [outcome(core, [(codec_id, blob)], resolve) for core in CORES]
    assert got[0] == got[1]
    assert got[0] is ValueError or isinstance(got[0], list)
    if codec_id == codec.MODELED:
        symbols = []
        for core in CORES:
            try:
                header = codec._parse(core, codec._modeled_decoder, codec.MODELED, blob)[0]
                symbols.append(core.size_symbols(header, codec._table(core, model)))
            except ValueError as exc:
                symbols.append(type(exc))
        assert symbols[0] == symbols[1]


@pytest.mark.parametrize(
    ("codec_id", "blob"), BLOBS + MODELED_BLOBS, ids=range(len(BLOBS) + len(MODELED_BLOBS))
)
def test_truncated_blobs_fail_alike(codec_id: int, blob: bytes) -> None:
    for end in range(len(blob)):
        same_outcome(codec_id, blob[:end])
        same_outcome(codec_id, blob[end:])


@pytest.mark.parametrize(
    ("codec_id", "blob"), BLOBS[:1] + BLOBS[2:6] + MODELED_BLOBS[:5], ids=range(10)
)  # not 1000 levels
def test_every_bit_flip_fails_or_decodes_alike(codec_id: int, blob: bytes) -> None:
    for at in range(len(blob)):
        for bit in range(8):
            flipped = bytearray(blob)
            flipped[at] ^= 1 << bit
            same_outcome(codec_id, bytes(flipped))


def test_a_modeled_blob_under_another_model_of_the_same_id_fails_or_decodes_alike() -> None:
    for other in MODELS.values():
        impostor = sizecode.SizeModel(MODEL_1.id, other.lengths)
        for codec_id, blob in MODELED_BLOBS:
            same_outcome(codec_id, blob, impostor)


def _modeled_header(bits: bytes, n_bids: int = 2, n_asks: int = 1, rice: int = 0) -> bytes:
    import msgspec

    return msgspec.msgpack.encode((0, n_bids, n_asks, 0, 0, 1, 1, 5, 1, rice, bits, MODEL_1.id))


@pytest.mark.parametrize(
    "blob",
    [
        _modeled_header(b""),  # no codes at all
        _modeled_header(b"\xff" * 3),  # codes, but no unary one bits after them
        _modeled_header(b"\x00" * 40),  # a long run of the all-zero code
        _modeled_header(b"\xff" * 40),  # long codes, too many bytes
        _modeled_header(b"\x5a" * 6, 3, 3, rice=52),  # Rice low bits past the end
        _modeled_header(b"\x12\x34", rice=-1),  # MODELED never has step symbols
        _modeled_header(b"\x12\x34", 2**23 + 1, 0),
        _modeled_header(bytes(range(256)), 20, 20, rice=3),
    ],
)
def test_corrupt_size_code_streams_fail_or_decode_alike(blob: bytes) -> None:
    same_outcome(codec.MODELED, blob)


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_damaged_blobs_fail_or_decode_alike(data: st.DataObject) -> None:
    """A damaged blob of each codec, read as itself and as another codec."""
    codec_id, blob = data.draw(st.sampled_from(BLOBS + MODELED_BLOBS))
    damaged = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    same_outcome(codec_id, bytes(damaged))
    same_outcome(codec.SCALED if codec_id != codec.SCALED else codec.RAW, bytes(damaged))


@pytest.mark.parametrize(
    "header",
    [
        (0, 1, 0, 0, 0, 2**63, 1, 5, 0, 0, b"", b"\x18", b""),  # tick beyond int64
        (0, 2, 0, 0, 0, 2**63 + 1, 1, 5, 0, 0, b"\x80", b"\x18\x18", b""),
        (0, 1, 0, 0, 0, 1, 2**64 - 1, 5, 0, 0, b"", b"\x19", b""),  # lot beyond int64
        (0, 1, 0, 0, 0, 1, 1, 2**63, 0, 0, b"", b"\x18", b""),  # best bid beyond int64
        (0, 0, 1, 0, 0, 1, 1, 2**64 - 1, -(2**63), 0, b"", b"\x18", b""),  # ask in range
        (0, 0, 1, 0, 0, 1, 1, 2**63, 2**63, 0, b"", b"\x18", b""),  # ask beyond
        (0, 2, 1, 0, 0, 1, 1, -(2**63), 2**63 - 1, 52, b"\x80", b"\x18\x18\x18", bytes(7)),
        (0, 1, 2, 0, 0, 1, 1, 0, 0, 0, b"\x01", b"\x18\x17\x18", b""),  # a reference too far
        (0, 1, 2, 0, 0, 1, 1, 0, 0, 0, b"\x00\x01", b"\x18\x18\x18", b""),  # unary too long
        (0, 1, 0, 0, 0, 1, 1, 0, 0, 0, b"", b"\xff", b""),  # symbol past the alphabet
        (0, 1, 2, 0, 0, 1, 1, 0, 0, -1, b"\xfe", b"\xf0\x18\x18", b""),  # step past it
        (7, 3, 3, 22, 22, 3, 5, 10, 20, 0, b"\xf0", b"\x00\x18\x19\x1a\x1b\x1c", b"\x00"),
    ],
)
def test_hand_made_headers_fail_or_decode_alike(header: tuple[Any, ...]) -> None:
    import msgspec

    same_outcome(codec.SCALED, msgspec.msgpack.encode(header))


# --- the fallback ---------------------------------------------------------------------------


def _python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


ROUND_TRIP = (
    "from obd.storage import codec\n"
    "book = ([(100.5, 0.25), (100.25, 1.5)], [(101.0, 2.0)])\n"
    "print(codec.CORE, codec.decode(*codec.encode(*book)) == book)"
)


def test_obd_codec_python_forces_the_reference_core() -> None:
    assert _python(ROUND_TRIP, OBD_CODEC="python") == "python (OBD_CODEC=python) True"
    assert _python(ROUND_TRIP, OBD_CODEC="compiled") == "compiled True"


def test_obd_check_says_which_core_runs(tmp_path: Path) -> None:
    from tests.conftest import write_config

    config = str(write_config(tmp_path))
    for wanted, said in (("python", "python (OBD_CODEC=python)"), ("auto", "compiled")):
        done = subprocess.run(
            [sys.executable, "-m", "obd", "check", "--config", config],
            env={**os.environ, "OBD_CODEC": wanted, "OBD_LOG_LEVEL": "warning"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert f"codec core: {said}\n" in done.stdout


def test_an_install_without_a_compiler_still_builds(tmp_path: Path) -> None:
    """setup.py marks the extension optional: with no working compiler the build
    succeeds without it, and obd then runs the reference core."""
    build = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-lib",
            str(tmp_path / "lib"),
            "--build-temp",
            str(tmp_path / "tmp"),
        ],
        cwd=REPO,
        env={**os.environ, "CC": "false", "LDSHARED": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    assert not list((tmp_path / "lib").rglob("_scaled*"))
    assert 'building extension "obd.storage._scaled" failed' in build.stderr


def test_levels_as_msgpack_are_the_bytes_msgspec_writes() -> None:
    import msgspec

    sides = [(book["bids"], book["asks"]) for book in BOOKS[:5]] + [
        ([], []),
        ([(1.0, -0.0)], [(math.nan, math.inf)]),
        ([(float(i), 1.0) for i in range(70_000)], [(0.5, 2.0)] * 16),  # array16, array32
    ]
    rows = [codec.encode(bids, asks) for bids, asks in sides]
    for core in CORES:
        levels = codec.decode_with(core, rows)
        want = [tuple(msgspec.msgpack.encode(side) for side in book) for book in levels.books()]
        assert levels.msgpack() == want
        assert [tuple(map(msgspec.msgpack.decode, book)) for book in want[:5]] == [
            ([list(x) for x in bids], [list(x) for x in asks]) for bids, asks in sides[:5]
        ]


@pytest.mark.parametrize("books", [BOOKS[:4], [*BOOKS[:3], {"bids": [], "asks": [[1.0, 2.0]]}]])
def test_levels_sides_are_each_sides_levels_book_after_book(books: list[dict[str, Any]]) -> None:
    levels = codec.decode_many([codec.encode(book["bids"], book["asks"]) for book in books])
    (bid_prices, bid_sizes), (ask_prices, ask_sizes) = levels.sides()
    assert bid_prices.tolist() == [level[0] for book in books for level in book["bids"]]
    assert bid_sizes.tolist() == [level[1] for book in books for level in book["bids"]]
    assert ask_prices.tolist() == [level[0] for book in books for level in book["asks"]]
    assert ask_sizes.tolist() == [level[1] for book in books for level in book["asks"]]
