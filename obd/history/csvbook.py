"""Books at slots from archive CSV rows (the Tardis.dev day-file formats), one row at a
time: memory holds one book, never the file.

`incremental_book_L2`: columns `exchange,symbol,timestamp,local_timestamp,is_snapshot,
side,price,amount` (µs). `amount` 0 removes a level; a run of `is_snapshot=true` rows
after other rows starts a new full book. The book at slot T is every row with
`local_timestamp <= T` applied: what a collector would have held at T. Its
`exchange_ts` is the last applied row's `timestamp`, its `received_ts` that row's
`local_timestamp` (both floored to ms).

`book_snapshot_25` / `book_snapshot_5`: one row a book, `timestamp,local_timestamp,`
then `asks[i].price,asks[i].amount` and `bids[i].price,bids[i].amount` (empty where
the book was shallower). The book at T is the last row with `local_timestamp <= T`.

Slots before the file's first row, before its first snapshot, in the middle of a
snapshot run, or after its last row are `Unserved` with the reason.
"""

import bisect
from collections.abc import Iterable, Iterator

from obd.history.provider import Item, Served, Unserved
from obd.model import Book, Level
from obd.times import iso

__all__ = ["CorruptFile", "l2_books", "snapshot_books"]

L2_COLUMNS = (
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "is_snapshot",
    "side",
    "price",
    "amount",
)


class CorruptFile(ValueError):
    """A row the format does not allow; the message names the line."""


class _Slots:
    """The slot grid of [start, end), handed out in order."""

    def __init__(self, start: int, end: int, interval: int) -> None:
        self.next = start
        self.end = end
        self.interval = interval

    def before(self, local_us: int) -> Iterator[int]:
        """Slots T not yet handed out with T (in µs) < `local_us`: a row at local_us
        is past them, so every row at or before T has been applied."""
        while self.next < self.end and self.next * 1000 < local_us:
            yield self.next
            self.next += self.interval

    def rest(self) -> tuple[int, int] | None:
        return (self.next, self.end) if self.next < self.end else None


def l2_books(
    lines: Iterable[str], start: int, end: int, interval: int, depth: int, label: str
) -> Iterator[Item]:
    """The books of an `incremental_book_L2` file at the slots of [start, end)."""
    return coalesce(_l2_books(iter(lines), start, end, interval, depth, label))


def snapshot_books(
    lines: Iterable[str], start: int, end: int, interval: int, label: str
) -> Iterator[Item]:
    """The books of a `book_snapshot_N` file at the slots of [start, end)."""
    return coalesce(_snapshot_books(iter(lines), start, end, interval, label))


def coalesce(items: Iterator[Item]) -> Iterator[Item]:
    """Touching `Unserved` runs with one reason as one."""
    pending: Unserved | None = None
    for item in items:
        if isinstance(item, Unserved):
            if pending is not None and pending.end == item.start and pending.why == item.why:
                pending = Unserved(pending.start, item.end, item.why)
                continue
            if pending is not None:
                yield pending
            pending = item
            continue
        if pending is not None:
            yield pending
            pending = None
        yield item
    if pending is not None:
        yield pending


def _l2_books(
    rows: Iterator[str], start: int, end: int, interval: int, depth: int, label: str
) -> Iterator[Item]:
    _header(next(rows, ""), L2_COLUMNS)
    slots = _Slots(start, end, interval)
    bids, asks = _Side(), _Side()
    snapshot = False  # inside a run of snapshot rows
    seen_snapshot = False
    last_exchange = last_local = -1
    book: Book | None = None  # the book as of the last row, once asked for
    for number, line in enumerate(rows, start=2):
        fields = line.rstrip("\r\n").split(",")
        if len(fields) != 8:
            raise CorruptFile(f"line {number}: expected 8 columns, got {len(fields)}")
        try:
            exchange_us, local_us = int(fields[2]), int(fields[3])
            price, amount = float(fields[6]), float(fields[7])
        except ValueError:
            raise CorruptFile(f"line {number}: not a number in {line.strip()[:80]!r}") from None
        is_snapshot = fields[4] == "true"
        for slot in slots.before(local_us):
            if last_local < 0:
                yield Unserved(
                    slot, slot + interval, f"before the file's first row ({_at(local_us)})"
                )
            elif not seen_snapshot:
                yield Unserved(
                    slot, slot + interval, "no full book yet (before the first snapshot)"
                )
            elif snapshot and is_snapshot:
                yield Unserved(slot, slot + interval, "the archive's snapshot was half written")
            else:
                if book is None:
                    book = _l2_book(bids, asks, depth, last_exchange, last_local)
                yield Served(slot, book, label)
        if slots.rest() is None:
            return  # every slot asked for is out: the rest of the file is not read
        if is_snapshot and not snapshot:
            bids.clear()
            asks.clear()
            seen_snapshot = True
        snapshot = is_snapshot
        side = bids if fields[5] == "bid" else asks if fields[5] == "ask" else None
        if side is None or amount < 0 or price <= 0:
            raise CorruptFile(f"line {number}: not a level: {line.strip()[:80]!r}")
        side.set(price, amount)
        last_exchange, last_local = exchange_us, local_us
        book = None
    yield from _after_last(slots, last_local)


def _snapshot_books(
    rows: Iterator[str], start: int, end: int, interval: int, label: str
) -> Iterator[Item]:
    columns = next(rows, "").rstrip("\r\n").split(",")
    if columns[:4] != ["exchange", "symbol", "timestamp", "local_timestamp"] or len(columns) < 8:
        raise CorruptFile(f"line 1: not a book_snapshot header: {','.join(columns)[:80]!r}")
    ask_at = [
        (columns.index(f"asks[{i}].price"), columns.index(f"asks[{i}].amount"))
        for i in range(_levels(columns, "asks"))
    ]
    bid_at = [
        (columns.index(f"bids[{i}].price"), columns.index(f"bids[{i}].amount"))
        for i in range(_levels(columns, "bids"))
    ]
    slots = _Slots(start, end, interval)
    book: Book | None = None
    last_local = -1
    for number, line in enumerate(rows, start=2):
        fields = line.rstrip("\r\n").split(",")
        if len(fields) != len(columns):
            raise CorruptFile(f"line {number}: expected {len(columns)} columns, got {len(fields)}")
        try:
            exchange_us, local_us = int(fields[2]), int(fields[3])
            bids, asks = _side(fields, bid_at), _side(fields, ask_at)
        except ValueError:
            raise CorruptFile(f"line {number}: not a number in {line.strip()[:80]!r}") from None
        for slot in slots.before(local_us):
            if book is None:
                yield Unserved(
                    slot, slot + interval, f"before the file's first row ({_at(local_us)})"
                )
            else:
                yield Served(slot, book, label)
        if slots.rest() is None:
            return
        book = Book(bids, asks, exchange_ts=exchange_us // 1000, received_ts=local_us // 1000)
        last_local = local_us
    yield from _after_last(slots, last_local)


def _levels(columns: list[str], side: str) -> int:
    count = 0
    while f"{side}[{count}].price" in columns:
        count += 1
    return count


def _side(fields: list[str], at: list[tuple[int, int]]) -> list[Level]:
    levels: list[Level] = []
    for price_at, amount_at in at:
        if fields[price_at] == "":
            break  # the book was shallower than the file's width
        levels.append((float(fields[price_at]), float(fields[amount_at])))
    return levels


def _after_last(slots: _Slots, last_local: int) -> Iterator[Item]:
    if (rest := slots.rest()) is not None:
        where = (
            "the file has no rows"
            if last_local < 0
            else f"after the file's last row ({_at(last_local)})"
        )
        yield Unserved(rest[0], rest[1], where)


class _Side:
    """One side's levels: sizes by price, and the prices kept sorted as they change (a
    row moves a few levels; sorting a thousand at every slot would cost more)."""

    def __init__(self) -> None:
        self.sizes: dict[float, float] = {}
        self.prices: list[float] = []  # ascending

    def set(self, price: float, amount: float) -> None:
        if amount == 0:
            if self.sizes.pop(price, None) is not None:
                del self.prices[bisect.bisect_left(self.prices, price)]
        else:
            if price not in self.sizes:
                bisect.insort(self.prices, price)
            self.sizes[price] = amount

    def clear(self) -> None:
        self.sizes.clear()
        self.prices.clear()

    def best_first(self, depth: int, highest: bool) -> list[Level]:
        sizes = self.sizes
        prices = self.prices[: -depth - 1 : -1] if highest else self.prices[:depth]
        return [(price, sizes[price]) for price in prices]


def _l2_book(bids: _Side, asks: _Side, depth: int, exchange_us: int, local_us: int) -> Book:
    return Book(
        bids=bids.best_first(depth, highest=True),
        asks=asks.best_first(depth, highest=False),
        exchange_ts=exchange_us // 1000,
        received_ts=local_us // 1000,
    )


def _header(line: str, expected: tuple[str, ...]) -> None:
    columns = tuple(line.rstrip("\r\n").split(","))
    if columns != expected:
        raise CorruptFile(
            f"line 1: expected the header {','.join(expected)}, got {line.strip()[:80]!r}"
        )


def _at(us: int) -> str:
    return iso(us // 1000)
