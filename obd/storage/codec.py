"""Lossless codecs for one stored book: `encode` picks one, `decode` gives back the same bits.

Every blob decodes on its own (no other row), from any language with zstd and msgpack; a
MODELED blob needs only its series' size model from the `dicts` table. docs/FORMAT.md
gives the byte layout of each codec id.

- RAW (0): zstd(msgpack([bids, asks])) with float64 pairs. Takes anything (NaN, inf,
  -0.0, 1e-300): the fallback.
- SCALED (1): prices and sizes as integers on a decimal grid (value = n / 10**exp).
  Prices become steps away from the best bid and ask, Rice-coded. Each size becomes a
  one-byte symbol (bit length and top bits; zstd Huffman-codes those) plus its remaining
  low bits, bit-packed as they are since they are close to random; a size repeated in
  the book is a back-reference. ~4x smaller than RAW, ~2.5x than gzip'd JSON, on real books.
- MODELED (2): SCALED with each size symbol Huffman-coded under its series' code
  (`obd.storage.sizecode.SizeModel`, trained on earlier books of the series and stored
  once in `dicts`) and every bit stream in one: ~6% smaller than SCALED. `encode` uses
  it when given a model and it is the smallest; decoding it needs a resolver, model id
  -> SizeModel (`decode_many(rows, models)`).

This module does the zstd frames and the msgpack container; the bit-level work is a
*core*: the compiled `obd.storage._scaled` (built by `pip install` where a C compiler
is present) or the NumPy reference `obd.storage.scaled`, which give the same bytes and
the same float64 bits. `CORE` says which one runs; `OBD_CODEC=python` forces the
reference, `OBD_CODEC=compiled` refuses to start without the compiled one.

`decode_many` decodes a batch of blobs into float64 arrays (`Levels`) with no Python
object per level; `Levels.books()` turns them into the (bids, asks) lists of tuples,
`Levels.msgpack()` into each side's msgpack bytes (for `msgspec.Raw`).

Thread-safe: zstd contexts are per thread; the cache of size-code tables (one per model
and core, built once) is an `lru_cache`; everything else is immutable. The compiled core
releases the GIL while it works on a batch.
"""

import functools
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import zstandard

from obd.model import Level
from obd.storage import scaled
from obd.storage.sizecode import SizeModel

__all__ = [
    "CORE",
    "MODELED",
    "RAW",
    "SCALED",
    "Levels",
    "Models",
    "decode",
    "decode_many",
    "decode_with",
    "encode",
    "encode_with",
    "size_symbols",
]

RAW = 0
SCALED = 1
MODELED = 2

Models = Callable[[int], SizeModel]  # a series' size model by dicts.id; KeyError if unknown

_MAGIC = b"\x28\xb5\x2f\xfd"  # zstd frame magic; SCALED stores frames without it (4 B each)
_ZSTD_LEVEL = 13  # on ~200 B of symbols, 13 (btultra) saves ~3% over 3 for ~6 us
_RAW_LEVEL = 3
_MAX_LEVELS = 1 << 23  # per side; a header claiming more is corrupt
_TRUSTED_SIZE = 1 << 20  # bytes: a RAW frame claiming more is decompressed as a stream
_TRY_RAW_ABOVE = 3  # bytes a level: a SCALED blob this large is compared with RAW
_STEP_SYMBOLS = -1  # the header's rice field when price steps are symbols
_MULTI_FRAMES = 8  # frames from which one zstd call for all beats one each (~8 us setup)
_F64 = npt.NDArray[np.float64]
_CORRUPT = (msgspec.DecodeError, zstandard.ZstdError, IndexError, OverflowError, ValueError)


def _load_core() -> tuple[ModuleType, str]:
    """The compiled core unless OBD_CODEC says otherwise or it was not built."""
    wanted = os.environ.get("OBD_CODEC", "auto")
    if wanted == "python":
        return scaled, "python (OBD_CODEC=python)"
    try:
        from obd.storage import _scaled
    except ImportError:
        if wanted == "compiled":
            raise
        return scaled, "python (the compiled core is not built)"
    return _scaled, "compiled"


