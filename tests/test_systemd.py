"""systemd's notify protocol, over a real Unix datagram socket, and the shipped unit."""

import configparser
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, write_config


def _messages(sock: socket.socket, until: str, timeout_s: float = 30) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while until not in seen and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return seen


def test_ready_watchdog_stopping_in_order(tmp_path: Path, start_daemon: Any) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        # WATCHDOG_USEC=0.4 s: obd must ping every 0.2 s.
        env = {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"}
        daemon = start_daemon(write_config(tmp_path), env)
        before_ready = _messages(sock, "READY=1")
        assert before_ready[-1] == "READY=1"
        pings = _messages(sock, "never", timeout_s=1.2)
        assert pings.count("WATCHDOG=1") >= 3
        daemon.process.send_signal(signal.SIGTERM)
        after = _messages(sock, "STOPPING=1")
        assert after[-1] == "STOPPING=1"
        assert daemon.process.wait(timeout=30) == 0
    status = [m for m in before_ready[:-1] + pings + after[:-1] if m.startswith("STATUS=")]
    assert status, "no STATUS= line for systemctl status"
    assert status[0] == "STATUS=0/0 coins live, writer backlog 0"
    assert set(before_ready[:-1] + pings + after[:-1]) - set(status) <= {"WATCHDOG=1"}


def test_unit_file_is_type_notify_and_sandboxed() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "obd.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert "obd run --config /etc/obd/config.toml" in service["ExecStart"]
    assert service["DynamicUser"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert int(service["TimeoutStopSec"]) > 10  # longer than the writer's drain
    assert service["Restart"] == "on-failure"
    for hardening in ("ProcSubset=pid", "PrivateUsers=yes", "MemoryDenyWriteExecute=yes"):
        key, value = hardening.split("=")
        assert service[key] == value


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """The unit as systemd itself parses it, with ExecStart pointing at this venv's obd."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    obd_bin = Path(sys.executable).parent / "obd"
    text = (REPO / "systemd" / "obd.service").read_text()
    unit = tmp_path / "obd.service"
    unit.write_text(text.replace("/opt/obd/.venv/bin/obd", str(obd_bin)))
    result = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "obd.service" not in result.stderr, result.stderr  # no warning about the unit


def test_backup_while_writing_is_consistent(tmp_path: Path, start_daemon: Any) -> None:
    """A copy taken while the daemon writes at 1 s passes integrity_check and holds
    every snapshot committed before the copy began."""
    import apsw

    from tests.conftest import obd, wait_for

    coins = '[[coins]]\nexchange = "sim"\nsymbol = "BTC/USDT"\ninterval = "1s"\n'
    config = write_config(tmp_path, coins=coins)
    daemon = start_daemon(config)
    query = {"exchange": "sim", "symbol": "BTC/USDT"}
    wait_for(lambda: daemon.http.get("/v1/coins").json()["items"][0]["count"] >= 3)
    committed = daemon.http.get("/v1/books/latest", params=query).json()["ts"]
    copied = obd("backup", str(tmp_path / "copy.sqlite"), config=config)
    assert copied.returncode == 0, copied.stderr
    again = obd("backup", str(tmp_path / "copy.sqlite"), config=config)
    assert again.returncode == 2
    assert "never overwrites" in again.stderr
    assert daemon.stop() == 0

    copy = apsw.Connection(str(tmp_path / "copy.sqlite"), flags=apsw.SQLITE_OPEN_READONLY)
    assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    in_copy = {ts for (ts,) in copy.execute("SELECT ts FROM snapshots")}
    live = apsw.Connection(str(tmp_path / "obd.sqlite"), flags=apsw.SQLITE_OPEN_READONLY)
    before = {ts for (ts,) in live.execute("SELECT ts FROM snapshots WHERE ts <= ?", (committed,))}
    assert before <= in_copy
