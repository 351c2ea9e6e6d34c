"""Fidelity through the replay emulator: real obd, unmodified ccxt, recorded traffic.

`ReplayProcess` runs `python -m tests.emulator replay` as a subprocess (as a user or
a benchmark would) with a sent log; `fidelity` compares what a daemon stored for a
coin with the truth (`tests/emulator/replay/truth.py`) slot by slot:

- a websocket snapshot for slot T is a true book that stood within [T - tolerance, T]
  (a frame sent just before T may reach obd after T; never one sent after T);
- a REST snapshot is a true book that stood between T and its `received_ts`;
- every slot is a snapshot or a gap with a reason.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.conftest import REPO, Daemon, wait_for, write_config
from tests.emulator.config import toml_value
from tests.emulator.replay.truth import Truth

RECORDINGS = REPO / "tests" / "data" / "recordings"
GAP_REASONS = {"not_synced", "disconnected", "rate_limited", "exchange_error", "not_listed"}


class ReplayProcess:
    """One replay emulator subprocess; its truth is read from its sent log."""

    def __init__(
        self,
        exchange_id: str,
        recording: Path,
        sent_log: Path,
        speed: float,
        start: str = "listen",
    ) -> None:
        self.exchange_id, self.recording, self.sent_log = exchange_id, recording, sent_log
        command = [
            sys.executable, "-m", "tests.emulator", "replay", "--exchange", exchange_id,
            "--recording", str(recording), "--speed", str(speed), "--sent-log", str(sent_log),
            "--start", start,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"replay {exchange_id} failed: {self.process.communicate()[1]}")
        self.info: dict[str, Any] = json.loads(line)
        self.url = f"http://127.0.0.1:{self.info['port']}"
        self.symbols: list[str] = self.info["symbols"]

    def control(self, name: str, **params: Any) -> Any:
        """A fault control (`drop`, `stall`, `close`, `rest-errors`, `fault`, `delist`)."""
        answer = httpx.post(f"{self.url}/__emulator__/{name}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/__emulator__/stats", timeout=10).json())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=30)
        return self.process.returncode

    def truth(self) -> Truth:
        return Truth.from_sent_log(self.exchange_id, self.recording, self.sent_log)


def exchanges_toml(replays: list[ReplayProcess], **overrides: Any) -> str:
    """`[exchanges.<id>]` for each replay, pointing ccxt at it (with `overrides`)."""
    tables = []
    for replay in replays:
        table = {**replay.info["exchanges_config"], **overrides}
        lines = [f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items()]
        tables.append(f"[exchanges.{replay.exchange_id}]\n" + "\n".join(lines) + "\n")
    return "\n".join(tables)


def coins_toml(coins: list[tuple[str, str]], depth: int, interval: str = "1s") -> str:
    return "".join(
        f"[[coins]]\nexchange = {json.dumps(exchange)}\nsymbol = {json.dumps(symbol)}\n"
        f'interval = "{interval}"\ndepth = {depth}\n'
        for exchange, symbol in coins
    )


class LoggedDaemon(Daemon):
    """The daemon, its JSON log read as it runs (so the pipe never fills)."""

    def __init__(self, config: Path) -> None:
        super().__init__(config)
        self._reader = threading.Thread(target=self._read, name="daemon-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                self.log.append(json.loads(line))
            except ValueError:
                self.log.append({"raw": line})

    def stop(self) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reader.join(10)
        if self.process.stderr:
            self.process.stderr.close()
        return code

    def events(self, name: str, symbol: str | None = None) -> list[dict[str, Any]]:
        return [
            event
            for event in list(self.log)
            if event.get("event") == name and (symbol is None or event.get("symbol") == symbol)
        ]


class Verdict(msgspec.Struct):
    """How one coin's stored slots compare with the truth."""

    exchange: str
    symbol: str
    slots: int = 0  # slots in the window checked
    ws: int = 0  # websocket snapshots, each a true book of [T - tolerance, T]
    rest: int = 0  # REST snapshots, each a true book of [T, received_ts]
    wrong: list[int] = []  # slots whose stored book was never true when it should be
    wrong_seq: list[int] = []  # slots whose `seq` is not the update id of the stored book
    gaps: dict[str, int] = {}  # slots in gaps, by reason
    unaccounted: int = 0  # slots neither stored nor in a gap
    late_ms: list[int] = []  # per websocket slot: how long before T its book was superseded
    transit_ms: list[int] = []  # per websocket slot: received_ts - when the emulator made it

    @property
    def exact(self) -> bool:
        return not self.wrong and not self.wrong_seq and self.unaccounted == 0


