"""The status page at `/` in a real browser: headless Chromium (Debian's `chromium`,
never a downloaded build) driven by Playwright against real daemons with sim coins at
1 s. Where Playwright or Chromium is missing these tests are skipped, saying so.

`OBD_SCREENSHOT=docs/img/status.png pytest tests/test_page.py` also saves the page as
the README shows it (otherwise the screenshot goes to the test's tmp directory only)."""

import asyncio
import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon, obd, wait_for, write_config
from tests.ws_support import answer, open_ws

CHROMIUM = os.environ.get("OBD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's `chromium` (.ci/run does where it can)",
        allow_module_level=True,
    )

COINS = """
[[coins]]
exchange = "sim"
symbol = "BTC/USDT"
interval = "1s"
depth = 25
[[coins]]
exchange = "sim"
symbol = "ETH/USDT"
interval = "1s"
depth = 25
"""
HOUR = 3_600_000
# Chromium reports every refused fetch as a console error; the auth test expects those.
_REFUSED = "the server responded with a status of 401"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The system Chromium, once per module (pytest-playwright is not used: its
    pytest-base-url dependency fails under pytest 9 with warnings as errors)."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab in its own context (its own session storage), closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Two sim coins at 1 s, with a `daemon_down` gap: collected, stopped for ~3 s, and
    started again on the same file."""
    config = write_config(tmp_path_factory.mktemp("page"), coins=COINS)
    first = Daemon(config)
    try:
        wait_for(lambda: all(c["count"] >= 3 for c in first.http.get("/v1/coins").json()["items"]))
    finally:
        assert first.stop() == 0
    time.sleep(3)
    running = Daemon(config)
    try:
        wait_for(lambda: _has_gap(running, "daemon_down"))
        counted = {c["symbol"]: c["count"] for c in running.http.get("/v1/coins").json()["items"]}
        wait_for(  # the restarted daemon stores again
            lambda: all(
                c["count"] >= counted[c["symbol"]] + 3
                for c in running.http.get("/v1/coins").json()["items"]
            )
        )
        # On its own thread: Playwright's sync API may hold this thread's event loop.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, _backfill(running, "SOL/USDT", "1m")).result()
        yield running
    finally:
        assert running.stop() == 0


async def _backfill(daemon: Daemon, symbol: str, interval: str) -> None:
    """A third coin whose last 24 h sim back-fills (a WebSocket `history` request): a
    heat-map row with every slot present."""
    coin = {"exchange": "sim", "symbol": symbol}
    assert daemon.http.post("/v1/coins", json={**coin, "interval": interval}).status_code == 201
    async with await open_ws(daemon) as ws:
        request = {"op": "history", **coin, "start": "-1d", "end": "now", "id": "fill"}
        await ws.send(json.dumps(request))
        while (message := await answer(ws))["type"] == "history_chunk":
            pass
        assert message["type"] == "history_complete", message
        assert message["backfilled"] > 1_000


def _has_gap(daemon: Daemon, reason: str) -> bool:
    found = daemon.http.get("/v1/coverage", params={"exchange": "sim", "symbol": "BTC/USDT"})
    return any(gap[2] == reason for gap in found.json()["gaps"])


@pytest.fixture
def errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions of the page, as they happen."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.append(f"uncaught: {e}"))
    return seen


def _open(page: Any, daemon: Daemon) -> None:
    page.goto(daemon.url + "/")
    page.wait_for_selector("#coins tbody tr", timeout=10_000)


def test_the_page_lists_the_coins_and_draws_the_book(
    page: Any, errors: list[str], daemon: Daemon, tmp_path: Path
) -> None:
    _open(page, daemon)
    rows = page.locator("#coins tbody tr")
    assert rows.count() == 3
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == [
        "BTC/USDT",
        "ETH/USDT",
        "SOL/USDT",
    ]
    assert rows.nth(0).locator("td").nth(9).inner_text() == "yes"  # synthetic
    assert page.locator("#add-form").is_visible()  # auth off: every caller may write
    # The depth chart draws: the canvas holds many painted pixels.
    page.wait_for_function(_PAINTED, arg=["#depth", 2000], timeout=5_000)
    page.wait_for_function(_PAINTED, arg=["#mid", 200], timeout=5_000)  # a minute of 1 h
    page.wait_for_selector("#heatmap .cell", timeout=5_000)
    # The back-filled coin, its mid and spread over the day, for the screenshot.
    page.locator("#coins tbody tr").nth(2).click()
    page.select_option("#summary-range", "24h")
    page.wait_for_function(
        "() => parseInt(document.querySelector('#summary-note').textContent) > 250"  # 5 min
    )
    page.wait_for_function(_PAINTED, arg=["#mid", 5000], timeout=5_000)
    page.wait_for_timeout(300)
    shot = tmp_path / "status.png"
    page.screenshot(path=str(shot), full_page=True)
    if target := os.environ.get("OBD_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    assert errors == []


_PAINTED = """([selector, least]) => {
  const c = document.querySelector(selector);
  const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
  return painted > least;
}"""


def test_the_age_of_the_last_snapshot_updates_without_a_reload(
    page: Any, errors: list[str], daemon: Daemon
) -> None:
    _open(page, daemon)
    first = page.locator("#coins tbody tr").nth(0)
    page.wait_for_function(
        "() => /s ago/.test(document.querySelector('#coins td.age').textContent)", timeout=5_000
    )
    last = first.locator("td.last").inner_text()
    assert "fresh" in (first.locator("td.age").get_attribute("class") or "")
    started = time.monotonic()
    # A newer snapshot shows within 3 s (the age is of the newest one, so it stays small).
    page.wait_for_function(
        "(last) => document.querySelector('#coins tbody tr td.last').textContent !== last",
        arg=last,
        timeout=3_000,
    )
    assert time.monotonic() - started < 3.5
    age = first.locator("td.age")
    assert "fresh" in (age.get_attribute("class") or "")
    assert int(age.inner_text().split()[0]) <= 5
    assert errors == []


def test_the_heat_map_has_a_cell_an_hour_coloured_by_slots_present(
    page: Any, errors: list[str], daemon: Daemon
) -> None:
    _open(page, daemon)
    page.wait_for_selector("#heatmap .hm-cells .cell")
    rows = page.locator("#heatmap .hm-cells")
    assert rows.count() == 3
    for i in range(3):
        cells = rows.nth(i).locator(".cell")
        assert cells.count() == 24  # the last 24 h, the current hour included
        starts = [int(s) for s in cells.evaluate_all("cs => cs.map(c => c.dataset.start)")]
        assert all(b - a == HOUR for a, b in itertools.pairwise(starts))
    filled = rows.nth(2).locator(".cell").evaluate_all("cs => cs.map(c => c.dataset.level)")
    assert filled[:-1] == ["full"] * 23  # every slot of the day back-filled
    cells = rows.nth(0).locator(".cell")
    found = cells.evaluate_all(
        "cs => cs.map(c => [c.dataset.start, c.dataset.level, c.dataset.share || null, "
        "c.dataset.reasons, getComputedStyle(c).backgroundColor, c.title])"
    )
    colours = page.evaluate(
        "() => Object.fromEntries(['full','high','mid','low','bad','empty','none'].map(n => "
        "{ const e = document.createElement('span'); e.className = 'cell lvl-' + n; "
        "document.body.append(e); const c = getComputedStyle(e).backgroundColor; e.remove(); "
        "return [n, c]; }))"
    )
    assert len(set(colours.values())) == 7  # each level its own colour
    for start, level, share, reasons, colour, title in found:
        grid = daemon.http.get(
            "/v1/coverage/grid",
            params={"exchange": "sim", "symbol": "BTC/USDT", "start": start, "bucket": "1h"},
        ).json()["buckets"][0]
        owed = grid["expected"] - sum(
            grid["reasons"].get(r, 0) for r in ("pending", "not_collected")
        )
        assert colour == colours[level]
        if owed <= 0:  # before the coin was first added: nothing was owed
            assert level == "none"
            continue
        # The page's cell says what the grid said when it read it (a moment earlier: the
        # present count has grown since, the daemon_down slots have not).
        said = dict(line.split(": ") for line in title.splitlines()[2:])
        assert said["daemon_down"] == f"{grid['reasons']['daemon_down']} slots"
        assert "daemon_down" in reasons.split()  # the hour the daemon was stopped in
        assert level == _level(float(share))
        assert level != "full"
        assert float(share) < 1
    assert [row[1] for row in found].count("none") >= 22  # collected for a minute only
    assert errors == []


def test_a_click_on_a_cell_lists_its_gaps_with_reasons(
    page: Any, errors: list[str], daemon: Daemon
) -> None:
    _open(page, daemon)
    page.locator("#heatmap .hm-cells").nth(0).locator(
        ".cell[data-level='low'], "
        ".cell[data-level='mid'], .cell[data-level='high'], .cell[data-level='bad']"
    ).last.click()
    page.wait_for_function(
        "() => document.querySelector('#gaps-range').textContent.includes('clicked')"
    )
    page.wait_for_function(
        "() => document.querySelector('#gaps-fill').textContent.includes('may fill these gaps')"
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gaps td')]"
        ".some(td => td.textContent === 'daemon_down')",
        timeout=5_000,
    )
    assert errors == []


def _level(share: float) -> str:
    """The page's colour scale (docs/PAGE.md)."""
    for bound, name in ((1, "full"), (0.99, "high"), (0.9, "mid"), (0.5, "low")):
        if share >= bound:
            return name
    return "bad" if share > 0 else "empty"


