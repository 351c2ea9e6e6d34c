"""History providers in pieces: the peer's first-hand rule, the kernel's refusals, the
archive's symbol table, a download resumed with Range, the day-file cache and its cap."""

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from obd.config import Peer, Tardis
from obd.history.peer import PeerHistory
from obd.history.provider import HistoryRequest, Item, Served, Unserved
from obd.history.tardis import TardisArchive
from obd.model import Book
from obd.service.backfill import refusal
from tests.history_support import Archive, Rebuilt, day_path, gz, l2_lines


def _collect(provider: Any, request: HistoryRequest) -> list[Item]:
    async def go() -> list[Item]:
        return [item async for item in provider.history(request)]

    return asyncio.run(go())


@pytest.fixture
def peer_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    rows: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = "".join(json.dumps(row) + "\n" for row in rows).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", rows
    server.shutdown()
    server.server_close()


def _row(ts: int, capture: str) -> dict[str, Any]:
    return {
        "exchange": "sim",
        "symbol": "BTC/USDT",
        "ts": ts,
        "exchange_ts": ts - 7,
        "received_ts": ts - 3,
        "bids": [[100.0, 1.5]],
        "asks": [[101.0, 2.5]],
        "capture": capture,
        "seq": ts + 1,
    }


def test_the_peer_gives_first_hand_rows_only(peer_server: tuple[str, list[Any]]) -> None:
    url, rows = peer_server
    rows += [_row(0, "ws"), _row(1000, "backfill:tardis"), _row(1500, "ws"), _row(3000, "rest")]
    request = HistoryRequest("sim", "BTC/USDT", 0, 5000, 1000, 10)
    items = _collect(PeerHistory(Peer(url=url)), request)
    book = Book([(100.0, 1.5)], [(101.0, 2.5)], exchange_ts=-7, received_ts=-3, seq=1)
    assert items[0] == Served(0, book, "peer:ws")
    assert items[1] == Unserved(
        1000, 2000, "the peer's row is itself a back-fill (backfill:tardis), not first-hand"
    )
    # 1500 is off this series' grid: not one of its slots
    assert items[2] == Unserved(2000, 3000, "the peer has no snapshot there")
    assert isinstance(items[3], Served)
    assert (items[3].slot, items[3].label, items[3].book.received_ts) == (3000, "peer:rest", 2997)
    assert items[4] == Unserved(4000, 5000, "the peer has no snapshot there")


def test_the_kernel_refuses_books_it_cannot_store() -> None:
    good = Book([(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)])
    assert refusal(2000, good, 1000) is None
    assert refusal(2500, good, 1000) == "a book at 2500 ms, off the 1000 ms slot grid"
    assert refusal(2000, Book([], []), 1000) == "an empty book"
    crossed = Book([(101.0, 1.0)], [(101.0, 1.0)])
    assert "a crossed book" in (refusal(2000, crossed, 1000) or "")
    unsorted = Book([(99.0, 1.0), (100.0, 1.0)], [(101.0, 1.0)])
    assert refusal(2000, unsorted, 1000) == "a book with levels out of order"
    one_sided = Book([(99.0, 1.0)], [])
    assert refusal(2000, one_sided, 1000) is None


@pytest.mark.parametrize(
    ("exchange", "symbol", "expected"),
    [
        ("binance", "BTC/USDT", ("binance", "BTCUSDT")),
        ("binanceusdm", "BTC/USDT:USDT", ("binance-futures", "BTCUSDT")),
        ("binancecoinm", "BTC/USD:BTC", ("binance-delivery", "BTCUSD_PERP")),
        ("okx", "BTC/USDT", ("okex", "BTC-USDT")),
        ("okx", "BTC/USDT:USDT", ("okex-swap", "BTC-USDT-SWAP")),
        ("bybit", "BTC/USDT", ("bybit-spot", "BTCUSDT")),
        ("bybit", "BTC/USDT:USDT", ("bybit", "BTCUSDT")),
        ("coinbase", "BTC/USD", ("coinbase", "BTC-USD")),
        ("kraken", "BTC/USD", ("kraken", "XBT/USD")),
        ("deribit", "BTC-PERPETUAL", ("deribit", "BTC-PERPETUAL")),
    ],
)
def test_exchange_ids_and_symbols_map_to_the_archive(
    exchange: str, symbol: str, expected: tuple[str, str]
) -> None:
    assert TardisArchive(Tardis()).locate(exchange, symbol) == expected


