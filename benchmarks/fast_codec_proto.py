"""Prototype of a fast book codec (candidate id 2, COLUMNS), measured beside SCALED and RAW.

    python benchmarks/fast_codec_proto.py [DATA_DIR] [--repeat 5] [--every 30]

Blob: msgpack [n_bids, n_asks, price_exp, size_exp, tick, lot, first, type, frame].

- The same decimal grid as SCALED (obd.storage.codec._read and _integers): every price is
  P / 10**price_exp, every size S / 10**size_exp, P and S integers below 2**53.
- Levels in ascending book order: bids worst first, then asks best first. So a sorted,
  uncrossed book has ascending prices, and one running sum rebuilds every price.
- Two integer rows of n = n_bids + n_asks entries:
  row 0, price steps: 0, then (P[i] - P[i-1]) / tick (tick = gcd of the steps);
  row 1, sizes: S[i] / lot (lot = gcd of the sizes).
  `first` is P of the first level in that order (the worst bid, or the best ask).
- `type` 0-6 = u1 u2 u4 i1 i2 i4 i8: the smallest little-endian integer type holding both
  rows (signed only when a value is negative: crossed or unsorted sides, negative sizes).
- `frame`: one zstd frame (level 3, content size set, no checksum) without its 4-byte magic,
  of the 2 x n matrix in that type, byte-shuffled: all entries' byte 0, then byte 1, ...

Decode: one zstd call, un-shuffle (one transposed copy), to int64, times [tick, lot], row 0
gets `first` in its entry 0 then a running sum, one float division by [[10**pe], [10**se]]
(correctly rounded: the very bits come back), .tolist(), and zip into (price, size) tuples.
`encode` returns None when there is no grid (NaN, inf, -0.0, too many digits): RAW then.
"""

import sys
from pathlib import Path

import msgspec
import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from obd.storage import codec as _codec

LEVEL = 3  # zstd level (measured -1..19 in __main__)
SHUFFLE = True
FAST_GRID = True
_LIMIT = _codec._LIMIT
_NEGATIVE_ZERO = _codec._NEGATIVE_ZERO
_MAGIC = b"\x28\xb5\x2f\xfd"
_TYPES = [np.dtype(t) for t in ("<u1", "<u2", "<u4", "<i1", "<i2", "<i4", "<i8")]  # no u8:
_LIMITS = [(int(np.iinfo(t).min), int(np.iinfo(t).max)) for t in _TYPES]  # u8 * i8 is f8
_SCALES = _codec._SCALES  # [price_exp][size_exp] -> [[10**pe], [10**se]]
_MAX_LEVELS = 1 << 23
_msgpack = msgspec.msgpack.Encoder()
_header = msgspec.msgpack.Decoder(tuple[int, int, int, int, int, int, int, int, bytes])
_cctx: dict[int, zstandard.ZstdCompressor] = {}  # per level; per thread in real code
_dctx = zstandard.ZstdDecompressor()
_orders: dict[tuple[int, int], np.ndarray] = {}


def _order(n_bids: int, n_asks: int) -> np.ndarray:
    """Level indexes in ascending book order: bids worst first, then asks best first."""
    order = _orders.get((n_bids, n_asks))
    if order is None:
        order = np.concatenate((np.arange(n_bids - 1, -1, -1), np.arange(n_bids, n_bids + n_asks)))
        order.flags.writeable = False
        if len(_orders) < 1024:
            _orders[(n_bids, n_asks)] = order
    return order


