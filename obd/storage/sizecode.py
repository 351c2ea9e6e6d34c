"""Per-series Huffman codes for the size symbols of codec 2 (MODELED, docs/FORMAT.md).

A series' books have much the same sizes from one book to the next, so a code trained on
a few of its books and stored once (a `dicts` row: one code length a symbol) codes each
later book's size symbols in ~137 B where zstd, paying for its own table in every blob,
takes ~165 B. The code is canonical (DEFLATE's): the lengths alone define it.

- `train(counts)`: code lengths from per-symbol counts (`count(symbols)`), deterministic.
- `SizeModel(id, lengths)`: a code as stored; constructing one validates it.
- `codes(lengths)`: each symbol's canonical code (the encoders' table).

Thread-safe: everything here is immutable.
"""

import heapq
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["MAX_BITS", "SYMBOLS", "SizeModel", "codes", "count", "train"]

SYMBOLS = 236  # size symbols 0..235: 24 back-references, then value symbols 0..211
MAX_BITS = 15  # longest code: a decoder's one-step table has 2**15 entries
# Training weights, in 1/40 of a count: a symbol's own count, its neighbours' (sizes of
# about the same magnitude, which a few books may have missed) and a floor so that every
# symbol has a code and encoding never fails. Measured on the shared Binance books with
# models trained on 16 consecutive books: 1.5 B a book smaller than counts + 0.05 alone.
_OWN = 40
_NEAR = (4, 2, 1)  # symbols 1, 2 and 3 away
_FLOOR = 2


class SizeModel(msgspec.Struct, frozen=True):
    """A canonical Huffman code of the size symbols: `lengths[s]` bits for symbol s.

    `id` is its `dicts.id`; `lengths` (SYMBOLS bytes, each 1..MAX_BITS, a complete code:
    sum of 2**-length exactly 1) is that row's `data`. ValueError when it is not one.
    """

    id: int
    lengths: bytes

    def __post_init__(self) -> None:
        _check(self.lengths)

    @classmethod
    def load(cls, id: int, data: Any) -> "SizeModel":
        """The model of a `dicts` row (id, data); ValueError if data is not a valid code."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"size model {id}: data is not a blob")
        try:
            return cls(id, bytes(data))
        except ValueError as exc:
            raise ValueError(f"size model {id}: {exc}") from None


def _check(lengths: bytes) -> None:
    if len(lengths) != SYMBOLS:
        raise ValueError(f"{len(lengths)} code lengths, not {SYMBOLS}")
    if min(lengths) < 1 or max(lengths) > MAX_BITS:
        raise ValueError(f"a code length outside 1..{MAX_BITS}")
    if sum(1 << (MAX_BITS - length) for length in lengths) != 1 << MAX_BITS:
        raise ValueError("code lengths that are not a complete prefix code")


def count(symbols: bytes | Sequence[int]) -> npt.NDArray[np.int64]:
    """How often each of the SYMBOLS symbols occurs (add the arrays of several books)."""
    values = np.frombuffer(symbols, dtype=np.uint8) if isinstance(symbols, bytes) else symbols
    return np.bincount(np.asarray(values, dtype=np.int64), minlength=SYMBOLS)[:SYMBOLS]


def train(counts: Sequence[int] | npt.NDArray[Any]) -> bytes:
    """Code lengths (SYMBOLS bytes) for symbols seen `counts` times: the optimal code no
    longer than MAX_BITS (package-merge) for the smoothed integer weights above, ties
    broken by symbol, so the same counts always give the same lengths."""
    seen = np.asarray(counts, dtype=np.int64)
    if seen.shape != (SYMBOLS,) or (seen < 0).any():
        raise ValueError(f"counts must be {SYMBOLS} integers >= 0")
    weights = seen * _OWN + _FLOOR
    for distance, weight in enumerate(_NEAR, start=1):
        weights[distance:] += weight * seen[:-distance]
        weights[:-distance] += weight * seen[distance:]
    lengths = _package_merge(weights.tolist(), MAX_BITS)
    _check(lengths)
    return lengths


# A package-merge node: (weight, symbol) for a leaf, (weight, (node, node)) for a package.
_Node = tuple[int, Any]


def _package_merge(weights: list[int], limit: int) -> bytes:
    """Lengths of the optimal prefix code with no code over `limit` bits (Larmore and
    Hirschberg): merge the leaves with pairs of the previous list `limit - 1` times; a
    symbol's length is how often it is in the first 2n - 2 nodes of the last list."""
    n = len(weights)
    leaves: list[_Node] = sorted((w, s) for s, w in enumerate(weights))
    current = leaves
    for _ in range(limit - 1):
        packages = [
            (current[i][0] + current[i + 1][0], (current[i], current[i + 1]))
            for i in range(0, len(current) - 1, 2)
        ]
        current = list(heapq.merge(leaves, packages, key=lambda node: node[0]))
    lengths = [0] * n
    stack = current[: 2 * n - 2]
    while stack:
        payload = stack.pop()[1]
        if isinstance(payload, int):
            lengths[payload] += 1
        else:
            stack.extend(payload)
    return bytes(lengths)


def codes(lengths: bytes) -> npt.NDArray[np.int64]:
    """Each symbol's canonical code (sent most significant bit first): codes of the same
    length are consecutive integers in symbol order, and each length's first code
    follows the shorter ones' last, shifted left (DEFLATE, RFC 1951 3.2.2)."""
    per_length = np.bincount(np.frombuffer(lengths, dtype=np.uint8), minlength=MAX_BITS + 1)
    first = [0] * (MAX_BITS + 2)
    code = 0
    for length in range(1, MAX_BITS + 1):
        code = (code + int(per_length[length - 1])) << 1  # per_length[0] is 0
        first[length] = code
    out = np.empty(len(lengths), dtype=np.int64)
    for symbol, length in enumerate(lengths):
        out[symbol] = first[length]
        first[length] += 1
    return out