_core, CORE = _load_core()

_msgpack = msgspec.msgpack.Encoder()  # msgspec (de)coders are thread-safe
_raw_decoder = msgspec.msgpack.Decoder(tuple[list[tuple[float, float]], list[tuple[float, float]]])
# flags, n_bids, n_asks, price_exp, size_exp, tick, lot, best_bid, best_ask - best_bid,
# rice, steps, sizes, bits: docs/FORMAT.md.
_scaled_decoder = msgspec.msgpack.Decoder(
    tuple[int, int, int, int, int, int, int, int, int, int, bytes, bytes, bytes]
)
# The same ten integers, then bits (codes, unary quotients, low bits) and the model id.
_modeled_decoder = msgspec.msgpack.Decoder(
    tuple[int, int, int, int, int, int, int, int, int, int, bytes, int]
)


class _Zstd(threading.local):
    """zstd contexts are not thread-safe: one set per thread, made on first use."""

    def __init__(self) -> None:
        self.scaled = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=False)
        self.raw = zstandard.ZstdCompressor(level=_RAW_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd = _Zstd()


# --- encode ------------------------------------------------------------------------------


def encode(
    bids: Sequence[Level], asks: Sequence[Level], model: SizeModel | None = None
) -> tuple[int, bytes]:
    """The smallest lossless (codec id, blob) for the book, MODELED only with a model
    (the series' own: its id goes in the blob); never fails for float input."""
    return encode_with(_core, bids, asks, model)


def encode_with(
    core: ModuleType,
    bids: Sequence[Level],
    asks: Sequence[Level],
    model: SizeModel | None = None,
) -> tuple[int, bytes]:
    """`encode` through the given core (the tests compare the two)."""
    n_bids, n_asks = len(bids), len(asks)
    if n_bids > _MAX_LEVELS or n_asks > _MAX_LEVELS:
        raise ValueError(f"a book side has more than {_MAX_LEVELS} levels")
    try:
        packed = _msgpack.encode((bids, asks))
    except TypeError:  # numpy arrays and other sequences msgspec does not know
        packed = b""
    lengths = None if model is None else model.lengths
    fields: tuple[Any, ...] | bool | None = (
        core.encode(packed, n_bids, n_asks, True, lengths) if packed else False
    )
    grid = None
    if fields is False:  # ints, or levels that are not pairs of floats: the slow way
        packed = b""
        grid = _grid(bids, asks)
        fields = core.encode(grid, n_bids, n_asks, False, lengths)
    best: tuple[int, bytes] | None = None
    if isinstance(fields, tuple):
        best = SCALED, _container(fields, n_bids, n_asks)
        if model is not None and fields[11] is not None:
            header = (fields[0], n_bids, n_asks, *fields[1:8])
            modeled = _msgpack.encode((*header, fields[11], model.id))
            if len(modeled) < len(best[1]):  # a tie: SCALED, which needs no model
                best = MODELED, modeled
    if best is not None and len(best[1]) <= _TRY_RAW_ABOVE * (n_bids + n_asks) + 32:
        return best  # RAW takes ~8 B a level on real books: not worth trying
    if not packed:
        assert grid is not None
        packed = _msgpack.encode(_levels(grid, n_bids))
    raw = _zstd.raw.compress(packed)
    if best is not None and len(best[1]) <= len(raw):
        return best
    return RAW, raw


def _container(fields: tuple[Any, ...], n_bids: int, n_asks: int) -> bytes:
    flags, price_exp, size_exp, tick, lot, best_bid, spread, rice = fields[:8]
    steps, symbols, bits = fields[8:11]  # a 12th: MODELED's stream, when asked for
    step_field = _compress(steps) if rice == _STEP_SYMBOLS else steps
    header = (flags, n_bids, n_asks, price_exp, size_exp, tick, lot, best_bid, spread, rice)
    return _msgpack.encode((*header, step_field, _compress(symbols), bits))


def _compress(stream: bytes) -> bytes:
    """A zstd frame without its magic number, or the stream itself when that is no longer."""
    if not stream:
        return stream
    frame = _zstd.scaled.compress(stream)[len(_MAGIC) :]
    return frame if len(frame) < len(stream) else stream


def _grid(bids: Sequence[Level], asks: Sequence[Level]) -> npt.NDArray[np.float64]:
    """[prices, sizes] of any numbers (ints from JSON included), as float64."""
    try:
        levels = np.asarray([*bids, *asks], dtype=np.float64).reshape(-1, 2)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"every level must be a [price, size] pair: {exc}") from exc
    if len(levels) != len(bids) + len(asks):
        raise ValueError("every level must be a [price, size] pair")
    return np.ascontiguousarray(levels.T)