def _integers(grid: np.ndarray, n_bids: int) -> tuple[int, int, np.ndarray] | None:
    """codec._integers's answer with fewer numpy calls when its first guess fits (it does on
    every real book): guess from each side's ends, then one check, all on whole arrays."""
    n = grid.shape[1]
    if n == 0:
        return _codec._integers(grid, n_bids)
    ends = (0, max(n_bids - 1, 0), n_bids % n, n - 1)
    price_exp = _codec._exponent_of([grid.item(0, i) for i in ends], 0)
    size_exp = _codec._exponent_of([grid.item(1, i) for i in ends], 0)
    if price_exp is None or size_exp is None:
        return None
    scale = _SCALES[price_exp][size_exp]
    ints = np.rint(grid * scale)
    if (
        np.logical_and.reduce(ints / scale == grid, axis=None)  # NaN fails here
        and np.maximum.reduce(np.abs(ints), axis=None) < _LIMIT  # inf and 2**53 here
        and np.minimum.reduce(grid.view(np.int64), axis=None) != _NEGATIVE_ZERO
    ):
        return price_exp, size_exp, ints.astype(np.int64, order="C")
    return _codec._integers(grid, n_bids)  # more digits than the ends show, or no grid


def encode(bids, asks) -> bytes | None:
    """The COLUMNS blob of the book, or None when it is not on a decimal grid (then RAW)."""
    n_bids, n_asks = len(bids), len(asks)
    _, grid = _codec._read(bids, asks)
    found = _integers(grid, n_bids) if FAST_GRID else _codec._integers(grid, n_bids)
    if found is None:
        return None
    price_exp, size_exp, ints = found
    n = n_bids + n_asks
    first = tick = lot = code = 0
    if n:
        ints = ints.take(_order(n_bids, n_asks), axis=1)  # [prices, sizes], ascending
        first = int(ints[0, 0])
        ints[0, 1:] = ints[0, 1:] - ints[0, :-1]  # >= 0 unless crossed (out= would overlap: slower)
        ints[0, 0] = 0
        tick, lot = np.gcd.reduce(ints, axis=1).tolist()
        if tick > 1 or lot > 1:
            ints //= np.array([[tick or 1], [lot or 1]])
        lo = int(np.minimum.reduce(ints, axis=None))
        hi = int(np.maximum.reduce(ints, axis=None))
        code = next(c for c, (tmin, tmax) in enumerate(_LIMITS) if tmin <= lo and hi <= tmax)
    typed = ints.astype(_TYPES[code], order="C")
    if SHUFFLE:  # all first bytes, then all second bytes, ...: zstd sees the zeros together
        payload = typed.view(np.uint8).reshape(2 * n, _TYPES[code].itemsize).T.tobytes()
    else:
        payload = typed.tobytes()
    cctx = _cctx.get(LEVEL) or _cctx.setdefault(
        LEVEL, zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
    )
    frame = cctx.compress(payload)[4:]
    header = (n_bids, n_asks, price_exp, size_exp, tick or 1, lot or 1, first, code)
    return _msgpack.encode((*header, frame))


def decode(blob: bytes):
    n_bids, n_asks, price_exp, size_exp, tick, lot, first, code, frame = _header.decode(blob)
    n = n_bids + n_asks
    if not (
        0 <= n_bids <= _MAX_LEVELS
        and 0 <= n_asks <= _MAX_LEVELS
        and 0 <= code < 7
        and 0 <= price_exp <= 22
        and 0 <= size_exp <= 22
        and tick >= 1
        and lot >= 1
    ):
        raise ValueError("corrupt COLUMNS header")
    dtype = _TYPES[code]
    frame = _MAGIC + frame
    if zstandard.frame_content_size(frame) != 2 * n * dtype.itemsize:
        raise ValueError("corrupt COLUMNS frame")
    payload = _dctx.decompress(frame)
    if SHUFFLE and dtype.itemsize > 1:
        planes = np.frombuffer(payload, np.uint8).reshape(dtype.itemsize, 2 * n)
        typed = planes.T.copy().view(dtype).reshape(2, n)
    else:
        typed = np.frombuffer(payload, dtype).reshape(2, n)
    ints = typed.astype(np.int64)  # [price steps, sizes]
    if tick > 1 or lot > 1:
        ints *= np.array([[tick], [lot]])
    if n:
        ints[0, 0] = first
        np.add.accumulate(ints[0], out=ints[0])
    prices, sizes = (ints / _SCALES[price_exp][size_exp]).tolist()
    bids = (
        list(zip(prices[n_bids - 1 :: -1], sizes[n_bids - 1 :: -1], strict=True)) if n_bids else []
    )
    return bids, list(zip(prices[n_bids:], sizes[n_bids:], strict=True))


