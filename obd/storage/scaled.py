"""The SCALED and MODELED codecs' bit-level work in NumPy: the reference core, and the
fallback where the compiled one (`obd/storage/_scaled.c`, the same functions in C) is
not built.

Both cores have this interface; obd/storage/codec.py does the zstd frames and the
msgpack container around them and picks the core (docs/FORMAT.md has the layout):

- `check(header)`: (n, n_steps) of a decoded container's tuple (13 items SCALED, 12
  MODELED); ValueError unless its ten integers are within the documented bounds.
- `size_table(lengths)`: the decode table of a size code (`obd.storage.sizecode`), an
  opaque object of this core; ValueError unless the lengths are a complete code.
- `size_symbols(header, table)`: the n size symbols of a MODELED container, as bytes.
- `decode(headers, symbols, steps, tables, offsets, prices, sizes)`: each book of a
  batch into the float64 arrays `prices` and `sizes`, book i at `offsets[i]`.
  `headers[i]` is its container (None: neither SCALED nor MODELED, left alone). SCALED
  (`tables[i]` None): `symbols[i]` its decompressed size symbols, `steps[i]` its
  decompressed step symbols when rice is -1, else None. MODELED: `tables[i]` its size
  code's table, `symbols[i]` and `steps[i]` None.
- `books(prices, sizes, offsets, n_bids)`: [(bids, asks), ...], each book's levels
  (book i at offsets[i] to offsets[i + 1], its n_bids[i] bids first) as lists of
  (price, size) float tuples.
- `msgpack(prices, sizes, offsets, n_bids)`: [(bids, asks), ...], each side as the
  msgpack bytes msgspec writes for that list of tuples.
- `encode(source, n_bids, n_asks, is_msgpack, lengths=None)`: the fields (flags,
  price_exp, size_exp, tick, lot, best_bid, spread, rice, steps, symbols, bits) of one
  book, steps being the unary field or (rice -1) the step symbols, both streams still
  uncompressed; None if the book has no SCALED form; False if `source` (msgspec's bytes
  of (bids, asks)) is not all float pairs. With is_msgpack false, `source` is float64
  [prices, sizes]. With a size code's `lengths`, a 12th field: MODELED's bit stream,
  or None when the steps are not Rice-coded (no MODELED form).

Thread-safe: everything here is immutable.
"""

import functools
from typing import Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from obd.storage import sizecode

__all__ = ["books", "check", "decode", "encode", "msgpack", "size_symbols", "size_table"]

_I64 = npt.NDArray[np.int64]
_U64 = npt.NDArray[np.uint64]
_F64 = npt.NDArray[np.float64]
_U8 = npt.NDArray[np.uint8]
_Bool = npt.NDArray[np.bool_]
Buffer = bytes | bytearray | memoryview | npt.NDArray[Any]
Fields = tuple[int, int, int, int, int, int, int, int, bytes, bytes, bytes]
ModeledFields = tuple[int, int, int, int, int, int, int, int, bytes, bytes, bytes, bytes | None]
Table = tuple[_U8, _U8]  # a size code's symbol and length for each MAX_BITS-bit peek

_MAX_EXP = 22  # 10.0**22 is the largest power of ten a float64 holds exactly
_LIMIT = 2.0**53  # integers below it are exact in a float64
_POW10 = [10.0**k for k in range(_MAX_EXP + 1)]
_SCALES = [[np.array([[p], [s]]) for s in _POW10] for p in _POW10]  # [price_exp][size_exp]
_NEGATIVE_ZERO = int(np.float64(-0.0).view(np.int64))  # the smallest int64: a min finds it
_MAX_LEVELS = 1 << 23  # per side; a header claiming more is corrupt

# Symbols: an integer v >= 0 is coded as u = v + 1, b = u.bit_length():
# symbol = 4 * (b - 1) + (the 2 bits after u's leading 1, zero-padded), and u's
# max(b - 3, 0) remaining low bits go to the bit stream. That is the exponent and top two
# mantissa bits of float64(u), so numpy gets it with a shift. v < 2**53: symbols < 212.
_MAX_VALUE_SYMBOL = 211
_SYMBOL_BIAS = 1023 * 4  # (float64 bits >> 50) - this = symbol
# Size symbols below _REFS are back-references: symbol r, then r bits x, means "the same
# size as the value-coded size 2**r + x places back"; a size symbol >= _REFS is a value
# symbol + _REFS. Sizes below _REF_MIN (in lots) cost less as values than as references.
_REFS = 24
_REF_MIN = 64
_SIZE_SYMBOLS = 256  # where the size alphabet starts in the lookup tables
_STEP_SYMBOLS = -1  # the header's rice field when price steps are symbols, not Rice codes
_MAX_RICE = 52  # Rice low bits; with the 7-bit offset they fit the decoder's 64-bit reads
_MAX_UNARY = 64  # a step whose Rice quotient exceeds this sends the book to symbols
_BID_ZIGZAG, _ASK_ZIGZAG, _SIZE_ZIGZAG = 1, 2, 4


