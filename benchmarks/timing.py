"""Timing of training steps shared by the benchmark scripts: warm-up, synchronised wall time, CUDA peak memory."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work so wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> tuple[float, float | None]:
    """Seconds per call of ``step`` over ``steps`` calls after ``warmup`` untimed ones, and the peak GiB allocated
    on CUDA during the timed calls (None on other devices)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak
