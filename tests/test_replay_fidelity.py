"""Fidelity on recorded traffic, every emulated exchange at once: Binance spot, USD-M
and COIN-M, OKX, Bybit, Kraken, Coinbase and Hyperliquid replay into one real daemon
through unmodified ccxt, at 1 s slots. The first symbol of each exchange runs clean;
the second takes that exchange's faults (lost frames, skipped sequence numbers, bad
checksums, a 429 on the resync, a delisting near the end). Every stored snapshot must
be a true book of its slot (a websocket book one that stood within the tolerance
before it, a REST one a book between the slot and its arrival), its `seq` the
exchange's update id of that book, and every slot a snapshot or a gap with a reason.

One run for all of them keeps CI's time: 62 one-second slots cost a minute of wall
time whatever the number of exchanges. What each exchange's protocol needs is in
docs/exchanges/<id>.md; the per-exchange tests (tests/test_replay_<id>.py) check the
venues and unmodified ccxt alone, in seconds."""

from pathlib import Path

import msgspec
import pytest

from tests.replay_support import GAP_REASONS, Outcome, Run, Step, Verdict, run_fidelity

pytestmark = pytest.mark.slow

SPEED = 1.4  # 110-125 s recordings in 79-89 s: 62 one-second slots after a slow start-up
DEPTH = 50
SLOTS = 62
DELISTED_S = 8  # a delisted symbol is delisted this long before the window closes
# A frame sent this long before a slot may still be on its way to obd: on this shared
# 2-core host one frame in a few thousand took ~450 ms (median 1 ms). Never a frame
# sent after the slot. How late books really were is printed and bounded (`AT_T`).
TOLERANCE_MS = 1000
AT_T = 0.8  # of websocket slots whose book still stood at T (measured: 0.97-1.0)
ALLOWED = GAP_REASONS | {"checksum"}
DELIST = Step(SLOTS - DELISTED_S, "delist")


class Expect(msgspec.Struct, frozen=True):
    """One exchange in the run, and what its symbols must show."""

    run: Run
    delisted: bool = True  # the faulted symbol is delisted near the end
    # ... and that is noticed within this long: at the next listing reload (every 2 s
    # here), which on some exchanges is several rate-limited requests (Bybit 11, ~1.1 s)
    # and waits its turn on a loaded host running eight exchanges at once
    notice_s: int = 7
    faulted_slack: int = 6  # slots the faulted symbol may miss from the live book
    clean_slack: int = 0  # ... and the clean ones (a connection-wide resync: Coinbase)
    clean_quiet: bool = True  # the clean symbols' streams never went down
    downs: dict[str, int] = {}  # at least this many stream_down by reason (faulted)


def _binance(exchange_id: str) -> Expect:
    faults = (
        Step(12, "drop", {"n": 1}),  # a lost diff: the next one does not chain
        Step(27, "fault", {"kind": "sequence"}),  # a skipped update id
        Step(27, "rest-errors", {"status": 429, "n": 1, "path": "depth"}),  # on the resync
        DELIST,
    )
    return Expect(Run(exchange_id, f"{exchange_id}.jsonl.zst", faults), downs={"not_synced": 2})