def _levels(grid: npt.NDArray[np.float64], n_bids: int) -> tuple[list[Level], list[Level]]:
    prices, sizes = grid[0].tolist(), grid[1].tolist()
    bids = list(zip(prices[:n_bids], sizes[:n_bids], strict=True))
    return bids, list(zip(prices[n_bids:], sizes[n_bids:], strict=True))


# --- decode ------------------------------------------------------------------------------


class Levels:
    """A batch of decoded books as flat float64 arrays, no Python object per level.

    Book i's levels are `prices[offsets[i]:offsets[i + 1]]` (and `sizes` likewise): its
    `n_bids[i]` bids best first, then its asks best first. `offsets` has one more entry
    than there are books.
    """

    __slots__ = ("_core", "n_asks", "n_bids", "offsets", "prices", "sizes")

    def __init__(
        self,
        prices: npt.NDArray[np.float64],
        sizes: npt.NDArray[np.float64],
        n_bids: npt.NDArray[np.int64],
        n_asks: npt.NDArray[np.int64],
        offsets: npt.NDArray[np.int64],
        core: ModuleType = scaled,
    ) -> None:
        self.prices, self.sizes, self._core = prices, sizes, core
        self.n_bids, self.n_asks, self.offsets = n_bids, n_asks, offsets

    def __len__(self) -> int:
        return len(self.n_bids)

    def books(self) -> list[tuple[list[Level], list[Level]]]:
        """(bids, asks) of each book as lists of (price, size) float tuples."""
        books: list[tuple[list[Level], list[Level]]]
        books = self._core.books(self.prices, self.sizes, self.offsets, self.n_bids)
        return books

    def msgpack(self) -> list[tuple[bytes, bytes]]:
        """(bids, asks) of each book as the msgpack bytes msgspec writes for `books()`'
        lists, built straight from the arrays: wrap them in `msgspec.Raw` to put them
        in a larger message without a Python object per level."""
        packed: list[tuple[bytes, bytes]]
        packed = self._core.msgpack(self.prices, self.sizes, self.offsets, self.n_bids)
        return packed

    def sides(self) -> tuple[tuple[_F64, _F64], tuple[_F64, _F64]]:
        """((bid prices, bid sizes), (ask prices, ask sizes)): each side's levels end to
        end, book after book (book i's bids start at the sum of the n_bids before it)."""
        n_bids, n_asks = self.n_bids, self.n_asks
        if len(n_bids) and (n_bids == n_bids[0]).all() and (n_asks == n_asks[0]).all():
            split, width = int(n_bids[0]), int(n_bids[0] + n_asks[0])  # equally deep books
            if width:
                prices, sizes = self.prices.reshape(-1, width), self.sizes.reshape(-1, width)
                return (
                    (prices[:, :split].ravel(), sizes[:, :split].ravel()),
                    (prices[:, split:].ravel(), sizes[:, split:].ravel()),
                )
        is_bid = self.is_bid()
        return (
            (self.prices[is_bid], self.sizes[is_bid]),
            (self.prices[~is_bid], self.sizes[~is_bid]),
        )

    def is_bid(self) -> npt.NDArray[np.bool_]:
        """True for each level that is a bid."""
        level = np.arange(len(self.prices)) - np.repeat(self.offsets[:-1], self.counts())
        return level < np.repeat(self.n_bids, self.counts())

    def counts(self) -> npt.NDArray[np.int64]:
        """Levels of each book (both sides)."""
        return self.n_bids + self.n_asks


def decode(
    codec: int, blob: bytes, models: Models | None = None
) -> tuple[list[Level], list[Level]]:
    """The book a blob holds; ValueError for an unknown codec id, a corrupt blob, or a
    MODELED blob whose model `models` does not give."""
    if codec == RAW:
        return _decode_raw(blob)
    return decode_many([(codec, blob)], models).books()[0]


def decode_many(rows: Sequence[tuple[int, bytes]], models: Models | None = None) -> Levels:
    """The books of (codec id, blob) rows as one `Levels`; ValueError as `decode`.
    `models` gives a MODELED row's size model by its id (called once per distinct id in
    the batch; KeyError if unknown). The compiled core works on the whole batch without
    holding the GIL."""
    return decode_with(_core, rows, models)


def decode_with(
    core: ModuleType, rows: Sequence[tuple[int, bytes]], models: Models | None = None
) -> Levels:
    """`decode_many` through the given core (the tests compare the two)."""
    headers: list[tuple[Any, ...] | None] = []
    symbols: list[bytes | None] = []
    steps: list[bytes | None] = []
    tables: list[Any] = []
    resolved: dict[int, Any] = {}  # model id -> its table, once a batch
    frames = _Frames()
    raw: dict[int, tuple[list[Level], list[Level]]] = {}
    depths: list[int] = []  # n_bids, n_asks of each book
    for i, (codec, blob) in enumerate(rows):
        header = symbol = step = table = None
        if codec == MODELED:
            header = _parse(core, _modeled_decoder, MODELED, blob)[0]
            depths += header[1:3]
            table = resolved.get(header[11])
            if table is None:
                table = resolved[header[11]] = _table(core, _model(models, header[11]))
        elif codec == SCALED:
            header, n, n_steps = _parse(core, _scaled_decoder, SCALED, blob)
            depths += header[1:3]
            symbol = frames.take(header[11], n, symbols, i)
            if header[9] == _STEP_SYMBOLS:
                step = frames.take(header[10], n_steps, steps, i)
        elif codec == RAW:
            raw[i] = book = _decode_raw(blob)
            depths += (len(book[0]), len(book[1]))
        else:
            raise ValueError(f"unknown book codec {codec}")
        headers.append(header)
        symbols.append(symbol)
        steps.append(step)
        tables.append(table)
    sides = np.array(depths, dtype=np.int64).reshape(-1, 2).T
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.add.accumulate(sides[0] + sides[1], out=offsets[1:])
    total = int(offsets[-1])
    prices, sizes = np.empty(total), np.empty(total)
    try:
        frames.decompress()
        core.decode(headers, symbols, steps, tables, offsets, prices, sizes)
    except _CORRUPT as exc:
        raise ValueError(f"corrupt book blob (codec {SCALED} or {MODELED}): {exc}") from exc
    for i, (bids, asks) in raw.items():
        count = 2 * (len(bids) + len(asks))  # fromiter: 5x np.array on a list of tuples
        levels = np.fromiter(itertools.chain.from_iterable(bids + asks), np.float64, count)
        prices[offsets[i] : offsets[i + 1]] = levels[0::2]
        sizes[offsets[i] : offsets[i + 1]] = levels[1::2]
    n_bids, n_asks = np.ascontiguousarray(sides[0]), np.ascontiguousarray(sides[1])
    return Levels(prices, sizes, n_bids, n_asks, offsets, core)


def _parse(
    core: ModuleType, decoder: msgspec.msgpack.Decoder[Any], codec: int, blob: bytes
) -> tuple[tuple[Any, ...], int, int]:
    """The container, and its n and n_steps once its header is checked."""
    try:
        header = decoder.decode(blob)
        n, n_steps = core.check(header)
    except _CORRUPT as exc:
        raise ValueError(f"corrupt book blob (codec {codec}): {exc}") from exc
    return header, n, n_steps


