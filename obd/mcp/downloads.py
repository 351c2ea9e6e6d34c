"""Where download_history may write: inside one directory, whatever `path` says.

An agent chooses `path`; obd (often root, under systemd) writes the file. So a path
is resolved against the download directory and refused if it leaves it: absolute
paths elsewhere, `..`, and symlinks (inside the directory) that point out of it.
Missing subdirectories are made only once the path is known to stay inside.
"""

import os
from pathlib import Path

from obd.errors import BadRequest, Conflict

__all__ = ["target"]


def target(root: Path, path: str | None, default_name: str) -> Path:
    """The file to write for `path` (None: `default_name`) under `root`, its folders made.
    BadRequest naming `path` if it leaves `root`; Conflict if the file exists."""
    root.mkdir(parents=True, exist_ok=True)
    real_root = Path(os.path.realpath(root))
    given = Path(path).expanduser() if path is not None else Path(default_name)
    if path is not None and (not path.strip() or given.name in ("", ".", "..")):
        raise BadRequest(f"path: expected a file name, got {path!r:.80}")
    # Lexically first: `..` and absolute paths elsewhere never touch the disk. An
    # absolute path may name the directory as configured or as resolved.
    wanted = Path(os.path.normpath(given if given.is_absolute() else real_root / given))
    for base in (real_root, Path(os.path.abspath(root))):
        if wanted.is_relative_to(base) and wanted != base:
            wanted = real_root / wanted.relative_to(base)
            break
    else:
        raise _outside(path, real_root)
    # Then through the links that exist: the deepest existing ancestor (a link counts,
    # dangling or not) must resolve inside.
    existing = wanted.parent
    while not os.path.lexists(existing):
        existing = existing.parent
    if not Path(os.path.realpath(existing)).is_relative_to(real_root):
        raise _outside(path, real_root)
    if os.path.lexists(wanted):  # a file, or a link (dangling or not): never replaced
        raise Conflict(f"path: {wanted} already exists; pass another path")
    try:
        wanted.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, a read-only disk
        raise BadRequest(f"path: cannot make the folder {wanted.parent}: {exc.strerror}") from None
    return wanted


def _outside(path: str | None, root: Path) -> BadRequest:
    return BadRequest(
        f"path: {path!r:.80} leaves the download directory {root}; give a file name "
        "relative to it (set elsewhere by [mcp] download_dir in obd's config)"
    )