def fidelity(
    http: httpx.Client,
    exchange: str,
    symbol: str,
    truth: Truth,
    depth: int,
    window: tuple[int, int],
    tolerance_ms: int,
) -> Verdict:
    """Compare every slot in [start, end) (ms) of a coin with the truth."""
    start, end = window
    coin = {"exchange": exchange, "symbol": symbol}
    verdict = Verdict(exchange, symbol)
    coverage = http.get("/v1/coverage", params={**coin, "start": start, "end": end}).json()
    gaps: Counter[str] = Counter()
    for gap_start, gap_end, reason in coverage["gaps"]:
        gaps[reason] += (gap_end - gap_start) // coverage["interval_ms"]
    verdict.gaps = dict(gaps)
    verdict.slots = coverage["expected"]
    verdict.unaccounted = coverage["expected"] - coverage["present"] - sum(gaps.values())
    params: dict[str, str | int] = {**coin, "start": start, "end": end - 1, "limit": 1000}
    for item in http.get("/v1/books", params=params).json()["items"]:
        stored = {"bids": item["bids"], "asks": item["asks"]}
        slot, received = item["ts"], item["received_ts"]
        if item["capture"] == "ws":
            verdict.ws += 1
            books = truth.books_within(symbol, depth, slot - tolerance_ms, slot)
            ok = received <= slot and _matches(stored, books, depth)
            if ok:
                made_ms, late_ms = _timing(truth, symbol, depth, slot, stored, books)
                verdict.late_ms.append(late_ms)
                verdict.transit_ms.append(received - made_ms)
        else:
            verdict.rest += 1
            books = truth.books_within(symbol, depth, slot, received)
            ok = received >= slot and _matches(stored, books, depth)
        if not ok:
            verdict.wrong.append(slot)
        if item.get("seq") is not None:
            at_seq = truth.book_at_seq(symbol, depth, item["seq"])
            if at_seq is not None and at_seq.floats(depth) != stored:
                verdict.wrong_seq.append(slot)
    return verdict


def _matches(stored: dict[str, Any], books: list[Any], depth: int) -> bool:
    return any(book.floats(depth) == stored for book in books)


def _timing(
    truth: Truth, symbol: str, depth: int, slot: int, stored: dict[str, Any], books: list[Any]
) -> tuple[int, int]:
    """(when the stored book came to be, how long before `slot` it was superseded)."""
    matched = max(i for i, book in enumerate(books) if book.floats(depth) == stored)
    times = {id(book): t for t, book in truth.changes(symbol, depth)}
    made_ms = times[id(books[matched])]
    if matched == len(books) - 1:
        return made_ms, 0
    return made_ms, slot - times[id(books[matched + 1])]


class Step(msgspec.Struct, frozen=True):
    """A fault control sent `at_s` seconds into the checked window. `drop`, `fault`
    and `delist` are about the run's second symbol unless `params` names one."""

    at_s: float
    control: str  # drop, stall, close, rest-errors, fault, delist
    params: dict[str, Any] = {}


class Run(msgspec.Struct, frozen=True):
    """One venue in a fidelity run: its recording (a file in tests/data/recordings)
    and the faults it takes (on its second symbol; the first stays clean)."""

    exchange_id: str
    recording: str
    faults: tuple[Step, ...] = ()
    depth: int | None = None  # levels a side to collect, if not the run's default
    options: dict[str, Any] = {}  # over the emulator's [exchanges.<id>] keys