# --- measurement -------------------------------------------------------------------------

if __name__ == "__main__":
    import argparse
    import gc
    import gzip
    import json
    import struct
    import time
    from collections import defaultdict

    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", type=Path, default=Path("/work/shared/data/binance"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--every", type=int, default=30)
    args = parser.parse_args()
    with gzip.open(args.data / "binance_1s_depth100.num.ndjson.gz", "rt") as lines:
        books = [json.loads(line) for line in lines]
    seen: dict[tuple[str, str], int] = defaultdict(int)
    sample = []
    for b in books:
        key = (b["exchange"], b["symbol"])
        if seen[key] % args.every == 0:
            sample.append(b)
        seen[key] += 1
    sides = [(b["bids"], b["asks"]) for b in sample]
    del books
    gc.collect()
    gc.freeze()

    def bits(levels):
        return b"".join(struct.pack("<dd", float(p), float(s)) for p, s in levels)

    def same(got, want):
        return (
            bits(got[0]) == bits(want[0])
            and bits(got[1]) == bits(want[1])
            and all(type(x) is float for side in got for lvl in side for x in lvl)
        )

    zraw = zstandard.ZstdCompressor(level=3)
    raw_enc = lambda s: zraw.compress(msgspec.msgpack.encode(s))  # noqa: E731

    # sizes: zstd levels and shuffle on/off
    print(
        f"# {len(sides)} snapshots (every {args.every}th of each series), "
        f"{sum(len(b) + len(a) for b, a in sides) / len(sides):.0f} levels each\n"
    )
    print("| COLUMNS variant | bytes |\n| --- | ---: |")
    for shuffle in (False, True):
        for level in (-1, 1, 3, 5, 7, 9, 13, 19):
            SHUFFLE, LEVEL = shuffle, level
            blobs = [encode(*s) for s in sides]
            assert all(same(decode(b), s) for b, s in zip(blobs, sides, strict=False))
            print(f"| shuffle={shuffle} zstd={level} | {np.mean([len(b) for b in blobs]):,.1f} |")
    SHUFFLE, LEVEL = True, 3

    scaled = [_codec.encode(*s) for s in sides]
    assert all(c == _codec.SCALED for c, _ in scaled)
    assert all(same(_codec.decode(*e), s) for e, s in zip(scaled, sides, strict=False))
    raws = [raw_enc(s) for s in sides]
    assert all(same(_codec.decode(_codec.RAW, r), s) for r, s in zip(raws, sides, strict=False))
    fast = [encode(*s) for s in sides]
    assert all(same(decode(b), s) for b, s in zip(fast, sides, strict=False))
    print(f"\nround trips bit-exact: SCALED, RAW, COLUMNS on all {len(sides)}")
    rng = np.random.default_rng(1)
    edge = [
        ([], []),
        ([(1.0, 1.0)], []),
        ([], [(0.0, 0.5)]),
        ([(0.0, 2.0)], [(0.0, 3.0)]),
        ([(100.0, -1.5), (101.0, 0.0)], [(99.5, 1e-8)]),
        ([(1e15, 1.0)], [(2.0**52, 3.0)]),
        ([(float("nan"), 1.0)], []),
        ([(-0.0, 1.0)], []),
        ([(1.0, float("inf"))], []),
    ]
    for _ in range(3000):
        nb_, na_ = rng.integers(0, 40, 2)
        pe_, se_ = rng.integers(0, 9, 2)
        p_ = rng.integers(-(10**6), 10**9, nb_ + na_) * int(rng.choice([1, 5, 25])) / 10.0**pe_
        if rng.random() < 0.7:
            p_ = np.concatenate((np.sort(p_[:nb_])[::-1], np.sort(p_[nb_:])))
        low = 0 if rng.random() < 0.9 else -(10**5)
        s_ = rng.integers(low, 10 ** int(rng.integers(1, 15)), nb_ + na_) / 10.0**se_
        lv = list(zip(p_.tolist(), s_.tolist(), strict=False))
        edge.append((lv[:nb_], lv[nb_:]))
    fallback = 0
    for b_, a_ in edge:
        grid_ = _codec._read(b_, a_)[1]
        want, got = _codec._integers(grid_, len(b_)), _integers(grid_, len(b_))
        assert (want is None) == (got is None), (b_, a_)
        assert want is None or (want[:2] == got[:2] and (want[2] == got[2]).all()), (b_, a_)
        blob = encode(b_, a_)
        if blob is None:
            fallback += 1
        else:
            assert same(decode(blob), (b_, a_)), (b_, a_)
    print(f"edge cases and {len(edge) - 9} random books: bit-exact ({fallback} need RAW)\n")

    # the output floor: float arrays -> lists -> tuples, as every decoder ends
    grids = [_codec._read(*s)[1] for s in sides]
    nbs = [len(s[0]) for s in sides]
    lists = [(g[0].tolist(), g[1].tolist()) for g in grids]

    def floor_full(i):
        p, s = grids[i][0].tolist(), grids[i][1].tolist()
        nb = nbs[i]
        return list(zip(p[:nb], s[:nb], strict=False)), list(zip(p[nb:], s[nb:], strict=False))

    def floor_zip(i):
        p, s = lists[i]
        nb = nbs[i]
        return list(zip(p[:nb], s[:nb], strict=False)), list(zip(p[nb:], s[nb:], strict=False))

    pairs = [np.ascontiguousarray(g.T) for g in grids]

    def floor_pairs(i):  # 2-lists instead of tuples
        both = pairs[i].tolist()
        nb = nbs[i]
        return both[:nb], both[nb:]

    tasks = {
        "SCALED encode": lambda i: _codec.encode(*sides[i]),
        "RAW encode": lambda i: raw_enc(sides[i]),
        "COLUMNS encode": lambda i: encode(*sides[i]),
        "SCALED decode": lambda i: _codec.decode(_codec.SCALED, scaled[i][1]),
        "RAW decode": lambda i: _codec.decode(_codec.RAW, raws[i]),
        "COLUMNS decode": lambda i: decode(fast[i]),
        "floor: 2 tolist + 2 zip (tuples)": floor_full,
        "floor: 2 zip only, lists given": floor_zip,
        "floor: (n,2).tolist (2-lists)": floor_pairs,
    }
    chunks = [range(i, min(i + 10, len(sides))) for i in range(0, len(sides), 10)]
    best = {k: [float("inf")] * len(chunks) for k in tasks}
    for _ in range(args.repeat):  # interleaved: each chunk of 10 books through every task
        for at, chunk in enumerate(chunks):
            for name, task in tasks.items():
                t0 = time.perf_counter()
                for i in chunk:
                    task(i)
                best[name][at] = min(best[name][at], time.perf_counter() - t0)
    best = {k: sum(v) / len(sides) * 1e6 for k, v in best.items()}
    size = {
        "SCALED": np.mean([len(b) for _, b in scaled]),
        "RAW": np.mean([len(b) for b in raws]),
        "COLUMNS": np.mean([len(b) for b in fast]),
    }
    print(f"| codec | bytes | encode us | decode us |  (best of {args.repeat}, interleaved)")
    print("| --- | ---: | ---: | ---: |")
    for c in ("SCALED", "RAW", "COLUMNS"):
        print(f"| {c} | {size[c]:,.0f} | {best[c + ' encode']:.1f} | {best[c + ' decode']:.1f} |")
    print()
    for name in list(tasks)[6:]:
        print(f"| {name} | {best[name]:.1f} us |")
    by: dict[str, list[int]] = defaultdict(list)
    for b, blob in zip(sample, fast, strict=False):
        by[f"{b['exchange']} {b['symbol']}"].append(len(blob))
    print("\n| series | COLUMNS bytes |\n| --- | ---: |")
    for k, v in sorted(by.items()):
        print(f"| {k} | {np.mean(v):,.0f} |")