def _tables() -> tuple[_I64, _I64]:
    """Value with zero low bits, and low-bit count, of each symbol (sizes from index 256)."""
    base = np.zeros(512, dtype=np.int64)
    width = np.zeros(512, dtype=np.int64)
    for s in range(_MAX_VALUE_SYMBOL + 1):
        b, top = s // 4 + 1, s % 4
        width[s] = max(b - 3, 0)
        base[s] = ((4 + top) << width[s] >> max(3 - b, 0)) - 1
    values = slice(_SIZE_SYMBOLS + _REFS, _SIZE_SYMBOLS + _REFS + _MAX_VALUE_SYMBOL + 1)
    base[values], width[values] = base[: _MAX_VALUE_SYMBOL + 1], width[: _MAX_VALUE_SYMBOL + 1]
    base[_SIZE_SYMBOLS : _SIZE_SYMBOLS + _REFS] = [1 << r for r in range(_REFS)]
    width[_SIZE_SYMBOLS : _SIZE_SYMBOLS + _REFS] = range(_REFS)
    return base, width


_BASE, _WIDTH = _tables()
_WIDTH_U = _WIDTH.astype(np.uint64)  # numpy will not shift uint64 by int64
for _shared in (_BASE, _WIDTH, _WIDTH_U, *(s for row in _SCALES for s in row)):
    _shared.flags.writeable = False  # read by every thread: an in-place edit would be a bug


def books(
    prices: Buffer, sizes: Buffer, offsets: Buffer, n_bids: Buffer
) -> list[tuple[list[tuple[float, float]], list[tuple[float, float]]]]:
    """Each book's (bids, asks) as lists of float tuples (module docstring)."""
    price_list = np.frombuffer(prices, dtype=np.float64).tolist()
    size_list = np.frombuffer(sizes, dtype=np.float64).tolist()
    pairs = list(zip(price_list, size_list, strict=True))
    at = np.frombuffer(offsets, dtype=np.int64)
    starts = at.tolist()
    splits = (at[:-1] + np.frombuffer(n_bids, dtype=np.int64)).tolist()
    return [
        (pairs[start:split], pairs[split:end])
        for start, split, end in zip(starts, splits, starts[1:], strict=False)
    ]


def msgpack(
    prices: Buffer, sizes: Buffer, offsets: Buffer, n_bids: Buffer
) -> list[tuple[bytes, bytes]]:
    """Each book's sides as msgpack bytes (module docstring)."""
    encode = _msgpack_encoder.encode
    return [(encode(bids), encode(asks)) for bids, asks in books(prices, sizes, offsets, n_bids)]


_msgpack_encoder = msgspec.msgpack.Encoder()


# --- encode ------------------------------------------------------------------------------


