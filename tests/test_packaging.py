"""obd as pip installs it: the shipped exchanges come with the package (entry points in
group `obd.plugins`), plugins.d adds or overrides them, and a wheel built from this
checkout runs `obd check` and `obd run` in a fresh venv far from it."""

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from obd.config import Config, load
from obd.context import load_plugins
from obd.exchanges.discovery import discover
from tests.conftest import PLUGINS, REPO, _parse, wait_for

BUILT_INS = {"sim", "ccxt"}


@pytest.fixture(autouse=True)
def _entry_points_registered() -> None:
    """Entry points are install-time metadata: a venv installed before they existed
    must be reinstalled, and this says so rather than failing obscurely."""
    from importlib.metadata import entry_points

    registered = {point.name for point in entry_points(group="obd.plugins")}
    assert registered >= BUILT_INS, "run `pip install -e .` again: obd's entry points are new"


def test_every_package_ships() -> None:
    """pyproject names its packages (setuptools cannot find plugins.d's): every package
    under obd/ and plugins.d/ must be named, or a wheel ships without it."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    named = set(setuptools["packages"])
    assert setuptools["package-dir"] == {"obd_plugins": "plugins.d"}
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts) for init in REPO.glob("obd/**/__init__.py")
    }
    on_disk |= {"obd_plugins"} | {
        f"obd_plugins.{init.parent.name}" for init in PLUGINS.glob("*/__init__.py")
    }
    assert named == on_disk


def test_built_ins_are_entry_points() -> None:
    """Installed (editable here) obd serves sim and ccxt with no plugin directory."""
    registry = discover([])
    assert set(registry.names) >= BUILT_INS
    for found in registry.found:
        if found.name in BUILT_INS:
            assert found.origin == f"entry point obd_plugins.{found.name}:PLUGIN"
            assert found.error is None


def test_the_checkouts_plugins_d_is_not_loaded_twice() -> None:
    """Under an editable install the entry points load plugins.d's own files: the
    directory adds nothing, and nothing is reported overridden."""
    registry = discover([PLUGINS])
    names = [found.name for found in registry.found]
    assert sorted(names) == sorted(set(names)), registry.found
    assert not [found for found in registry.found if found.overridden_by or found.error]
    assert registry.warnings == []


def test_a_drop_in_overrides_a_built_in(tmp_path: Path) -> None:
    drop_ins = tmp_path / "plugins.d"
    drop_ins.mkdir(mode=0o755)
    drop_ins.chmod(0o755)
    shutil.copy(PLUGINS / "sim.py", drop_ins / "sim.py")
    registry = discover([drop_ins])
    (built_in,) = [f for f in registry.found if f.origin.startswith("entry point obd_plugins.sim")]
    assert built_in.overridden_by == str(drop_ins / "sim.py")
    assert registry.spec_for("sim") is not built_in.spec
    # the drop-in is its own module: the shipped one is still what it was
    assert sys.modules["obd_plugins.sim"].__file__ == str(PLUGINS / "sim.py")


def _config(tmp_path: Path, plugins: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(plugins)
    return load(path)


def test_a_missing_directory_named_in_config_is_a_warning(tmp_path: Path) -> None:
    registry = load_plugins(_config(tmp_path, '[plugins]\ndirs = ["nowhere"]\n'))
    missing = tmp_path / "nowhere"
    assert registry.warnings == [f"plugin directory {missing} does not exist (skipped)"]
    assert not [found for found in registry.found if found.error]
    assert set(registry.names) >= BUILT_INS  # the built-ins still serve


def test_the_default_directory_may_be_absent(tmp_path: Path) -> None:
    """No `[plugins] dirs`: plugins.d beside the config, if there is one; none is fine."""
    config = _config(tmp_path, "")
    assert config.plugin_dirs == [tmp_path / "plugins.d"]
    registry = load_plugins(config)
    assert registry.warnings == []
    assert set(registry.names) >= BUILT_INS


def test_a_file_named_as_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "plugins.d").write_text("")
    registry = load_plugins(_config(tmp_path, '[plugins]\ndirs = ["plugins.d"]\n'))
    assert [found.error for found in registry.found if found.error] == ["not a directory"]


@pytest.mark.parametrize("shipped", ["config.toml", "systemd/config.toml"])
def test_shipped_configs_need_no_plugin_directory(tmp_path: Path, shipped: str) -> None:
    """Both serve the shipped exchanges from the package wherever they are copied
    (/etc/obd/config.toml reads /etc/obd/plugins.d only if it exists)."""
    text = (REPO / shipped).read_text()
    assert "/opt/obd" not in text
    config = _config(tmp_path, text)
    assert config.plugins.dirs is None
    registry = load_plugins(config)
    assert registry.warnings == []
    assert set(registry.names) >= BUILT_INS


# -- the wheel, in a fresh venv outside the checkout --------------------------------------

SIM_CONFIG = """
[server]
port = 0
[storage]
path = "obd.sqlite"
[[coins]]
exchange = "sim"
symbol = "BTC/USDT"
interval = "1s"
"""


def _run(command: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH, no OBD_CONFIG: nothing may point back at the checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OBD_CONFIG")}
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` from a copy of the sources: an in-tree build would leave build/ and
    *.egg-info in the checkout. Whatever the wheel is named (pure or with a C part)."""
    source = tmp_path / "source"
    skip = {".git", ".venv", "tests", "benchmarks", "build", "dist", "*.egg-info", "*.sqlite*"}
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*skip, "__pycache__", ".*_cache"))
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", "."],
        cwd=source,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("obd-*.whl")
    return wheel


