"""Make tests/data/recordings/kraken.jsonl.zst: a Kraken WebSocket v2 `book` session
DERIVED from the recorded Binance spot sessions (nkaz001/hftbacktest examples, MIT;
see /work/shared/data/binance/README.md), since no Kraken recording exists.

    python -m tests.emulator.replay.make_kraken RAW_DIR [--seconds 125] [--out FILE]

For BTCUSDT and ETHUSDT (2024-08-08 23:54 UTC) the full Binance book is rebuilt from
the session's REST snapshot and every diff after it (Binance's own sequencing). Each
Binance diff that changes the top `DEPTH` levels becomes one Kraken `update` frame
carrying exactly those changes, as Kraken sends them to a depth-`DEPTH` subscriber: a
level that changed or entered the top, a zero size for a level deleted from it (a
level merely pushed out gets none: the client truncates), Kraken's CRC32 of the top
10, and the diff's event time as the timestamp. Symbols become Kraken's (`BTC/USD`,
`ETH/USD`); prices keep Binance's 0.01 grid (so `pair_decimals` is 2 for both, where
Kraken's real BTC/USD has 1: no level is merged or invented) and sizes are written
with Kraken's 8 lot decimals. Timing is the Binance receive time of each diff.

The recording holds what a session would: `http` answers for `load_markets`
(`Assets`, `AssetPairs`) and `Depth`, one connection to `wss://ws.kraken.com/v2` with
its status frame, the subscribe request and its acks, the two snapshots, the updates,
and a heartbeat after each quiet second. Its header says it is derived.
"""

import argparse
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import zstandard

from tests.emulator.replay import kraken_wire as wire
from tests.emulator.replay.levels import Levels

OUT = Path(__file__).resolve().parents[2] / "data" / "recordings" / "kraken.jsonl.zst"
SOURCE = "nkaz001/hftbacktest examples (MIT, Copyright (c) 2022 nkaz001)"
DEPTH = 10  # the subscription depth recorded (frames are byte for byte for this depth)
REST = "https://api.kraken.com/0/public"
# Binance symbol -> Kraken's listing of the pair it stands for (AssetPairs fields)
PAIRS: dict[str, dict[str, Any]] = {
    "BTCUSDT": {"id": "XXBTZUSD", "symbol": "BTC/USD", "wsname": "XBT/USD",
                "altname": "XBTUSD", "base": "XXBT", "quote": "ZUSD", "ordermin": "0.0001"},
    "ETHUSDT": {"id": "XETHZUSD", "symbol": "ETH/USD", "wsname": "ETH/USD",
                "altname": "ETHUSD", "base": "XETH", "quote": "ZUSD", "ordermin": "0.002"},
}  # fmt: skip
PRICE_DECIMALS, SIZE_DECIMALS = 2, 8
QUIET_S = 1.0  # Kraken sends a heartbeat after this long without a frame


def price_text(price: str) -> str:
    value = Decimal(price)
    text = f"{value:.{PRICE_DECIMALS}f}"
    if Decimal(text) != value:
        raise ValueError(f"price {price} is off the {PRICE_DECIMALS}-decimal grid")
    return text


def size_text(size: str) -> str:
    value = Decimal(size)
    text = f"{value:.{SIZE_DECIMALS}f}"
    if Decimal(text) != value:
        raise ValueError(f"size {size} has more than {SIZE_DECIMALS} decimals")
    return text


def _session(path: Path) -> tuple[float, dict[str, Any], list[tuple[float, dict[str, Any]]]]:
    """(REST snapshot receive time, its body, [(receive time s, diff event)])."""
    snapshot: tuple[float, dict[str, Any]] | None = None
    diffs = []
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
        for line in io.TextIOWrapper(stream, encoding="utf-8"):
            stamp, _, text = line.rstrip("\n").partition(" ")
            if '"lastUpdateId"' in text[:40]:
                snapshot = (int(stamp) / 1e9, json.loads(text))
            else:
                diffs.append((int(stamp) / 1e9, json.loads(text)["data"]))
    if snapshot is None:
        raise ValueError(f"{path}: no REST snapshot line")
    return snapshot[0], snapshot[1], diffs


