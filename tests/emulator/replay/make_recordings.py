"""Make the replay recordings in tests/data/recordings/ from the recorded Binance
sessions (nkaz001/hftbacktest examples, MIT; see /work/shared/data/binance/README.md).

    python -m tests.emulator.replay.make_recordings RAW_DIR [--seconds 125] [--out DIR]

Each raw file is `<receive ns> <JSON>` a line: one REST `/depth?limit=1000` answer
near the start, then combined-stream diff frames. For each market the two symbols'
sessions are merged into one recording: the header, the two REST answers as `http`
entries, one `connect` per symbol's stream, then every frame received in the first
`--seconds` after the later snapshot, as `recv`, byte for byte (frames wholly older
than their symbol's snapshot are left out: the snapshot already holds them).

- `binance.jsonl.zst`: Binance spot, 2024-08-08 23:54 UTC, `@depth@100ms`;
- `binanceusdm.jsonl.zst`: Binance USD-M, 2024-07-18 23:57 UTC, `@depth@0ms`;
- `binancecoinm.jsonl.zst`: DERIVED from the USD-M session (no COIN-M recording
  exists): ids BTCUSD_PERP/ETHUSD_PERP, sizes converted to contracts of 100 USD
  (BTC) or 10 USD (ETH) at each level's price, rounded, never below 1; prices,
  update ids and timing unchanged. Its header says `"derived": true`.
"""

import argparse
import io
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import zstandard

OUT = Path(__file__).resolve().parents[2] / "data" / "recordings"
SOURCE = "nkaz001/hftbacktest examples (MIT, Copyright (c) 2022 nkaz001)"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MARKETS: dict[str, dict[str, dict[str, Any]]] = {
    "spot": {
        "BTCUSDT": {"base": "BTC", "quote": "USDT", "tick": "0.01", "lot": "0.00001"},
        "ETHUSDT": {"base": "ETH", "quote": "USDT", "tick": "0.01", "lot": "0.0001"},
    },
    "usdm": {
        "BTCUSDT": {"base": "BTC", "quote": "USDT", "tick": "0.10", "lot": "0.001"},
        "ETHUSDT": {"base": "ETH", "quote": "USDT", "tick": "0.01", "lot": "0.001"},
    },
    "coinm": {
        "BTCUSD_PERP": {
            "base": "BTC",
            "quote": "USD",
            "tick": "0.1",
            "lot": "1",
            "contract_size": 100,
        },
        "ETHUSD_PERP": {
            "base": "ETH",
            "quote": "USD",
            "tick": "0.01",
            "lot": "1",
            "contract_size": 10,
        },
    },
}
REST = {
    "spot": "https://api.binance.com/api/v3/depth",
    "usdm": "https://fapi.binance.com/fapi/v1/depth",
}
WS = {"spot": "wss://stream.binance.com:9443/stream", "usdm": "wss://fstream.binance.com/stream"}


def _session(path: Path) -> tuple[tuple[float, str], list[tuple[float, str, dict[str, Any]]]]:
    """(the REST snapshot (ts, body), [(ts, frame text, frame data)]) of one raw file."""
    snapshot: tuple[float, str] | None = None
    frames = []
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as stream:
        for line in io.TextIOWrapper(stream, encoding="utf-8"):
            stamp, _, text = line.rstrip("\n").partition(" ")
            ts = int(stamp) / 1e9
            if '"lastUpdateId"' in text[:40]:
                snapshot = (ts, text)
            else:
                frames.append((ts, text, json.loads(text)["data"]))
    if snapshot is None:
        raise ValueError(f"{path}: no REST snapshot line")
    return snapshot, frames


