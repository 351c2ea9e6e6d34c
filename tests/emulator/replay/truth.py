"""What the books truly were, and when: the recording replayed through a fresh venue,
each frame stamped with the wall time the emulator applied it (from its sent log,
or from an in-process `ReplayEmulator.applied`).

A fidelity test asks `books_within(symbol, depth, start_ms, end_ms)`: every book
that stood at some instant of [start_ms, end_ms]. A websocket snapshot for slot T
must be one of those for [T - tolerance, T] (a frame sent just before T may reach
the client after T; one sent after T never belongs to slot T).
"""

import bisect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.emulator.replay import recording as rec
from tests.emulator.replay.venue import Book, create_venue

__all__ = ["Truth", "applied_from_sent_log", "delisted_from_sent_log"]


def applied_from_sent_log(path: Path | str) -> dict[int, int]:
    """Recording line -> wall ms it was applied: its first entry in a sent log."""
    applied: dict[int, int] = {}
    for entry in _entries(path):
        if entry["line"] is not None:
            applied.setdefault(entry["line"], entry["wall_ms"])
    return applied


def delisted_from_sent_log(path: Path | str) -> dict[str, int]:
    """Symbol -> wall ms it was delisted (its true book froze then)."""
    return {e["delisted"]: e["wall_ms"] for e in _entries(path) if "delisted" in e}


def _entries(path: Path | str) -> Iterator[dict[str, Any]]:
    with Path(path).open() as log:
        for text in log:
            if not text.endswith("\n"):
                return  # a line still being written
            yield json.loads(text)


class Truth:
    """The true books of one replay, as (wall ms, book) changes per symbol."""

    def __init__(
        self,
        exchange_id: str,
        recording: rec.Recording,
        applied: dict[int, int],
        delisted: dict[str, int] | None = None,
    ) -> None:
        self.exchange_id, self.recording = exchange_id, recording
        self._applied = dict(applied)
        self._delisted = dict(delisted or {})
        self._cache: dict[tuple[str, int], tuple[list[int], list[Book]]] = {}

    @classmethod
    def from_sent_log(
        cls, exchange_id: str, recording: Path | str, sent_log: Path | str
    ) -> "Truth":
        applied, delisted = applied_from_sent_log(sent_log), delisted_from_sent_log(sent_log)
        return cls(exchange_id, rec.load(recording), applied, delisted)

    def changes(self, symbol: str, depth: int) -> list[tuple[int, Book]]:
        """Each time the top `depth` levels of `symbol` changed: (wall ms, the book
        from then on). The first entry (wall 0) is the book before any frame."""
        times, books = self._history(symbol, depth)
        return list(zip(times, books, strict=True))

    def book_at(self, symbol: str, depth: int, wall_ms: int) -> Book:
        """The book that stood at `wall_ms`."""
        times, books = self._history(symbol, depth)
        return books[bisect.bisect_right(times, wall_ms) - 1]

    def books_within(self, symbol: str, depth: int, start_ms: int, end_ms: int) -> list[Book]:
        """Every book that stood at some instant of [start_ms, end_ms], oldest first."""
        times, books = self._history(symbol, depth)
        first = bisect.bisect_right(times, start_ms) - 1
        last = bisect.bisect_right(times, end_ms)
        return books[max(first, 0) : last]

    def book_at_seq(self, symbol: str, depth: int, seq: int) -> Book | None:
        """The book as of the exchange's update id / sequence `seq` (the last change at or
        before it), for venues whose books carry an increasing `seq`; else None."""
        _, books = self._history(symbol, depth)
        seqs = [book.seq for book in books]
        if any(s is None for s in seqs):
            return None
        index = bisect.bisect_right(seqs, seq) - 1  # type: ignore[type-var]
        return books[index] if index >= 0 else None

    def last_applied_ms(self) -> int:
        return max(self._applied.values(), default=0)

    def _history(self, symbol: str, depth: int) -> tuple[list[int], list[Book]]:
        key = (symbol, depth)
        if key not in self._cache:
            self._cache[key] = self._replay(symbol, depth)
        return self._cache[key]

    def _replay(self, symbol: str, depth: int) -> tuple[list[int], list[Book]]:
        venue = create_venue(self.exchange_id, self.recording)
        times, books = [0], [venue.book(symbol, depth)]
        for entry in self.recording.recv:
            wall_ms = self._applied.get(entry.line)
            if wall_ms is None:
                break  # the replay never got this far
            if symbol not in venue.apply(entry):
                continue
            if wall_ms >= self._delisted.get(symbol, wall_ms + 1):
                continue  # halted: the book froze at the delisting
            book = venue.book(symbol, depth)
            if (book.bids, book.asks) != (books[-1].bids, books[-1].asks):
                times.append(wall_ms)
                books.append(book)
        return times, books