def _model(models: Models | None, model_id: int) -> SizeModel:
    """The size model a MODELED blob names, from the caller's resolver."""
    if models is None:
        raise ValueError(
            f"a codec {MODELED} book blob needs its series' size model (dicts id {model_id});"
            " none was given"
        )
    try:
        model = models(model_id)
    except KeyError:
        raise ValueError(
            f"a codec {MODELED} book blob needs size model {model_id}, which is not known"
        ) from None
    if model.id != model_id:
        raise ValueError(f"size model {model.id} given for a blob of model {model_id}")
    return model


@functools.lru_cache(maxsize=128)
def _table(core: ModuleType, model: SizeModel) -> Any:
    """A model's decode table for a core (66 KiB), built once (~0.1 ms) and kept for the
    next batches: keyed by the model's value, so a resolver may return new objects."""
    return core.size_table(model.lengths)


def size_symbols(codec_id: int, blob: bytes, models: Models | None = None) -> bytes | None:
    """The n size symbols of a SCALED or MODELED blob (what `sizecode.count` counts to
    train a series' model), None for RAW; ValueError as `decode`."""
    if codec_id == RAW:
        return None
    if codec_id == SCALED:
        header, n, _ = _parse(_core, _scaled_decoder, SCALED, blob)
        frames = _Frames()
        symbols: list[bytes | None] = [None]
        symbols[0] = frames.take(header[11], n, symbols, 0)
        try:
            frames.decompress()
        except _CORRUPT as exc:
            raise ValueError(f"corrupt book blob (codec {SCALED}): {exc}") from exc
        return symbols[0]
    if codec_id != MODELED:
        raise ValueError(f"unknown book codec {codec_id}")
    header = _parse(_core, _modeled_decoder, MODELED, blob)[0]
    table = _table(_core, _model(models, header[11]))
    try:
        found: bytes = _core.size_symbols(header, table)
    except _CORRUPT as exc:
        raise ValueError(f"corrupt book blob (codec {MODELED}): {exc}") from exc
    return found


class _Frames:
    """A batch's compressed symbol streams, decompressed in one zstd call: zstd lets go
    of the GIL on each call, and a reader thread beside a busy event loop then waits
    up to the 5 ms switch interval to get it back, once a blob instead of once a batch."""

    def __init__(self) -> None:
        self.frames: list[bytes | bytearray | memoryview] = []
        self.targets: list[tuple[list[bytes | None], int]] = []

    def take(self, field: bytes, n: int, target: list[bytes | None], at: int) -> bytes | None:
        """The stream of n symbols itself, or None with `target[at]` filled later."""
        if len(field) == n:
            return field
        frame = _MAGIC + field
        try:
            if len(field) > n or zstandard.frame_content_size(frame) != n:
                raise ValueError("symbol stream of the wrong length")
        except _CORRUPT as exc:
            raise ValueError(f"corrupt book blob (codec {SCALED}): {exc}") from exc
        self.frames.append(frame)
        self.targets.append((target, at))
        return None

    def decompress(self) -> None:
        if len(self.frames) < _MULTI_FRAMES:
            for (target, at), frame in zip(self.targets, self.frames, strict=True):
                target[at] = _zstd.decompressor.decompress(frame)
            return
        streams = _zstd.decompressor.multi_decompress_to_buffer(self.frames)
        for k, (target, at) in enumerate(self.targets):
            target[at] = streams[k].tobytes()


def _decode_raw(blob: bytes) -> tuple[list[Level], list[Level]]:
    try:
        bids, asks = _raw_decoder.decode(_decompress_raw(blob))
    except _CORRUPT as exc:
        raise ValueError(f"corrupt book blob (codec {RAW}): {exc}") from exc
    return bids, asks


def _decompress_raw(blob: bytes) -> bytes:
    if 0 <= zstandard.frame_content_size(blob) <= _TRUSTED_SIZE:
        return _zstd.decompressor.decompress(blob)
    # Unknown or large: stream, so that a corrupt header cannot claim gigabytes up front.
    return _zstd.decompressor.decompressobj().decompress(blob)
