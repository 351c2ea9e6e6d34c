"""Which slots of a coin's range hold a snapshot, and why the others do not: the gaps
storage recorded, plus what it cannot know (before the coin was added, not reached yet)."""

from typing import Any

import msgspec

from obd.model import Coin, Gap, GapReason
from obd.storage import reader
from obd.times import slot_at_or_after

__all__ = ["MAX_SOURCES", "Coverage", "Fillable", "Source", "coverage", "gaps_in", "join"]

MAX_SOURCES = 1_000  # runs of one capture listed per answer


class Source(msgspec.Struct, frozen=True, array_like=True):
    """Slots [start, end) of a coin stored with one `capture`: where they came from."""

    start: int
    end: int
    capture: str  # "ws", "rest", "synthetic", "backfill:<provider>[:<origin>]"


class Fillable(msgspec.Struct, frozen=True, array_like=True):
    """Whether a gap could be back-filled: the first provider that could serve some of
    it (None: none could, or collection has not reached it), and why not otherwise."""

    start: int
    end: int
    provider: str | None
    why: str


class Coverage(msgspec.Struct, frozen=True):
    start: int
    end: int
    interval_ms: int
    expected: int
    present: int
    gaps: list[Gap]
    # Asked for (`sources`): runs of present slots by capture, at most MAX_SOURCES.
    sources: list[Source] | None = None
    # The history providers that would be asked to fill the gaps, in order.
    providers: list[str] | None = None
    # Asked for (`fillable`): per gap (the first MAX_PROBED), which provider could fill it.
    fillable: list[Fillable] | None = None


def coverage(
    conn: Any, coin: Coin, begin: int, stop: int, now: int, sources: bool = False
) -> Coverage:
    """[begin, stop) of `coin` on its slot grid (a reader query: runs on a worker thread)."""
    interval = coin.interval_ms
    lo, hi = slot_at_or_after(begin, interval), slot_at_or_after(stop, interval)
    return Coverage(
        start=lo,
        end=hi,
        interval_ms=interval,
        expected=max(0, (hi - lo) // interval),
        present=reader.count(conn, coin.id, lo, hi),
        gaps=gaps_in(conn, coin, lo, hi, now),
        sources=[
            Source(*run)
            for run in reader.capture_runs(conn, coin.id, lo, hi, interval, MAX_SOURCES)
        ]
        if sources
        else None,
    )


def gaps_in(conn: Any, coin: Coin, lo: int, hi: int, now: int) -> list[Gap]:
    """The gaps of the slots [lo, hi) (both on the coin's grid), with reasons, oldest
    first: recorded ones, plus what storage cannot know (not collected yet, not reached)."""
    interval = coin.interval_ms
    first_slot = slot_at_or_after(coin.added_ts + 1, interval)
    found = reader.gaps(conn, coin.id, lo, hi)
    if lo < first_slot:
        # Before the first collected slot, back-filled rows are present: only the slots
        # between them were not collected (else they would count twice, issue 17).
        before = min(first_slot, hi)
        at = lo
        holes: list[Gap] = []
        for start, end in reader.runs(conn, coin.id, lo, before, interval):
            holes.append(Gap(at, start, "not_collected"))
            at = end
        holes.append(Gap(at, before, "not_collected"))
        found[:0] = [hole for hole in holes if hole.start < hole.end]
    until = max(reader.accounted_until(conn, coin) or first_slot, lo)
    if until < hi:
        recent = until >= now - 2 * interval - 2_000
        reason: GapReason = (
            "not_collected"
            if coin.history_only
            else "pending"
            if recent and coin.active
            else "daemon_down"
            if coin.active
            else "removed"
        )
        found.append(Gap(until, hi, reason))
    gaps: list[Gap] = []
    for gap in found:
        join(gaps, gap)
    return gaps


def join(gaps: list[Gap], gap: Gap, limit: int | None = None) -> bool:
    """Add `gap` (oldest first) to `gaps`, as part of the last one if they touch with the
    same reason; an empty gap is no gap. False if it needed a new entry beyond `limit`."""
    if gap.start >= gap.end:
        return True
    last = gaps[-1] if gaps else None
    if last is not None and last.end >= gap.start and last.reason == gap.reason:
        gaps[-1] = Gap(last.start, max(last.end, gap.end), gap.reason)
    elif limit is None or len(gaps) < limit:
        gaps.append(gap)
    else:
        return False
    return True
