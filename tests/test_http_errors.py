"""Bad input: a 4xx JSON error naming the problem, never a 500, and nothing stored changes."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.conftest import Daemon, wait_for, write_config

COIN = {"exchange": "sim", "symbol": "BTC/USDT"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory: Path = tmp_path_factory.mktemp("errors")
    running = Daemon(
        write_config(
            directory, coins='[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
        )
    )
    wait_for(lambda: running.http.get("/v1/coins").json()["items"][0]["count"] >= 2)
    yield running
    assert running.stop() == 0


def _coins(daemon: Daemon) -> list[tuple[str, str, str, int]]:
    items = daemon.http.get("/v1/coins").json()["items"]
    return [(c["exchange"], c["symbol"], c["interval"], c["depth"]) for c in items]


def _assert_error(response: Any, status: int, mentions: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert mentions.lower() in error["message"].lower(), error
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        ({"exchange": "nosuch", "symbol": "BTC/USDT"}, 404, "nosuch"),
        ({"exchange": "sim", "symbol": "ZZZNOTLISTED/USDT"}, 404, "not listed"),
        ({**COIN, "interval": "7x"}, 400, "interval"),
        ({**COIN, "interval": "0"}, 400, "interval"),
        ({**COIN, "interval": -5}, 400, "interval"),
        ({**COIN, "interval": "\u00b3"}, 400, "interval"),
        ({**COIN, "interval": "\u00b3s"}, 400, "interval"),
        ({**COIN, "interval": "1s", "depth": 0}, 400, "depth"),
        ({**COIN, "depth": 10**9}, 400, "depth"),
        ({**COIN, "depth": "deep"}, 400, "depth"),
        ({"exchange": 5, "symbol": "BTC/USDT"}, 400, "exchange"),
        ({"exchange": "sim"}, 400, "symbol"),
        ({**COIN, "intervall": "1s"}, 400, "intervall"),
        ([1, 2], 400, "body"),
        ({"exchange": "SIM!", "symbol": "BTC/USDT"}, 400, "exchange"),
        ({"exchange": "sim", "symbol": "BTC USDT"}, 400, "symbol"),
        ({**COIN, "interval": "5m"}, 409, "already collected"),
    ],
)
def test_add_coin_rejects(daemon: Daemon, body: Any, status: int, mentions: str) -> None:
    before = _coins(daemon)
    _assert_error(daemon.http.post("/v1/coins", json=body), status, mentions)
    assert _coins(daemon) == before


def test_add_coin_rejects_malformed_json(daemon: Daemon) -> None:
    before = _coins(daemon)
    response = daemon.http.post(
        "/v1/coins", content=b"{not json", headers={"content-type": "application/json"}
    )
    _assert_error(response, 400, "body")
    json_type = {"content-type": "application/json"}
    _assert_error(daemon.http.post("/v1/coins", content=b"x" * 100_000, headers=json_type), 413, "")
    assert _coins(daemon) == before


@pytest.mark.parametrize(
    ("query", "status", "mentions"),
    [
        ({"exchange": "nosuch", "symbol": "BTC/USDT"}, 404, "nosuch"),
        ({"exchange": "sim", "symbol": "SOL/USDT"}, 404, "not collected"),
        ({"symbol": "BTC/USDT"}, 400, "exchange"),
        ({**COIN, "start": "10", "end": "5"}, 400, "start"),
        ({**COIN, "start": "5", "end": "5"}, 400, "start"),
        ({**COIN, "start": "yesterday"}, 400, "start"),
        ({**COIN, "end": "99999999999999999999"}, 400, "end"),
        ({**COIN, "limit": "0"}, 400, "limit"),
        ({**COIN, "limit": "1000000"}, 400, "limit"),
        ({**COIN, "limit": "-1"}, 400, "limit"),
        ({**COIN, "limit": "ten"}, 400, "limit"),
        # Unicode digits pass str.isdigit() but not int(): a fuzzer's 500s (issue 17).
        ({**COIN, "limit": "\u00b2"}, 400, "limit"),
        ({**COIN, "start": "\u00b2"}, 400, "start"),
        ({**COIN, "start": "\u0663\u0663"}, 400, "start"),
        ({**COIN, "start": "--5"}, 400, "start"),
        ({**COIN, "start": "-\u00b2h"}, 400, "start"),
        ({**COIN, "cursor": "garbage!"}, 400, "cursor"),
        ({**COIN, "start": "1000", "cursor": "b2JkMTo1"}, 400, "cursor"),  # ts 5: outside the range
        ({**COIN, "format": "xml"}, 400, "format"),
    ],
)
def test_books_rejects(daemon: Daemon, query: dict[str, str], status: int, mentions: str) -> None:
    _assert_error(daemon.http.get("/v1/books", params=query), status, mentions)


@pytest.mark.parametrize(
    ("path", "query", "status", "mentions"),
    [
        ("/v1/books/latest", {"exchange": "sim", "symbol": "ETH/USDT"}, 404, "not collected"),
        (
            "/v1/coverage",
            {**COIN, "start": "2026-01-01T00:00:00Z", "end": "2025-01-01"},
            400,
            "start",
        ),
        ("/v1/coverage", {**COIN, "start": "not a date"}, 400, "start"),
        ("/v1/availability", {"exchange": "nosuch", "symbol": "BTC/USDT"}, 404, "nosuch"),
        ("/v1/availability", {"exchange": "sim"}, 400, "symbol"),
        ("/v1/nothing-here", {}, 404, ""),
    ],
)
def test_other_routes_reject(
    daemon: Daemon, path: str, query: dict[str, str], status: int, mentions: str
) -> None:
    _assert_error(daemon.http.get(path, params=query), status, mentions)


def test_remove_unknown_coin_is_404(daemon: Daemon) -> None:
    before = _coins(daemon)
    _assert_error(
        daemon.http.delete("/v1/coins", params={"exchange": "sim", "symbol": "XRP/USDT"}),
        404,
        "not being collected",
    )
    assert _coins(daemon) == before


def test_availability(daemon: Daemon) -> None:
    listed = daemon.http.get("/v1/availability", params=COIN).json()
    assert listed["available"] is True
    unlisted = daemon.http.get(
        "/v1/availability", params={"exchange": "sim", "symbol": "ZZZNOTLISTED/USDT"}
    ).json()
    assert unlisted["available"] is False
    assert "not listed" in unlisted["reason"]


def test_add_and_remove_round_trip(daemon: Daemon) -> None:
    created = daemon.http.post(
        "/v1/coins", json={"exchange": "sim", "symbol": "SOL/USDT", "interval": "2s", "depth": 7}
    )
    assert created.status_code == 201, created.text
    again = daemon.http.post(
        "/v1/coins", json={"exchange": "sim", "symbol": "SOL/USDT", "interval": "2s", "depth": 7}
    )
    assert again.status_code == 200
    assert again.json()["interval"] == "2s"
    removed = daemon.http.delete("/v1/coins", params={"exchange": "sim", "symbol": "SOL/USDT"})
    assert removed.status_code == 200
    assert removed.json()["status"] == "removed"


def test_msgpack_on_accept(daemon: Daemon) -> None:
    import msgspec

    response = daemon.http.get(
        "/v1/books/latest", params=COIN, headers={"accept": "application/msgpack"}
    )
    assert response.headers["content-type"] == "application/msgpack"
    assert msgspec.msgpack.decode(response.content)["symbol"] == "BTC/USDT"


def test_healthz_is_liveness_and_readyz_readiness(daemon: Daemon) -> None:
    """Liveness never looks at coins (a stale exchange must not get obd restarted);
    readiness has each coin's freshness. HEAD answers both with the status alone."""
    alive = daemon.http.get("/healthz")
    assert alive.status_code == 200
    assert "coins" not in alive.json()
    assert set(alive.json()) == {
        *("status", "writer_backlog", "writer_error"),
        *("disk_free_bytes", "warnings"),  # a low disk warns, never fails (test_low_disk.py)
    }
    assert (alive.json()["status"], alive.json()["writer_error"]) == ("ok", None)
    ready = daemon.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    assert [(c["symbol"], c["fresh"]) for c in ready.json()["coins"]] == [("BTC/USDT", True)]
    for path in ("/healthz", "/readyz"):
        head = daemon.http.head(path)
        assert (head.status_code, head.content) == (200, b"")


