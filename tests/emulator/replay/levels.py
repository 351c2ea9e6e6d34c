"""A book side kept from wire strings: levels keyed by exact decimal price, sorted,
each remembering the strings the exchange sent (so what is served is what came in)."""

import bisect
from decimal import Decimal

__all__ = ["Levels", "Side"]


class Side:
    """One side of a book. Bids iterate highest first, asks lowest first."""

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self._keys: list[Decimal] = []  # ascending (negated prices for bids)
        self._levels: dict[Decimal, tuple[str, str]] = {}  # key -> (price, size) as sent

    def __len__(self) -> int:
        return len(self._keys)

    def set(self, price: str, size: str) -> None:
        """Set a level from the wire; a zero size removes it."""
        key = -Decimal(price) if self.descending else Decimal(price)
        if Decimal(size) == 0:
            if self._levels.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]
            return
        if key not in self._levels:
            bisect.insort(self._keys, key)
        self._levels[key] = (price, size)

    def clear(self) -> None:
        self._keys.clear()
        self._levels.clear()

    def top(self, depth: int | None = None) -> list[tuple[str, str]]:
        """The best `depth` levels (all if None), best first."""
        keys = self._keys if depth is None else self._keys[:depth]
        return [self._levels[key] for key in keys]


class Levels:
    """Both sides of a book."""

    def __init__(self) -> None:
        self.bids = Side(descending=True)
        self.asks = Side(descending=False)

    def reset(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        """Replace the whole book (a snapshot)."""
        self.bids.clear()
        self.asks.clear()
        self.update(bids, asks)

    def update(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        """Apply `[price, size, ...]` changes (size "0" removes a level)."""
        for price, size, *_ in bids:
            self.bids.set(price, size)
        for price, size, *_ in asks:
            self.asks.set(price, size)