EXPECTED = [
    _binance("binance"),
    _binance("binanceusdm"),
    _binance("binancecoinm"),
    Expect(  # the sequence is ccxt's to check, the CRC32 obd's
        Run(
            "okx",
            "okx_btc_eth_usdt.jsonl.zst",
            (
                Step(10, "drop", {"n": 1}),
                Step(25, "fault", {"kind": "checksum"}),
                Step(40, "fault", {"kind": "sequence"}),
            ),
        ),
        delisted=False,
        faulted_slack=9,
        downs={"checksum": 1, "not_synced": 2},
    ),
    Expect(  # `u` checked by obd; a resync unsubscribes first (Bybit sends no second snapshot)
        Run(
            "bybit",
            "bybit_spot.jsonl.zst",
            (
                Step(12, "drop", {"n": 1}),
                Step(27, "fault", {"kind": "sequence"}),
                Step(27, "rest-errors", {"status": 429, "n": 1, "path": "orderbook"}),
                DELIST,
            ),
            depth=100,  # the recording is orderbook.200, the depth that covers 100
        ),
        downs={"not_synced": 2},
    ),
    Expect(  # the CRC32 covers the top 10 levels: the depth where every level is checked
        Run(
            "kraken",
            "kraken.jsonl.zst",
            # A lost frame shows only at that book's next frame, and a depth-10 book can
            # stay quiet for seconds: the slots stored meanwhile are retracted (gaps).
            (Step(12, "drop", {"n": 1}), Step(24, "fault", {"kind": "checksum"}), DELIST),
            depth=10,
            # ccxt pings kraken itself and drops a socket 2 pings without a pong: at the
            # emulator's 1 s a loaded host can trip it; this run is about books
            options={"ping_interval_s": 3, "stale_after_s": 10},
        ),
        downs={"checksum": 1},
    ),
    Expect(  # sequence_num numbers the connection: a loss resyncs every book on it
        Run(
            "coinbase",
            "coinbase.jsonl.zst",
            (Step(12, "drop", {"n": 1}), Step(27, "drop", {"n": 1}), DELIST),
        ),
        clean_slack=6,
        clean_quiet=False,
        downs={"not_synced": 2},
    ),
    Expect(  # whole books in every frame: a lost one heals with the next
        Run(
            "hyperliquid",
            "hyperliquid.jsonl.zst",
            (*(Step(6.0 * k, "drop", {"n": 1}) for k in range(1, 8)), DELIST),
        ),
        faulted_slack=2,
    ),
]


def test_every_exchange_on_recorded_traffic(tmp_path: Path) -> None:
    outcome = run_fidelity(
        tmp_path,
        [expect.run for expect in EXPECTED],
        speed=SPEED,
        depth=DEPTH,
        slots=SLOTS,
        tolerance_ms=TOLERANCE_MS,
    )
    print(outcome.report(), outcome.moving)  # what was measured (pytest -s)
    assert outcome.exit_code == 0
    for verdict in outcome.verdicts:
        assert verdict.slots >= 60, verdict
        assert verdict.exact, verdict  # no wrong book, no wrong seq, every slot accounted
        assert set(verdict.gaps) <= ALLOWED, verdict
    late = [ms for verdict in outcome.verdicts for ms in verdict.late_ms]
    assert sum(ms == 0 for ms in late) >= AT_T * len(late), late
    for expect in EXPECTED:
        _check_exchange(outcome, expect)


def _check_exchange(outcome: Outcome, expect: Expect) -> None:
    exchange = expect.run.exchange_id
    verdicts = [v for v in outcome.verdicts if v.exchange == exchange]
    faulted, clean = verdicts[1], [verdicts[0], *verdicts[2:]]
    for verdict in clean:  # the live book carries every slot of an undisturbed symbol
        assert verdict.ws >= verdict.slots - expect.clean_slack, verdict
        assert "not_listed" not in verdict.gaps, verdict
        if expect.clean_quiet:
            assert outcome.down(exchange, verdict.symbol) == [], verdict
    _check_faulted(outcome, expect, faulted)
    stats = outcome.stats[exchange]
    assert stats["unexpected"] == [], exchange
    assert outcome.moving[exchange] >= 55, outcome.moving  # books moved, not stood still


def _check_faulted(outcome: Outcome, expect: Expect, verdict: Verdict) -> None:
    not_listed = verdict.gaps.get("not_listed", 0)
    if expect.delisted:
        # noticed at the next listing reload (every 2 s here; a reload is several
        # rate-limited requests on some exchanges), at the plugin's 1 s tick
        assert DELISTED_S - expect.notice_s <= not_listed <= DELISTED_S, verdict
    else:
        assert not_listed == 0, verdict
    assert verdict.ws >= verdict.slots - not_listed - expect.faulted_slack, verdict
    downs = outcome.down(expect.run.exchange_id, verdict.symbol)
    for reason, least in expect.downs.items():
        assert downs.count(reason) >= least, (expect.run.exchange_id, downs)
