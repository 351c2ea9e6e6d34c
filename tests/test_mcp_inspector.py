"""A second real client: the official MCP Inspector CLI (TypeScript SDK, Ajv), over stdio
(`obd mcp`) and HTTP (`/mcp` of a running daemon), calling every tool with good and
bad arguments. The TypeScript SDK checks each structured result against the tool's
output schema as draft-07 reads it: issue 13 was found this way.

Needs `npx` (Node.js) and the npm registry (or npm's cache). Where either is missing,
or a version does not run on this Node, the tests are skipped and say why.
"""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from obd.mcp.tools import NAMES
from tests.test_mcp_tools import COIN, T0, filled_config

# 0.15.0: what `npx @modelcontextprotocol/inspector` installs on Node 20 (later ones
# declare Node 22); 2.12.0: current when this was written, and its CLI runs on Node 20.
# OBD_INSPECTOR_VERSIONS="a,b" tries others.
VERSIONS = os.environ.get("OBD_INSPECTOR_VERSIONS", "0.15.0,2.12.0").split(",")
OBD = Path(sys.executable).with_name("obd")  # the console script of this environment
CALL_TIMEOUT_S = 120
PARALLEL = 4  # Inspector runs at once: each is a Node process (and, over stdio, an obd)

SIM = {"exchange": "sim"}
GOOD: list[tuple[str, dict[str, Any]]] = [
    ("list_coins", {}),
    ("list_exchanges", {}),
    ("list_markets", {**SIM, "query": "btc", "limit": 3}),
    ("check_availability", {**SIM, "symbol": "ETH/USDT"}),
    ("get_latest", {**COIN, "levels": 3}),
    ("get_history", {**COIN, "start": T0, "end": "2026-01-01T00:00:30Z", "levels": 2}),
    # Holes before T0 and recorded gaps filled from sim first: the answer lists the rest.
    ("get_history", {**COIN, "start": T0 - 5_000, "end": T0 + 30_000, "backfill": True}),
    ("coverage", {**COIN, "start": T0, "end": T0 + 60_000}),
]
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("add_coin", {"exchange": "ccxt", "symbol": "BTC/USDT"}, "'ccxt' is the name of a plugin"),
    ("remove_coin", SIM, "symbol: required"),
    ("check_availability", {"exchange": "nope", "symbol": "BTC/USDT"}, "exchange 'nope'"),
    ("list_coins", {"lmit": 3}, "lmit: unknown argument"),
    ("list_exchanges", {"all": "yes"}, "all: unknown argument"),
    ("list_markets", {**SIM, "limit": 1000}, "limit:"),
    ("get_latest", {**COIN, "levels": 1000}, "levels:"),
    ("get_history", {**COIN, "start": "yesterday", "end": "now"}, "start:"),
    ("coverage", {**COIN, "start": T0 + 1000, "end": T0}, "start: must be before end"),
]
ETH = {**SIM, "symbol": "ETH/USDT"}


