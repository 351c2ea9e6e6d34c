"""Make `tests/data/recordings/bybit_spot.jsonl.zst`: a Bybit v5 spot session DERIVED
from the recorded Binance spot sessions (nkaz001/hftbacktest examples, MIT; see
/work/shared/data/binance/README.md). No Bybit recording exists here, so the frames
are what Bybit's `orderbook.200.{symbol}` topic would have sent for the same market:

    python -m tests.emulator.replay.make_bybit RAW_DIR [--seconds 125] [--out FILE]

- the full Binance book is rebuilt from each session's REST `/depth?limit=1000`
  answer and its `@depth@100ms` diffs (Binance's own sequencing rules);
- at the start a `snapshot` frame holds the top 200 levels a side; then each Binance
  diff becomes one `delta` frame holding exactly what changed in the top 200 (a level
  that left it is sent with size "0", one that entered it with its size), as Bybit
  keeps a depth-N topic; a diff that changed nothing there sends no frame;
- Bybit's precisions: prices with 2 decimals, sizes with 6 (BTC) or 5 (ETH)
  decimals (a legacy size finer than that is rounded half-even, never to zero);
- `u` counts up by one per frame of a topic from an arbitrary start; `seq` (the
  cross sequence) follows Binance's final update id plus a constant, so it rises with
  the same gaps; `ts` is Binance's event time moved to just before the recorded
  receive time, `cts` a few ms before `ts`; the receive times are the recorded ones;
- the session around the frames is what a recorder talking to Bybit would log: the
  REST time and spot instruments answers, one connection to the spot stream, its
  subscribe request and acknowledgement, and an application ping every 20 s.

Deterministic: the same input gives the same file, byte for byte.
"""

import argparse
import io
import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import zstandard

OUT = Path(__file__).resolve().parents[2] / "data" / "recordings" / "bybit_spot.jsonl.zst"
SOURCE = "nkaz001/hftbacktest examples (MIT, Copyright (c) 2022 nkaz001)"
DAY = "20240808"
DEPTH = 200  # the topic recorded: orderbook.200.{symbol}
PING_S = 20.0  # the recorder's application ping (Bybit drops a socket silent for 10 min)
LATENCY_MS = 20  # `ts` is this long before the recorded receive time
MATCH_MS = 3  # `cts` (matching engine time) is this long before `ts`
CONN_ID = "cqr3tn8mbo9mnj7c1fvg-4a5k"  # Bybit's per-connection id in its replies
REST = "https://api.bybit.com"
WS = "wss://stream.bybit.com/v5/public/spot"
# Per symbol: Bybit's filters (as /v5/market/instruments-info lists them), and the
# starting update id and cross sequence (arbitrary, of Bybit's magnitude).
MARKETS: dict[str, dict[str, Any]] = {
    "BTCUSDT": {
        "base": "BTC",
        "quote": "USDT",
        "tick": "0.01",
        "lot": "0.000001",
        "min_qty": "0.000048",
        "max_qty": "71.73956243",
        "u0": 41253118,
        "seq0": 36452018207,
    },
    "ETHUSDT": {
        "base": "ETH",
        "quote": "USDT",
        "tick": "0.01",
        "lot": "0.00001",
        "min_qty": "0.00062",
        "max_qty": "1229.2336343",
        "u0": 33870442,
        "seq0": 28903561114,
    },
}

Frame = tuple[float, dict[str, Any]]  # (recorded receive time, Binance diff data)
View = dict[str, str]  # price -> size, as Bybit prints them


def _session(path: Path) -> tuple[float, dict[str, Any], list[Frame]]:
    """(receive time of the REST snapshot, the snapshot, [diffs]) of one raw file."""
    snapshot: tuple[float, dict[str, Any]] | None = None
    frames: list[Frame] = []
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
        for line in io.TextIOWrapper(stream, encoding="utf-8"):
            stamp, _, text = line.rstrip("\n").partition(" ")
            if '"lastUpdateId"' in text[:40]:
                snapshot = (int(stamp) / 1e9, json.loads(text))
            else:
                frames.append((int(stamp) / 1e9, json.loads(text)["data"]))
    if snapshot is None:
        raise ValueError(f"{path}: no REST snapshot line")
    return snapshot[0], snapshot[1], frames