class Outcome(msgspec.Struct):
    verdicts: list[Verdict]  # each run's symbols in order: first (clean), second (faulted)
    stats: dict[str, dict[str, Any]]  # each emulator's /__emulator__/stats at the end
    log: list[dict[str, Any]]  # the daemon's log
    exit_code: int  # the daemon's, after SIGTERM
    moving: dict[str, int]  # per exchange: slots of the window its recording still played

    def report(self) -> str:
        """One line a coin: what was measured (print it; pytest -s shows it)."""
        lines = []
        for verdict in self.verdicts:
            late, transit = sorted(verdict.late_ms) or [0], sorted(verdict.transit_ms) or [0]
            lines.append(
                f"{verdict.exchange} {verdict.symbol}: {verdict.slots} slots, {verdict.ws} ws,"
                f" {verdict.rest} rest, gaps {verdict.gaps}, wrong {verdict.wrong},"
                f" wrong seq {verdict.wrong_seq},"
                f" unaccounted {verdict.unaccounted}; book superseded before T in"
                f" {sum(ms > 0 for ms in late)} slots (max {late[-1]} ms); transit median"
                f" {transit[len(transit) // 2]} ms, max {transit[-1]} ms"
            )
        return "\n".join(lines)

    def down(self, exchange: str, symbol: str) -> list[str]:
        """The reasons the daemon logged each time this coin's stream went down."""
        return [
            event["reason"]
            for event in self.log
            if event.get("event") == "stream_down"
            and event.get("exchange") == exchange
            and event.get("symbol") == symbol
        ]


def run_fidelity(
    directory: Path,
    runs: list[Run],
    *,
    speed: float,
    depth: int,
    slots: int,
    tolerance_ms: int,
) -> Outcome:
    """Replay every run at once into one daemon (both symbols of each at 1 s slots and
    `depth`), send each run's faults on schedule, and after `slots` slots from the
    one after every coin's first snapshot, compare each coin with its truth."""
    replays = [
        ReplayProcess(
            run.exchange_id,
            RECORDINGS / run.recording,
            directory / f"{run.exchange_id}.sent",
            speed,
            start="connect",  # the recording's clock starts when obd connects
        )
        for run in runs
    ]
    try:
        depths = [run.depth or depth for run in runs]
        coins_tables = [
            coins_toml([(replay.exchange_id, symbol) for symbol in replay.symbols], levels)
            for replay, levels in zip(replays, depths, strict=True)
        ]
        coins = [(replay.exchange_id, symbol) for replay in replays for symbol in replay.symbols]
        tables = "".join(
            exchanges_toml([replay], **run.options)
            for replay, run in zip(replays, runs, strict=True)
        )
        config = write_config(directory, tables, coins="".join(coins_tables))
        daemon = LoggedDaemon(config)
        try:
            start = wait_for(lambda: _all_started(daemon, len(coins)), timeout_s=30) + 1000
            _send_faults(replays, runs, start)
            time.sleep(max(0.0, start / 1000 + slots + 1.5 - time.time()))
            window = (start, start + slots * 1000)
            verdicts = [
                fidelity(daemon.http, r.exchange_id, s, r.truth(), levels, window, tolerance_ms)
                for r, levels in zip(replays, depths, strict=True)
                for s in r.symbols
            ]
            stats = {replay.exchange_id: replay.stats() for replay in replays}
        finally:
            code = daemon.stop()
    finally:
        for replay in replays:
            replay.stop()
    moving = {  # after its last frame a book stands still: true, but a weaker test
        r.exchange_id: min(slots, max(0, (r.truth().last_applied_ms() - start) // 1000))
        for r in replays
    }
    return Outcome(verdicts, stats, list(daemon.log), code, moving)


def _all_started(daemon: LoggedDaemon, count: int) -> int | None:
    """The newest first slot among the coins, once every coin has one."""
    coins = daemon.http.get("/v1/coins").json()["items"]
    firsts = [coin["first_ts"] for coin in coins]
    return max(firsts) if len(coins) == count and None not in firsts else None


def _send_faults(replays: list[ReplayProcess], runs: list[Run], start_ms: int) -> None:
    steps = sorted(
        ((step.at_s, i, step) for i, run in enumerate(runs) for step in run.faults),
        key=lambda item: item[:2],
    )
    for at_s, i, step in steps:
        time.sleep(max(0.0, start_ms / 1000 + at_s - time.time()))
        params = dict(step.params)
        if step.control in ("drop", "fault", "delist"):
            params.setdefault("symbol", replays[i].symbols[1])
        replays[i].control(step.control, **params)
