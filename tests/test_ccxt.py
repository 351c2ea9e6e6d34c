"""The real daemon collecting from an emulated Binance through the unmodified ccxt.

Every URL ccxt could use is pointed at the emulator on 127.0.0.1; the emulator
answers 404 to anything it does not emulate, and each test checks none was asked.
The emulator records its books' history, so every stored snapshot is checked bit
for bit against what the book truly was: at its slot for a websocket snapshot; at
some instant between the slot and its `received_ts` for a REST snapshot.
"""

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, load_plugin, obd, wait_for, write_config
from tests.emulator import Emulator
from tests.emulator.config import binance_table
from tests.replay_support import LoggedDaemon

pytestmark = pytest.mark.slow

BTC = {"exchange": "binance", "symbol": "BTC/USDT"}
DEPTH = 20
GAP_REASONS = {"not_synced", "disconnected", "rate_limited", "exchange_error", "not_listed"}


@pytest.fixture
def start_daemon() -> Iterator[Any]:
    started: list[LoggedDaemon] = []

    def start(config: Path) -> LoggedDaemon:
        started.append(LoggedDaemon(config))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        daemon._reader.join(10)
        if daemon.process.stderr:
            daemon.process.stderr.close()
        daemon.http.close()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    # No change in the last 300 ms before each second: a book sent just before a 1 s
    # slot reaches the daemon in time even on a loaded machine, so slot T's book is
    # exactly the emulator's book at T.
    with Emulator(quiet_ms=300) as emu:
        yield emu
    assert emu.unexpected_requests() == []  # nothing asked of an endpoint not emulated


def _start(tmp_path: Path, start_daemon: Any, emu: Emulator, **options: Any) -> Any:
    return start_daemon(write_config(tmp_path, binance_table(emu, **options)))


def _add(daemon: Any, symbol: str = "BTC/USDT", depth: int = DEPTH) -> Any:
    body = {"exchange": "binance", "symbol": symbol, "interval": "1s", "depth": depth}
    return daemon.http.post("/v1/coins", json=body)


def _books(daemon: Any, coin: dict[str, str] = BTC) -> list[dict[str, Any]]:
    return list(daemon.http.get("/v1/books", params={**coin, "limit": 1000}).json()["items"])


def _coverage(daemon: Any, coin: dict[str, str] = BTC) -> dict[str, Any]:
    return dict(daemon.http.get("/v1/coverage", params=coin).json())


def _count(daemon: Any) -> int:
    return sum(coin["count"] for coin in daemon.http.get("/v1/coins").json()["items"])


def _events(daemon: Any, name: str) -> list[dict[str, Any]]:
    return [event for event in list(daemon.log) if event.get("event") == name]


def _assert_true(emu: Emulator, item: dict[str, Any], symbol: str = "BTCUSDT") -> None:
    """A websocket snapshot is the book at its slot; a REST one is the book at some
    instant between its slot and when it was received (point in time, honestly)."""
    truth = emu.book_at(symbol, item["ts"], DEPTH)
    assert isinstance(item["seq"], int), item  # binance's update id: lastUpdateId, then u
    if item["capture"] == "ws":
        assert item["received_ts"] <= item["ts"]
        assert item["exchange_ts"] is None or item["exchange_ts"] <= item["ts"]
        assert {"bids": item["bids"], "asks": item["asks"]} == truth, item["ts"]
        return
    assert item["capture"] == "rest"
    assert item["received_ts"] >= item["ts"]
    instants = emu.change_times(symbol, item["ts"], item["received_ts"])
    candidates = [truth] + [emu.book_at(symbol, t, DEPTH) for t in instants]
    assert {"bids": item["bids"], "asks": item["asks"]} in candidates, item["ts"]


def _reasons(coverage: dict[str, Any]) -> set[str]:
    """The gap reasons, but for a last `pending` gap: the slot being taken just then."""
    gaps = coverage["gaps"]
    if gaps and gaps[-1][2] == "pending":
        gaps = gaps[:-1]
    return {reason for _, _, reason in gaps}