class _Book:
    """One symbol: the full Binance book, and the top `DEPTH` a Kraken client holds."""

    def __init__(self, symbol: str, body: dict[str, Any]) -> None:
        self.symbol = symbol
        self.full = Levels()
        self.full.reset(_kraken(body["bids"]), _kraken(body["asks"]))
        self.last_id = int(body["lastUpdateId"])
        self.view = self.top()

    def top(self) -> tuple[list[wire.Level], list[wire.Level]]:
        return self.full.bids.top(DEPTH), self.full.asks.top(DEPTH)

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply a Binance diff in sequence; False if it is older than the book."""
        if event["u"] <= self.last_id:
            return False
        if event["U"] > self.last_id + 1:
            raise ValueError(f"{self.symbol}: Binance sequence gap at U={event['U']}")
        self.full.update(_kraken(event["b"]), _kraken(event["a"]))
        self.last_id = event["u"]
        return True

    def changes(self) -> tuple[list[wire.Level], list[wire.Level]] | None:
        """What a depth-`DEPTH` Kraken subscriber is sent for the diff just applied."""
        new = self.top()
        sides = []
        for old_side, new_side, full in zip(
            self.view, new, (self.full.bids, self.full.asks), strict=True
        ):
            old, now = dict(old_side), dict(new_side)
            sent = [(p, q) for p, q in new_side if old.get(p) != q]
            left = [p for p in old if p not in now]
            if left:  # deleted from the book, or merely pushed below the depth?
                remaining = {price for price, _ in full.top()}
                sent += [(p, "0." + "0" * SIZE_DECIMALS) for p in left if p not in remaining]
            sides.append(sent)
        self.view = new
        if not sides[0] and not sides[1]:
            return None
        return sides[0], sides[1]


def _kraken(levels: list[list[str]]) -> list[list[str]]:
    return [[price_text(price), size_text(size)] for price, size, *_ in levels]


def _side_sorted(levels: list[wire.Level], descending: bool) -> list[wire.Level]:
    return sorted(levels, key=lambda level: Decimal(level[0]), reverse=descending)


def _listings() -> tuple[dict[str, Any], dict[str, Any]]:
    """(Assets, AssetPairs) answers for the two pairs, shaped as Kraken's."""
    assets = {
        "XXBT": {"aclass": "currency", "altname": "XBT", "decimals": 10,
                 "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"},
        "XETH": {"aclass": "currency", "altname": "ETH", "decimals": 10,
                 "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"},
        "ZUSD": {"aclass": "currency", "altname": "USD", "decimals": 4,
                 "display_decimals": 2, "collateral_value": 1.0, "status": "enabled"},
    }  # fmt: skip
    pairs = {}
    for pair in PAIRS.values():
        pairs[pair["id"]] = {
            "altname": pair["altname"], "wsname": pair["wsname"], "aclass_base": "currency",
            "base": pair["base"], "aclass_quote": "currency", "quote": pair["quote"],
            "lot": "unit", "cost_decimals": 5, "pair_decimals": PRICE_DECIMALS,
            "lot_decimals": SIZE_DECIMALS, "lot_multiplier": 1, "leverage_buy": [],
            "leverage_sell": [], "fees": [[0, 0.26], [50000, 0.24]],
            "fees_maker": [[0, 0.16], [50000, 0.14]], "fee_volume_currency": "ZUSD",
            "margin_call": 80, "margin_stop": 40, "ordermin": pair["ordermin"],
            "costmin": "0.5", "tick_size": "0.01", "status": "online",
        }  # fmt: skip
    return {"error": [], "result": assets}, {"error": [], "result": pairs}


def _depth(book: _Book, pair: dict[str, Any], unix_s: int) -> str:
    bids, asks = (side.top(100) for side in (book.full.bids, book.full.asks))
    result = {
        pair["id"]: {
            "asks": [[p, q, unix_s] for p, q in asks],
            "bids": [[p, q, unix_s] for p, q in bids],
        }
    }
    return json.dumps({"error": [], "result": result}, separators=(",", ":"))