def test_unknown_exchanges_are_named_or_refused() -> None:
    from obd.errors import HistoryNotAvailable

    with pytest.raises(HistoryNotAvailable, match=r"\[history.tardis\] exchanges"):
        TardisArchive(Tardis()).locate("myexchange", "BTC/USDT")
    named = TardisArchive(Tardis(exchanges={"myexchange": "binance"}))
    assert named.locate("myexchange", "BTC/USDT") == ("binance", "BTCUSDT")
    with pytest.raises(HistoryNotAvailable, match="no derivatives of binance"):
        TardisArchive(Tardis()).locate("binance", "BTC/USDT:USDT")


def _day(archive: TardisArchive, symbol: str, start: int, slots: int) -> list[Item]:
    request = HistoryRequest("binance", f"{symbol[:3]}/USDT", start, start + slots * 1000, 1000, 20)
    return _collect(archive, request)


def test_a_download_cut_mid_file_resumes_with_range(tmp_path: Path) -> None:
    lines = l2_lines("BTCUSDT")
    served = Archive()
    path = day_path("binance", "incremental_book_L2", "2024-08-08", "BTCUSDT")
    served.files[path] = gz(lines)
    served.cut[path] = 50_000
    rebuilt = Rebuilt(lines)
    start = rebuilt.first_ms - rebuilt.first_ms % 1000 + 1000
    try:
        items = _day(TardisArchive(Tardis(base_url=served.url)), "BTCUSDT", start, 100)
    finally:
        served.close()
    assert [r for _, r in served.requests] == ["", "bytes=50000-"]
    books = [item for item in items if isinstance(item, Served)]
    assert len(books) == 100
    expected = rebuilt.at([b.slot for b in books], 20)
    for book in books:
        want = expected[book.slot]
        assert want is not None
        assert [list(level) for level in book.book.bids] == want["bids"]
        assert [list(level) for level in book.book.asks] == want["asks"]


def test_day_files_are_cached_under_a_cap(tmp_path: Path) -> None:
    served = Archive()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        served.files[day_path("binance", "incremental_book_L2", "2024-08-08", symbol)] = gz(
            l2_lines(symbol)
        )
    cache = tmp_path / "cache"
    archive = TardisArchive(Tardis(base_url=served.url, cache_dir=str(cache), cache_mib=0.3))
    start = Rebuilt(l2_lines("BTCUSDT")).first_ms // 1000 * 1000 + 2000
    try:
        first = _day(archive, "BTCUSDT", start, 5)  # read 5 s in: the rest read for the cache
        assert len(list(cache.rglob("*.csv.gz"))) == 1
        assert _day(archive, "BTCUSDT", start, 5) == first  # from the cache: no request
        assert len(served.requests) == 1
        _day(archive, "ETHUSDT", start, 5)  # ~0.47 MiB cached > 0.3: BTCUSDT goes
        assert [p.name for p in cache.rglob("*.csv.gz")] == ["ETHUSDT.csv.gz"]
        assert _day(archive, "BTCUSDT", start, 5) == first
        assert len(served.requests) == 3
        assert not list(cache.rglob("*.part"))
    finally:
        served.close()


DROPIN = '''
import msgspec

from obd.history.provider import HistoryRequest, ProviderSpec, Served, Unserved
from obd.model import Book


class Options(msgspec.Struct, forbid_unknown_fields=True):
    spread: float = 1.0


class Echo:
    """Serves every other slot; says why not for the rest."""

    def __init__(self, options: Options):
        self.spread = options.spread

    async def history(self, request: HistoryRequest):
        for slot in range(request.start, request.end, request.interval_ms):
            if (slot // request.interval_ms) % 2:
                yield Unserved(slot, slot + request.interval_ms, "odd slots are not kept")
            else:
                yield Served(slot, Book([(100.0, 1.0)], [(100.0 + self.spread, 1.0)]), "echo")

    async def close(self):
        pass


PROVIDER = ProviderSpec(name="echo", factory=Echo, options=Options, description="a test")
'''


