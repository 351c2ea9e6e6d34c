"""Plain summary columns stored beside each blob, so SQL users never decode for the basics."""

import math
from collections.abc import Sequence

import msgspec

from obd.model import Level

TOUCH_LEVELS = 10  # "near the touch": the 10 best levels a side


class Summary(msgspec.Struct, frozen=True, array_like=True):
    bid_levels: int
    ask_levels: int
    best_bid: float | None
    best_ask: float | None
    mid: float | None
    spread_bps: float | None
    bid_size_10: float
    ask_size_10: float
    imbalance_10: float | None  # (bid - ask) / (bid + ask) of the sizes near the touch
    crossed: bool


# The summary columns of the snapshots table, in this order: the one list the writer
# inserts, the reader selects and research frames show (docs/FORMAT.md).
COLUMNS: tuple[str, ...] = Summary.__struct_fields__


def summarize(bids: Sequence[Level], asks: Sequence[Level]) -> Summary:
    best_bid = bids[0][0] if bids else None
    best_ask = asks[0][0] if asks else None
    mid = spread_bps = None
    if best_bid is not None and best_ask is not None:
        mid = (best_bid + best_ask) / 2
        if mid > 0 and math.isfinite(mid):
            spread_bps = (best_ask - best_bid) / mid * 10_000
    bid_size = math.fsum(level[1] for level in bids[:TOUCH_LEVELS])
    ask_size = math.fsum(level[1] for level in asks[:TOUCH_LEVELS])
    total = bid_size + ask_size
    return Summary(
        bid_levels=len(bids),
        ask_levels=len(asks),
        best_bid=best_bid,
        best_ask=best_ask,
        mid=mid,
        spread_bps=spread_bps,
        bid_size_10=bid_size,
        ask_size_10=ask_size,
        imbalance_10=(bid_size - ask_size) / total if total > 0 else None,
        crossed=best_bid is not None and best_ask is not None and best_bid >= best_ask,
    )
