"""At most one process collects into a database file, and any other can tell whether one does.

The collecting process (`obd run`, `obd mcp --collect`) holds an exclusive `flock` on
`<database>.lock` for its lifetime, with its pid written inside. The kernel drops the
lock when the process ends, however it ends, so a stale lock cannot exist: a heartbeat
row would need a freshness guess, and a pid file outlives a SIGKILL. The file itself is
left in place (unlinking a lock file that another process is waiting on splits the lock).
"""

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from obd.errors import Conflict, StoreError
from obd.storage.access import why

ACQUIRE_WAIT_S = 0.25  # a probe holds its shared lock for microseconds; ride those out
_RETRY_S = 0.02


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def collecting(database: Path) -> bool:
    """True while some process holds the collector lock of `database`."""
    try:
        fd = os.open(lock_path(database), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if taken
    return False


class CollectorLock:
    """`async with CollectorLock(db):` collects into `db`, or raises Conflict naming the holder."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._fd: int | None = None

    async def __aenter__(self) -> "CollectorLock":
        self.acquire()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Blocks for at most ACQUIRE_WAIT_S (once, at start-up)."""
        path = lock_path(self.database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"storage.path: cannot open lock file {path}: {why(exc)}") from None
        deadline = time.monotonic() + ACQUIRE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise Conflict(
                        f"another obd process (pid {holder or '?'}) is already collecting "
                        f"into {self.database}"
                    ) from None
                time.sleep(_RETRY_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
