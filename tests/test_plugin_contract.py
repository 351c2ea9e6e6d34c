"""The plugin contract (`obd.testing`) run over every plugin in plugins.d: `sim` as
is, `ccxt` against the Binance emulator (live, and REST only)."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from obd.plugin import Book, PluginSpec
from obd.testing import CHECKS, ContractViolation, check_plugin
from tests.conftest import load_plugin
from tests.emulator import Emulator
from tests.emulator.config import FAST


@pytest.mark.parametrize("check", CHECKS)
def test_sim(check: str) -> None:
    check_plugin(load_plugin("sim").PLUGIN, "sim", "BTC/USDT", options={"seed": 7}, only=[check])


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu
    assert emu.unexpected_requests() == []  # nothing asked of an endpoint not emulated


def _binance(emulator: Emulator, **options: Any) -> dict[str, Any]:
    """`[exchanges.binance]` with every ccxt URL on the emulator (as binance_table)."""
    spot = {"fetchMarkets": {"types": ["spot"]}}
    return {"urls": emulator.ccxt_urls(), "options": spot, **FAST, **options}


@pytest.mark.parametrize("live", [True, False], ids=["live", "rest"])
@pytest.mark.parametrize("check", CHECKS)
def test_ccxt(check: str, live: bool, emulator: Emulator) -> None:
    options = _binance(emulator, live=live)
    check_plugin(load_plugin("ccxt").PLUGIN, "binance", "BTC/USDT", options=options, only=[check])


class _Broken:
    """The sim market with one thing wrong, as a third-party plugin might have it."""

    synthetic = True

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self._sim = load_plugin("sim").PLUGIN.build("sim")

    async def check_availability(self, symbol: str) -> Any:
        return await self._sim.check_availability(symbol)

    async def watch(self, symbol: str, depth: int) -> AsyncIterator[Book]:
        async for book in self._sim.watch(symbol, depth):
            if self.fault == "crossed":
                book = Book(book.asks, book.bids, book.exchange_ts, book.received_ts)
            try:
                yield book
            except GeneratorExit:
                raise
            if self.fault == "swallows_cancel":
                while True:
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        return  # ends quietly: the kernel would think the feed ended

    async def close(self) -> None:
        await self._sim.close()


@pytest.mark.parametrize(
    ("fault", "check", "complaint"),
    [
        ("crossed", "watch", "not best first"),
        ("swallows_cancel", "watch_cancel", "must end cancelled"),
        ("no_options_check", "spec", "forbid_unknown_fields"),
    ],
)
def test_the_suite_catches_a_broken_plugin(fault: str, check: str, complaint: str) -> None:
    class Loose(msgspec.Struct, frozen=True):
        seed: int = 0

    plugin = PluginSpec(
        name="sim",
        factory=lambda exchange_id, options: _Broken(fault),
        options=Loose if fault == "no_options_check" else None,
    )
    with pytest.raises(ContractViolation, match=complaint):
        check_plugin(plugin, "sim", "BTC/USDT", timeout_s=10, only=[check])
