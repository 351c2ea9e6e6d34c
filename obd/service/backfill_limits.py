"""Back-fill meters shared by every connection: rows fetched per minute and back-fills
running at once, per client and for the whole daemon (`[history]`).

A history request's own caps (rows a request, rows a connection) live in its
`Allowance`; these sit beside them, so that many connections, or many clients, cannot
together make the daemon fetch and store more than the operator allowed. Rows a
minute are token buckets: a client may spend a minute's allowance at once, then as
fast as it refills. Past a meter the request ends with `TooManyRequests`, whose
`retry_after_s` says when asking again is worth it (a tenth of the minute's rows back,
or a running back-fill done).
"""

import math
import time
from collections.abc import Callable

from obd.config import History
from obd.errors import TooManyRequests

__all__ = ["BackfillMeter"]

BUSY_RETRY_S = 5  # a running back-fill's end cannot be known: ask again after this
MAX_CLIENTS = 10_000  # buckets kept; full ones are forgotten past this


class _Bucket:
    """`per_minute` tokens at most, refilled at `per_minute` a minute."""

    def __init__(self, per_minute: int, now: float) -> None:
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self._at = now

    def level(self, now: float) -> float:
        self.tokens = min(self.per_minute, self.tokens + (now - self._at) * self.per_minute / 60)
        self._at = now
        return self.tokens

    def wait_s(self, now: float) -> float:
        """0 if a row may be fetched now; else seconds until a tenth of a minute's rows
        are back (asking again for one row at a time would be no use to anyone)."""
        if self.level(now) >= 1:
            return 0.0
        if self.per_minute <= 0:
            return math.inf
        want = max(1.0, self.per_minute / 10)
        return (want - self.tokens) * 60 / self.per_minute


class BackfillMeter:
    """The daemon's back-fill meters; one instance, shared by every connection."""

    def __init__(self, limits: History, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._all = _Bucket(limits.backfill_rows_per_minute, clock())
        self._clients: dict[str, _Bucket] = {}
        self._running: dict[str, int] = {}

    def begin(self, client: str) -> TooManyRequests | None:
        """Count a back-fill of `client` as running (`end` it once done), or the error
        saying which meter is full."""
        limits = self._limits
        if self._running.get(client, 0) >= limits.backfill_concurrent_per_client:
            return _busy(
                f"{limits.backfill_concurrent_per_client} back-fill(s) at once per client",
                "backfill_concurrent_per_client",
            )
        if sum(self._running.values()) >= limits.backfill_concurrent:
            return _busy(
                f"{limits.backfill_concurrent} back-fill(s) at once in all",
                "backfill_concurrent",
            )
        self._running[client] = self._running.get(client, 0) + 1
        return None

    def end(self, client: str) -> None:
        left = self._running.get(client, 0) - 1
        if left > 0:
            self._running[client] = left
        else:
            self._running.pop(client, None)

    def check(self, client: str) -> TooManyRequests | None:
        """The error if one more row for `client` would go past a rows-a-minute meter."""
        now = self._clock()
        limits = self._limits
        wait = self._bucket(client, now).wait_s(now)
        if wait > 0:
            return _slow(
                f"{limits.backfill_rows_per_minute_per_client} rows a minute per client",
                "backfill_rows_per_minute_per_client",
                wait,
            )
        wait = self._all.wait_s(now)
        if wait > 0:
            return _slow(
                f"{limits.backfill_rows_per_minute} rows a minute in all",
                "backfill_rows_per_minute",
                wait,
            )
        return None

    def spend(self, client: str) -> None:
        """One row fetched for `client` (after `check` said it may be)."""
        now = self._clock()
        for bucket in (self._bucket(client, now), self._all):
            bucket.level(now)
            bucket.tokens -= 1

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._clients.get(client)
        if bucket is None:
            if len(self._clients) >= MAX_CLIENTS:
                self._forget_full(now)
            bucket = _Bucket(self._limits.backfill_rows_per_minute_per_client, now)
            self._clients[client] = bucket
        return bucket

    def _forget_full(self, now: float) -> None:
        """A full bucket is what a new one would be: forgetting it changes nothing."""
        full = [k for k, b in self._clients.items() if b.level(now) >= b.per_minute]
        for key in full:
            del self._clients[key]


def _busy(what: str, key: str) -> TooManyRequests:
    return TooManyRequests(
        f"history: back-fill is limited to {what} ([history] {key}); what was stored is "
        f"sent, ask again for the rest in {BUSY_RETRY_S} s",
        retry_after_s=BUSY_RETRY_S,
    )


def _slow(what: str, key: str, wait_s: float) -> TooManyRequests:
    retry = max(1, math.ceil(wait_s)) if math.isfinite(wait_s) else None
    when = f"ask again in {retry} s" if retry is not None else "back-fill is off"
    return TooManyRequests(
        f"history: back-fill is limited to {what} ([history] {key}); what was fetched is "
        f"stored and sent, {when}",
        retry_after_s=retry,
    )
