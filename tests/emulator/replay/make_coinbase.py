"""Make `tests/data/recordings/coinbase.jsonl.zst`: a Coinbase Advanced Trade `level2`
session DERIVED from the recorded Binance spot session (nkaz001/hftbacktest examples,
MIT; see /work/shared/data/binance/README.md). No Coinbase recording exists here, so
the real Binance books and their real changes are re-expressed in Coinbase's wire
format, with Coinbase's ids, numbering, timestamps and precisions.

    python -m tests.emulator.replay.make_coinbase RAW_DIR [--seconds 120] [--out FILE]

What it does, for BTCUSDT -> BTC-USD and ETHUSDT -> ETH-USD (2024-08-08 23:54 UTC):
- each symbol's book is the session's REST `/depth?limit=1000` answer plus the diffs
  chained after it (`U <= lastUpdateId + 1 <= u`, then every later one), up to the
  later of the two answers' receive times: the recording starts there;
- one connection `c1`, as a recorder opens it: a subscribe to `level2` and one to
  `heartbeats` for both products; the answers as Coinbase gives them (a `snapshot`
  event per product, the whole book, then a `subscriptions` message), then every
  Binance diff frame of the next `--seconds` as one `l2_data` `update` message
  holding only the levels it really changed (a size equal to the one kept, or a
  removal of a level not in the book, is no change on Coinbase), and a `heartbeats`
  message each second; `sequence_num` counts every message on the connection from 0;
- only levels inside the first book's price range are kept (outside it Binance's
  REST answer never showed the book, and it keeps the file small): a diff outside
  is left out, so the recorded book is exactly its snapshot plus its updates;
- prices and sizes in Coinbase's shape (plain decimals, no trailing zeros: "61837.6",
  "0.0012"; a removal is "0"); `timestamp` is the Binance event time `E` with the
  receive time's sub-millisecond digits (nanoseconds, as Coinbase writes it), each
  update's `event_time` is `E` (microseconds); the snapshots, `subscriptions` and
  heartbeats are stamped on that clock too (receive time plus the median lead of
  `E` over it); `ts` is the real receive time;
- `http` entries a session has before it connects: the public products listing
  (the two products, fields as Coinbase serves them) and the server time.
"""

import argparse
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import zstandard

