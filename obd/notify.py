"""systemd's notify protocol: one datagram per state change to `$NOTIFY_SOCKET`.

`READY=1` once serving, `WATCHDOG=1` at half of `$WATCHDOG_USEC`, `STATUS=...` (coins
live, writer backlog; `systemctl status` shows it) every STATUS_INTERVAL_S, `STOPPING=1`
on shutdown. Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing.
"""

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

STATUS_INTERVAL_S = 10  # how stale `systemctl status` may be; a few reads a coin each


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1"); False when not running under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False  # systemd went away; nothing useful to do about it here
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd asked for, or None if it asked for none."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


async def keep_watchdog_fed(interval_s: float) -> None:
    """Ping while the loop turns: a stuck loop stops the pings and systemd restarts obd."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


def under_systemd() -> bool:
    return bool(os.environ.get("NOTIFY_SOCKET"))


async def keep_status_current(status: Callable[[], Awaitable[str]], interval_s: float) -> None:
    """`STATUS=<status()>` now and every `interval_s`, while the process serves."""
    while True:
        notify(f"STATUS={await status()}")
        await asyncio.sleep(interval_s)
