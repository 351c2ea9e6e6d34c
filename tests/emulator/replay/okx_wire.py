"""OKX v5 `books` wire format, shared by the OKX venue and its recording generator.

A book frame (one instrument per frame; `data` always holds one entry):

    {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot"|"update",
     "data":[{"asks":[["61837.7","1.6052","0","3"],...],"bids":[...],"ts":"1723161255408",
              "checksum":-1029837716,"prevSeqId":50093239207,"seqId":50093239224}]}

Levels are `[price, size, "0" (liquidated orders, deprecated), orders]`, decimal strings
as the exchange writes them; size "0" removes the level. A snapshot has prevSeqId -1;
each update's prevSeqId is the seqId of the frame before it on that channel. The
checksum is CRC32 (as a signed 32-bit integer) of the top 25 bids and asks interleaved,
`bid1px:bid1sz:ask1px:ask1sz:bid2px:...`, a side that runs out simply ending, over the
exchange's own strings (so "0.10" and "0.1" differ).
"""

import json
import zlib
from collections.abc import Sequence

__all__ = ["CHECKSUM_LEVELS", "LEVELS", "WireBook", "book_frame", "checksum", "signed32"]

CHECKSUM_LEVELS = 25  # per side, in the checksum
LEVELS = 400  # per side, what the `books` channel keeps

WireLevel = tuple[str, str, str]  # (price, size, orders), the exchange's strings


def signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def checksum(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """OKX's checksum of a book given best-first `(price, size, ...)` string levels."""
    parts: list[str] = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    return signed32(zlib.crc32(":".join(parts).encode()))


class WireBook:
    """One instrument's book as OKX's frames build it: price -> the level's strings."""

    def __init__(self) -> None:
        self.bids: dict[float, WireLevel] = {}
        self.asks: dict[float, WireLevel] = {}
        self.seq: int | None = None
        self.ts_ms: int | None = None

    def apply(self, data: dict[str, object], snapshot: bool) -> None:
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, data.get("bids")), (self.asks, data.get("asks"))):
            for level in levels or []:  # type: ignore[attr-defined]
                price, size, _, orders = level
                if float(size) == 0:
                    side.pop(float(price), None)
                else:
                    side[float(price)] = (price, size, orders)
        self.seq = int(data["seqId"])  # type: ignore[call-overload]
        self.ts_ms = int(data["ts"])  # type: ignore[call-overload]

    def sorted(self, depth: int | None = None) -> tuple[list[WireLevel], list[WireLevel]]:
        """(bids, asks), best first, the top `depth` of each."""
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)[:depth]]
        asks = [self.asks[p] for p in sorted(self.asks)[:depth]]
        return bids, asks

    def checksum(self) -> int:
        bids, asks = self.sorted(CHECKSUM_LEVELS)
        return checksum(bids, asks)


def book_frame(
    inst_id: str,
    action: str,
    bids: Sequence[WireLevel],
    asks: Sequence[WireLevel],
    ts_ms: int,
    check: int,
    prev_seq: int,
    seq: int,
) -> str:
    """One `books` frame, keys in the order OKX sends them, compact JSON."""
    data = {
        "asks": [[p, s, "0", n] for p, s, n in asks],
        "bids": [[p, s, "0", n] for p, s, n in bids],
        "ts": str(ts_ms),
        "checksum": check,
        "prevSeqId": prev_seq,
        "seqId": seq,
    }
    frame = {"arg": {"channel": "books", "instId": inst_id}, "action": action, "data": [data]}
    return json.dumps(frame, separators=(",", ":"))