OUT = Path(__file__).resolve().parents[2] / "data" / "recordings" / "coinbase.jsonl.zst"
SOURCE = "nkaz001/hftbacktest examples (MIT, Copyright (c) 2022 nkaz001)"
PRODUCTS = {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD"}
REST = "https://api.coinbase.com"
WS = "wss://advanced-trade-ws.coinbase.com"
_SNAPSHOT_TIME = "1970-01-01T00:00:00Z"  # what Coinbase puts in a snapshot's event_time


def _plain(number: str) -> str:
    """Binance's "61837.64000000" as Coinbase writes it: "61837.64"; "0.00000000": "0"."""
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number or "0"


def _iso_ns(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def _iso_us(ms: int) -> str:
    return _iso_ns(ms * 1_000_000)[:-4] + "Z"


class _Session:
    """One Binance symbol's raw session: its REST answer, its diffs, its live book."""

    def __init__(self, path: Path) -> None:
        self.rest: tuple[int, dict[str, Any]] | None = None
        self.frames: list[tuple[int, dict[str, Any]]] = []
        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
            for line in io.TextIOWrapper(stream, encoding="utf-8"):
                stamp, _, text = line.rstrip("\n").partition(" ")
                body = json.loads(text)
                if "lastUpdateId" in body:
                    self.rest = (int(stamp), body)
                else:
                    self.frames.append((int(stamp), body["data"]))
        if self.rest is None:
            raise ValueError(f"{path}: no REST snapshot line")
        bids, asks = self.rest[1]["bids"], self.rest[1]["asks"]
        self.low, self.high = Decimal(bids[-1][0]), Decimal(asks[-1][0])
        # the kept book, price -> (price, size) as Coinbase writes them
        self.book: dict[str, dict[Decimal, tuple[str, str]]] = {"bid": {}, "offer": {}}
        self.changes({"b": bids, "a": asks})
        last = int(self.rest[1]["lastUpdateId"])
        self.frames = [(ns, data) for ns, data in self.frames if data["u"] > last]

    def changes(self, data: dict[str, Any]) -> list[tuple[str, str, str]]:
        """(side, price, size) of `data` that change the kept book, applied to it."""
        out = []
        for side, levels in (("bid", data["b"]), ("offer", data["a"])):
            kept = self.book[side]
            for price, size in levels:
                key = Decimal(price)
                if not self.low <= key <= self.high:
                    continue
                had = kept.get(key)
                if Decimal(size) == 0:
                    if had is None:
                        continue
                    del kept[key]
                elif had is not None and Decimal(had[1]) == Decimal(size):
                    continue
                else:
                    kept[key] = (_plain(price), _plain(size))
                out.append((side, _plain(price), _plain(size)))
        return out

    def levels(self, side: str) -> list[tuple[str, str]]:
        """One side of the kept book, best first."""
        return [self.book[side][k] for k in sorted(self.book[side], reverse=side == "bid")]


def _snapshot(product: str, session: _Session) -> dict[str, Any]:
    updates = [
        {"side": side, "event_time": _SNAPSHOT_TIME, "price_level": p, "new_quantity": q}
        for side in ("bid", "offer")
        for p, q in session.levels(side)
    ]
    return {"type": "snapshot", "product_id": product, "updates": updates}


def _product(product: str, price: str) -> dict[str, Any]:
    base, quote = product.split("-")
    names = {"BTC": "Bitcoin", "ETH": "Ethereum", "USD": "US Dollar"}
    return {
        "product_id": product,
        "price": price,
        "price_percentage_change_24h": "0",
        "volume_24h": "0",
        "volume_percentage_change_24h": "0",
        "base_increment": "0.00000001",
        "quote_increment": "0.01",
        "quote_min_size": "1",
        "quote_max_size": "150000000",
        "base_min_size": "0.00000001",
        "base_max_size": "3400" if base == "BTC" else "42000",
        "base_name": names[base],
        "quote_name": names[quote],
        "watched": False,
        "is_disabled": False,
        "new": False,
        "status": "online",
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "trading_disabled": False,
        "auction_mode": False,
        "product_type": "SPOT",
        "quote_currency_id": quote,
        "base_currency_id": base,
        "fcm_trading_session_details": None,
        "mid_market_price": "",
        "alias": "",
        "alias_to": [f"{base}-USDC"],
        "base_display_symbol": base,
        "quote_display_symbol": quote,
        "view_only": False,
        "price_increment": "0.01",
        "display_name": product,
        "product_venue": "CBE",
    }


class _Connection:
    """The recorded connection: numbers every message it receives."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.sequence = 0

    def send(self, ns: int, body: dict[str, Any]) -> None:
        self.entries.append({"t": "send", "conn": "c1", "ts": ns / 1e9, "data": _compact(body)})

    def recv(self, ns: int, channel: str, timestamp: str, events: list[Any]) -> None:
        message = {
            "channel": channel,
            "client_id": "",
            "timestamp": timestamp,
            "sequence_num": self.sequence,
            "events": events,
        }
        self.sequence += 1
        self.entries.append({"t": "recv", "conn": "c1", "ts": ns / 1e9, "data": _compact(message)})


def _compact(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def _clock_ns(sessions: Iterable[_Session]) -> int:
    """How far Binance's event times ran ahead of the recorder's clock (the median), so
    that messages made up here (snapshots, heartbeats) are stamped on the same clock
    as the updates, whose `timestamp` is the event time."""
    ahead = sorted(int(d["E"]) * 1_000_000 - ns for s in sessions for ns, d in s.frames)
    return ahead[len(ahead) // 2]


def build(raw: Path, seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the header, the entries after it)."""
    sessions = {
        product: _Session(raw / f"spot_{symbol.lower()}_20240808.depth.txt.zst")
        for symbol, product in PRODUCTS.items()
    }
    start_ns = max(s.rest[0] for s in sessions.values() if s.rest is not None)
    for session in sessions.values():  # diffs received before the start: in the snapshot
        while session.frames and session.frames[0][0] <= start_ns:
            session.changes(session.frames.pop(0)[1])
    mids = {p: s.levels("bid")[0][0] for p, s in sessions.items()}
    listing = {"products": [_product(p, mids[p]) for p in PRODUCTS.values()], "num_products": 2}
    http = [
        {
            "t": "http",
            "ts": (start_ns - 300_000_000) / 1e9,
            "url": f"{REST}/api/v3/brokerage/market/products",
            "data": _compact(listing),
        },
        {
            "t": "http",
            "ts": (start_ns - 200_000_000) / 1e9,
            "url": f"{REST}/api/v3/brokerage/time",
            "data": _compact(
                {
                    "iso": _iso_us(start_ns // 1_000_000)[:-4] + "Z",
                    "epochSeconds": str(start_ns // 10**9),
                    "epochMillis": str(start_ns // 10**6),
                }
            ),
        },
    ]
    conn = _Connection()
    conn.entries.append(
        {"t": "connect", "conn": "c1", "ts": (start_ns - 100_000_000) / 1e9, "data": WS}
    )
    products = list(PRODUCTS.values())
    conn.send(
        start_ns - 50_000_000, {"type": "subscribe", "product_ids": products, "channel": "level2"}
    )
    conn.send(
        start_ns - 40_000_000,
        {"type": "subscribe", "product_ids": products, "channel": "heartbeats"},
    )
    clock_ns = _clock_ns(sessions.values())
    stamp = _iso_ns(start_ns + clock_ns)
    for offset, (product, session) in enumerate(sessions.items()):
        conn.recv(start_ns + offset * 1000, "l2_data", stamp, [_snapshot(product, session)])
    subscribed = {"level2": products, "heartbeats": products}
    conn.recv(start_ns + 3000, "subscriptions", stamp, [{"subscriptions": subscribed}])
    frames = sorted(
        (ns, product, data)
        for product, session in sessions.items()
        for ns, data in session.frames
        if ns <= start_ns + seconds * 1e9
    )
    beat, counter = start_ns + 1_000_000_000, 0
    for ns, product, data in frames:
        while beat <= ns:
            counter += 1
            now = datetime.fromtimestamp((beat + clock_ns) / 1e9, UTC).strftime(
                "%Y-%m-%d %H:%M:%S.%f"
            )
            event = {"current_time": f"{now}000 +0000 UTC", "heartbeat_counter": str(counter)}
            conn.recv(beat, "heartbeats", _iso_ns(beat + clock_ns), [event])
            beat += 1_000_000_000
        changed = sessions[product].changes(data)
        if not changed:
            continue
        event_time = _iso_us(int(data["E"]))
        updates = [
            {"side": side, "event_time": event_time, "price_level": p, "new_quantity": q}
            for side, p, q in changed
        ]
        timestamp = _iso_ns(int(data["E"]) * 1_000_000 + ns % 1_000_000)
        conn.recv(
            ns,
            "l2_data",
            timestamp,
            [{"type": "update", "product_id": product, "updates": updates}],
        )
    header = {
        "t": "header",
        "exchange": "COINBASE",
        "config": {"l2_book": products},
        "source": f"{SOURCE}: spot_{{btcusdt,ethusdt}}_20240808.depth.txt.zst",
        "derived": True,
        "derivation": "Binance spot BTCUSDT/ETHUSDT books and diffs re-expressed as Coinbase"
        " Advanced Trade level2 (BTC-USD/ETH-USD): see tests/emulator/replay/make_coinbase.py",
    }
    return header, http + conn.entries


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator.replay.make_coinbase")
    parser.add_argument("raw", type=Path, help="the raw/ directory of the Binance sessions")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    header, entries = build(args.raw, args.seconds)
    lines = [json.dumps(header)] + [json.dumps(entry) for entry in entries]
    data = ("\n".join(lines) + "\n").encode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    print(f"{args.out}: {len(lines)} lines, {len(data)} bytes, {args.out.stat().st_size} zstd")


if __name__ == "__main__":
    main()
