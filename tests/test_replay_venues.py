"""One contract over every replay venue: `tests/emulator/replay/venues/<ccxt id>.py`
with its recording `tests/data/recordings/<ccxt id>.jsonl.zst` (found by name, so a
new venue is checked as soon as both exist). The end-to-end checks (ccxt, obd) are
each venue's own; this one is fast and catches what breaks them all."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import REPO
from tests.emulator.replay import recording as rec
from tests.emulator.replay.venue import FAULTS, Conn, RestRequest, create_venue

VENUES = REPO / "tests" / "emulator" / "replay" / "venues"
RECORDINGS = REPO / "tests" / "data" / "recordings"
IDS = sorted(
    path.stem
    for path in VENUES.glob("*.py")
    if path.stem != "__init__" and (RECORDINGS / f"{path.stem}.jsonl.zst").is_file()
)


def test_the_binance_family_is_covered() -> None:
    assert {"binance", "binanceusdm", "binancecoinm"} <= set(IDS)


def _urls(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _urls(item)
    elif isinstance(value, str) and "://" in value:
        yield value


@pytest.mark.parametrize("exchange_id", IDS)
def test_venue_contract(exchange_id: str) -> None:
    recording = rec.load(RECORDINGS / f"{exchange_id}.jsonl.zst")
    venue = create_venue(exchange_id, recording)
    assert venue.exchange_id == exchange_id
    assert venue.faults <= set(FAULTS)
    symbols = venue.symbols()
    assert symbols
    assert len(set(symbols)) == len(symbols)

    table = venue.exchanges_config("http://127.0.0.1:9")
    assert table["urls"]
    urls = list(_urls(table["urls"]))
    assert urls
    assert all(url.split("://", 1)[1].startswith("127.0.0.1:9") for url in urls), urls

    assert venue.rest(RestRequest("GET", "/not/an/exchange/path", {})) is None
    assert venue.rest_error(429, 1).status == 429
    assert venue.rest_error(503, 1).status == 503
    assert isinstance(venue.on_open(Conn("c1", "/", {})), list)

    concerned: set[str] = set()
    for entry in recording.recv:
        about = venue.apply(entry)
        assert set(about) <= set(symbols), (entry.line, about)
        concerned.update(about)
    assert concerned == set(symbols)  # the recording moves every book it serves
    for symbol in symbols:
        _assert_sane(venue.book(symbol, 20), symbol)


def _assert_sane(book: Any, symbol: str) -> None:
    bids = [Decimal(price) for price, _ in book.bids]
    asks = [Decimal(price) for price, _ in book.asks]
    assert 0 < len(bids) <= 20
    assert 0 < len(asks) <= 20
    assert bids == sorted(bids, reverse=True), symbol
    assert asks == sorted(asks), symbol
    assert bids[0] < asks[0], symbol  # never crossed
    assert all(Decimal(size) > 0 for _, size in book.bids + book.asks), symbol
