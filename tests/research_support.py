"""Database files for research and export tests, written by obd's own writer functions."""

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

from obd.model import Book
from obd.storage import coins, schema
from obd.storage.connect import open_writer
from obd.storage.writer import SnapshotIn, insert_snapshot

DATA = Path(__file__).resolve().parent / "data"


def real_books() -> list[tuple[list[tuple[float, float]], list[tuple[float, float]]]]:
    """The 198 real Binance books of tests/data (100 levels a side)."""
    with gzip.open(DATA / "binance_depth100_every15.ndjson.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    return [([tuple(x) for x in r["bids"]], [tuple(x) for x in r["asks"]]) for r in rows]


def build(
    path: Path,
    slots: Iterable[int],
    *,
    exchange: str = "sim",
    symbol: str = "BTC/USDT",
    interval_ms: int = 1_000,
) -> None:
    """One series with a book at each slot (real books, cycled); exchange_ts = ts - 7."""
    books = real_books()
    conn = open_writer(path)
    try:
        schema.migrate(conn, 0)
        with conn:
            request = coins.CoinRequest(exchange, symbol, interval_ms, "1s", 100, False)
            coin, _ = coins.add_coin(conn, request, now=0)
            for i, ts in enumerate(slots):
                bids, asks = books[i % len(books)]
                book = Book(bids=bids, asks=asks, exchange_ts=ts - 7 if i % 5 else None)
                insert_snapshot(conn, SnapshotIn(coin, ts, book, ts + 3, "rest"))
    finally:
        conn.close()