def _market(raw: Path, market: str, day: str, seconds: float) -> tuple[dict[str, Any], list[Any]]:
    """(the header, the entries after it) for `market` ("spot"/"usdm") on `day`."""
    sessions = {s: _session(raw / f"{market}_{s.lower()}_{day}.depth.txt.zst") for s in SYMBOLS}
    start = max(snapshot[0] for snapshot, _ in sessions.values())
    entries: list[dict[str, Any]] = []
    recv: list[dict[str, Any]] = []
    for symbol, ((ts, body), frames) in sessions.items():
        last_id = json.loads(body)["lastUpdateId"]
        url = f"{REST[market]}?symbol={symbol}&limit=1000"
        entries.append({"t": "http", "ts": ts, "url": url, "data": body})
        stream = f"{symbol.lower()}@depth@{'100ms' if market == 'spot' else '0ms'}"
        entries.append(
            {"t": "connect", "conn": symbol, "ts": ts, "data": f"{WS[market]}?streams={stream}"}
        )
        for at, text, data in frames:
            if data["u"] > last_id and at <= start + seconds:
                recv.append({"t": "recv", "conn": symbol, "ts": at, "data": text})
    recv.sort(key=lambda entry: entry["ts"])
    header = {
        "t": "header",
        "exchange": "BINANCE" if market == "spot" else "BINANCE_FUTURES",
        "config": {"l2_book": list(SYMBOLS)},
        "markets": MARKETS[market],
        "source": f"{SOURCE}: {market}_<symbol>_{day}.depth.txt.zst",
        "derived": False,
    }
    return header, entries + recv


def _contracts(size: str, price: str, contract_size: int) -> str:
    if Decimal(size) == 0:
        return "0"
    value = Decimal(size) * Decimal(price) / contract_size
    return str(max(1, int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))))


def _coinm_levels(levels: list[list[str]], contract_size: int) -> list[list[str]]:
    return [[price, _contracts(size, price, contract_size)] for price, size in levels]


def _coinm(
    header: dict[str, Any], entries: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[Any]]:
    """The USD-M recording as COIN-M would show it (see the module doc)."""
    ids = {s: s.replace("USDT", "USD_PERP") for s in SYMBOLS}
    sizes = {s: MARKETS["coinm"][ids[s]]["contract_size"] for s in SYMBOLS}
    out: list[dict[str, Any]] = []
    for entry in entries:
        symbol = (
            entry["conn"] if "conn" in entry else entry["url"].split("symbol=")[1].split("&")[0]
        )
        new_id, size = ids[symbol], sizes[symbol]
        if entry["t"] == "http":
            body = json.loads(entry["data"])
            answer = {
                "lastUpdateId": body["lastUpdateId"],
                "E": body["E"],
                "T": body["T"],
                "symbol": new_id,
                "pair": new_id.split("_")[0],
                "bids": _coinm_levels(body["bids"], size),
                "asks": _coinm_levels(body["asks"], size),
            }
            url = f"https://dapi.binance.com/dapi/v1/depth?symbol={new_id}&limit=1000"
            out.append({**entry, "url": url, "data": json.dumps(answer, separators=(",", ":"))})
        elif entry["t"] == "connect":
            stream = f"{new_id.lower()}@depth@0ms"
            url = f"wss://dstream.binance.com/stream?streams={stream}"
            out.append({**entry, "conn": new_id, "data": url})
        else:
            data = json.loads(entry["data"])["data"]
            event = {
                "e": "depthUpdate",
                "E": data["E"],
                "T": data["T"],
                "s": new_id,
                "ps": new_id.split("_")[0],
                "U": data["U"],
                "u": data["u"],
                "pu": data["pu"],
                "b": _coinm_levels(data["b"], size),
                "a": _coinm_levels(data["a"], size),
            }
            frame = {"stream": f"{new_id.lower()}@depth@0ms", "data": event}
            out.append({**entry, "conn": new_id, "data": json.dumps(frame, separators=(",", ":"))})
    derived = {
        **header,
        "config": {"l2_book": list(ids.values())},
        "markets": MARKETS["coinm"],
        "derived": True,
        "derivation": "from the USD-M session: ids BTCUSD_PERP/ETHUSD_PERP, sizes as contracts"
        " (100 USD BTC, 10 USD ETH) at each level's price, rounded half up, at least 1",
    }
    return derived, out


def _write(path: Path, header: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    lines = [json.dumps(header)] + [json.dumps(entry) for entry in entries]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    print(f"{path}: {len(lines)} lines, {path.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator.replay.make_recordings")
    parser.add_argument("raw", type=Path, help="the raw/ directory of the Binance sessions")
    parser.add_argument("--seconds", type=float, default=125.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spot = _market(args.raw, "spot", "20240808", args.seconds)
    _write(args.out / "binance.jsonl.zst", *spot)
    usdm = _market(args.raw, "usdm", "20240718", args.seconds)
    _write(args.out / "binanceusdm.jsonl.zst", *usdm)
    _write(args.out / "binancecoinm.jsonl.zst", *_coinm(*usdm))


if __name__ == "__main__":
    main()
