"""`/v1/coverage/grid` and `/v1/summary`: the grid's numbers against the rows really
stored (a file written with the storage functions), and both routes over HTTP."""

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from obd.service.grid import grid
from obd.storage import reader
from obd.storage.connect import open_reader
from tests.conftest import Daemon, wait_for, write_config
from tests.ws_support import prefill

S, M, H = 1_000, 60_000, 3_600_000
T0 = 1_800_000_000_000 // H * H  # an hour boundary


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s slots over 3 h from T0: stored but for a 5-minute `disconnected` gap in hour 1
    and a 10-minute `daemon_down` one straddling hours 1 and 2; nothing after T0 + 3 h."""
    path = tmp_path_factory.mktemp("grid") / "obd.sqlite"
    holes = [(T0 + H + 10 * M, T0 + H + 15 * M, "disconnected")]
    holes += [(T0 + 2 * H - 5 * M, T0 + 2 * H + 5 * M, "daemon_down")]
    spans, at = [], T0
    for start, end, _ in holes:
        spans.append((at, start))
        at = end
    spans.append((at, T0 + 3 * H))
    prefill(path, spans, added_ts=T0 - 1, gaps=holes, distinct=50)
    return path


def test_each_bucket_counts_the_slots_really_stored(store: Path) -> None:
    conn = open_reader(store)
    try:
        coin = reader.coins(conn)[0]
        now = T0 + 4 * H + 30 * M
        found = grid(conn, coin, T0 - H, now, H, now)
        assert [b.start for b in found.buckets] == [T0 + k * H for k in range(-1, 5)]
        for bucket in found.buckets:
            low, high = max(bucket.start, T0 - H), min(bucket.start + H, now)
            assert bucket.present == reader.count(conn, coin.id, low, high)
            assert bucket.present + sum(bucket.reasons.values()) == bucket.expected
        hours = {b.start: b for b in found.buckets}
        assert hours[T0 - H].reasons == {"not_collected": 3600}
        assert hours[T0].reasons == {}
        assert hours[T0 + H].reasons == {"disconnected": 300, "daemon_down": 300}
        assert hours[T0 + 2 * H].reasons == {"daemon_down": 300}
        # After the newest slot nothing was collected and no daemon said why.
        assert hours[T0 + 3 * H].reasons == {"daemon_down": 3600}
        assert hours[T0 + 4 * H].expected == 1800  # the range ends at `now`
        assert [(gap.start, gap.end, gap.reason) for gap in found.gaps] == [
            (T0 - H, T0, "not_collected"),
            (T0 + H + 10 * M, T0 + H + 15 * M, "disconnected"),
            (T0 + 2 * H - 5 * M, T0 + 2 * H + 5 * M, "daemon_down"),
            (T0 + 3 * H, now, "daemon_down"),
        ]
        assert not found.gaps_truncated
        days = grid(conn, coin, T0, T0 + 3 * H, 24 * H, now)
        assert len(days.buckets) == 1
        assert days.buckets[0].present == 3 * 3600 - 900
    finally:
        conn.close()


# -- over HTTP --


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    coins = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
    running = Daemon(write_config(tmp_path_factory.mktemp("grid-http"), coins=coins))
    try:
        wait_for(lambda: running.http.get("/v1/coins").json()["items"][0]["count"] >= 5)
        yield running
    finally:
        assert running.stop() == 0


COIN = {"exchange": "sim", "symbol": "BTC/USDT"}


def test_summary_is_columnar_and_paged(daemon: Daemon) -> None:
    first = daemon.http.get("/v1/summary", params={**COIN, "limit": 2}).json()
    columns = first["columns"]
    assert list(columns) == [
        "ts",
        "best_bid",
        "best_ask",
        "mid",
        "spread_bps",
        "bid_size_10",
        "ask_size_10",
        "imbalance_10",
    ]
    assert all(len(values) == 2 for values in columns.values())
    assert first["next"] > columns["ts"][-1]
    rest = daemon.http.get("/v1/summary", params={**COIN, "start": first["next"]}).json()
    assert rest["columns"]["ts"][0] == first["next"]
    assert rest["next"] is None
    book = daemon.http.get("/v1/books", params={**COIN, "limit": 1}).json()["items"][0]
    assert columns["best_bid"][0] == book["bids"][0][0]
    every = daemon.http.get("/v1/summary", params={**COIN, "every": "1h"}).json()
    assert len(every["columns"]["ts"]) <= 2  # the first snapshot of each UTC hour
    packed = daemon.http.get("/v1/summary", params=COIN, headers={"accept": "application/msgpack"})
    assert packed.headers["content-type"] == "application/msgpack"
    assert msgspec.msgpack.decode(packed.content)["columns"]["ts"][0] == columns["ts"][0]


def test_grid_over_http(daemon: Daemon) -> None:
    found = daemon.http.get("/v1/coverage/grid", params={**COIN, "start": "-3h"}).json()
    assert set(found) == {
        *("start", "end", "bucket_ms", "interval_ms", "buckets", "gaps", "gaps_truncated"),
        "backfill",
        "providers",
    }
    assert found["backfill"] is True  # sim serves history
    assert found["providers"] == ["plugin"]
    assert found["bucket_ms"] == H
    assert len(found["buckets"]) in (3, 4)  # -3h is rarely on an hour boundary
    last = found["buckets"][-1]
    assert last["present"] >= 5
    assert last["present"] + sum(last["reasons"].values()) == last["expected"]
    days = daemon.http.get("/v1/coverage/grid", params={**COIN, "bucket": "1d"}).json()
    assert days["bucket_ms"] == 24 * H


@pytest.mark.parametrize(
    ("path", "params", "mentions"),
    [
        ("/v1/summary", {**COIN, "levels": "5"}, "unknown query parameter 'levels'"),
        ("/v1/summary", {**COIN, "every": "soon"}, "every"),
        ("/v1/summary", {**COIN, "limit": "0"}, "limit"),
        ("/v1/summary", {"exchange": "sim"}, "symbol"),
        ("/v1/coverage/grid", {**COIN, "bucket": "0"}, "bucket"),
        ("/v1/coverage/grid", {**COIN, "bucket": "1s", "start": "-1d"}, "at most 5000"),
        ("/v1/coverage/grid", {**COIN, "start": "now", "end": "-1h"}, "start"),
        ("/v1/coverage/grid", {**COIN, "every": "1h"}, "unknown query parameter 'every'"),
    ],
)
def test_bad_input_is_a_400_naming_it(
    daemon: Daemon, path: str, params: dict[str, str], mentions: str
) -> None:
    refused = daemon.http.get(path, params=params)
    assert refused.status_code == 400, refused.text
    assert mentions in refused.json()["error"]["message"]


def test_an_unknown_coin_is_a_404(daemon: Daemon) -> None:
    for path in ("/v1/summary", "/v1/coverage/grid"):
        refused = daemon.http.get(path, params={"exchange": "sim", "symbol": "NOPE/USDT"})
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"


def test_both_routes_are_in_the_openapi_document(daemon: Daemon) -> None:
    paths = daemon.http.get("/schema/openapi.json").json()["paths"]
    for path, takes in (
        ("/v1/summary", ["exchange", "symbol", "start", "end", "every", "limit"]),
        ("/v1/coverage/grid", ["exchange", "symbol", "start", "end", "bucket"]),
    ):
        operation = paths[path]["get"]
        assert [p["name"] for p in operation["parameters"]] == takes
        assert operation["security"] == [{"bearer": ["read"]}, {}]  # auth off: optional
    assert "/" not in paths  # the page is not API


def test_the_page_and_its_files_name_their_type_once(daemon: Daemon) -> None:
    """Litestar adds the charset to text types itself: a second one confused no browser
    but is wrong (RFC 9110 allows one)."""
    for path, kind in (("/", "text/html"), ("/ui/app.js", "text/javascript")):
        got = daemon.http.get(path)
        assert got.status_code == 200
        assert got.headers["content-type"] == f"{kind}; charset=utf-8"
    assert daemon.http.get("/ui/nope.js").status_code == 404
