"""Publishing a file whole: written under a temporary name beside it, flushed to disk,
then given its name in one step, so a reader (or a crash) sees all of it or none."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["publishing"]


@contextlib.contextmanager
def publishing(
    target: Path, *, partial: Path | None = None, replace: bool = False
) -> Iterator[Path]:
    """The path to write `target`'s content to (default `.<name>.<pid>.partial` beside
    it). On a clean exit it is fsynced, then named `target`: replacing a file there with
    `replace`, else by a hard link, which raises FileExistsError if one appeared
    meanwhile. The partial file is gone afterwards, however the block ended."""
    partial = partial or target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield partial
        _fsync(partial)  # the name must never point at bytes that are not on disk
        if replace:
            os.replace(partial, target)
        else:
            _link(partial, target)
        _fsync(target.parent)  # and the name itself must survive a crash
    finally:
        partial.unlink(missing_ok=True)


def _link(partial: Path, target: Path) -> None:
    try:
        os.link(partial, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem (FAT, some network mounts)
        if target.exists():
            raise FileExistsError(target) from None
        os.replace(partial, target)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
