"""Helpers for the `/v1/ws` tests: configs, a pre-filled store, the daemon's log, and a
real `websockets` client."""

import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from obd.model import Book, Coin
from obd.storage import codec, coins
from obd.storage.connect import open_writer
from obd.storage.schema import migrate
from obd.storage.writer import SnapshotIn, insert_snapshot, record_gap
from tests.conftest import PLUGINS, Daemon, write_config

SIM = {"exchange": "sim", "symbol": "BTC/USDT"}


def config(
    directory: Path,
    coins_toml: str = "",
    *,
    plugin_dirs: tuple[Path, ...] = (PLUGINS,),
    extra: str = "",
) -> Path:
    return write_config(directory, extra, coins=coins_toml, plugins=plugin_dirs)


def sim_alias(directory: Path, name: str, body: str = "") -> Path:
    """A plugin directory holding `name`: the sim market under another exchange id, with
    `body` (Python) appended to change it; the directory is returned."""
    plugins = directory / "plugins"
    plugins.mkdir(mode=0o700, exist_ok=True)
    (plugins / f"{name}.py").write_text(
        f"""
import importlib.util
import sys

import msgspec

_spec = importlib.util.spec_from_file_location(
    "obd_test_sim_for_{name}", {str(PLUGINS / "sim.py")!r}
)
_sim = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _sim
_spec.loader.exec_module(_sim)
PLUGIN = msgspec.structs.replace(_sim.PLUGIN, name={name!r})
{body}
"""
    )
    return plugins


def coin_toml(symbol: str, depth: int, exchange: str = "sim", interval: str = "1s") -> str:
    return f"""
[[coins]]
exchange = "{exchange}"
symbol = "{symbol}"
interval = "{interval}"
depth = {depth}
"""


def ws_url(daemon: Daemon, query: str = "") -> str:
    return daemon.url.replace("http://", "ws://") + "/v1/ws" + query


async def open_ws(daemon: Daemon, query: str = "", **options: Any) -> ClientConnection:
    return await connect(ws_url(daemon, query), max_size=None, compression=None, **options)


async def ask(ws: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
    """Send one request; the next message that is not a live snapshot."""
    await ws.send(json.dumps(request))
    return await answer(ws)


async def answer(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message = decode(await ws.recv())
        if message["type"] != "snapshot":
            return message


def decode(frame: str | bytes) -> dict[str, Any]:
    value = msgspec.msgpack.decode(frame) if isinstance(frame, bytes) else json.loads(frame)
    assert isinstance(value, dict)
    return value


class Log:
    """Reads the daemon's stderr on a thread, so a test can wait for an event in it (and
    a chatty daemon never blocks on a full pipe)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._thread = threading.Thread(target=self._read, name="daemon log", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.daemon.process.stderr is not None
        for line in self.daemon.process.stderr:
            if line.strip():
                self.daemon.log.append(_event(line))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [event for event in list(self.daemon.log) if event.get("event") == name]

    def stop(self) -> int:
        """SIGTERM, read the log to its end, and the exit code."""
        self.daemon.process.send_signal(signal.SIGTERM)
        code = self.daemon.process.wait(timeout=30)
        self._thread.join(timeout=10)
        self.daemon.stop()
        return code


def _event(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {"raw": line}
    return event if isinstance(event, dict) else {"raw": line}


def prefill(
    path: Path,
    spans: list[tuple[int, int]],
    *,
    exchange: str = "sim",
    symbol: str = "BTC/USDT",
    interval_ms: int = 1000,
    depth: int = 10,
    added_ts: int,
    gaps: Sequence[tuple[int, int, str]] = (),
    distinct: int = 500,
) -> Coin:
    """A store holding a coin at `interval_ms` with a snapshot at every slot of each
    [start, end) span (and `gaps` recorded): written with the storage functions, before
    any daemon runs.

    Books cycle through `distinct` shapes whose encodings are computed once: the codec
    is not what this measures, and 100k encodings would take most of a minute.
    """
    books = [_book(i, depth) for i in range(distinct)]
    encoded = {id(book.bids): codec.encode(book.bids, book.asks) for book in books}
    real_encode = codec.encode
    codec.encode = lambda bids, asks, model=None: (
        encoded.get(id(bids)) or real_encode(bids, asks, model)
    )
    conn = open_writer(path)
    try:
        migrate(conn, added_ts)
        want = coins.CoinRequest(exchange, symbol, interval_ms, "1s", depth, True, 0.01, 1e-5)
        with conn:
            coin, _ = coins.add_coin(conn, want, added_ts)
            for start, end in spans:
                for n, ts in enumerate(range(start, end, interval_ms)):
                    book = books[n % distinct]
                    book = Book(book.bids, book.asks, exchange_ts=ts - 7)
                    insert_snapshot(conn, SnapshotIn(coin, ts, book, ts - 3, "synthetic"))
            for start, end, reason in gaps:
                record_gap(conn, coin.id, start, end, reason)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        codec.encode = real_encode
        conn.close()
    return coin


def _book(n: int, depth: int) -> Book:
    mid = 65_000 + n / 100
    bids = [(round(mid - (k + 1) / 100, 2), 0.5 + k) for k in range(depth)]
    asks = [(round(mid + (k + 1) / 100, 2), 0.25 + k) for k in range(depth)]
    return Book(bids, asks)


def now_slot(interval_ms: int = 1000) -> int:
    return time.time_ns() // 1_000_000 // interval_ms * interval_ms


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Sampler:
    """The highest of a value sampled every `every_s` on a thread, until stopped."""

    def __init__(self, read: Callable[[], float], every_s: float = 0.02) -> None:
        self.peak = read()
        self._read, self._every_s = read, every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._every_s):
            self.peak = max(self.peak, self._read())

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak
