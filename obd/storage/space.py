"""Free space on the database's filesystem, and whether it is running low: a warning
in health and stats before a full disk turns books into `storage_full` gaps."""

import os
from pathlib import Path

import msgspec

__all__ = ["Space", "space"]

MIB = 1024 * 1024


class Space(msgspec.Struct, frozen=True):
    free_bytes: int | None  # None: the filesystem could not be asked
    low: bool  # under `[storage] low_disk_mib`
    warning: str | None  # for a person reading health, when low


def space(database: Path, low_bytes: int) -> Space:
    """What an unprivileged process may still write there (`f_bavail`): root's reserve
    does not count, as obd should not run as root."""
    try:
        found = os.statvfs(database.parent)
    except OSError:
        return Space(free_bytes=None, low=False, warning=None)
    free = found.f_bavail * found.f_frsize
    if free >= low_bytes:
        return Space(free_bytes=free, low=False, warning=None)
    warning = (
        f"low disk: {free / MIB:.0f} MiB free on the database's filesystem, under "
        f"[storage] low_disk_mib = {low_bytes // MIB}; once it is full, books become "
        "storage_full gaps"
    )
    return Space(free_bytes=free, low=True, warning=warning)
