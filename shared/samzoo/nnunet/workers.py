"""nnU-Net's per-case work in threads of this process instead of freshly spawned processes.

nnU-Net's planning, preprocessing and dataset checks hand every case to a ``multiprocessing`` pool of the "spawn"
kind, and each spawned worker imports torch and nnU-Net again: tens of seconds per pool on a small shared CPU, for
datasets of a few dozen small cases that take a second to process. Inside :func:`worker_threads` those pools are
thread pools (``multiprocessing.pool.ThreadPool``), which run the same nnU-Net functions on the same arguments in
this process. nnU-Net's planner also sets torch's thread count; the block restores it afterwards.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.pool import ThreadPool
from typing import Any

import torch


class _ThreadContext:
    """The part of a multiprocessing context that nnU-Net uses: ``Pool``."""

    Pool = ThreadPool


@contextmanager
def worker_threads() -> Iterator[None]:
    """Within the block, ``multiprocessing.get_context("spawn")`` gives thread pools; other contexts are unchanged."""
    original = multiprocessing.get_context
    threads = torch.get_num_threads()

    def get_context(method: str | None = None) -> Any:
        return _ThreadContext if method == "spawn" else original(method)

    multiprocessing.get_context = get_context
    try:
        yield
    finally:
        multiprocessing.get_context = original
        torch.set_num_threads(threads)