def _npx(
    version: str, *args: str, timeout: float = CALL_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    command = ["npx", "-y", f"@modelcontextprotocol/inspector@{version}", "--cli", *args]
    env = {**os.environ, "OBD_LOG_LEVEL": "warning", "NO_UPDATE_NOTIFIER": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module", params=VERSIONS)
def inspector(request: pytest.FixtureRequest) -> str:
    """An Inspector version that runs here, or a skip that says why not."""
    version = str(request.param)
    if shutil.which("npx") is None:
        pytest.skip("npx not found: install Node.js (20 or later) to run the Inspector CLI tests")
    try:
        probe = _npx(version, "--help", timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npx could not fetch @modelcontextprotocol/inspector@{version} in 10 min")
    if probe.returncode != 0:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
        lines = [line for line in probe.stderr.splitlines() if "complete log" not in line]
        why = " / ".join(line.strip() for line in lines[:3]) or f"exit {probe.returncode}"
        pytest.skip(
            f"@modelcontextprotocol/inspector@{version} not runnable (registry unreachable, "
            f"or not on Node {node.strip()}): {why[:300]}"
        )
    return version


def _call(version: str, target: list[str], name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """tools/call through the Inspector: the result as the TypeScript SDK accepted it.
    0.x sends arguments as `key=value` text, converted by the input schema's `type` (as
    a form-filling client does); 2.x sends them as typed JSON (as an agent does)."""
    new = not version.startswith("0.")
    pairs = [
        arg
        for key, value in arguments.items()
        for arg in (
            "--tool-arg",
            f"{key}={json.dumps(value) if isinstance(value, bool) else value}",
        )
    ]
    if new:
        pairs = ["--tool-args-json", json.dumps(arguments)]
    done = _npx(
        version,
        *target,
        "--method",
        "tools/call",
        "--tool-name",
        name,
        *(["--format", "json"] if new else []),
        *pairs,
    )
    # 0.x: the result, exit 0; 2.x: {"result": ...}, exit 5 on isError. Anything else,
    # such as a result the SDK found not to match the output schema, fails here.
    assert done.returncode in (0, 5), (name, done.stderr[-2000:])
    assert done.stdout.strip(), (name, done.stderr[-2000:])
    answer = json.loads(done.stdout.splitlines()[0] if new else done.stdout)
    result: dict[str, Any] = answer["result"] if new else answer
    return result


def _every_tool(version: str, target: list[str], downloads: dict[str, Any], bad: list[Any]) -> None:
    good = [*GOOD, ("download_history", downloads)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(lambda call: _call(version, target, *call[:2]), [*good, *bad]))
    # Writes in order: each stdio call is a new `obd mcp` on the same file.
    added = _call(version, target, "add_coin", {**ETH, "interval": "1s"})
    removed = _call(version, target, "remove_coin", ETH)
    for (name, _), result in zip(good, answers, strict=False):
        assert result.get("isError") is not True, (name, result)
        assert isinstance(result.get("structuredContent"), dict), name
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"], name
    for (name, _, mentions), result in zip(bad, answers[len(good) :], strict=True):
        assert result["isError"] is True, (name, result)
        assert mentions in result["content"][0]["text"], (name, result)
    assert added["structuredContent"]["coin"]["symbol"] == "ETH/USDT"
    assert removed["structuredContent"]["coin"]["status"] == "removed"
    called = {name for name, _ in good} | {name for name, _, _ in bad} | {"add_coin"}
    assert called == set(NAMES)


def _tools_list(version: str, target: list[str]) -> None:
    """Every tool listed; 2.x also checks the schemas' portability (`--strict`)."""
    new = not version.startswith("0.")
    extra = ["--strict", "--format", "json"] if new else []
    done = _npx(version, *target, "--method", "tools/list", *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = json.loads(done.stdout.splitlines()[0] if new else done.stdout)
    tools = (listed["result"] if new else listed)["tools"]
    assert [tool["name"] for tool in tools] == list(NAMES)
    assert all(tool.get("title") for tool in tools)


@pytest.fixture
def stdio_target(tmp_path: Path) -> list[str]:
    config = filled_config(tmp_path)
    return ["-e", f"OBD_CONFIG={config}", str(OBD), "mcp"]


def test_inspector_over_stdio(inspector: str, stdio_target: list[str], tmp_path: Path) -> None:
    _tools_list(inspector, stdio_target)
    escape = {**COIN, "start": T0, "end": "now", "format": "csv", "path": "/etc/obd-x.csv"}
    bad = [*BAD, ("download_history", escape, "path: '/etc/obd-x.csv' leaves")]
    name = f"inspector-{inspector}.csv"
    downloads = {**COIN, "start": T0, "end": T0 + 5_000, "format": "csv", "path": name}
    _every_tool(inspector, stdio_target, downloads, bad)
    assert (tmp_path / "downloads" / name).read_text().startswith("ts,exchange_ts,")
    assert not Path("/etc/obd-x.csv").exists()


def test_inspector_over_http(inspector: str, tmp_path: Path, start_daemon: Any) -> None:
    daemon = start_daemon(filled_config(tmp_path))
    target = [f"{daemon.url}/mcp"]
    _tools_list(inspector, target)
    parquet = {**COIN, "start": T0, "end": "now", "format": "parquet"}
    bad = [*BAD, ("download_history", parquet, "format: over HTTP download_history serves ndjson")]
    downloads = {**COIN, "start": T0, "end": "-0s", "format": "ndjson"}
    _every_tool(inspector, target, downloads, bad)
    assert daemon.stop() == 0