class _Book:
    """The full Binance book of one symbol, and its top `DEPTH` in Bybit's format."""

    def __init__(self, snapshot: dict[str, Any], tick: str, lot: str) -> None:
        self.bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
        self.last_id = int(snapshot["lastUpdateId"])
        self.synced = False
        self._tick, self._lot = Decimal(tick), Decimal(lot)

    def apply(self, diff: dict[str, Any]) -> bool:
        """Apply a diff by Binance's rules; False if it is older than the book."""
        if diff["u"] <= self.last_id:
            return False
        expected = self.last_id + 1
        if (not self.synced and not diff["U"] <= expected <= diff["u"]) or (
            self.synced and diff["U"] != expected
        ):
            raise ValueError(f"Binance sequence broken at U={diff['U']} (wanted {expected})")
        for side, changes in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, size in changes:
                if Decimal(size) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(size)
        self.last_id, self.synced = diff["u"], True
        return True

    def view(self) -> tuple[list[list[str]], list[list[str]]]:
        """The top `DEPTH` levels a side, best first, as Bybit prints them."""
        bids = sorted(self.bids, reverse=True)[:DEPTH]
        asks = sorted(self.asks)[:DEPTH]
        return (
            [[self._price(p), self._size(self.bids[p])] for p in bids],
            [[self._price(p), self._size(self.asks[p])] for p in asks],
        )

    def _price(self, price: Decimal) -> str:
        return str(price.quantize(self._tick))

    def _size(self, size: Decimal) -> str:
        rounded = size.quantize(self._lot, rounding=ROUND_HALF_EVEN)
        return str(max(rounded, self._lot))


def _changes(before: list[list[str]], after: list[list[str]]) -> list[list[str]]:
    """What turns side `before` into `after`: changed or new levels, and removed ones
    with size "0", in `after`'s order (then the removals, best first)."""
    old: View = dict((p, q) for p, q in before)
    new: View = dict((p, q) for p, q in after)
    changed = [[p, q] for p, q in after if old.get(p) != q]
    removed = [[p, "0"] for p, _ in before if p not in new]
    return changed + removed


def _frame(symbol: str, kind: str, ts_ms: int, data: dict[str, Any]) -> str:
    body = {"topic": f"orderbook.{DEPTH}.{symbol}", "type": kind, "ts": ts_ms, "data": data}
    body["cts"] = ts_ms - MATCH_MS
    return json.dumps(body, separators=(",", ":"))


def _symbol_frames(raw: Path, symbol: str, start: float, seconds: float) -> list[tuple[float, str]]:
    """(receive time, frame text) of one symbol: its snapshot at `start`, then deltas."""
    spec = MARKETS[symbol]
    _, snapshot, diffs = _session(raw / f"spot_{symbol.lower()}_{DAY}.depth.txt.zst")
    book = _Book(snapshot, spec["tick"], spec["lot"])
    pending = iter(diffs)
    frame = next(pending, None)
    while frame is not None and frame[0] <= start:  # the book as it stood at `start`
        book.apply(frame[1])
        frame = next(pending, None)
    # Binance's event time runs ahead of the recorder's clock: keep its spacing, but
    # put it just before the receive time.
    offset_ms = (diffs[0][1]["E"] - round(diffs[0][0] * 1000)) + LATENCY_MS
    u, seq0 = spec["u0"], spec["seq0"] - book.last_id
    bids, asks = book.view()
    first_ms = round(start * 1000) - LATENCY_MS
    data = {"s": symbol, "b": bids, "a": asks, "u": u, "seq": seq0 + book.last_id}
    out = [(start, _frame(symbol, "snapshot", first_ms, data))]
    while frame is not None and frame[0] <= start + seconds:
        at, diff = frame
        frame = next(pending, None)
        if not book.apply(diff):
            continue
        new_bids, new_asks = book.view()
        delta_b, delta_a = _changes(bids, new_bids), _changes(asks, new_asks)
        bids, asks = new_bids, new_asks
        if not delta_b and not delta_a:
            continue  # nothing changed in the top levels: Bybit sends nothing
        u += 1
        ts_ms = max(first_ms, diff["E"] - offset_ms)
        data = {"s": symbol, "b": delta_b, "a": delta_a, "u": u, "seq": seq0 + book.last_id}
        out.append((at, _frame(symbol, "delta", ts_ms, data)))
    return out