def test_a_provider_dropped_into_plugins_d_is_found_and_used(tmp_path: Path) -> None:
    from obd.config import load
    from obd.context import load_plugins, open_runtime
    from tests.conftest import PLUGINS, write_config

    dropins = tmp_path / "plugins"
    dropins.mkdir()
    (dropins / "echo.py").write_text(DROPIN)
    config_path = write_config(
        tmp_path,
        """
[history.exchanges]
nowhere = ["echo"]
[history.options.echo]
spread = 2.0
""",
        plugins=[PLUGINS, dropins],
    )
    config = load(config_path)
    found = {f.name: f for f in load_plugins(config).found}
    assert found["echo"].provider is not None
    assert found["echo"].error is None

    async def go() -> Any:
        async with open_runtime(config) as runtime:
            return await runtime.service.backfill(
                "nowhere", "A/B", 0, 4000, interval="1s", depth=5
            ), await runtime.service.books("nowhere", "A/B", 0, 4000)

    report, page = asyncio.run(go())
    assert [(row.ts, row.capture, row.asks) for row in page.items] == [
        (0, "backfill:echo", [(102.0, 1.0)]),
        (2000, "backfill:echo", [(102.0, 1.0)]),
    ]
    assert [(g.start, g.end, g.why) for g in report.unfilled] == [
        (1000, 2000, "echo: odd slots are not kept"),
        (3000, 4000, "echo: odd slots are not kept"),
    ]


def test_config_names_real_providers_and_urls(tmp_path: Path) -> None:
    from obd.config import History, load
    from obd.errors import ConfigError
    from obd.exchanges import Exchanges
    from obd.exchanges.discovery import Plugins
    from obd.history.registry import Providers

    with pytest.raises(ConfigError, match="no history provider 'nope'"):
        Providers(History(exchanges={"sim": ["nope"]}), Exchanges(Plugins(), {})).check()
    Providers(History(providers=["plugin", "tardis", "peer"]), Exchanges(Plugins(), {})).check()
    bad = tmp_path / "config.toml"
    bad.write_text('[history.peer]\nurl = "10.0.0.2:8787"\n')
    with pytest.raises(ConfigError, match=r"history.peer.url: expected an http\(s\) URL"):
        load(bad)
    bad.write_text("[history.tardis]\nretries = 99\n")
    with pytest.raises(ConfigError, match=r"history\.tardis\.retries"):
        load(bad)


def test_a_history_only_series_becomes_collected_when_added(tmp_path: Path) -> None:
    from obd.config import load
    from obd.context import open_runtime
    from tests.conftest import write_config

    config = load(write_config(tmp_path))  # providers = ["plugin"]: sim has history

    async def go() -> tuple[Any, Any, Any, Any]:
        async with open_runtime(config) as runtime:
            service = runtime.service
            start = 1_767_225_600_000  # 2026-01-01
            report = await service.backfill(
                "sim", "BTC/USDT", start, start + 10_000, interval="1s", depth=5
            )
            before = await service.list_coins()
            view, created = await service.add_coin("sim", "BTC/USDT", "1s", 5)
            covered = await service.coverage("sim", "BTC/USDT", start, start + 10_000, True)
            return report, before, (view, created), covered

    report, before, (view, created), covered = asyncio.run(go())
    assert report.backfilled == 10
    assert report.history_only
    assert [(c.symbol, c.status, c.synthetic) for c in before] == [
        ("BTC/USDT", "history-only", True)
    ]
    assert created
    assert view.status == "active"
    assert covered.present == 10
    assert covered.gaps == []
    assert covered.sources is not None
    assert [(s.end - s.start, s.capture) for s in covered.sources] == [(10_000, "backfill:sim")]
