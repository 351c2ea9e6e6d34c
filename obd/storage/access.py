"""Why a database path cannot be used, in words an operator can act on: permission,
a missing directory, not a regular file, or what the operating system said.

`obd check` and `obd run` ask the same question before opening anything, and a
connection that fails with SQLite's bare "unable to open database file" adds the answer.
"""

import errno
import os
import tempfile
from pathlib import Path

from obd.errors import StoreError

__all__ = ["check_database_path", "database_path_problem", "why"]


def check_database_path(path: Path) -> None:
    """StoreError naming `path` and why obd could not create, read or write it."""
    if (problem := database_path_problem(path)) is not None:
        raise StoreError(f"storage.path: {problem}")


def database_path_problem(path: Path) -> str | None:
    """None if the file, its `-wal`, `-shm` and `.lock` can be made and written."""
    if path.exists() or path.is_symlink():
        if not path.is_file():
            return f"{path} is not a regular file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path}: permission denied (uid {os.geteuid()} cannot read and write it)"
    directory = existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory (the database's directory is {directory})"
    if (cannot := _cannot_create_in(existing)) is None:
        return None  # a missing directory is created on first run, as here
    if existing != directory:
        return f"directory {directory} is missing and cannot be created in {existing}: {cannot}"
    return f"cannot create files in {directory}: {cannot}"


def why(exc: OSError) -> str:
    """The reason in an operator's words; the OS's own when it is none of the usual."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "missing directory"
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return "not a regular file"
    return exc.strerror or str(exc)


def _cannot_create_in(directory: Path) -> str | None:
    """Only trying tells: modes say yes to root on a read-only mount, on /proc, under
    an ACL or a sandbox (systemd's ProtectSystem) that forbids it."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".obd-probe-"):
            pass
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the directory is there: it takes no new files (/proc)
            return "files cannot be created there"
        return why(exc)
    return None