def _install(wheel: Path, venv: Path) -> Path:
    created = _run([sys.executable, "-m", "venv", venv], cwd=venv.parent, timeout=300)
    assert created.returncode == 0, created.stderr
    # Dependencies come from pip's configured index (and its cache); --no-compile
    # skips byte-compiling ccxt's thousands of files, which the first run does lazily.
    pip: list[str | Path] = [
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--no-compile",
        wheel,
    ]
    installed = _run(pip, cwd=venv.parent, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv / "bin" / "obd"


def _wheel_holds_the_runtime_files(wheel: Path) -> None:
    """Everything under obd/ and plugins.d/ that is not a cache is in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        str(Path("obd", path.relative_to(REPO / "obd")))
        for path in (REPO / "obd").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".so", ".c")
    }
    expected |= {
        str(Path("obd_plugins", path.relative_to(PLUGINS)))
        for path in PLUGINS.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert expected - names == set()


def test_the_wheel_runs_sim_in_a_fresh_venv(tmp_path: Path) -> None:
    started = time.monotonic()
    wheel = _build_wheel(tmp_path)
    _wheel_holds_the_runtime_files(wheel)
    built_s = time.monotonic() - started
    obd_bin = _install(wheel, tmp_path / "venv")
    installed_s = time.monotonic() - started - built_s
    print(f"wheel built in {built_s:.1f} s, installed with its dependencies in {installed_s:.1f} s")

    site = tmp_path / "site"  # a config anywhere, no plugins.d beside it
    site.mkdir()
    (site / "config.toml").write_text(SIM_CONFIG)
    config: list[str | Path] = ["--config", site / "config.toml"]

    listed = _run([obd_bin, "plugins", *config], cwd=site, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "entry point obd_plugins.sim:PLUGIN\tok" in listed.stdout
    assert str(REPO) not in listed.stdout  # served from the venv, not the checkout

    checked = _run([obd_bin, "check", *config], cwd=site, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert "sim" in checked.stdout
    assert "plugin" not in checked.stderr  # no plugin directory named, none missed

    # A plugins.d named in the config but absent: a warning, the built-ins still serve.
    named = site / "named.toml"
    named.write_text(SIM_CONFIG + '[plugins]\ndirs = ["plugins.d"]\n')
    warned = _run([obd_bin, "check", "--config", named], cwd=site, timeout=120)
    assert warned.returncode == 0, warned.stderr
    assert "plugin directory" in warned.stderr
    assert "does not exist" in warned.stderr

    _run_until_a_snapshot(obd_bin, site)


def _run_until_a_snapshot(obd_bin: Path, site: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OBD_CONFIG")}
    process = subprocess.Popen(
        [str(obd_bin), "run", "--config", str(site / "config.toml")],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "OBD_LOG_LEVEL": "info"},
    )
    assert process.stderr is not None
    log = []
    try:
        for line in process.stderr:
            log.append(_parse(line))
            if log[-1].get("event") == "serving":
                break
        else:
            pytest.fail(f"obd run exited {process.wait()}: {log}")
        with httpx.Client(base_url=str(log[-1]["url"]), timeout=30) as http:
            wait_for(lambda: http.get("/v1/coins").json()["items"][0]["count"] >= 1, 60)
            latest = http.get("/v1/books/latest", params={"exchange": "sim", "symbol": "BTC/USDT"})
            assert latest.status_code == 200, latest.text
            assert latest.json()["capture"] == "synthetic"
            wait_for(lambda: http.get("/readyz").status_code == 200, 60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log += [_parse(line) for line in process.stderr if line.strip()]
        process.stderr.close()
    assert (site / "obd.sqlite").is_file()
    assert not [event for event in log if event.get("level") in ("error", "critical")], log
