"""Make the Hyperliquid replay recording from the shared Binance spot sessions.

    python -m tests.emulator.replay.make_hyperliquid [--source DIR] [--seconds 110]
        [--out tests/data/recordings/hyperliquid.jsonl.zst]

Hyperliquid's `l2Book` channel sends the whole book (at most 20 levels a side,
prices at 5 significant figures) whenever it changes; it has no sequence number and
no checksum. No recorded Hyperliquid traffic is at hand, so the frames are derived
from real Binance BTCUSDT/ETHUSDT diff streams (`../shared/data/binance/raw`, MIT
licence, nkaz001/hftbacktest): the Binance book is rebuilt diff by diff exactly as
Binance sequences it, each state is re-expressed the way Hyperliquid aggregates a
book (bids floored and asks ceiled to the coin's tick, sizes summed, `n` = the
Binance levels merged), and a frame is written whenever the top 20 levels a side
changed, at the Binance frame's receive time (`time`: 25 ms before it).
The coins are Hyperliquid's perpetuals BTC and ETH (ccxt `BTC/USDC:USDC`,
`ETH/USDC:USDC`), with their size decimals (5, 4).

The session is one connection, as ccxt opens it: subscribe to each coin, the
subscription acks, the first full book of each coin, then the merged stream, and an
application ping/pong every 20 s (ccxt's keep-alive). `http` entries are the REST
answers the session starts with (`metaAndAssetCtxs` and each coin's `l2Book`).
Deterministic: the same source gives the same bytes.
"""

