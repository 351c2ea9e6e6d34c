"""The book codec: lossless for any floats, SCALED (and small) for real books."""

import gzip
import json
import math
import re
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from obd.model import Level
from obd.storage import codec, sizecode

DATA = Path(__file__).parent / "data"

# The "legacy lot" sizes of the raw spot sessions (README of the shared data): finer than
# the symbol's lot step (1e-5 BTC, 1e-4 ETH), far from the touch, served by the exchange.
LEGACY_BTC_ASKS = [
    (74000.0, 93.756587),
    (74000.0, 93.758587),
    (78000.0, 47.075936),
    (80000.0, 244.566304),
    (90000.0, 177.351592),
    (100000.0, 191.389006),
    (200000.0, 25.426189),
]
LEGACY_ETH_ASKS = [(5000.0, 2292.22972), (5000.0, 2292.31612), (5300.0, 47.50196)]


def load(name: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / name, "rt") as lines:
        return [json.loads(line) for line in lines]


BOOKS_100 = load("binance_depth100_every15.ndjson.gz")
BOOKS_1000 = load("binance_depth1000_five.ndjson.gz")


def series_of(book: dict[str, Any]) -> tuple[str, str]:
    return book["exchange"], book["symbol"]


def train_models(books: list[dict[str, Any]], first: int = 8) -> dict[tuple[str, str], Any]:
    """A size model per series, trained on its first `first` books (ids from 1)."""
    counts: dict[tuple[str, str], list[bytes]] = {}
    for book in books:
        symbols = counts.setdefault(series_of(book), [])
        if len(symbols) < first:
            blob = codec.encode(book["bids"], book["asks"])
            symbols.append(codec.size_symbols(*blob) or b"")
    return {
        key: sizecode.SizeModel(i, sizecode.train(sum(map(sizecode.count, symbols))))
        for i, (key, symbols) in enumerate(sorted(counts.items()), start=1)
    }


MODELS = train_models(BOOKS_100)
RESOLVE = {model.id: model for model in MODELS.values()}.__getitem__


def bits(levels: Sequence[Sequence[float]]) -> list[bytes]:
    """float64 bits of each level: -0.0 != 0.0, NaN payloads count."""
    return [struct.pack("<dd", float(price), float(size)) for price, size in levels]


def round_trip(bids: Sequence[Sequence[float]], asks: Sequence[Sequence[float]]) -> int:
    """Encode, decode, check every bit came back; the codec id used."""
    codec_id, blob = codec.encode(bids, asks)  # type: ignore[arg-type]
    got_bids, got_asks = codec.decode(codec_id, blob)
    assert bits(got_bids) == bits(bids)
    assert bits(got_asks) == bits(asks)
    assert all(type(x) is float for level in got_bids + got_asks for x in level)
    return codec_id


# --- real books --------------------------------------------------------------------------


@pytest.mark.parametrize("book", BOOKS_100 + BOOKS_1000, ids=lambda b: f"{b['symbol']}-{b['ts']}")
def test_real_books_are_scaled_and_exact(book: dict[str, Any]) -> None:
    assert round_trip(book["bids"], book["asks"]) == codec.SCALED


def test_real_books_as_tuples_and_ints() -> None:
    book = BOOKS_100[0]
    bids = [tuple(level) for level in book["bids"]]
    asks = [[int(price), size] for price, size in book["asks"]]  # JSON may give ints
    assert round_trip(bids, asks) == codec.SCALED


@pytest.mark.parametrize(
    ("symbol", "legacy"), [("BTCUSDT", LEGACY_BTC_ASKS), ("ETHUSDT", LEGACY_ETH_ASKS)]
)
def test_legacy_lot_sizes_stay_exact_and_scaled(symbol: str, legacy: list[Level]) -> None:
    book = next(b for b in BOOKS_100 if b["exchange"] == "binance" and b["symbol"] == symbol)
    asks = book["asks"] + legacy  # far from the touch, still ascending
    assert round_trip(book["bids"], asks) == codec.SCALED