def test_every_log_line_names_version_and_pid(daemon: Daemon) -> None:
    """Lines from many hosts and restarts can be told apart (issue 12, item 7)."""
    from obd import __version__

    events = [line for line in daemon.log if "event" in line]
    assert events[0]["event"] == "starting"
    assert {(e["version"], e["pid"]) for e in events} == {(__version__, daemon.process.pid)}


def test_times_relative_to_now_work_over_http(daemon: Daemon) -> None:
    """`now`, `-1h`, ... are times wherever a time is taken (obd.times), HTTP included."""
    recent = daemon.http.get("/v1/books", params={**COIN, "start": "-1h", "end": "now"})
    assert recent.status_code == 200, recent.text
    assert recent.json()["items"]
    later = daemon.http.get("/v1/coverage", params={**COIN, "start": "-1d", "end": "now"})
    assert later.status_code == 200, later.text
    _assert_error(
        daemon.http.get("/v1/books", params={**COIN, "start": "-1y"}), 400, "relative to now"
    )


def test_a_wrong_method_is_405_with_allow(daemon: Daemon) -> None:
    response = daemon.http.put("/v1/coins", json=COIN)
    _assert_error(response, 405, "")
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST", "DELETE"}
    get_only = daemon.http.post("/v1/books/latest", json=COIN)
    _assert_error(get_only, 405, "")
    assert "GET" in get_only.headers["allow"]


