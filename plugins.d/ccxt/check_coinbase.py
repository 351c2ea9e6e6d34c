"""Coinbase Advanced Trade: a skipped `sequence_num` is a lost message.

Every message on a Coinbase websocket carries `sequence_num`, counted over the whole
connection from 0 (book updates of every product, subscription answers, heartbeats).
ccxt 4.5.90 (`pro/coinbase.py` `handle_order_book`) never reads it: a lost `level2`
update leaves its book wrong for good, and obd would store it. A jump means one or
more messages never arrived, and nothing says which product they were about, so
every book on the connection is proven unreliable and resyncs (a fresh `snapshot`
comes with the new subscribe), except a book the message itself rebuilt from a
`snapshot`. A number that goes back is a new connection: ccxt
keeps one client per URL, and numbering restarts at 0 on each.

`check` sees a decoded frame and ccxt's books, not the connection, so the last number
is kept per books mapping: one ccxt exchange instance, whose one Coinbase connection
all its books share.
"""

from collections.abc import Mapping
from typing import Any

from obd.plugin import NotSynced

__all__ = ["check"]


class _Connection:
    """The last `sequence_num` seen for one ccxt instance's books."""

    def __init__(self, books: Mapping[str, Any]) -> None:
        self.books = books  # held so that its id, the key, is never reused
        self.last: int | None = None


_connections: dict[int, _Connection] = {}


def check(message: Any, books: Mapping[str, Any]) -> dict[str, Exception]:
    """{symbol: NotSynced} for every book on the connection when `message` shows that
    messages were skipped; {} otherwise."""
    number = message.get("sequence_num") if isinstance(message, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        return {}
    connection = _connections.get(id(books))
    if connection is None or connection.books is not books:
        connection = _connections[id(books)] = _Connection(books)
    last, connection.last = connection.last, number
    if last is None or number <= last or number == last + 1:
        return {}
    lost = number - last - 1
    why = f"coinbase skipped {lost} message(s) (sequence_num {last} then {number}); resyncing"
    fresh = _snapshots(message)  # books this very message rebuilt whole are right
    return {symbol: NotSynced(why) for symbol in books if symbol.replace("/", "-") not in fresh}


def _snapshots(message: dict[str, Any]) -> set[str]:
    """Product ids ("BTC-USD") of the `snapshot` events in a message."""
    events = message.get("events")
    return {
        str(event.get("product_id"))
        for event in (events if isinstance(events, list) else [])
        if isinstance(event, dict) and event.get("type") == "snapshot"
    }