def encode(
    source: Buffer, n_bids: int, n_asks: int, is_msgpack: bool, lengths: bytes | None = None
) -> Fields | ModeledFields | Literal[False] | None:
    """The SCALED fields of one book (module docstring)."""
    if is_msgpack:
        grid = _packed_grid(bytes(source), n_bids, n_asks)
        if grid is None:
            return False
    else:
        grid = np.frombuffer(source, dtype=np.float64).reshape(2, n_bids + n_asks)
    scaled = _integers(grid, n_bids)
    if scaled is None:
        return None
    price_exp, size_exp, ints = scaled
    flags, tick, steps = _price_steps(ints[0], n_bids)
    lot, sizes = _size_lots(ints[1])
    if np.minimum.reduce(sizes, initial=0) < 0:
        flags |= _SIZE_ZIGZAG
        sizes = _zigzag(sizes)
    rice = _rice_parameter(steps)
    size_coded = _size_symbols(sizes)
    step_coded = _value_symbols(steps) if rice == _STEP_SYMBOLS else None
    if size_coded is None or (rice == _STEP_SYMBOLS and step_coded is None):
        return None  # an integer >= 2**53: only absurd books get here
    n_steps = len(steps)
    low, widths = np.empty((2, n_steps + len(sizes)), dtype=np.int64)
    low[n_steps:], widths[n_steps:] = size_coded[1], size_coded[2]
    if step_coded is None:
        step_field = _unary(steps >> rice)
        low[:n_steps], widths[:n_steps] = steps, rice
    else:
        step_field = step_coded[0].tobytes()
        low[:n_steps], widths[:n_steps] = step_coded[1], step_coded[2]
    bits = _pack_bits(low, widths)
    n_asks = ints.shape[1] - n_bids
    best_bid = int(ints[0, 0]) if n_bids else 0
    spread = int(ints[0, n_bids]) - best_bid if n_asks else 0
    fields: Fields = (
        flags,
        price_exp,
        size_exp,
        tick,
        lot,
        best_bid,
        spread,
        rice,
        step_field,
        size_coded[0].tobytes(),
        bits,
    )
    if lengths is None:
        return fields
    modeled = None
    if step_coded is None:
        modeled = _modeled_bits(lengths, size_coded[0], steps >> rice, low, widths)
    return (*fields, modeled)


def _modeled_bits(lengths: bytes, symbols: _U8, quotients: _I64, low: _I64, widths: _I64) -> bytes:
    """MODELED's bit stream: each size's code, each step's quotient in unary (q zeros, a
    one), then the low bits (steps', sizes') as SCALED sends them."""
    code_values, code_lengths = _codes(lengths)
    unary_values = np.zeros(2 * len(quotients), dtype=np.int64)
    unary_values[1::2] = 1
    unary_widths = np.ones(2 * len(quotients), dtype=np.int64)
    unary_widths[0::2] = quotients
    values = np.concatenate((code_values[symbols], unary_values, low))
    return _pack_bits(values, np.concatenate((code_lengths[symbols], unary_widths, widths)))


@functools.lru_cache(maxsize=64)
def _codes(lengths: bytes) -> tuple[_I64, _I64]:
    """(code, length) of each size symbol; cached, as a series' model is used each book."""
    if (
        len(lengths) != sizecode.SYMBOLS
        or not 1 <= min(lengths) <= max(lengths) <= sizecode.MAX_BITS
    ):
        raise ValueError(
            f"size code lengths must be {sizecode.SYMBOLS} bytes of 1..{sizecode.MAX_BITS}"
        )
    code_lengths = np.frombuffer(lengths, dtype=np.uint8).astype(np.int64)
    code_values = sizecode.codes(lengths)
    code_lengths.flags.writeable = code_values.flags.writeable = False
    return code_values, code_lengths


def _packed_grid(packed: bytes, n_bids: int, n_asks: int) -> _F64 | None:
    """[prices, sizes] read from msgspec's bytes: 2x faster than np.asarray on the lists.

    Valid when every level is the 19 bytes fixarray(2), float64, float64: msgpack is
    self-delimiting, so finding those tags at every 19th byte proves the layout.
    """
    bids_at = 1 + _array_header(n_bids)
    bids_end = bids_at + 19 * n_bids
    asks_at = bids_end + _array_header(n_asks)
    if len(packed) != asks_at + 19 * n_asks:
        return None
    levels = packed[bids_at:bids_end] + packed[asks_at:]
    n = n_bids + n_asks
    if n == 0:
        return np.zeros((2, 0))
    heads = np.ndarray((n,), dtype="<u2", buffer=levels, strides=(19,))  # 0x92, 0xCB
    tails = np.ndarray((n,), dtype="u1", buffer=levels, offset=10, strides=(19,))  # 0xCB
    if not np.logical_and.reduce((heads == 0xCB92) & (tails == 0xCB)):
        return None
    pairs = np.ndarray((2, n), dtype=">f8", buffer=levels, offset=2, strides=(9, 19))
    return pairs.astype(np.float64)


def _array_header(n: int) -> int:
    """Bytes of a msgpack array header for n items."""
    return 1 if n < 16 else 3 if n < 65536 else 5


# --- the decimal grid --------------------------------------------------------------------