def _assert_accounted(coverage: dict[str, Any]) -> None:
    missing = sum((end - start) // 1000 for start, end, _ in coverage["gaps"])
    assert coverage["present"] + missing == coverage["expected"], coverage


def test_live_book_survives_gaps_and_drops(
    tmp_path: Path, start_daemon: Any, emulator: Emulator
) -> None:
    daemon = _start(tmp_path, start_daemon, emulator)
    assert _add(daemon).status_code == 201
    wait_for(lambda: _count(daemon) >= 3)

    # Skipped update ids: ccxt sees the sequence gap, obd resyncs from a new snapshot.
    snapshots_before = sum(path == "/api/v3/depth" for path, _, _ in emulator.requests)
    emulator.skip_ids("BTCUSDT")
    wait_for(lambda: any(e["reason"] == "not_synced" for e in _events(daemon, "stream_down")))
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["status"] == "live")
    assert sum(path == "/api/v3/depth" for path, _, _ in emulator.requests) > snapshots_before

    # A dropped socket: reconnect, resubscribe, resync.
    connections = emulator.connections
    emulator.drop_sockets()
    wait_for(lambda: emulator.connections > connections)
    wait_for(lambda: any(e["reason"] == "disconnected" for e in _events(daemon, "stream_down")))
    settled = _count(daemon)
    wait_for(lambda: _count(daemon) >= settled + 2)

    items = _books(daemon)
    for item in items:
        _assert_true(emulator, item)
    assert items[-1]["capture"] == "ws"  # back on the live feed
    coverage = _coverage(daemon)
    _assert_accounted(coverage)
    assert _reasons(coverage) <= GAP_REASONS

    # A coin no longer collected is unsubscribed.
    assert daemon.http.delete("/v1/coins", params=BTC).status_code == 200
    wait_for(lambda: emulator.unsubscribes >= 1)
    assert daemon.stop() == 0


def test_unlisted_is_404_and_delisted_stops_with_reason(
    tmp_path: Path, start_daemon: Any, emulator: Emulator
) -> None:
    daemon = _start(tmp_path, start_daemon, emulator)
    refused = _add(daemon, "ZZZNOTLISTED/USDT")
    assert refused.status_code == 404
    assert "not listed on binance" in refused.json()["error"]["message"]
    assert daemon.http.get("/v1/coins").json() == {"items": []}
    available = daemon.http.get("/v1/availability", params={**BTC}).json()
    assert available == {"available": True, "reason": None, "tick_size": 0.01, "lot_size": 1e-05}

    bnb = {"exchange": "binance", "symbol": "BNB/USDT"}
    assert _add(daemon, "BNB/USDT").status_code == 201
    wait_for(lambda: _count(daemon) >= 1)
    emulator.delist("BNBUSDT")
    coin = wait_for(
        lambda: next(
            (
                c
                for c in daemon.http.get("/v1/coins").json()["items"]
                if c["status"] == "not_listed"
            ),
            None,
        )
    )
    wait_for(lambda: any(reason == "not_listed" for _, _, reason in _coverage(daemon, bnb)["gaps"]))
    assert coin["symbol"] == "BNB/USDT"
    availability = daemon.http.get("/v1/availability", params=bnb).json()
    assert availability["available"] is False
    assert "status BREAK" in availability["reason"]
    for item in _books(daemon, bnb):
        _assert_true(emulator, item, "BNBUSDT")
    assert daemon.stop() == 0


def test_rate_limits_and_outages_are_backed_off_and_recorded(
    tmp_path: Path, start_daemon: Any, emulator: Emulator
) -> None:
    daemon = _start(tmp_path, start_daemon, emulator)
    emulator.rest_errors(429, 429, 503, 503, 503)
    assert _add(daemon).status_code == 201
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["status"] == "live")
    wait_for(lambda: _count(daemon) >= 2)

    reasons = {e["reason"] for e in _events(daemon, "stream_down") + _events(daemon, "rest_failed")}
    assert {"rate_limited", "exchange_error"} <= reasons
    # The exchange said Retry-After: 1 with each 429: nothing sent after obd heard it
    # (a request already in flight lands within a few ms) until the second was over.
    depth = [(status, ms) for path, status, ms in emulator.requests if path == "/api/v3/depth"]
    for status, at in depth:
        if status == 429:
            assert not [ms for _, ms in depth if at + 100 < ms < at + 900], depth
    coverage = _coverage(daemon)
    _assert_accounted(coverage)
    gap_reasons = _reasons(coverage)
    assert gap_reasons <= GAP_REASONS
    assert gap_reasons & {"rate_limited", "exchange_error"}  # the slots it cost, and why
    for item in _books(daemon):
        _assert_true(emulator, item)
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_rest_only_exchange_snapshots_each_slot_and_keeps_keys_secret(
    tmp_path: Path, start_daemon: Any, emulator: Emulator
) -> None:
    secret = "obd-test-secret-9f2c"
    daemon = _start(
        tmp_path, start_daemon, emulator, live=False, api_key=f"key-{secret}", secret=secret
    )
    assert _add(daemon).status_code == 201
    wait_for(lambda: _count(daemon) >= 2)
    coin = daemon.http.get("/v1/coins").json()["items"][0]
    assert coin["status"] == "polling"
    items = _books(daemon)
    assert {item["capture"] for item in items} == {"rest"}
    for item in items:
        _assert_true(emulator, item)
    assert emulator.connections == 0  # no websocket at all
    assert daemon.stop() == 0
    assert secret not in repr(daemon.log)