import argparse
import heapq
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import zstandard

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "binance" / "raw"
DEFAULT_OUT = REPO / "tests" / "data" / "recordings" / "hyperliquid.jsonl.zst"
WS_URL = "wss://api.hyperliquid.xyz/ws"
INFO_URL = "https://api.hyperliquid.xyz/info"
UNIT = 10**8  # Binance spot prints prices and sizes with 8 decimals
LEVELS = 20  # Hyperliquid's l2Book serves at most this many levels a side
PING_EVERY_S = 20.0  # ccxt's keepAlive for hyperliquid
PONG_AFTER_S = 0.031  # a plausible round trip
# A frame's `time` (Hyperliquid's block time, ms) is this long before it was received:
# Binance's event times in the session run ~1.2 s ahead of the receiving clock, and an
# exchange time later than its receipt would look wrong to anyone comparing the two.
LATENCY_MS = 25
BLOCK_S = 0.07  # at most one book a coin per Hyperliquid block (~70 ms): the USD-M
# session's @depth@0ms diffs come faster; the book as it stands is sent at the next one
# coin -> (Binance session, tick in 1e-8 units, price decimals, size decimals). The
# tick is 5 significant figures at the session's prices (BTC ~61,800; ETH ~2,680).
# Perpetuals are named by their coin; a spot pair by "@<index>" ("@1": UBTC/USDC,
# ccxt `BTC/USDC`), fed from the USD-M BTC session (another day, ~63,700: a book of
# its own), moved onto the spot sessions' clock.
COINS: dict[str, tuple[str, int, int, int]] = {
    "BTC": ("spot_btcusdt_20240808", UNIT, 0, 5),
    "ETH": ("spot_ethusdt_20240808", UNIT // 10, 1, 4),
    "@1": ("usdm_btcusdt_20240718", UNIT, 0, 5),
}
PERPS = [coin for coin in COINS if not coin.startswith("@")]
SPOT_TOKENS = {"@1": "UBTC"}  # a spot pair's base token (quote: USDC, token 0)

Side = dict[int, int]  # price units -> size units
Wire = list[list[dict[str, Any]]]  # [[bids], [asks]] of {"px", "sz", "n"}


def _units(text: str) -> int:
    return int(Decimal(text) * UNIT)


def _decimal(value: int, places: int) -> str:
    """Units as Hyperliquid prints a number: trailing zeros dropped, one decimal kept
    ('61837.0', '0.97139')."""
    text = f"{Decimal(value) / UNIT:.{places}f}"
    if "." not in text:
        return text + ".0"
    text = text.rstrip("0")
    return text + "0" if text.endswith(".") else text


def aggregate(bids: Side, asks: Side, tick: int, px_places: int, sz_places: int) -> Wire:
    """The top `LEVELS` a side of a Binance book, grouped to Hyperliquid's tick."""
    sides: Wire = []
    for side, is_bid in ((bids, True), (asks, False)):
        buckets: dict[int, list[int]] = {}
        for price in sorted(side, reverse=is_bid):
            bucket = price // tick * tick if is_bid else -(-price // tick) * tick
            if bucket not in buckets and len(buckets) == LEVELS:
                break
            entry = buckets.setdefault(bucket, [0, 0])
            entry[0] += side[price]
            entry[1] += 1
        sides.append(
            [
                {"px": _decimal(px, px_places), "sz": _decimal(sz, sz_places), "n": n}
                for px, (sz, n) in buckets.items()
            ]
        )
    return sides


def _session(path: Path) -> tuple[float, dict[str, Any], Iterator[tuple[float, dict[str, Any]]]]:
    """(snapshot receive time s, the REST snapshot, every diff in receive order: those
    received before the snapshot are buffered and applied after it, as Binance says)."""
    with zstandard.open(path, "rt") as lines:
        rows = [
            (int(ts) / 1e9, json.loads(body)) for ts, body in (ln.split(" ", 1) for ln in lines)
        ]
    start = next(i for i, (_, row) in enumerate(rows) if "lastUpdateId" in row)
    return rows[start][0], rows[start][1], iter(rows[:start] + rows[start + 1 :])


def coin_frames(
    source: Path, coin: str, t0: float, end: float, base_s: float
) -> Iterator[tuple[float, str]]:
    """(receive time s, l2Book frame) for one coin: its book at `t0`, then each change.
    A session of another day is moved so that its snapshot was received at `base_s`."""
    name, tick, px_places, sz_places = COINS[coin]
    snapshot_s, snapshot, diffs = _session(source / f"{name}.depth.txt.zst")
    shift_s = 0.0 if abs(base_s - snapshot_s) < 3600 else base_s - snapshot_s
    bids = {_units(p): _units(q) for p, q in snapshot["bids"]}
    asks = {_units(p): _units(q) for p, q in snapshot["asks"]}
    last_id, time_ms = int(snapshot["lastUpdateId"]), 0
    sent: Wire | None = None
    chained, sent_s = False, 0.0
    for recorded_s, row in diffs:
        ts = recorded_s + shift_s
        if ts > end:
            return
        data = row["data"]
        if data["u"] < last_id or (data["u"] == last_id and "pu" not in data):
            continue  # older than the snapshot: Binance's own rules (spot, futures)
        if not chained and data["U"] > last_id + 1:
            raise ValueError(f"{name}: the first diff {data['U']} is past {last_id}")
        # then spot chains on U == previous u + 1, futures on pu == previous u
        if chained and data.get("pu", data["U"] - 1) != last_id:
            raise ValueError(f"{name}: update ids jump from {last_id} to {data['U']}")
        chained = True
        for changes, side in ((data["b"], bids), (data["a"], asks)):
            for price, size in changes:
                if _units(size) == 0:
                    side.pop(_units(price), None)
                else:
                    side[_units(price)] = _units(size)
        last_id = data["u"]
        if ts < t0:
            continue
        if sent is None:  # the book as it stood when the subscription was acked
            sent = aggregate(bids, asks, tick, px_places, sz_places)
            time_ms, sent_s = int(t0 * 1000) - LATENCY_MS, t0
            yield t0, _frame(coin, time_ms, sent)
        if ts - sent_s < BLOCK_S:
            continue
        levels = aggregate(bids, asks, tick, px_places, sz_places)
        if levels != sent:
            sent_s = ts
            # strictly increasing: ccxt's book keeps no nonce, so obd tells one state
            # from the next by this time
            sent, time_ms = levels, max(time_ms + 1, int(ts * 1000) - LATENCY_MS)
            yield ts, _frame(coin, time_ms, levels)


def _frame(coin: str, time_ms: int, levels: Wire) -> str:
    data = {"channel": "l2Book", "data": {"coin": coin, "time": time_ms, "levels": levels}}
    return json.dumps(data, separators=(",", ":"))


def _mid(frame: str) -> str:
    levels = json.loads(frame)["data"]["levels"]
    return str((Decimal(levels[0][0]["px"]) + Decimal(levels[1][0]["px"])) / 2)


def _meta(first: dict[str, str]) -> str:
    """The `metaAndAssetCtxs` answer for the perpetuals (markPx: their first mid)."""
    universe = [
        {"szDecimals": COINS[coin][3], "name": coin, "maxLeverage": 40, "marginTableId": 56}
        for coin in PERPS
    ]
    ctxs = [
        {"funding": "0.0000125", "markPx": _mid(first[c]), "midPx": _mid(first[c])} for c in PERPS
    ]
    meta = [{"universe": universe, "marginTables": [], "collateralToken": 0}, ctxs]
    return json.dumps(meta, separators=(",", ":"))


def _spot_meta(first: dict[str, str]) -> str:
    """The `spotMetaAndAssetCtxs` answer: USDC as token 0, each pair's base after it;
    contexts indexed by pair index, as Hyperliquid (and ccxt) index them."""
    tokens: list[dict[str, Any]] = [
        {"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0, "fullName": None}
    ]
    universe: list[dict[str, Any]] = []
    ctxs: list[dict[str, Any]] = []
    for coin, base in SPOT_TOKENS.items():
        index = int(coin[1:])
        full = {"UBTC": "Unit Bitcoin"}.get(base)
        tokens.append(
            {"name": base, "szDecimals": COINS[coin][3], "weiDecimals": 10,
             "index": len(tokens), "fullName": full}
        )  # fmt: skip
        universe.append({"tokens": [len(tokens) - 1, 0], "name": coin, "index": index})
        ctxs += [{}] * (index + 1 - len(ctxs))
        ctxs[index] = {"coin": coin, "markPx": _mid(first[coin]), "midPx": _mid(first[coin])}
    return json.dumps([{"universe": universe, "tokens": tokens}, ctxs], separators=(",", ":"))


def entries(source: Path, seconds: float) -> Iterator[dict[str, Any]]:
    """The recording's lines, header first."""
    snapshots_s = [_session(source / f"{COINS[c][0]}.depth.txt.zst")[0] for c in COINS]
    base_s = snapshots_s[0]
    t0 = max(t for t in snapshots_s if abs(t - base_s) < 3600) + 0.2
    end = t0 + seconds
    yield {
        "t": "header",
        "exchange": "HYPERLIQUID",
        "config": {"l2_book": list(COINS)},
        "derived": True,
        "note": (
            "Derived from real Binance diff streams (spot BTCUSDT/ETHUSDT 2024-08-08 for"
            " the BTC and ETH perpetuals, USD-M BTCUSDT 2024-07-18 for spot @1 UBTC/USDC):"
            " each Binance book state re-expressed as a Hyperliquid l2Book frame by"
            " tests/emulator/replay/make_hyperliquid.py; not recorded from Hyperliquid."
        ),
        "source": "nkaz001/hftbacktest examples (shared/data/binance/raw)",
        "licence": "MIT, Copyright (c) 2022 nkaz001",
    }
    streams = [list(coin_frames(source, coin, t0, end, base_s)) for coin in COINS]
    first = {coin: frames[0][1] for coin, frames in zip(COINS, streams, strict=True)}
    yield {"t": "http", "ts": t0 - 0.5, "url": INFO_URL, "data": _meta(first)}
    yield {"t": "http", "ts": t0 - 0.5, "url": INFO_URL, "data": _spot_meta(first)}
    for coin in COINS:
        book = json.loads(first[coin])["data"]
        yield {
            "t": "http",
            "ts": t0 - 0.3,
            "url": INFO_URL,
            "data": json.dumps(book, separators=(",", ":")),
        }
    yield {"t": "connect", "conn": "1", "ts": t0 - 0.1, "data": WS_URL}
    for coin in COINS:
        sub = {"type": "l2Book", "coin": coin}
        sent = {"method": "subscribe", "subscription": sub}
        yield {
            "t": "send",
            "conn": "1",
            "ts": t0 - 0.09,
            "data": json.dumps(sent, separators=(",", ":")),
        }
    for coin in COINS:
        ack = {
            "method": "subscribe",
            "subscription": {"type": "l2Book", "coin": coin, "nSigFigs": None, "mantissa": None},
        }
        reply = {"channel": "subscriptionResponse", "data": ack}
        yield {
            "t": "recv",
            "conn": "1",
            "ts": t0 - 0.05,
            "data": json.dumps(reply, separators=(",", ":")),
        }
    pings = [t0 + k * PING_EVERY_S for k in range(1, int(seconds // PING_EVERY_S) + 1)]
    keepalive = [(ts, "send", '{"method":"ping"}') for ts in pings]
    keepalive += [(ts + PONG_AFTER_S, "recv", '{"channel":"pong"}') for ts in pings]
    books = [[(ts, "recv", frame) for ts, frame in frames] for frames in streams]
    for ts, kind, data in heapq.merge(*books, sorted(keepalive), key=lambda e: e[0]):
        yield {"t": kind, "conn": "1", "ts": round(ts, 6), "data": data}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--seconds", type=float, default=110.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    text = "".join(
        json.dumps(e, separators=(",", ":")) + "\n" for e in entries(args.source, args.seconds)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(zstandard.ZstdCompressor(level=19).compress(text.encode()))
    size = args.out.stat().st_size
    print(f"{args.out}: {text.count(chr(10))} lines, {len(text)} bytes, {size} compressed")


if __name__ == "__main__":
    main()