def _integers(grid: _F64, n_bids: int) -> tuple[int, int, _I64] | None:
    """Smallest (price_exp, size_exp) putting every value on n / 10**exp, and the n's.

    None if there is none: NaN, inf, -0.0 (an integer has no sign for zero), too many
    digits, or |n| >= 2**53. Division of an integer below 2**53 by 10**exp (exp <= 22,
    exact in float64) is correctly rounded, so n / 10**exp gives back the very bits.
    """
    if grid.shape[1] == 0:
        return 0, 0, np.zeros((2, 0), dtype=np.int64)
    if np.minimum.reduce(grid.view(np.int64), axis=None) == _NEGATIVE_ZERO:
        return None
    top = np.maximum.reduce(np.abs(grid), axis=1).tolist()
    if not (top[0] < _LIMIT and top[1] < _LIMIT):  # NaN fails too
        return None
    n = grid.shape[1]
    ends = (0, max(n_bids - 1, 0), n_bids % n, n - 1)  # first guess: each side's ends
    price_exp = _exponent_of([grid.item(0, i) for i in ends], 0)
    size_exp = _exponent_of([grid.item(1, i) for i in ends], 0)
    while price_exp is not None and size_exp is not None:
        if top[0] * _POW10[price_exp] >= _LIMIT or top[1] * _POW10[size_exp] >= _LIMIT:
            return None
        scale = _SCALES[price_exp][size_exp]
        ints = np.rint(grid * scale)
        exact = ints / scale == grid
        if np.logical_and.reduce(exact, axis=None):
            return price_exp, size_exp, ints.astype(np.int64)
        # The misfits tell how many more digits it takes.
        prices_fit, sizes_fit = np.logical_and.reduce(exact, axis=1).tolist()
        if not prices_fit:
            price_exp = _exponent_of(grid[0][~exact[0]].tolist(), price_exp + 1)
        if not sizes_fit and size_exp is not None:
            size_exp = _exponent_of(grid[1][~exact[1]].tolist(), size_exp + 1)
    return None


def _exponent_of(values: list[float], least: int) -> int | None:
    """Smallest exponent >= least that fits every value (scalar Python: few values only)."""
    k = least
    for x in values:
        while True:
            if k > _MAX_EXP or not abs(x * _POW10[k]) < _LIMIT:  # NaN and inf too
                return None
            if round(x * _POW10[k]) / _POW10[k] == x:
                break
            k += 1
    return k


# --- SCALED: encode ----------------------------------------------------------------------


def _price_steps(prices: _I64, n_bids: int) -> tuple[int, int, _I64]:
    """(flags, tick, steps): each side's steps away from its best price, in ticks.

    A normal side moves away by >= 1 tick a level and stores step - 1; any other order
    (crossed, unsorted, repeated prices) stores zigzag(step) and sets the side's flag.
    """
    n_bid_steps = max(n_bids - 1, 0)
    steps = np.concatenate(
        (prices[:n_bid_steps] - prices[1:n_bids], prices[n_bids + 1 :] - prices[n_bids:-1])
    )
    tick = int(np.gcd.reduce(steps)) if len(steps) else 1
    if tick > 1:
        steps //= tick
    if np.minimum.reduce(steps, initial=1) > 0:  # both sides: the usual case
        return 0, tick or 1, steps - 1
    bids, asks = steps[:n_bid_steps], steps[n_bid_steps:]
    bids_away = np.minimum.reduce(bids, initial=1) > 0
    asks_away = np.minimum.reduce(asks, initial=1) > 0
    flags = (0 if bids_away else _BID_ZIGZAG) | (0 if asks_away else _ASK_ZIGZAG)
    bids = bids - 1 if bids_away else _zigzag(bids)
    asks = asks - 1 if asks_away else _zigzag(asks)
    return flags, tick or 1, np.concatenate((bids, asks))


