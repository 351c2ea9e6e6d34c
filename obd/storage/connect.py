"""Opening the SQLite file: one place for the pragmas every connection needs."""

from pathlib import Path
from urllib.parse import quote

import apsw

from obd.errors import StoreError
from obd.storage.access import database_path_problem, why
from obd.storage.schema import PAGE_SIZE

BUSY_TIMEOUT_MS = 5_000  # other processes (`obd coins add`) hold the write lock for ms, not s
WAL_LIMIT_BYTES = 64 * 1024 * 1024  # truncate the WAL to this after a checkpoint


def open_writer(path: Path) -> apsw.Connection:
    """The read-write connection; creates the file (WAL, 16 KiB pages) if missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = apsw.Connection(str(path))
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        # page_size only takes effect before the file has content (and before WAL).
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    except apsw.CantOpenError as exc:
        raise StoreError(f"cannot open database {path}: {exc} ({_cause(path)})") from exc
    except OSError as exc:
        raise StoreError(f"cannot open database {path}: {why(exc)} ({exc})") from exc
    except apsw.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    if not mode or str(mode[0]).lower() != "wal":
        raise StoreError(f"cannot put database {path} in WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    return conn


def open_reader(path: Path, *, read_only: bool = False, immutable: bool = False) -> apsw.Connection:
    """A connection that only reads; WAL lets it run beside the writer without blocking.

    `read_only` opens the file itself read-only (a researcher's copy, a read-only mount):
    no write can reach it, even by mistake. `immutable` (read-only too) tells SQLite
    nothing changes the file, so it needs no `-shm` beside it: the one way to read a
    WAL-mode copy in a directory this process cannot write to.
    """
    flags = apsw.SQLITE_OPEN_READONLY if read_only else apsw.SQLITE_OPEN_READWRITE
    name = str(path)
    if immutable:
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        name = f"file:{quote(str(path.absolute()))}?mode=ro&immutable=1"
    try:
        conn = apsw.Connection(name, flags=flags)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA query_only = 1")
    except apsw.CantOpenError as exc:
        raise StoreError(f"cannot open database {path}: {exc} ({_cause(path)})") from exc
    except apsw.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    return conn


def _cause(path: Path) -> str:
    """SQLite says only "unable to open database file": say which of the usual it is."""
    if not path.parent.is_dir():
        return f"missing directory {path.parent}"
    return database_path_problem(path) or "other: not permission, a missing directory or a non-file"