def test_threads_share_the_codec() -> None:
    books = [(b["bids"], b["asks"]) for b in BOOKS_100]
    expected = [codec.encode(bids, asks) for bids, asks in books]
    with ThreadPoolExecutor(4) as pool:
        encoded = list(pool.map(lambda book: codec.encode(*book), books * 3))
        decoded = list(pool.map(lambda blob: codec.decode(*blob), encoded))
    assert encoded == expected * 3
    assert [bits(b) + bits(a) for b, a in decoded] == [bits(b) + bits(a) for b, a in books * 3]


def test_threads_share_the_models_tables() -> None:
    books = [(b["bids"], b["asks"], MODELS[series_of(b)]) for b in BOOKS_100]
    expected = [codec.encode(*book) for book in books]
    with ThreadPoolExecutor(4) as pool:
        encoded = list(pool.map(lambda book: codec.encode(*book), books * 3))
        batches = [encoded[i : i + 7] for i in range(0, len(encoded), 7)]
        decoded = list(pool.map(lambda rows: codec.decode_many(rows, RESOLVE).books(), batches))
    assert encoded == expected * 3
    flat = [book for batch in decoded for book in batch]
    assert [bits(b) + bits(a) for b, a in flat] == [bits(b) + bits(a) for b, a, _ in books * 3]


# --- edge cases --------------------------------------------------------------------------

NASTY = [
    0.0,
    -0.0,
    math.nan,
    -math.nan,
    struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0],  # NaN with a payload
    math.inf,
    -math.inf,
    5e-324,
    1e-300,
    1.7976931348623157e308,
    0.1 + 0.2,
    2.0**53,
    2.0**53 + 2,
    -(2.0**60),
    1e-12,
    1e12,
    123456.78901234,
]


@pytest.mark.parametrize("value", NASTY, ids=repr)
@pytest.mark.parametrize("where", ["bid price", "bid size", "ask price", "ask size"])
def test_any_single_float_anywhere(value: float, where: str) -> None:
    bids = [[100.5, 1.25], [100.25, 3.0], [99.0, 0.001]]
    asks = [[101.0, 2.0], [101.5, 0.5]]
    side = bids if where.startswith("bid") else asks
    side[1][0 if where.endswith("price") else 1] = value
    round_trip(bids, asks)


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        ([], []),
        ([[1.0, 2.0]], []),
        ([], [[1.0, 2.0]]),
        ([[100.0, 0.0]], [[100.0, 0.0]]),  # zero sizes, locked
        ([[99.0, 1.0], [101.0, 1.0]], [[98.0, 1.0], [97.0, 1.0]]),  # crossed, wrong way round
        ([[5.0, 1.0], [5.0, 1.0], [5.0, 1.0]], [[6.0, 1.0]] * 3),  # duplicates
        ([[-1.5, -2.0], [-3.0, 4.0]], [[0.0, -0.5]]),  # negative prices and sizes
        ([[1e-12, 1e12], [2e-12, 3e12]], [[1e12, 1e-12]]),  # tiny and huge
        ([[0.30000000000000004, 1.0]], [[0.1, 0.2]]),  # 17 significant digits
        ([[1000 - i * 0.01, 1.0] for i in range(300)] + [[0.01, 1.0]], []),  # a far outlier
        ([], [[12354.0, 0.0], [-38859.0, 0.0], [1e-11, 0.0]]),  # steps near 2**54
    ],
)
def test_odd_books(bids: list[list[float]], asks: list[list[float]]) -> None:
    round_trip(bids, asks)


def test_decimal_books_are_scaled() -> None:
    bids = [[30000.0 - i * 0.5, round(0.001 * (i + 1), 3)] for i in range(1500)]
    asks = [[30001.0 + i * 0.25, float(i % 7)] for i in range(1200)]
    assert round_trip(bids, asks) == codec.SCALED
    unsorted = [bids[i] for i in range(0, 1500, 7)][::-1] + bids[:5]
    assert round_trip(unsorted, asks[::3]) == codec.SCALED