def _instruments(status: str = "Trading") -> dict[str, Any]:
    """The spot `list` of /v5/market/instruments-info for the recorded symbols."""
    return {
        "category": "spot",
        "list": [
            {
                "symbol": symbol,
                "baseCoin": spec["base"],
                "quoteCoin": spec["quote"],
                "innovation": "0",
                "status": status,
                "marginTrading": "utaOnly",
                "stTag": "0",
                "lotSizeFilter": {
                    "basePrecision": spec["lot"],
                    "quotePrecision": "0.00000001",
                    "minOrderQty": spec["min_qty"],
                    "maxOrderQty": spec["max_qty"],
                    "minOrderAmt": "1",
                    "maxOrderAmt": "4000000",
                },
                "priceFilter": {"tickSize": spec["tick"]},
                "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
            }
            for symbol, spec in MARKETS.items()
        ],
    }


def _rest(ts: float, result: dict[str, Any]) -> str:
    body = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}}
    body["time"] = round(ts * 1000)
    return json.dumps(body, separators=(",", ":"))


def _entries(raw: Path, seconds: float) -> list[dict[str, Any]]:
    starts = [_session(raw / f"spot_{s.lower()}_{DAY}.depth.txt.zst")[0] for s in MARKETS]
    start = round(max(starts), 3) + 0.5  # subscribed a little after both books are known
    ms = round(start * 1000)
    time_result = {"timeSecond": str(ms // 1000), "timeNano": str(ms * 1_000_000)}
    subscribe = {"op": "subscribe", "args": [f"orderbook.{DEPTH}.{s}" for s in MARKETS]}
    ack = {"success": True, "ret_msg": "", "conn_id": CONN_ID, "req_id": "1"}
    entries: list[dict[str, Any]] = [
        {
            "t": "http",
            "ts": start - 0.4,
            "url": f"{REST}/v5/market/time",
            "data": _rest(start - 0.4, time_result),
        },
        {
            "t": "http",
            "ts": start - 0.3,
            "url": f"{REST}/v5/market/instruments-info?category=spot",
            "data": _rest(start - 0.3, _instruments()),
        },
        {"t": "connect", "conn": "1", "ts": start - 0.2, "data": WS},
        {
            "t": "send",
            "conn": "1",
            "ts": start - 0.15,
            "data": json.dumps({**subscribe, "req_id": "1"}, separators=(",", ":")),
        },
        {
            "t": "recv",
            "conn": "1",
            "ts": start - 0.1,
            "data": json.dumps({**ack, "op": "subscribe"}, separators=(",", ":")),
        },
    ]
    frames = [f for symbol in MARKETS for f in _symbol_frames(raw, symbol, start, seconds)]
    for n in range(1, int(seconds // PING_S) + 1):  # the recorder's pings and their pongs
        at, req = start + n * PING_S, str(n + 1)
        ping = json.dumps({"req_id": req, "op": "ping"}, separators=(",", ":"))
        pong = {"success": True, "ret_msg": "pong", "conn_id": CONN_ID, "req_id": req}
        frames.append((at + 0.03, json.dumps({**pong, "op": "ping"}, separators=(",", ":"))))
        entries.append({"t": "send", "conn": "1", "ts": at, "data": ping})
    frames.sort(key=lambda frame: frame[0])
    events = entries[:5] + sorted(
        entries[5:] + [{"t": "recv", "conn": "1", "ts": at, "data": text} for at, text in frames],
        key=lambda entry: entry["ts"],
    )
    return events


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator.replay.make_bybit")
    parser.add_argument("raw", type=Path, help="the raw/ directory of the Binance sessions")
    parser.add_argument("--seconds", type=float, default=125.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    header = {
        "t": "header",
        "exchange": "BYBIT",
        "config": {"l2_book": list(MARKETS)},
        "channel": f"orderbook.{DEPTH}",
        "markets": {
            s: {k: v for k, v in m.items() if k not in ("u0", "seq0")} for s, m in MARKETS.items()
        },
        "source": f"{SOURCE}: spot_<symbol>_{DAY}.depth.txt.zst",
        "derived": True,
        "derivation": "Bybit orderbook.200 frames derived from the Binance spot diffs: see"
        " tests/emulator/replay/make_bybit.py",
    }
    lines = [json.dumps(header)] + [json.dumps(e) for e in _entries(args.raw, args.seconds)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    args.out.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    print(f"{args.out}: {len(lines)} lines, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
