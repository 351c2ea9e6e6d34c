"""Make the OKX replay recording from the real Binance spot sessions in shared data.

    python -m tests.emulator.replay.make_okx [--raw DIR] [--out FILE] [--seconds 115]

OKX frames cannot be had here (no network), so this re-expresses recorded Binance
traffic in OKX v5's `books` wire format, change for change:

- each Binance spot book (REST snapshot, then the `@depth@100ms` diffs, with Binance's
  own sequencing rules) is rebuilt exactly, with Decimal sizes;
- prices go onto OKX's tick (BTC-USDT 0.1, ETH-USDT 0.01): a bid at the tick below, an
  ask at the tick above, sizes summed, so the book never crosses; the orders field is
  the number of Binance levels in the tick; strings are written as OKX writes them
  (no trailing zeros: "61837.6", "0.0001");
- the channel keeps the top 400 levels a side: each Binance diff becomes one `update`
  frame holding every level of the top 400 that changed, and a size "0" for each level
  that left it (removed, or pushed out), so a client that applies the frames holds
  exactly the top 400. A diff that changes nothing there makes no frame;
- seqId is the diff's Binance final update id `u`, prevSeqId the previous frame's seqId
  (-1 on the snapshot), `ts` its event time E, the checksum OKX's CRC32 over the top 25;
  the `recv` time is the recorder's receive time of the Binance frame.

The recording opens with the REST answers a session has (SPOT instruments, both books,
server time), the connection, the subscribe and its two acks, then one snapshot per
instrument and the updates of both, interleaved by receive time. It is deterministic:
running it again gives the same bytes.
"""

import argparse
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import zstandard

from tests.emulator.replay.okx_wire import LEVELS, WireBook, WireLevel, book_frame

_ROOT = Path(__file__).resolve().parents[3]
RAW = _ROOT.parent / "shared" / "data" / "binance" / "raw"
OUT = _ROOT / "tests" / "data" / "recordings" / "okx_btc_eth_usdt.jsonl.zst"
# instId -> (Binance raw file, OKX tick size, lot size, min size)
INSTRUMENTS = {
    "BTC-USDT": ("spot_btcusdt_20240808.depth.txt.zst", "0.1", "0.00000001", "0.00001"),
    "ETH-USDT": ("spot_ethusdt_20240808.depth.txt.zst", "0.01", "0.000001", "0.0001"),
}
LEAD_S = 30.0  # start this long after the Binance REST snapshot (both sessions have begun)
WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
REST = "https://www.okx.com/api/v5"
CONN_ID = "6f1c2a0b"


def text(value: Decimal) -> str:
    """A decimal as OKX writes it: plain digits, no trailing zeros."""
    return format(value.normalize(), "f")