def test_levels_must_be_pairs() -> None:
    with pytest.raises(ValueError, match="pair"):
        codec.encode([(1.0, 2.0, 3.0)], [])  # type: ignore[list-item]


# --- hypothesis --------------------------------------------------------------------------

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
LEVELS = st.lists(st.tuples(ANY_FLOAT, ANY_FLOAT), max_size=1000)


@st.composite
def decimals(draw: st.DrawFn, digits: int) -> float:
    """n / 10**digits for a random integer n, as a JSON parser would read it."""
    magnitude = draw(st.sampled_from([10, 10**3, 10**6, 10**9, 10**12, 10**15]))
    return float(f"{draw(st.integers(-magnitude, magnitude))}e-{digits}")


@st.composite
def decimal_books(draw: st.DrawFn, mixed: bool) -> tuple[list[Level], list[Level]]:
    """Prices and sizes on decimal grids: one per column like real data, or one per value."""
    price_digits = st.integers(0, 12) if mixed else st.just(draw(st.integers(0, 12)))
    size_digits = st.integers(0, 12) if mixed else st.just(draw(st.integers(0, 12)))
    level = st.tuples(
        price_digits.flatmap(lambda k: decimals(k)), size_digits.flatmap(lambda k: decimals(k))
    )
    sides = st.lists(level, max_size=draw(st.sampled_from([3, 30, 1000])))
    bids, asks = draw(sides), draw(sides)
    if draw(st.booleans()):  # most books are sorted best first
        bids.sort(reverse=True)
        asks.sort()
    return bids, asks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bids=LEVELS, asks=LEVELS)
def test_any_floats_round_trip(bids: list[Level], asks: list[Level]) -> None:
    round_trip(bids, asks)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=decimal_books(mixed=False))
def test_decimal_books_round_trip_scaled(book: tuple[list[Level], list[Level]]) -> None:
    bids, asks = book
    codec_id = round_trip(bids, asks)
    if len(bids) + len(asks) >= 40:  # |n| <= 1e15 < 2**53: always on the grid
        assert codec_id == codec.SCALED


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=decimal_books(mixed=True))
def test_mixed_decimal_books_round_trip(book: tuple[list[Level], list[Level]]) -> None:
    round_trip(*book)


# --- the format doc ----------------------------------------------------------------------