def test_errors_honour_accept_msgpack(daemon: Daemon) -> None:
    msgpack = {"accept": "application/msgpack"}
    for response, status, code in [
        (
            daemon.http.get("/v1/books", params={**COIN, "limit": "ten"}, headers=msgpack),
            400,
            "bad_request",
        ),
        (daemon.http.get("/v1/nowhere", headers=msgpack), 404, "not_found"),
        (
            daemon.http.get("/v1/coins", headers={**msgpack, "host": "evil.example"}),
            403,
            "forbidden",
        ),
    ]:
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/msgpack")
        error = msgspec.msgpack.decode(response.content)["error"]
        assert error["code"] == code
        assert set(error) == {"code", "message"}


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/v1/books/latest", {**COIN, "levels": "5"}),
        ("GET", "/v1/books", {**COIN, "depth": "5"}),
        ("GET", "/v1/coins", {"exchange": "sim"}),
        ("GET", "/v1/coverage", {**COIN, "limit": "5"}),
        ("GET", "/v1/availability", {**COIN, "levels": "5"}),
        ("DELETE", "/v1/coins", {"exchange": "nosuch", "symbol": "X/Y", "levels": "5"}),
    ],
)
def test_unknown_query_parameter_is_a_400_naming_it(
    daemon: Daemon, method: str, path: str, query: dict[str, str]
) -> None:
    """Not silently ignored: `levels=5` used to return 100 levels (issue 12, item 4)."""
    unknown = (set(query) - {"exchange", "symbol"} or {"exchange"}).pop()
    response = daemon.http.request(method, path, params=query)
    _assert_error(response, 400, f"unknown query parameter '{unknown}'")
    assert response.json()["error"]["code"] == "bad_request"
    assert len(_coins(daemon)) == 1  # the DELETE changed nothing
