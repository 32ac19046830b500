"""Atomic file writes: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffixes, so writers that go by the extension still work) to write
    to. When the block succeeds the file gets normal permissions (``mkstemp`` makes it private) and replaces
    ``path``; when it fails the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix="".join(path.suffixes))
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def removed_on_failure(folder: str | Path) -> Iterator[Path]:
    """Write into ``folder`` inside the block; when the block fails, remove what it added (files and folders that
    were not there before), so a failed command leaves no partial output. Files that existed are not touched."""
    folder = Path(folder)
    before = set(folder.rglob("*")) if folder.exists() else None
    try:
        yield folder
    except BaseException:
        if before is None:
            shutil.rmtree(folder, ignore_errors=True)
        elif folder.exists():
            added = sorted(set(folder.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True)
            for path in added:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["atomic_path", "removed_on_failure"]