class Source:
    """One Binance spot book, re-expressed on OKX's tick and 400-level window."""

    def __init__(self, inst_id: str, raw: Path) -> None:
        self.inst_id = inst_id
        _, tick, _, _ = INSTRUMENTS[inst_id]
        self.tick = Decimal(tick)
        self.lines = _read(raw / INSTRUMENTS[inst_id][0])
        self.binance: dict[str, dict[Decimal, Decimal]] = {"b": {}, "a": {}}
        self.ticks: dict[str, dict[Decimal, list[Decimal | int]]] = {"b": {}, "a": {}}
        self.last_id = 0
        self.ts_ms = 0

    def bucket(self, side: str, price: Decimal) -> Decimal:
        steps = price / self.tick
        whole = steps.to_integral_value("ROUND_FLOOR" if side == "b" else "ROUND_CEILING")
        return whole * self.tick

    def set(self, side: str, price: Decimal, size: Decimal) -> None:
        old = self.binance[side].pop(price, Decimal(0))
        if size:
            self.binance[side][price] = size
        key = self.bucket(side, price)
        total, count = self.ticks[side].get(key, [Decimal(0), 0])
        total = Decimal(total) + size - old
        count = int(count) + (size != 0) - (old != 0)
        if count:
            self.ticks[side][key] = [total, count]
        else:
            self.ticks[side].pop(key, None)

    def window(self, side: str) -> dict[Decimal, WireLevel]:
        """The top 400 ticks of one side as OKX strings."""
        keys = sorted(self.ticks[side], reverse=side == "b")[:LEVELS]
        out = {}
        for key in keys:
            total, count = self.ticks[side][key]
            out[key] = (text(key), text(Decimal(total)), str(count))
        return out

    def events(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """The REST snapshot's receive time first (the book then seeded from it), then
        (receive ns, diff) for every diff after it, buffered ones included, as Binance
        says: drop those with `u <= lastUpdateId`."""
        buffered: list[tuple[int, dict[str, Any]]] = []
        for ns, raw in self.lines:
            if "lastUpdateId" in raw:
                for side, key in (("b", "bids"), ("a", "asks")):
                    for price, size in raw[key]:
                        self.set(side, Decimal(price), Decimal(size))
                self.last_id = raw["lastUpdateId"]
                yield ns, {}
                yield from ((n, d) for n, d in buffered if d["u"] > self.last_id)
            elif not self.last_id:
                buffered.append((ns, raw["data"]))
            elif raw["data"]["u"] > self.last_id:
                yield ns, raw["data"]

    def apply(self, diff: dict[str, Any]) -> tuple[list[WireLevel], list[WireLevel]] | None:
        """Apply a diff; the OKX update levels (bids, asks) it makes, None if none."""
        if diff["U"] > self.last_id + 1:  # the sessions have none: a broken input
            raise ValueError(f"{self.inst_id}: Binance sequence gap at U={diff['U']}")
        before = {side: self.window(side) for side in "ba"}
        for side in "ba":
            for price, size in diff[side]:
                self.set(side, Decimal(price), Decimal(size))
        self.last_id, self.ts_ms = diff["u"], diff["E"]
        changed = []
        for side in "ba":
            after = self.window(side)
            levels = [level for key, level in after.items() if before[side].get(key) != level]
            levels += [(p, "0", "0") for key, (p, _, _) in before[side].items() if key not in after]
            levels.sort(key=lambda level: Decimal(level[0]), reverse=side == "b")
            changed.append(levels)
        return (changed[0], changed[1]) if changed[0] or changed[1] else None

    def snapshot(self) -> tuple[list[WireLevel], list[WireLevel]]:
        return list(self.window("b").values()), list(self.window("a").values())


def _read(path: Path) -> list[tuple[int, dict[str, Any]]]:
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
        lines = io.TextIOWrapper(stream, encoding="utf-8")
        return [(int(ns), json.loads(body)) for ns, body in (ln.split(" ", 1) for ln in lines)]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _line(entry: dict[str, Any]) -> str:
    return _compact(entry) + "\n"


def _instruments() -> str:
    rows = []
    for inst_id, (_, tick, lot, minimum) in INSTRUMENTS.items():
        base, quote = inst_id.split("-")
        rows.append(
            {
                "alias": "", "baseCcy": base, "category": "1", "ctMult": "", "ctType": "",
                "ctVal": "", "ctValCcy": "", "expTime": "", "instFamily": "",
                "instId": inst_id, "instType": "SPOT", "lever": "10",
                "listTime": "1548133413000", "lotSz": lot, "maxLmtSz": "9999999999",
                "maxMktSz": "1000000", "minSz": minimum, "optType": "", "quoteCcy": quote,
                "settleCcy": "", "state": "live", "stk": "", "tickSz": tick, "uly": "",
            }
        )  # fmt: skip
    return _compact({"code": "0", "data": rows, "msg": ""})


def _rest_book(bids: list[WireLevel], asks: list[WireLevel], ts_ms: int) -> str:
    data = {
        "asks": [[p, s, "0", n] for p, s, n in asks],
        "bids": [[p, s, "0", n] for p, s, n in bids],
        "ts": str(ts_ms),
    }
    return _compact({"code": "0", "msg": "", "data": [data]})


class Update(NamedTuple):
    ns: int  # the Binance frame's receive time
    inst_id: str
    bids: list[WireLevel]
    asks: list[WireLevel]
    seq: int  # Binance `u`
    ts_ms: int  # Binance `E`


class Start(NamedTuple):
    inst_id: str
    bids: list[WireLevel]
    asks: list[WireLevel]
    seq: int
    ts_ms: int


def make(raw: Path, out: Path, seconds: float) -> int:
    """Write the recording; returns the number of lines."""
    sources = [Source(inst_id, raw) for inst_id in INSTRUMENTS]
    streams = {s.inst_id: s.events() for s in sources}
    rest_ns = max(next(streams[s.inst_id])[0] for s in sources)  # the REST snapshots
    start_ns = rest_ns + int(LEAD_S * 1e9)
    end_ns = start_ns + int(seconds * 1e9)
    starts: list[Start] = []
    updates: list[Update] = []
    for source in sources:
        start: Start | None = None
        for ns, diff in streams[source.inst_id]:
            if ns >= end_ns:
                break
            if ns >= start_ns and start is None:
                start = Start(source.inst_id, *source.snapshot(), source.last_id, source.ts_ms)
            levels = source.apply(diff)
            if start is not None and levels is not None:
                updates.append(Update(ns, source.inst_id, *levels, diff["u"], diff["E"]))
        assert start is not None, f"{source.inst_id}: the session ends before the window"
        starts.append(start)
    updates.sort(key=lambda u: (u.ns, u.inst_id))
    lines = _opening(starts, start_ns / 1e9) + _frames(starts, updates)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(zstandard.ZstdCompressor(level=19).compress("".join(lines).encode()))
    return len(lines)


def _opening(starts: list[Start], t0: float) -> list[str]:
    """Header, REST answers, the connection, the subscribe and its acks."""
    header = {
        "t": "header",
        "exchange": "OKX",
        "config": {"l2_book": list(INSTRUMENTS)},
        "derived": True,
        "derivation": "OKX v5 `books` frames re-expressed from recorded Binance spot sessions "
        "(BTCUSDT, ETHUSDT, 2024-08-08) by tests/emulator/replay/make_okx.py: the price and "
        "size changes and their timing are Binance's; the wire format, symbols, sequence "
        "numbers, checksums and precisions are OKX's",
        "source": "nkaz001/hftbacktest examples: raw/spot_{btc,eth}usdt_20240808.depth.txt.zst",
        "licence": "MIT, Copyright (c) 2022 nkaz001",
    }
    entries: list[dict[str, Any]] = [header]
    instruments = _instruments()
    entries.append({"t": "http", "ts": t0 - 1.0, "url": f"{REST}/public/instruments?instType=SPOT",
                    "data": instruments})  # fmt: skip
    server_time = _compact({"code": "0", "data": [{"ts": str(int((t0 - 0.9) * 1000))}], "msg": ""})
    entries.append({"t": "http", "ts": t0 - 0.9, "url": f"{REST}/public/time", "data": server_time})
    for start in starts:
        url = f"{REST}/market/books?instId={start.inst_id}&sz=100"
        body = _rest_book(start.bids[:100], start.asks[:100], start.ts_ms)
        entries.append({"t": "http", "ts": t0 - 0.8, "url": url, "data": body})
    entries.append({"t": "connect", "conn": "1", "ts": t0 - 0.3, "data": WS_URL})
    args = [{"channel": "books", "instId": start.inst_id} for start in starts]
    subscribe = _compact({"op": "subscribe", "args": args})
    entries.append({"t": "send", "conn": "1", "ts": t0 - 0.2, "data": subscribe})
    for i, arg in enumerate(args):
        ack = _compact({"event": "subscribe", "arg": arg, "connId": CONN_ID})
        entries.append({"t": "recv", "conn": "1", "ts": t0 - 0.1 + i / 1e4, "data": ack})
    return [_line(entry) for entry in entries]


def _frames(starts: list[Start], updates: list[Update]) -> list[str]:
    """The snapshots, then the updates with the checksum of the book each leaves."""
    books: dict[str, WireBook] = {}
    lines = []
    for i, start in enumerate(starts):
        book = books[start.inst_id] = WireBook()
        book.apply(_data(start.bids, start.asks, start.seq, start.ts_ms), snapshot=True)
        frame = book_frame(start.inst_id, "snapshot", start.bids, start.asks, start.ts_ms,
                           book.checksum(), -1, start.seq)  # fmt: skip
        ts = (updates[0].ns / 1e9 if updates else 0) - 0.05 + i / 1e4
        lines.append(_line({"t": "recv", "conn": "1", "ts": ts, "data": frame}))
    for update in updates:
        book = books[update.inst_id]
        previous = book.seq
        assert previous is not None
        book.apply(_data(update.bids, update.asks, update.seq, update.ts_ms), snapshot=False)
        frame = book_frame(update.inst_id, "update", update.bids, update.asks, update.ts_ms,
                           book.checksum(), previous, update.seq)  # fmt: skip
        lines.append(_line({"t": "recv", "conn": "1", "ts": update.ns / 1e9, "data": frame}))
    return lines


def _data(bids: list[WireLevel], asks: list[WireLevel], seq: int, ts_ms: int) -> dict[str, Any]:
    return {
        "bids": [[p, s, "0", n] for p, s, n in bids],
        "asks": [[p, s, "0", n] for p, s, n in asks],
        "seqId": seq,
        "ts": ts_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", type=Path, default=RAW, help="the Binance raw/ folder")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seconds", type=float, default=115.0)
    args = parser.parse_args()
    count = make(args.raw, args.out, args.seconds)
    print(f"{args.out}: {count} lines, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
