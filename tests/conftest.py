"""Shared fixtures: a config on tmp_path, and the real daemon as a subprocess on port 0."""

import importlib.util
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "plugins.d"
TESTS = Path(__file__).resolve().parent

# What starting obd or another process looks like in a test's source, its fixtures' and
# the test helpers it calls: such tests are marked `daemon`, so `pytest -m "not daemon"`
# is the quick loop. The guard below fails any unmarked test that starts a process.
_SPAWNS = (
    "Daemon(",
    "start_daemon",
    "obd(",
    "subprocess",
    "Popen",
    "create_subprocess",
    "stdio_client",
    "npx",
)


def _spawns(function: object, seen: set[int], depth: int = 0) -> bool:
    """Whether `function` (a test, fixture or helper in tests/) can start a process."""
    if not callable(function) or id(function) in seen or depth > 4:
        return False
    if getattr(function, "__name__", "") == "_quick_tests_start_no_process":
        return False  # the guard names Popen; it starts nothing
    seen.add(id(function))
    function = inspect.unwrap(function)
    if not isinstance(function, FunctionType):
        return False
    try:
        if not Path(inspect.getfile(function)).resolve().is_relative_to(TESTS):
            return False
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    if any(token in source for token in _SPAWNS):
        return True
    codes = [function.__code__]
    codes += [c for c in function.__code__.co_consts if inspect.iscode(c)]
    names = {name for code in codes for name in code.co_names}
    called = []
    for name in names:
        found = function.__globals__.get(name)
        if isinstance(found, ModuleType):  # a helper module: `ws_support.connect(...)`
            called += [getattr(found, n) for n in names if hasattr(found, n)]
        elif found is not None:
            called.append(found)
    return any(_spawns(c, seen, depth + 1) for c in called)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        fixtures = item._fixtureinfo.name2fixturedefs.values()
        functions = [item.function, *(d[-1].func for d in fixtures if d)]
        seen: set[int] = set()
        # A `slow` test runs in real time (a replay at recorded pace, say): the full
        # loop's, like one that starts a process.
        slow = item.get_closest_marker("slow") is not None
        if slow or any(_spawns(function, seen) for function in functions):
            item.add_marker(pytest.mark.daemon)


@pytest.fixture(autouse=True)
def _quick_tests_start_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test not marked `daemon` must not start a process (the quick loop's promise)."""
    if request.node.get_closest_marker("daemon") is not None:
        return
    name = request.node.nodeid

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{name} starts a process but is not marked daemon: {args[:1]}")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


def load_plugin(name: str) -> ModuleType:
    """A plugin module from plugins.d, loaded in this process (registered in sys.modules
    before it runs: msgspec resolves its Structs' annotations through it)."""
    module_name = f"obd_test_plugins_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    package = PLUGINS / name
    if package.is_dir():  # a plugin package: its modules import each other relatively
        spec = importlib.util.spec_from_file_location(
            module_name, package / "__init__.py", submodule_search_locations=[str(package)]
        )
    else:
        spec = importlib.util.spec_from_file_location(module_name, PLUGINS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def write_config(
    directory: Path, body: str = "", *, coins: str = "", plugins: Path | Sequence[Path] = PLUGINS
) -> Path:
    """A config with the repo's plugins (or `plugins`), a database in `directory`, port 0."""
    dirs = [plugins] if isinstance(plugins, Path) else list(plugins)
    path = directory / "config.toml"
    path.write_text(
        f"""
[server]
port = 0
[storage]
path = "obd.sqlite"
[plugins]
dirs = {json.dumps([str(p) for p in dirs])}
entry_points = false
{body}
{coins}
"""
    )
    return path


def obd(
    *args: str, config: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the obd CLI in a subprocess, as a user would."""
    command = [sys.executable, "-m", "obd", *args]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OBD_LOG_LEVEL": "warning"},
    )


class Daemon:
    """`obd run` in a subprocess; `url` once it logged that it is serving."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "obd", "run", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_for_serving()
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def _wait_for_serving(self, timeout_s: float = 30) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError(f"obd run exited {self.process.wait()}: {self.log}")
            event = _parse(line)
            self.log.append(event)
            if event.get("event") == "serving":
                return str(event["url"])
        raise RuntimeError("obd run did not start serving in time")

    def stop(self) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.stderr:
                self.log += [_parse(line) for line in self.process.stderr if line.strip()]
                self.process.stderr.close()
        return code


def _parse(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {"raw": line}
    return event if isinstance(event, dict) else {"raw": line}


@pytest.fixture
def start_daemon() -> Iterator[Any]:
    started: list[Daemon] = []

    def start(config: Path, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(config, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        if daemon.process.stderr:
            daemon.process.stderr.close()
        daemon.http.close()


def wait_for(predicate: Any, timeout_s: float = 15, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every_s)