def build(raw: Path, seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the header, the entries after it)."""
    sessions = {s: _session(raw / f"spot_{s.lower()}_20240808.depth.txt.zst") for s in PAIRS}
    start = max(at for at, _, _ in sessions.values()) + 1.0
    books = {s: _Book(PAIRS[s]["symbol"], body) for s, (_, body, _) in sessions.items()}
    diffs = sorted(
        ((at, s, event) for s, (_, _, events) in sessions.items() for at, event in events),
        key=lambda item: item[0],
    )
    for at, s, event in diffs:  # the books as they stood when the session subscribed
        if at < start:
            books[s].apply(event)
    for book in books.values():
        book.view = book.top()
    assets, pairs = _listings()
    entries: list[dict[str, Any]] = [
        {"t": "http", "ts": start - 0.9, "url": f"{REST}/Assets", "data": json.dumps(assets)},
        {"t": "http", "ts": start - 0.8, "url": f"{REST}/AssetPairs", "data": json.dumps(pairs)},
    ]
    for n, (s, book) in enumerate(books.items()):
        url = f"{REST}/Depth?pair={PAIRS[s]['id']}&count=100"
        body = _depth(book, PAIRS[s], int(start))
        entries.append({"t": "http", "ts": start - 0.7 + n / 10, "url": url, "data": body})
    symbols = [book.symbol for book in books.values()]
    entries += _opening(start, books)
    last = start
    for at, s, event in diffs:
        if at < start or at > start + seconds or not books[s].apply(event):
            continue
        while at - last > QUIET_S:
            last += QUIET_S
            entries.append(
                {"t": "recv", "conn": "1", "ts": last, "data": '{"channel":"heartbeat"}'}
            )
        changes = books[s].changes()
        if changes is None:
            continue
        bids, asks = _side_sorted(changes[0], True), _side_sorted(changes[1], False)
        top_bids, top_asks = books[s].view
        crc = wire.checksum(top_asks, top_bids)
        data = wire.frame("update", books[s].symbol, bids, asks, crc, int(event["E"]))
        entries.append({"t": "recv", "conn": "1", "ts": at, "data": data})
        last = at
    header = {
        "t": "header",
        "exchange": "KRAKEN",
        "config": {"l2_book": symbols, "depth": DEPTH},
        "markets": {p["symbol"]: {"id": p["id"]} for p in PAIRS.values()},
        "source": f"{SOURCE}: spot_<symbol>_20240808.depth.txt.zst",
        "licence": "MIT",
        "derived": True,
        "derivation": "Binance spot diffs re-expressed as Kraken WebSocket v2 book frames at"
        f" depth {DEPTH}: BTCUSDT -> BTC/USD, ETHUSDT -> ETH/USD, prices on Binance's 0.01"
        f" grid, sizes with {SIZE_DECIMALS} decimals, Kraken's CRC32 of the top 10,"
        " timestamps from Binance's event time, pace from its receive time",
    }
    return header, entries


def _opening(start: float, books: dict[str, _Book]) -> list[dict[str, Any]]:
    """Connect, status, subscribe, one ack a symbol and its snapshot."""
    symbols = [book.symbol for book in books.values()]
    status = {
        "channel": "status", "type": "update",
        "data": [{"version": "2.0.10", "system": "online", "api_version": "v2",
                  "connection_id": 11869713914442381321}],
    }  # fmt: skip
    request = {
        "method": "subscribe",
        "params": {"channel": "book", "symbol": symbols, "depth": DEPTH},
        "req_id": 1,
    }
    out: list[dict[str, Any]] = [
        {"t": "connect", "conn": "1", "ts": start - 0.3, "data": "wss://ws.kraken.com/v2"},
        {"t": "recv", "conn": "1", "ts": start - 0.25, "data": _compact(status)},
        {"t": "send", "conn": "1", "ts": start - 0.2, "data": _compact(request)},
    ]
    stamp = wire.timestamp((start - 0.15) * 1000)
    for n, book in enumerate(books.values()):
        ack = {
            "method": "subscribe",
            "req_id": 1,
            "result": {"channel": "book", "depth": DEPTH, "snapshot": True, "symbol": book.symbol},
            "success": True,
            "time_in": stamp,
            "time_out": stamp,
        }
        out.append({"t": "recv", "conn": "1", "ts": start - 0.15 + n / 100, "data": _compact(ack)})
    for n, book in enumerate(books.values()):
        bids, asks = book.view
        crc = wire.checksum(asks, bids)
        data = wire.frame("snapshot", book.symbol, bids, asks, crc, None)
        out.append({"t": "recv", "conn": "1", "ts": start - 0.1 + n / 100, "data": data})
    return out


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def write(path: Path, header: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    lines = [json.dumps(header)] + [json.dumps(entry) for entry in entries]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    print(f"{path}: {len(lines)} lines, {path.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator.replay.make_kraken")
    parser.add_argument("raw", type=Path, help="the raw/ directory of the Binance sessions")
    parser.add_argument("--seconds", type=float, default=125.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, *build(args.raw, args.seconds))


if __name__ == "__main__":
    main()