def reference_decoder() -> Any:
    """The plain-Python decoder printed in the docs (found by its marker in any docs/*.md)."""
    marker = "<!-- codec reference decoder -->"
    docs = Path(__file__).parent.parent / "docs"
    text = next(t for p in sorted(docs.glob("*.md")) if marker in (t := p.read_text()))
    block = re.search(re.escape(marker) + r"\s*```python\n(.*?)```", text, re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(block[1], namespace)
    return namespace["decode_book"]


def test_the_documented_decoder_reads_what_obd_writes() -> None:
    decode_book = reference_decoder()
    books = [(b["bids"], b["asks"]) for b in BOOKS_100[::4] + BOOKS_1000[:1]]
    books += [
        ([[100.5, 0.25], [100.25, 1.5], [99.0, 0.25]], [[101.0, 2.0], [101.75, 0.125]]),
        ([[99.0, 1.0], [101.0, -1.0]], [[98.0, 1.0], [97.0, 1.0], [97.0, 5.0]]),
        ([[1000 - i * 0.01, 1.0 + i] for i in range(300)] + [[0.01, 1.0]], []),  # steps: symbols
        ([], [[1e-12, 1e12]]),
        ([[math.nan, 1.0]], [[math.inf, -0.0]]),  # RAW
    ]
    for bids, asks in books:
        got_bids, got_asks = decode_book(*codec.encode(bids, asks))
        assert bits(got_bids) == bits(bids)
        assert bits(got_asks) == bits(asks)


def test_the_documented_decoder_reads_modeled_books_with_their_dicts_row() -> None:
    decode_book = reference_decoder()
    dicts = {model.id: model.lengths for model in MODELS.values()}
    odd = sizecode.SizeModel(99, sizecode.train([5000] + [0] * 234 + [3]))  # 15-bit codes
    dicts[odd.id] = odd.lengths
    books = [(b["bids"], b["asks"], MODELS[series_of(b)]) for b in BOOKS_100[8::6]]
    books += [
        ([[100.0 - i, float(64 + i % 5)] for i in range(2000)], [[101.0, 64.0]], odd),
        ([[99.0, 1.0], [101.0, -1.0]], [[98.0, 1.0], [97.0, 1.0], [97.0, 5.0]] * 9, odd),
        ([[1.0, 1.0]], [[2.0, 2.0**52 + 1]] * 30, odd),
    ]
    for bids, asks, model in books:
        codec_id, blob = modeled(bids, asks, model)
        got_bids, got_asks = decode_book(codec_id, blob, dicts.__getitem__)
        assert bits(got_bids) == bits(bids)
        assert bits(got_asks) == bits(asks)


def modeled(bids: Any, asks: Any, model: sizecode.SizeModel) -> tuple[int, bytes]:
    """The MODELED blob of a book, even where `encode` finds SCALED smaller."""
    import msgspec

    from obd.storage import scaled

    packed = msgspec.msgpack.encode((bids, asks))
    fields = scaled.encode(packed, len(bids), len(asks), True, model.lengths)
    assert isinstance(fields, tuple)
    header = (fields[0], len(bids), len(asks), *fields[1:8])
    return codec.MODELED, msgspec.msgpack.encode((*header, fields[11], model.id))


def test_the_documented_example() -> None:
    bids, asks = [[100.5, 0.25], [100.25, 1.5], [99.0, 0.25]], [[101.0, 2.0], [101.75, 0.125]]
    example = "9d 00 03 02 02 03 19 7d cd 27 42 32 01 c4 01 94 c4 05 1e 26 1e 28 1c c4 01 14"
    assert codec.encode(bids, asks) == (codec.SCALED, bytes.fromhex(example))


# --- corrupt input -----------------------------------------------------------------------


@pytest.mark.parametrize("codec_id", [-1, 3, 255])
def test_unknown_codec_id(codec_id: int) -> None:
    blob = codec.encode([(1.0, 1.0)], [])[1]
    with pytest.raises(ValueError, match="unknown"):
        codec.decode(codec_id, blob)


def _valid_blobs() -> list[tuple[int, bytes]]:
    book = BOOKS_100[-1]
    return [
        codec.encode(book["bids"], book["asks"]),
        codec.encode([(math.nan, 1.0)], [(2.0, 3.0)]),
        codec.encode(book["bids"], book["asks"], MODELS[series_of(book)]),
    ]


@pytest.mark.parametrize("codec_id", [codec.RAW, codec.SCALED, codec.MODELED])
@pytest.mark.parametrize(
    "blob",
    [b"", b"\x00", b"\x90", b"garbage" * 10, b"\x28\xb5\x2f\xfd" + bytes(20), b"\x9d" + bytes(13)],
)
def test_garbage_is_a_value_error(codec_id: int, blob: bytes) -> None:
    with pytest.raises(ValueError, match="corrupt"):
        codec.decode(codec_id, blob)


@pytest.mark.parametrize(("codec_id", "blob"), _valid_blobs())
def test_truncated_blobs_are_value_errors(codec_id: int, blob: bytes) -> None:
    for end in range(len(blob)):
        with pytest.raises(ValueError, match="corrupt"):
            codec.decode(codec_id, blob[:end], RESOLVE)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_damaged_blobs_decode_or_raise_value_error(data: st.DataObject) -> None:
    """A flipped byte may go unnoticed (no checksum), but never escapes as another error."""
    codec_id, blob = data.draw(st.sampled_from(_valid_blobs()))
    at = data.draw(st.integers(0, len(blob) - 1))
    damaged = blob[:at] + bytes([data.draw(st.integers(0, 255))]) + blob[at + 1 :]
    assume(damaged != blob)
    try:
        bids, asks = codec.decode(codec_id, damaged, RESOLVE)
    except ValueError:
        return
    assert all(len(level) == 2 for level in bids + asks)


def test_the_documented_sqlite_example_reads_a_file_obd_wrote(tmp_path: Path) -> None:
    """docs/FORMAT.md: stdlib sqlite3 + the reference decoder, nothing from obd."""
    import asyncio

    from obd.model import Book
    from obd.storage.coins import CoinRequest, add_coin
    from obd.storage.writer import SnapshotIn, Writer

    book = BOOKS_100[0]
    path = tmp_path / "obd.sqlite"

    async def write() -> None:
        writer = Writer(path)
        await writer.open()
        running = asyncio.create_task(writer.run())
        want = CoinRequest("binance", "BTC/USDT", 1000, "1s", 100, synthetic=False)
        coin, _ = await writer.call(lambda conn: add_coin(conn, want, now=0))
        stored = Book([tuple(x) for x in book["bids"]], [tuple(x) for x in book["asks"]])
        await writer.put(SnapshotIn(coin, 5000, stored, received_ts=4990, capture="ws"))
        await writer.stop()
        await running
        await writer.close()

    asyncio.run(write())
    text = (Path(__file__).parent.parent / "docs" / "FORMAT.md").read_text()
    marker = "<!-- sqlite worked example -->"
    block = re.search(re.escape(marker) + r"\s*```python\n(.*?)```", text, re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {"decode_book": reference_decoder()}
    exec(block[1], namespace)
    ts, bids, asks = namespace["latest_book"](str(path), "binance", "BTC/USDT")
    assert ts == 5000
    assert bits(bids) == bits(book["bids"])
    assert bits(asks) == bits(book["asks"])


# --- codec 2: MODELED --------------------------------------------------------------------


@pytest.mark.parametrize("book", BOOKS_100[8::3], ids=lambda b: f"{b['symbol']}-{b['ts']}")
def test_real_books_with_their_series_model_are_modeled_smaller_and_exact(
    book: dict[str, Any],
) -> None:
    model = MODELS[series_of(book)]
    codec_id, blob = codec.encode(book["bids"], book["asks"], model)
    assert codec_id == codec.MODELED
    assert len(blob) < len(codec.encode(book["bids"], book["asks"])[1])
    bids, asks = codec.decode(codec_id, blob, RESOLVE)
    assert bits(bids) == bits(book["bids"])
    assert bits(asks) == bits(book["asks"])
    assert codec.size_symbols(codec_id, blob, RESOLVE) == codec.size_symbols(
        *codec.encode(book["bids"], book["asks"])
    )


def test_a_batch_mixes_every_codec_and_asks_for_each_model_once() -> None:
    books = [*BOOKS_100[::5], {"bids": [(math.nan, 1.0)], "asks": []}]
    rows = [
        codec.encode(
            b["bids"], b["asks"], MODELS[series_of(b)] if i % 2 and "symbol" in b else None
        )
        for i, b in enumerate(books)
    ]
    assert {codec_id for codec_id, _ in rows} == {codec.RAW, codec.SCALED, codec.MODELED}
    asked: list[int] = []

    def resolve(model_id: int) -> sizecode.SizeModel:
        asked.append(model_id)
        return RESOLVE(model_id)

    decoded = codec.decode_many(rows, resolve).books()
    assert sorted(asked) == sorted(set(asked))
    for (bids, asks), book in zip(decoded, books, strict=True):
        assert bits(bids) + bits(asks) == bits(book["bids"]) + bits(book["asks"])


def test_a_modeled_blob_without_its_model_is_a_clear_value_error() -> None:
    book = BOOKS_100[-1]
    model = MODELS[series_of(book)]
    codec_id, blob = codec.encode(book["bids"], book["asks"], model)
    with pytest.raises(ValueError, match=f"needs its series' size model \\(dicts id {model.id}\\)"):
        codec.decode(codec_id, blob)
    with pytest.raises(ValueError, match=f"needs size model {model.id}, which is not known"):
        codec.decode_many([(codec_id, blob)], {}.__getitem__)
    other = next(m for m in MODELS.values() if m.id != model.id)
    with pytest.raises(ValueError, match=f"size model {other.id} given for a blob of model"):
        codec.decode(codec_id, blob, lambda _: other)
    with pytest.raises(ValueError, match="size model"):
        codec.size_symbols(codec_id, blob)


def test_a_book_whose_steps_need_symbols_stays_scaled_with_a_model() -> None:
    bids = [[1000 - i * 0.01, 1.0 + i] for i in range(300)] + [[0.01, 1.0]]  # rice -1
    model = next(iter(MODELS.values()))
    assert codec.encode(bids, [], model) == codec.encode(bids, [])
    assert codec.encode([(math.nan, 1.0)], [], model)[0] == codec.RAW
    assert codec.size_symbols(*codec.encode([(math.nan, 1.0)], [])) is None


def test_any_model_round_trips_any_book() -> None:
    """Every symbol has a code: a model trained on other books, or on nothing, still codes
    every size exactly (it only costs bytes)."""
    untrained = sizecode.SizeModel(9, sizecode.train([0] * sizecode.SYMBOLS))
    odd = sizecode.SizeModel(10, sizecode.train([1000] + [0] * 234 + [7]))
    for model in (untrained, odd):
        for bids, asks in [(b["bids"], b["asks"]) for b in BOOKS_100[::40] + BOOKS_1000[:1]] + [
            ([[100.0 - i, float(2**40 + i % 3)] for i in range(50)], []),
            ([[1.0, 1.0]], [[2.0, 2.0**52 + 1]]),
            ([], []),
        ]:
            codec_id, blob = codec.encode(bids, asks, model)
            got_bids, got_asks = codec.decode(codec_id, blob, {model.id: model}.__getitem__)
            assert bits(got_bids) + bits(got_asks) == bits(bids) + bits(asks)


def test_training_is_deterministic_and_gives_a_complete_code() -> None:
    counts = sum(
        sizecode.count(codec.size_symbols(*codec.encode(b["bids"], b["asks"])) or b"")
        for b in BOOKS_100[:16]
    )
    lengths = sizecode.train(counts)
    assert lengths == sizecode.train(list(counts))
    assert len(lengths) == sizecode.SYMBOLS
    assert min(lengths) >= 1
    assert max(lengths) <= sizecode.MAX_BITS
    assert sum(2.0**-length for length in lengths) == 1.0
    assert lengths[int(counts.argmax())] == min(lengths)
    with pytest.raises(ValueError, match="counts"):
        sizecode.train([1, 2, 3])


def test_canonical_codes_are_prefix_free_and_in_symbol_order() -> None:
    lengths = MODELS[series_of(BOOKS_100[0])].lengths
    codes = sizecode.codes(lengths).tolist()
    words = [format(code, f"0{length}b") for code, length in zip(codes, lengths, strict=True)]
    assert len(set(words)) == sizecode.SYMBOLS
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    ordered = sorted(range(sizecode.SYMBOLS), key=lambda s: (lengths[s], s))
    assert [words[s] for s in ordered] == sorted(
        words, key=lambda w: w.ljust(sizecode.MAX_BITS, "0")
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes([8] * 235), "235 code lengths"),
        (bytes([0] + [8] * 235), "outside"),
        (bytes([16] + [8] * 235), "outside"),
        (bytes([8] * 236), "not a complete"),  # Kraft sum < 1: gaps in the code
        (bytes([1, 1, 1] + [15] * 233), "not a complete"),  # > 1: not a prefix code
        ("text", "not a blob"),
    ],
)
def test_a_bad_dicts_row_is_a_value_error(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"size model 3: .*{message}"):
        sizecode.SizeModel.load(3, data)


def test_a_dicts_row_loads_as_the_model_it_was() -> None:
    model = next(iter(MODELS.values()))
    assert sizecode.SizeModel.load(model.id, memoryview(model.lengths)) == model