def test_quiet_book_is_healthy_and_silent_connection_is_replaced(
    tmp_path: Path, start_daemon: Any, emulator: Emulator
) -> None:
    daemon = _start(tmp_path, start_daemon, emulator)
    assert _add(daemon).status_code == 201
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["status"] == "live")

    # No change for longer than stale_after_s (3 s), but pongs keep coming: healthy.
    emulator.pause()
    paused_at = _count(daemon)
    wait_for(lambda: _count(daemon) >= paused_at + 4)  # 4 s of silence, all served
    assert emulator.connections == 1
    assert _events(daemon, "stream_down") == []
    emulator.pause(False)

    # Nothing at all, not even pongs: the watchdog replaces the connection.
    emulator.stall()
    wait_for(lambda: emulator.connections >= 2)
    down = wait_for(lambda: _events(daemon, "stream_down"))
    assert down[0]["reason"] == "disconnected"
    live_again = _count(daemon)
    wait_for(lambda: _count(daemon) >= live_again + 2)
    for item in _books(daemon):
        _assert_true(emulator, item)
    _assert_accounted(_coverage(daemon))
    assert daemon.stop() == 0


def test_unreachable_exchange_and_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    """What a user sees: no exchange on the other end, or a mistyped option."""
    emu = Emulator()  # never started: its URLs point at a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        emu.port = probe.getsockname()[1]
    config = write_config(tmp_path, binance_table(emu, timeout_s=5))
    added = obd("coins", "add", "binance", "BTC/USDT", config=config)
    assert added.returncode != 0
    assert "binance unreachable" in added.stderr
    assert len(added.stderr.strip().splitlines()) == 1

    wrong = write_config(tmp_path, "[exchanges.binance]\nstale_after = 30\n")
    checked = obd("check", config=wrong)
    assert checked.returncode != 0
    assert "exchanges.binance.stale_after: unknown key" in checked.stderr


def test_emulator_urls_cover_every_ccxt_binance_url() -> None:
    """A URL left out of the override would reach the real exchange."""
    import ccxt.pro

    real = ccxt.pro.binance().urls["api"]
    emu = Emulator()
    ours = emu.ccxt_urls()["api"]
    assert set(real) <= set(ours)
    assert set(real["ws"]) <= set(ours["ws"])
    assert set(real["ws"]["ws-api"]) <= set(ours["ws"]["ws-api"])


def test_sim_only_daemon_never_imports_ccxt(tmp_path: Path) -> None:
    """Loading every plugin, collecting sim, and asking whether ccxt serves an id
    must not import ccxt (~1.5 s and ~110 MiB)."""
    config = write_config(tmp_path, coins='[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\n')
    code = f"""
import asyncio, sys
from obd.config import load
from obd.context import add_config_coins, open_runtime
from pathlib import Path

async def main():
    config = load(Path({str(config)!r}))
    async with open_runtime(config, collector_started_ms=0) as runtime:
        await add_config_coins(runtime.service, config)
        assert runtime.exchanges.plugins.spec_for("binance").name == "ccxt"
        assert "ccxt" in runtime.exchanges.plugins.names
        collecting = asyncio.create_task(runtime.collector.run())
        await asyncio.sleep(1.0)
        collecting.cancel()
    print(sorted(m for m in sys.modules if m == "ccxt" or m.startswith("ccxt.")))

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _plugin() -> Any:
    return load_plugin("ccxt")


def test_history_is_not_available_and_never_made_up() -> None:
    """No `fetch_history` at all: the kernel says "history not available from binance"."""
    from obd.plugin import FetchesBooks, FetchesHistory

    exchange = _plugin().PLUGIN.build("binance")
    assert isinstance(exchange, FetchesBooks)
    assert not isinstance(exchange, FetchesHistory)


def test_serves_ccxt_ids_only_and_hides_secrets() -> None:
    plugin = _plugin()
    assert plugin.serves("binance")
    assert plugin.serves("kraken")
    assert not plugin.serves("sim")
    assert not plugin.serves("nosuchexchange")
    assert not plugin.serves("base")
    options = plugin.CcxtOptions(api_key="k-123", secret="s-456", password="p-789")
    assert "123" not in repr(options)
    assert "456" not in repr(options)
    assert "789" not in repr(options)


def test_range_guard_refuses_a_book_that_walked_past_its_snapshot() -> None:
    """A book kept by diffs is complete only inside its snapshot's range."""
    plugin = _plugin()
    snapshot = plugin.books.Edges(low=90.0, high=110.0)
    covered = plugin.books.Range()
    book = {"bids": [[99.0, 1.0], [95.0, 1.0], [91.0, 1.0]], "asks": [[101.0, 1.0], [105.0, 1.0]]}
    assert covered.covers(book, snapshot, depth=2, limit=100)
    walked = {"bids": [[99.0, 1.0], [89.0, 1.0]], "asks": [[101.0, 1.0], [105.0, 1.0]]}
    assert not covered.covers(walked, snapshot, depth=2, limit=100)  # 89 is outside
    thin = {"bids": [[99.0, 1.0]], "asks": [[101.0, 1.0], [105.0, 1.0]]}
    assert not covered.covers(thin, snapshot, depth=2, limit=100)  # level 2 unknown
    assert covered.covers(thin, plugin.books.Edges(low=None, high=None), depth=2, limit=100)
    assert covered.covers(walked, None, depth=2, limit=100)  # exchange-kept depth


@pytest.mark.parametrize("exchange_id", ["binance", "binanceus", "binanceusdm", "binancecoinm"])
def test_binance_books_are_watched_deeper_than_stored(exchange_id: str) -> None:
    """Every Binance market keeps its book from a REST snapshot plus diffs, trimmed by
    ccxt to the watched limit. Watched at exactly the depth stored, one level removed
    inside it leaves the book short and the range guard resyncs: on USD-M and COIN-M
    at depth 50 that was every few hundred ms (REST at nearly every slot)."""
    plugin = _plugin()
    known = plugin.options.depths(exchange_id, plugin.CcxtOptions())
    limit = plugin.options.accepted(known.ws, 50 * known.ws_margin)
    assert limit >= 200
    assert limit in known.rest  # ccxt takes its REST snapshot at this limit
    assert max(known.rest) == (5000 if exchange_id in ("binance", "binanceus") else 1000)

    def kept(book_limit: int, removed: float) -> dict[str, list[list[float]]]:
        """ccxt's book, trimmed to `book_limit`, after the bid at `removed` went."""
        bids = [[1000.0 - i, 1.0] for i in range(book_limit) if 1000.0 - i != removed]
        return {"bids": bids, "asks": [[1001.0 + i, 1.0] for i in range(book_limit)]}

    for book_limit, covered in ((50, False), (limit, True)):
        guard = plugin.books.Range()
        snapshot = plugin.books.edges(kept(book_limit, removed=-1), book_limit)
        assert guard.covers(kept(book_limit, removed=-1), snapshot, 50, book_limit)
        assert guard.covers(kept(book_limit, removed=990.0), snapshot, 50, book_limit) is covered


class _SlowListing:
    """A ccxt exchange whose listing reload takes `reload_s` (queued behind a rate
    limiter, or a big exchangeInfo to fetch and parse)."""

    def __init__(self, reload_s: float) -> None:
        self.markets: dict[str, Any] = {"BTC/USDT:USDT": {"active": True}}
        self.clients: dict[str, Any] = {}
        self.reload_s, self.reloads = reload_s, 0

    async def load_markets(self, reload: bool = False) -> dict[str, Any]:
        self.reloads += 1
        await asyncio.sleep(self.reload_s)
        return self.markets

    async def close(self) -> None:
        pass


def test_a_listing_reload_never_holds_up_the_books() -> None:
    """The watch loop looks at the listing once a tick; awaiting a due reload there
    kept the books from being yielded meanwhile (a resync's REST call ahead in ccxt's
    rate limiter made it ~0.5 s on Binance USD-M, so slots got books that old). The
    listing is read as it stands and reloaded in the background."""
    from obd.errors import NotFound

    plugin = _plugin()
    exchange = plugin.CcxtExchange("binanceusdm", plugin.CcxtOptions(markets_ttl_s=1))
    listing = _SlowListing(reload_s=5.0)
    exchange._exchange = listing

    async def inspect() -> None:
        await asyncio.wait_for(exchange._inspect(listing, "BTC/USDT:USDT"), 0.5)
        await asyncio.sleep(0.05)
        assert listing.reloads == 1  # under way, in the background
        await exchange._inspect(listing, "BTC/USDT:USDT")
        assert listing.reloads == 1  # one reload at a time
        listing.markets["BTC/USDT:USDT"]["active"] = False  # delisted: seen at once
        with pytest.raises(NotFound, match="not trading"):
            await exchange._inspect(listing, "BTC/USDT:USDT")
        await exchange.close()

    asyncio.run(inspect())