# -- auth on --


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, dict[str, str]]]:
    """A daemon with auth on (ES256), and tokens of a reader and a writer."""
    directory = tmp_path_factory.mktemp("page-auth")
    config = write_config(directory, "[auth]\nenabled = true\n", coins=COINS)
    running = Daemon(config)
    try:
        tokens = {}
        for name, scope in (("viewer", "read"), ("operator", "read,write")):
            assert obd("client", "add", name, "--scope", scope, config=config).returncode == 0
            issued = obd("token", "--client", name, config=config)
            assert issued.returncode == 0, issued.stderr
            tokens[name] = issued.stdout.strip()
        yield running, tokens
    finally:
        assert running.stop() == 0


def _enter(page: Any, token: str) -> None:
    page.locator("#token-input").fill(token)
    page.locator("#token-form button").click()


def test_with_auth_on_a_wrong_token_is_refused_clearly_and_a_right_one_works(
    page: Any, errors: list[str], guarded: tuple[Daemon, dict[str, str]]
) -> None:
    running, tokens = guarded
    page.goto(running.url + "/")
    page.wait_for_selector("#token-form", state="visible")
    assert page.locator("#main").is_hidden()
    _enter(page, "not-a-token")
    message = page.locator("#token-error")
    message.wait_for(state="visible")
    assert "refused" in message.inner_text()
    _enter(page, tokens["operator"])
    page.wait_for_selector("#coins tbody tr")
    assert page.locator("#coins tbody tr").count() == 2
    assert page.locator("#add-form").is_visible()  # the token has `write`
    page.wait_for_function(_PAINTED, arg=["#depth", 2000], timeout=5_000)  # the WebSocket feeds it
    page.wait_for_function("() => document.querySelector('#live').textContent.includes('live')")
    # The token is kept for the tab: a reload does not ask again.
    page.reload()
    page.wait_for_selector("#coins tbody tr")
    assert page.locator("#token-form").is_hidden()
    assert [e for e in errors if _REFUSED not in e] == []


def test_with_a_read_token_the_page_offers_no_add_or_remove(
    page: Any, errors: list[str], guarded: tuple[Daemon, dict[str, str]]
) -> None:
    running, tokens = guarded
    page.goto(running.url + "/")
    page.wait_for_selector("#token-form", state="visible")
    _enter(page, tokens["viewer"])
    page.wait_for_selector("#coins tbody tr")
    assert page.locator("#add-form").is_hidden()
    assert page.locator("#coins button.danger").count() == 0
    page.wait_for_selector("#heatmap .cell")
    assert [e for e in errors if _REFUSED not in e] == []


def test_the_page_and_its_files_are_served_with_a_strict_policy(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.url) as http:
        index = http.get("/")
        assert index.status_code == 200
        assert "default-src 'none'" in index.headers["content-security-policy"]
        for name in ("app.js", "style.css"):
            assert http.get(f"/ui/{name}").status_code == 200
        assert http.get("/ui/..%2Fpage.py").status_code == 404
        assert http.get("/ui/secret.txt").status_code == 404
