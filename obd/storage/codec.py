"""TEMPORARY raw codec (the codec helper replaces this file)."""

import msgspec
import zstandard

RAW = 0
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(tuple[list[tuple[float, float]], list[tuple[float, float]]])


def encode(bids, asks):  # type: ignore[no-untyped-def]
    return RAW, zstandard.ZstdCompressor(level=3).compress(_enc.encode([bids, asks]))


def decode(codec, blob):  # type: ignore[no-untyped-def]
    if codec != RAW:
        raise ValueError(codec)
    bids, asks = _dec.decode(zstandard.ZstdDecompressor().decompress(blob))
    return bids, asks
