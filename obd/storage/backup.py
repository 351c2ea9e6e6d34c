"""A consistent copy of the live file, safe while the daemon writes."""

from pathlib import Path

import apsw

from obd.errors import BadRequest, StoreError
from obd.storage.connect import BUSY_TIMEOUT_MS


def backup(source: Path, out: Path) -> int:
    """Copy `source` to the new file `out` with `VACUUM INTO`: one read transaction, so
    the copy holds exactly what was committed when it began, compacted. Returns bytes."""
    if not source.exists():
        raise BadRequest(f"database {source} does not exist")
    if out.exists():
        raise BadRequest(f"{out} exists; obd backup never overwrites a file")
    if not out.parent.is_dir():
        raise BadRequest(f"directory {out.parent} does not exist")
    try:
        conn = apsw.Connection(str(source), flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            conn.setbusytimeout(BUSY_TIMEOUT_MS)
            conn.execute("VACUUM INTO ?", (str(out),))
        finally:
            conn.close()
    except apsw.Error as exc:
        out.unlink(missing_ok=True)
        raise StoreError(f"backup of {source} failed: {exc}") from exc
    return out.stat().st_size
