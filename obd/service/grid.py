"""A coin's coverage cut into time buckets (an hour, a day): how many slots each bucket
expects, how many hold a snapshot, and the gap reasons of the others, for the status
page's heat-map and `obd status`.

Counting the snapshots of 30 days at 1 s would walk 2.6 M rows (their blobs share the
pages), so `present` comes from the gap ledger instead: every slot up to the newest
accounted one is a snapshot or part of a recorded gap (docs/HTTP.md, "Coverage and
gaps"), so a bucket's present slots are its expected slots less the slots its gaps
cover. The gaps are the ones `/v1/coverage` lists (`coverage.gaps_in`): recorded,
not collected yet, not reached (`pending`, `daemon_down`)."""

from typing import Any

import msgspec

from obd.model import Coin, Gap
from obd.service.coverage import gaps_in
from obd.times import slot_at_or_after, slot_at_or_before

__all__ = ["MAX_BUCKETS", "MAX_GAPS", "Bucket", "Grid", "grid"]

MAX_BUCKETS = 5_000  # ~7 months of hours; a longer range asks for days
MAX_GAPS = 1_000  # gaps listed; the buckets' reasons still count every slot


class Bucket(msgspec.Struct, frozen=True):
    start: int
    expected: int  # slots of the coin's grid in the bucket (and in the range)
    present: int  # of them, slots holding a snapshot
    reasons: dict[str, int]  # slots of each gap reason (`present + sum(reasons) == expected`)


class Grid(msgspec.Struct, frozen=True):
    start: int
    end: int
    bucket_ms: int
    interval_ms: int
    buckets: list[Bucket]
    gaps: list[Gap]  # the range's gaps, oldest first, as /v1/coverage lists them
    gaps_truncated: bool  # more than MAX_GAPS: the newest are left out
    # A history provider could be asked to fill these gaps (those collection is done
    # with): a configured archive or peer, or the exchange plugin where it serves
    # history; `obd backfill` or a WebSocket `history` request asks them, in this order.
    backfill: bool = False
    providers: list[str] = msgspec.field(default_factory=list)


def grid(conn: Any, coin: Coin, begin: int, stop: int, bucket_ms: int, now: int) -> Grid:
    """Buckets of `bucket_ms` (aligned to the epoch, so hours are UTC hours) covering
    [begin, stop); a reader query (runs on a worker thread)."""
    interval = coin.interval_ms
    first = slot_at_or_before(begin, bucket_ms)
    last = slot_at_or_after(stop, bucket_ms)
    lo, hi = slot_at_or_after(begin, interval), slot_at_or_after(stop, interval)
    gaps = gaps_in(conn, coin, lo, hi, now) if lo < hi else []
    buckets: list[Bucket] = []
    at = 0  # the first gap that may still overlap the current bucket
    for start in range(first, last, bucket_ms):
        low, high = max(start, lo), min(start + bucket_ms, hi)
        expected = _slots(low, high, interval)
        reasons: dict[str, int] = {}
        while at < len(gaps) and gaps[at].end <= low:
            at += 1
        for gap in _overlapping(gaps, at, high):
            missed = _slots(max(gap.start, low), min(gap.end, high), interval)
            if missed:
                reasons[gap.reason] = reasons.get(gap.reason, 0) + missed
        present = max(0, expected - sum(reasons.values()))
        buckets.append(Bucket(start=start, expected=expected, present=present, reasons=reasons))
    return Grid(
        start=first,
        end=last,
        bucket_ms=bucket_ms,
        interval_ms=interval,
        buckets=buckets,
        gaps=gaps[:MAX_GAPS],
        gaps_truncated=len(gaps) > MAX_GAPS,
    )


def _overlapping(gaps: list[Gap], at: int, high: int) -> list[Gap]:
    out = []
    for gap in gaps[at:]:
        if gap.start >= high:
            break
        out.append(gap)
    return out


def _slots(low: int, high: int, interval: int) -> int:
    """Slots (multiples of `interval`) in [low, high)."""
    if high <= low:
        return 0
    return (slot_at_or_after(high, interval) - slot_at_or_after(low, interval)) // interval
