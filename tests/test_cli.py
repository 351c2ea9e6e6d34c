"""The CLI as a user runs it: one-line errors naming the problem, non-zero exits."""

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PLUGINS, obd, wait_for, write_config


@pytest.mark.parametrize(
    ("toml", "mentions"),
    [
        ("[server]\nprot = 1\n", "server.prot"),
        ("[server]\nport = 'x'\n", "server.port"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[collection]\ninterval = '7x'\n", "collection.interval"),
        ("[collection]\ndepth = 0\n", "collection.depth"),
        ("bogus = 1\n", "bogus"),
        ("[server\n", "TOML"),
        ("[[coins]]\nexchange = 'sim'\nsymbol = 'BTC/USDT'\ninterval = 0\n", "coins[0].interval"),
        ("[exchanges.sim]\nnonsense = 1\n", "exchanges.sim"),
        # a plugin option's type carries its range: checked by `check`, not only by `run`
        ("[exchanges.sim]\nupdate_ms = 5\n", "exchanges.sim.update_ms: Expected `int` >= 10"),
    ],
)
def test_bad_config_is_refused_by_check_and_run(tmp_path: Path, toml: str, mentions: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[plugins]\ndirs = ['{PLUGINS}']\nentry_points = false\n" + toml)
    messages = []
    for command in (["check"], ["run"]):
        result = obd(*command, config=config)
        assert result.returncode == 2, result
        assert mentions in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        messages.append(result.stderr)
    assert messages[0] == messages[1]  # `check` says what `run` would


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    result = obd("check", config=tmp_path / "nope.toml")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_check_passes_on_a_good_config(tmp_path: Path) -> None:
    result = obd("check", config=write_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "sim" in result.stdout
    assert "codec core: " in result.stdout  # compiled, or the python fallback


def test_non_loopback_without_auth_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("port = 0", 'port = 0\nhost = "0.0.0.0"'))
    result = obd("run", config=config)
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    for args in (
        ["coins", "add"],
        ["frobnicate"],
        ["coins", "add", "sim", "BTC/USDT", "--depth", "x"],
    ):
        result = obd(*args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_coins_cli_without_daemon(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    unlisted = obd("coins", "add", "sim", "ZZZNOTLISTED/USDT", config=config)
    assert unlisted.returncode == 2
    assert "not listed" in unlisted.stderr
    assert obd("coins", "add", "nosuch", "BTC/USDT", config=config).returncode == 2
    assert obd("coins", "add", "sim", "BTC/USDT", "--interval", "7x", config=config).returncode == 2
    added = obd("coins", "add", "sim", "BTC/USDT", "--interval", "30s", config=config)
    assert added.returncode == 0, added.stderr
    listed = obd("coins", "list", config=config)
    assert "BTC/USDT" in listed.stdout
    assert "30s" in listed.stdout
    assert obd("coins", "remove", "sim", "BTC/USDT", config=config).returncode == 0
    again = obd("coins", "remove", "sim", "BTC/USDT", config=config)
    assert again.returncode == 2
    assert "not being collected" in again.stderr


def test_broken_plugin_is_reported_and_the_others_run(tmp_path: Path, start_daemon: Any) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir(mode=0o755)
    plugins.chmod(0o755)
    shutil.copy(PLUGINS / "sim.py", plugins / "sim.py")
    (plugins / "broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    (plugins / "_private.py").write_text("raise RuntimeError('never loaded')\n")
    coins = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
    config = write_config(tmp_path, coins=coins, plugins=plugins)

    listed = obd("plugins", config=config)
    assert listed.returncode == 1
    assert "broken" in listed.stdout
    assert "this plugin is broken" in listed.stdout
    assert "_private" not in listed.stdout
    assert "sim" in listed.stdout

    daemon = start_daemon(config)
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 1)
    assert any(event.get("event") == "plugin_failed" for event in daemon.log)
    assert daemon.stop() == 0


def test_world_writable_plugin_dir_is_refused(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    plugins.chmod(0o777)
    shutil.copy(PLUGINS / "sim.py", plugins / "sim.py")
    config = tmp_path / "config.toml"
    config.write_text(f"[plugins]\ndirs = ['{plugins}']\nentry_points = false\n")
    listed = obd("plugins", config=config)
    assert listed.returncode == 1
    assert "writable" in listed.stdout


def _taken_port(tmp_path: Path) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    _HELD.append(sock)  # held for the session: both commands must find the port taken
    return f"[server]\nport = {sock.getsockname()[1]}\n"


_HELD: list[socket.socket] = []


@pytest.fixture(autouse=True, scope="module")
def _release_held_ports() -> Iterator[None]:
    yield
    while _HELD:
        _HELD.pop().close()


_SIM_COIN = "[[coins]]\nexchange = 'sim'\nsymbol = '{symbol}'\n"


def _world_readable_key(tmp_path: Path) -> str:
    key = tmp_path / "key.jwk"
    key.write_text("{}")
    key.chmod(0o644)
    return f"[auth]\nenabled = true\nkey_file = '{key}'\n"


def _not_a_database(tmp_path: Path) -> str:
    (tmp_path / "junk.sqlite").write_bytes(b"not sqlite at all " * 512)
    return "[storage]\npath = 'junk.sqlite'\n"


def _under_a_file(tmp_path: Path) -> str:
    (tmp_path / "afile").write_text("")
    return "[storage]\npath = 'afile/obd.sqlite'\n"


def _a_directory(tmp_path: Path) -> str:
    (tmp_path / "adir").mkdir()
    return "[storage]\npath = 'adir'\n"


def _read_only_directory(tmp_path: Path) -> str:
    (tmp_path / "ro").mkdir(mode=0o500)
    return "[storage]\npath = 'ro/obd.sqlite'\n"


# (config body or a function of tmp_path that writes what it needs, words the message has)
_RUN_REFUSES: dict[str, tuple[Any, str]] = {
    "proc": (
        "[storage]\npath = '/proc/obd.sqlite'\n",
        "storage.path: cannot create files in /proc",
    ),
    "proc-missing-dir": (
        "[storage]\npath = '/proc/no/such/obd.sqlite'\n",
        "directory /proc/no/such is missing and cannot be created",
    ),
    "unlisted-symbol": (_SIM_COIN.format(symbol="NOPE/USDT"), "coins[0]: NOPE/USDT is not listed"),
    "bad-symbol": (_SIM_COIN.format(symbol="BTC USDT"), "coins[0]: symbol"),
    "unknown-exchange": ("[[coins]]\nexchange = 'nope'\nsymbol = 'X/Y'\n", "coins[0]: "),
    "update-ms-with-coin": (
        "[exchanges.sim]\nupdate_ms = 5\n" + _SIM_COIN.format(symbol="BTC/USDT"),
        "exchanges.sim.update_ms: Expected `int` >= 10",
    ),
    "a-directory": (_a_directory, "is not a regular file"),
    "under-a-file": (_under_a_file, "afile is not a directory"),
    "not-a-database": (_not_a_database, "file is not a database"),
    "port-taken": (_taken_port, "server: cannot listen on 127.0.0.1:"),
    "key-readable-by-others": (_world_readable_key, "auth.key_file: "),
    "read-only-directory": (_read_only_directory, "permission denied"),
    "key-in-proc": (
        "[auth]\nenabled = true\nkey_file = '/proc/obd-key.jwk'\n",
        "auth.key_file: cannot create files in /proc",
    ),
}


@pytest.mark.parametrize("case", sorted(_RUN_REFUSES))
def test_check_refuses_what_run_refuses_in_the_same_words(tmp_path: Path, case: str) -> None:
    """`obd check` runs `obd run`'s start-up checks through the same code: same exit
    code, same one line, and never an "internal error" (issue 12, item 2)."""
    body, mentions = _RUN_REFUSES[case]
    if case == "read-only-directory" and os.geteuid() == 0:
        pytest.skip("root writes into a mode 0500 directory: no permission to be denied")
    text = body(tmp_path) if callable(body) else body
    server = "" if "[server]" in text else "[server]\nport = 0\n"  # never the default 8787
    config = tmp_path / "config.toml"
    config.write_text(f"[plugins]\ndirs = ['{PLUGINS}']\nentry_points = false\n{server}{text}")
    results = [obd(command, config=config, timeout=30) for command in ("check", "run")]
    for result in results:
        assert result.returncode == 2, result
        assert "internal error" not in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert mentions in result.stderr, result.stderr
    assert results[0].stderr == results[1].stderr