def _size_lots(sizes: _I64) -> tuple[int, _I64]:
    """(lot, sizes in lots): the lot is the gcd of the sizes."""
    lot = int(np.gcd.reduce(sizes)) if len(sizes) else 0
    return (lot, sizes // lot) if lot > 1 else (1, sizes)


def _rice_parameter(steps: _I64) -> int:
    """Rice parameter k for the price steps (q = step >> k in unary, then k low bits).

    Steps are roughly geometric, where Rice codes come within a few % of the entropy
    with no table to send: 15-30% smaller than zstd on the symbols. k = floor(log2(mean))
    is within 0.1% of the best k on real books. A far outlier would make a long unary
    run: symbols then.
    """
    if len(steps) == 0:
        return 0
    k = max((int(np.add.reduce(steps)) // len(steps)).bit_length() - 1, 0)
    if k > _MAX_RICE or int(np.maximum.reduce(steps)) >> k > _MAX_UNARY:
        return _STEP_SYMBOLS
    return k


def _unary(quotients: _I64) -> bytes:
    """Each q as q zero bits then a one bit, packed MSB first, zero-padded."""
    ends = np.add.accumulate(quotients + 1)
    bits = np.zeros(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    bits[ends - 1] = 1
    return np.packbits(bits).tobytes()


def _value_symbols(values: _I64) -> tuple[_U8, _I64, _I64] | None:
    """(symbols, integers whose low bits follow, low-bit counts); None if any is >= 2**53."""
    coded = values + 1
    symbols = (coded.astype(np.float64).view(np.int64) >> 50) - _SYMBOL_BIAS
    if np.maximum.reduce(symbols, initial=0) > _MAX_VALUE_SYMBOL:
        return None
    return symbols.astype(np.uint8), coded, _WIDTH[symbols]


def _size_symbols(sizes: _I64) -> tuple[_U8, _I64, _I64] | None:
    """Like _value_symbols, with repeated sizes turned into back-references."""
    coded = _value_symbols(sizes)
    if coded is None:
        return None
    symbols, values, widths = coded
    symbols += _REFS
    references = _references(sizes)
    if references is not None:
        is_ref, distance = references
        distance = distance[is_ref]
        bits = (distance.astype(np.float64).view(np.int64) >> 52) - 1023  # bit length - 1
        values[is_ref] = distance
        symbols[is_ref] = bits
        widths[is_ref] = bits
    return symbols, values, widths


def _references(sizes: _I64) -> tuple[_Bool, _I64] | None:
    """(is_ref, distance): a size seen before is "the value-coded size `distance` back"."""
    n = len(sizes)
    order = sizes.argsort(kind="stable")
    ordered = sizes[order]
    same = ordered[1:] == ordered[:-1]
    if not np.logical_or.reduce(same & (ordered[1:] >= _REF_MIN)):
        return None
    starts = np.concatenate(([True], ~same))
    first = np.empty(n, dtype=np.int64)  # where each size first occurs
    first[order] = order[starts][np.add.accumulate(starts) - 1]
    is_ref = (first != np.arange(n)) & (sizes >= _REF_MIN)
    is_value = (~is_ref).astype(np.int64)
    before = np.add.accumulate(is_value) - is_value  # value-coded sizes before each one
    return is_ref, before - before[first]


def _zigzag(v: _I64) -> _I64:
    return (v << 1) ^ (v >> 63)


def _unzigzag(v: _I64) -> _I64:
    return (v >> 1) ^ -(v & 1)


def _pack_bits(values: _I64, widths: _I64) -> bytes:
    """The low widths[i] bits of each values[i], most significant first, end to end."""
    ends = np.add.accumulate(widths)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return b""
    shifts = ends.repeat(widths) - np.arange(1, total + 1)
    bits = (values.repeat(widths) >> shifts) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


# --- decode ------------------------------------------------------------------------------


def check(header: tuple[Any, ...]) -> tuple[int, int]:
    """(n, n_steps) of a container whose ten integers are in bounds; ValueError if not."""
    flags, n_bids, n_asks, price_exp, size_exp, tick, lot, _, _, rice = header[:10]
    if len(header) == 12 and rice < 0:  # MODELED: Rice-coded steps only
        raise ValueError(f"corrupt MODELED header {header[:10]}")
    if not (
        0 <= flags < 8
        and 0 <= n_bids <= _MAX_LEVELS
        and 0 <= n_asks <= _MAX_LEVELS
        and 0 <= price_exp <= _MAX_EXP
        and 0 <= size_exp <= _MAX_EXP
        and tick >= 1
        and lot >= 1
        and _STEP_SYMBOLS <= rice <= _MAX_RICE
    ):
        raise ValueError(f"corrupt SCALED header {header[:10]}")
    n_steps = max(n_bids - 1, 0) + max(n_asks - 1, 0)
    return n_bids + n_asks, n_steps


def decode(
    headers: list[tuple[Any, ...] | None],
    symbols: list[bytes | None],
    steps: list[bytes | None],
    tables: list[Table | None],
    offsets: Buffer,
    prices: Buffer,
    sizes: Buffer,
) -> None:
    """Each SCALED and MODELED book of a batch into the float64 buffers (module docstring)."""
    at = np.frombuffer(offsets, dtype=np.int64)
    price_out = np.frombuffer(prices, dtype=np.float64)
    size_out = np.frombuffer(sizes, dtype=np.float64)
    for i, header in enumerate(headers):
        if header is not None:
            start = int(at[i])
            book_prices, book_sizes = _decode_one(header, symbols[i], steps[i], tables[i])
            price_out[start : start + len(book_prices)] = book_prices
            size_out[start : start + len(book_sizes)] = book_sizes


def size_table(lengths: bytes) -> Table:
    """The decode table of a size code (module docstring): canonical codes in (length,
    symbol) order tile the MAX_BITS-bit peeks from 0 up, each 2**(MAX_BITS - length)."""
    sizecode.SizeModel(0, lengths)  # ValueError unless a complete code
    code_lengths = np.frombuffer(lengths, dtype=np.uint8)
    order = np.lexsort((np.arange(sizecode.SYMBOLS), code_lengths))
    spans = np.left_shift(1, sizecode.MAX_BITS - code_lengths.astype(np.int64))
    symbol_of = np.repeat(order.astype(np.uint8), spans[order])
    length_of = code_lengths[symbol_of]
    symbol_of.flags.writeable = length_of.flags.writeable = False
    return symbol_of, length_of


def size_symbols(header: tuple[Any, ...], table: Table) -> bytes:
    """The n size symbols of a MODELED container (module docstring)."""
    n, _ = check(header)
    return _read_codes(header[10], n, table)[0].tobytes()


def _decode_one(
    header: tuple[Any, ...], symbols: bytes | None, step_symbols: bytes | None, table: Table | None
) -> tuple[_F64, _F64]:
    flags, n_bids, n_asks, price_exp, size_exp, tick, lot, best_bid, spread, rice = header[:10]
    n, n_steps = check(header)
    start = 0
    if table is None:  # SCALED
        assert symbols is not None
        bits = header[12]
        size_symbols = np.frombuffer(symbols, dtype=np.uint8)
    else:  # MODELED: the size codes and the unary quotients come first in `bits`
        bits = header[10]
        size_symbols, start = _read_codes(bits, n, table)
        quotients, start = _read_unary(bits, start, n_steps)
    size_index = size_symbols + np.int64(_SIZE_SYMBOLS)
    widths = np.empty(n_steps + len(size_index), dtype=np.uint64)
    np.take(_WIDTH_U, size_index, out=widths[n_steps:])
    if step_symbols is not None:
        step_index = np.frombuffer(step_symbols, dtype=np.uint8)
        np.take(_WIDTH_U, step_index, out=widths[:n_steps])
        values = _unpack_bits(bits, widths)
        values[:n_steps] += _BASE[step_index]
    else:
        widths[:n_steps] = rice
        values = _unpack_bits(bits, widths, start)
        if table is None:
            quotients = _from_unary(header[10], n_steps)
        values[:n_steps] += quotients << rice
    values[n_steps:] += _BASE[size_index]
    sizes = _resolve_references(values[n_steps:], size_symbols)
    if flags & _SIZE_ZIGZAG:
        sizes = _unzigzag(sizes)
    best = (best_bid, best_bid + spread)
    prices = _prices(values[:n_steps], flags, tick, best, (n_bids, n_asks))
    return prices / _POW10[price_exp], (sizes * lot if lot > 1 else sizes) / _POW10[size_exp]


def _from_unary(packed: bytes, n: int) -> _I64:
    ends = np.unpackbits(np.frombuffer(packed, dtype=np.uint8)).nonzero()[0]
    if len(ends) != n or len(packed) != (int(ends[-1]) + 8 if n else 0) // 8:
        raise ValueError("unary stream of the wrong length")
    quotients = ends.copy()  # zeros before each one bit: ends[i] - ends[i - 1] - 1
    quotients[1:] -= ends[:-1] + 1
    return quotients


def _read_codes(packed: bytes, n: int, table: Table) -> tuple[_U8, int]:
    """(symbols, the bit after them) of n size codes from the stream's first bit: the
    code at every bit position at once, then a short walk from code to code. Positions
    up to ~10 bits a code first (real books take ~6), all of them if the walk needs."""
    limit = 8 * len(packed)
    words = _words(packed).astype(np.uint64)
    found = _walk(words, n, table, min(limit, 10 * n + 64), limit)
    if found is None:
        found = _walk(words, n, table, limit, limit)
    assert found is not None
    return found


def _walk(words: _U64, n: int, table: Table, end: int, limit: int) -> tuple[_U8, int] | None:
    """_read_codes with the codes at positions 0..end; None if the walk goes past end."""
    symbol_of, length_of = table
    at = np.arange(end + 1)
    peeks = (words[at >> 3] << (at & 7).astype(np.uint64)) >> np.uint64(64 - sizecode.MAX_BITS)
    peeks = peeks.view(np.int64)  # < 2**MAX_BITS: an index NumPy need not convert
    following = (at + length_of[peeks]).tolist()
    starts = [0] * n
    position = 0
    for i in range(n):
        starts[i] = position
        position = following[position]
        if position > end:
            if position > limit:
                raise ValueError("size code stream too short")
            if i + 1 < n:
                return None
    return symbol_of[peeks[starts]], position


def _read_unary(packed: bytes, start: int, n: int) -> tuple[_I64, int]:
    """(quotients, the bit after them) of n unary codes from bit `start`."""
    if n == 0:
        return np.zeros(0, dtype=np.int64), start
    ends = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[start:].nonzero()[0][:n]
    if len(ends) != n:
        raise ValueError("unary stream too short")
    quotients = ends.copy()
    quotients[1:] -= ends[:-1] + 1
    return quotients, start + int(ends[-1]) + 1


def _words(packed: bytes) -> npt.NDArray[Any]:
    """The big-endian 64-bit word at each byte of the stream (8 zero bytes after it)."""
    padded = packed + bytes(8)
    return np.ndarray((len(padded) - 7,), dtype=">u8", buffer=padded, strides=(1,))


def _unpack_bits(packed: bytes, widths: _U64, start: int = 0) -> _I64:
    """Inverse of _pack_bits from bit `start`: one unaligned big-endian 64-bit read per value."""
    starts = np.add.accumulate(widths) - widths + np.uint64(start)
    total = int(starts[-1] + widths[-1]) if len(widths) else start
    if len(packed) != (total + 7) // 8:
        raise ValueError("bit stream of the wrong length")
    words = _words(packed)
    word = words[starts >> 3] << (starts & 7)  # the value's first bit is now the top bit
    low: _U64 = word >> (63 - widths) >> 1  # two shifts, so that width 0 gives 0
    return low.view(np.int64)


def _resolve_references(sizes: _I64, symbols: _U8) -> _I64:
    is_ref = symbols < _REFS
    if not np.logical_or.reduce(is_ref):
        return sizes
    is_value = ~is_ref
    counts = is_value.astype(np.int64)
    source = (np.add.accumulate(counts) - counts)[is_ref] - sizes[is_ref]
    if np.minimum.reduce(source) < 0:
        raise ValueError("size reference before the first size")
    sizes[is_ref] = sizes[is_value][source]
    return sizes


def _prices(
    values: _I64, flags: int, tick: int, best: tuple[int, int], sides: tuple[int, int]
) -> _I64:
    """Integer prices: each side's best, then its steps away from it, as one running sum."""
    n_bids, n_asks = sides
    n_bid_steps = max(n_bids - 1, 0)
    if flags & (_BID_ZIGZAG | _ASK_ZIGZAG):
        bids, asks = values[:n_bid_steps], values[n_bid_steps:]
        bids = _unzigzag(bids) if flags & _BID_ZIGZAG else bids + 1
        values = np.concatenate((bids, _unzigzag(asks) if flags & _ASK_ZIGZAG else asks + 1))
    else:
        values = values + 1
    if tick > 1:
        values *= tick
    steps = np.empty(n_bids + n_asks, dtype=np.int64)
    if n_bids:
        steps[0] = best[0]
        np.negative(values[:n_bid_steps], out=steps[1:n_bids])
    if n_asks:
        worst_bid = best[0] - int(np.add.reduce(values[:n_bid_steps])) if n_bids else 0
        steps[n_bids] = best[1] - worst_bid  # the sum jumps from the worst bid to the best ask
        steps[n_bids + 1 :] = values[n_bid_steps:]
    return np.add.accumulate(steps)
