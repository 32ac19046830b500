"""Where a bundle's data comes from: a prepared dataset, or the synthetic demo written on first use."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError

logger = logging.getLogger(__name__)


def resolve_datalist(dataset_dir: str | Path | None, demo_kind: str, demo_dir: str | Path) -> str:
    """Path of the datalist a bundle trains on.

    ``dataset_dir`` is a folder written by ``samzoo prepare`` (or its ``datalist.json``). When it is empty the
    synthetic demo of ``demo_kind`` is used, generated into ``demo_dir`` the first time and reused afterwards. The
    processes of one torchrun (or any two runs) that start on a missing demo at once take turns: the first writes
    it, the others wait and then read it.
    """
    if dataset_dir:
        path = Path(dataset_dir)
        path = path / "datalist.json" if path.is_dir() else path
        if not path.is_file():
            raise DataError(
                path, "no prepared datalist here: run `samzoo prepare <dataset> --src ... --dst DIR` and pass DIR"
            )
        return str(path)
    path = Path(demo_dir) / "prepared" / "datalist.json"
    if not path.is_file():
        with _exclusive(Path(demo_dir) / ".writing"):
            if not path.is_file():
                from .demo import write_demo

                logger.info("no dataset_dir given: writing the synthetic %s demo to %s", demo_kind, demo_dir)
                write_demo(demo_kind, Path(demo_dir))
    return str(path)


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created if needed) for the block; other holders wait."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
