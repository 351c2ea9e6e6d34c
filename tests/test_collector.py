"""The collector follows the coins table: changes another connection commits start and
stop samplers within a second, and this process's own commits wake nothing."""

import asyncio
import time
from pathlib import Path
from typing import Any

from obd.collect import POLL_S, Collector
from obd.config import load
from obd.context import open_runtime
from obd.storage import coins
from obd.storage.coins import CoinRequest
from obd.storage.connect import open_writer
from obd.times import now_ms
from tests.conftest import write_config

NOTICED_S = 1.0  # README: "a running daemon picks it up within a second"


async def _until(predicate: Any, limit_s: float) -> float:
    """Seconds until `predicate()` held; fails after `limit_s`."""
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < limit_s, "not noticed in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def _counting(collector: Collector) -> list[int]:
    """Counts `_reconcile` calls: each is a look at the coins table from the loop."""
    calls = [0]
    real = collector._reconcile

    async def counted(tasks: asyncio.TaskGroup) -> None:
        calls[0] += 1
        await real(tasks)

    collector._reconcile = counted  # type: ignore[method-assign]
    return calls


def test_coins_changed_by_another_connection_start_and_stop_within_a_second(
    tmp_path: Path,
) -> None:
    config = load(write_config(tmp_path))
    want = CoinRequest("sim", "ETH/USDT", 1000, "1s", 5, True)

    async def main() -> None:
        async with open_runtime(config, collector_started_ms=now_ms()) as runtime:
            collector = runtime.collector
            assert collector is not None
            collecting = asyncio.create_task(collector.run())
            await asyncio.sleep(2 * POLL_S)
            assert collector.samplers() == []
            other = open_writer(config.database)  # as `obd coins add` would, elsewhere
            try:
                with other:
                    coins.add_coin(other, want, now_ms())
                await _until(lambda: len(collector.samplers()) == 1, NOTICED_S)
                with other:
                    coins.remove_coin(other, "sim", "ETH/USDT")
                await _until(lambda: collector.samplers() == [], NOTICED_S)
            finally:
                other.close()
                collecting.cancel()

    asyncio.run(main())


def test_own_commits_do_not_wake_the_collector(tmp_path: Path) -> None:
    """The writer commits every slot; only a change to the coins wakes the loop."""
    config = load(write_config(tmp_path))
    want = CoinRequest("sim", "BTC/USDT", 1000, "1s", 5, True)

    async def main() -> None:
        async with open_runtime(config, collector_started_ms=now_ms()) as runtime:
            conn = open_writer(config.database)
            with conn:
                coins.add_coin(conn, want, now_ms())
            conn.close()
            collector = runtime.collector
            assert collector is not None
            calls = _counting(collector)
            collecting = asyncio.create_task(collector.run())
            try:
                await _until(lambda: len(collector.samplers()) == 1, NOTICED_S)
                written = runtime.writer.rows_written
                await _until(lambda: runtime.writer.rows_written >= written + 3, 10)
                assert calls[0] == 1  # the first look only
            finally:
                collecting.cancel()

    asyncio.run(main())
