"""Collection: the collector follows the coins table and runs one sampler per coin
(`obd.collect.sampler`: the slots, the live book, the gaps and their reasons)."""

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from obd.collect.sampler import Sampler
from obd.exchanges import Exchanges
from obd.model import Coin
from obd.storage import reader
from obd.storage.connect import open_reader
from obd.storage.writer import Writer

log = structlog.get_logger("obd.collect")

POLL_S = 0.5  # how often the coins table is checked for changes by other processes


class Collector:
    """Runs a sampler for every active coin in the file, following changes to it."""

    def __init__(self, exchanges: Exchanges, writer: Writer, started_ms: int) -> None:
        self.exchanges = exchanges
        self._writer = writer
        self._started_ms = started_ms
        self._samplers: dict[int, tuple[Sampler, asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="obd-coins")
        self._conn: Any = None

    def wake(self) -> None:
        """Look at the coins table now (this process changed it)."""
        self._wake.set()

    def samplers(self) -> list[Sampler]:
        return [sampler for sampler, _ in self._samplers.values()]

    def sampler(self, coin_id: int) -> Sampler | None:
        entry = self._samplers.get(coin_id)
        return entry[0] if entry else None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        failed: list[Exception] = []
        watcher = threading.Thread(
            target=self._watch_file, args=(loop, stop, failed), name="obd-coins-watch", daemon=True
        )
        watcher.start()
        try:
            async with asyncio.TaskGroup() as tasks:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    if failed:
                        raise failed[0]
                    await self._reconcile(tasks)
        finally:
            stop.set()
            self._thread.shutdown(wait=False)

    def _watch_file(
        self, loop: asyncio.AbstractEventLoop, stop: threading.Event, failed: list[Exception]
    ) -> None:
        """On a thread of its own: every POLL_S, whether another connection committed
        (`PRAGMA data_version`) and, if so, whether the active coins changed; the loop
        is woken only for that. This process's own writer commits every slot, so a
        poll on the loop would wake it, and hop threads, several times a second for
        nothing (each wake-up costs ~0.1-0.2 ms of CPU on a small VM)."""
        conn = None
        seen_version, seen_coins = None, None
        try:
            conn = open_reader(self._writer.path)
            while True:
                version = reader.data_version(conn)
                if version != seen_version:
                    seen_version = version
                    coins = reader.coins(conn)
                    if coins != seen_coins:  # the first look always wakes: the first reconcile
                        seen_coins = coins
                        _wake(loop, self._wake)
                if stop.wait(POLL_S):
                    return
        except Exception as exc:  # handed to run(), which fails as the poll on the loop did
            failed.append(exc)
            _wake(loop, self._wake)
        finally:
            if conn is not None:
                conn.close()

    async def _reconcile(self, tasks: asyncio.TaskGroup) -> None:
        wanted = {coin.id: coin for coin in await self._in_thread(self._active_coins)}
        for coin_id, (sampler, task) in list(self._samplers.items()):
            if wanted.get(coin_id) != sampler.coin:
                task.cancel()
                del self._samplers[coin_id]
                log.info("coin_stopped", exchange=sampler.coin.exchange, symbol=sampler.coin.symbol)
        for coin_id, coin in wanted.items():
            if coin_id not in self._samplers:
                until = await self._in_thread(reader.accounted_until, self._connection(), coin)
                sampler = Sampler(coin, self.exchanges, self._writer, self._started_ms)
                name = f"sampler {coin.exchange} {coin.symbol}"
                self._samplers[coin_id] = (
                    sampler,
                    tasks.create_task(sampler.run(until), name=name),
                )
                log.info(
                    "coin_started",
                    exchange=coin.exchange,
                    symbol=coin.symbol,
                    interval_ms=coin.interval_ms,
                    depth=coin.depth,
                )

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = open_reader(self._writer.path)
        return self._conn

    def _active_coins(self) -> list[Coin]:
        return reader.coins(self._connection())

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def _wake(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    """Set `event` from another thread; nothing to tell once the loop has closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(event.set)
