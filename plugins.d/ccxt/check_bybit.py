"""Bybit v5 `orderbook.{depth}.{symbol}`: the update id `u` must count up by one.

Bybit numbers each frame of a book topic with `u`, consecutive per topic: a snapshot
(on subscribe, after a service restart with `u` = 1, or when too many levels moved)
sets it, and each delta must carry the previous `u` + 1 (Bybit's docs: "Update ID,
is always in sequence"; the SBE feed's rules spell out the same check). ccxt 4.5.90
(`pro/bybit.py` `handle_order_book`) applies every delta without looking at `u`, and
leaves the book's `nonce` empty, so a lost delta leaves a wrong book it never
notices: on a replay with one delta dropped obd stored wrong books in 27 of 84 slots.

This check keeps the last good `u` as the book's `nonce` (ccxt never sets it for
Bybit; obd reads it as the book's version) and names the symbol whose delta does
not follow it. A delta on a book with no `nonce` (none since the last gap, or one
ccxt built from deltas alone after obd threw the book away) fails too, until a
snapshot starts the count again.

The frame names the market by id (`BTCUSDT`); spot and linear books of one pair share
it, so among several candidates the one ccxt just stamped with the frame's `ts` is
taken, and none is checked if that still leaves more than one.
"""

from collections.abc import Mapping
from typing import Any

from obd.plugin import NotSynced

__all__ = ["check"]


def check(message: Any, books: Mapping[str, Any]) -> dict[str, Exception]:
    """{symbol: NotSynced} for a book delta whose `u` does not follow the book's."""
    if not isinstance(message, dict) or not str(message.get("topic", "")).startswith("orderbook."):
        return {}
    data = message.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("u"), int):
        return {}
    found = _book(books, str(data.get("s")), message.get("ts"))
    if found is None:
        return {}
    symbol, book = found
    update_id, last = data["u"], book.get("nonce")
    if message.get("type") == "snapshot":
        book["nonce"] = update_id
        return {}
    book["nonce"] = None  # stays empty (failing every delta) unless this one follows
    if last is None:
        return {symbol: NotSynced(f"bybit {symbol}: delta u={update_id} before any snapshot")}
    if update_id != last + 1:
        lost = f"{update_id - last - 1} update(s) lost" if update_id > last else "out of order"
        return {symbol: NotSynced(f"bybit {symbol}: update id {update_id} after {last}: {lost}")}
    book["nonce"] = update_id
    return {}


def _book(books: Mapping[str, Any], market_id: str, ts: Any) -> tuple[str, Any] | None:
    """The (symbol, ccxt book) a frame about `market_id` was just applied to."""
    candidates = [
        (symbol, book)
        for symbol, book in list(books.items())
        if symbol.split(":")[0].replace("/", "") == market_id
    ]
    if len(candidates) > 1:
        candidates = [(s, book) for s, book in candidates if book.get("timestamp") == ts]
    return candidates[0] if len(candidates) == 1 else None
