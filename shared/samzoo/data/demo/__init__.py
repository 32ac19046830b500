"""Synthetic demo datasets written in the public layouts of ACDC (cine MRI) and LiTS (CT).

The demo data goes through the same :func:`samzoo.data.prepare.prepare` path as the real datasets, so a bundle can
be tried end to end, on a CPU, without downloading anything: ``samzoo demo cine|ct --dst DIR`` writes the raw
layout to ``DIR/raw`` and the prepared datalist to ``DIR/prepared/datalist.json``. Everything is drawn from one
seed, so the same command always writes the same data.

Shapes are drawn as ellipses in millimetres; the two helpers here are shared by the cine and CT generators.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ... import __version__
from ...errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_CASES = 8

DEMO_DATASETS = {"cine": "acdc", "ct": "lits"}
"""Demo kind -> the dataset whose public layout it is written in (and which ``prepare`` reads it as)."""


def write_demo(kind: str, dst: Path, cases: int | None = None, seed: int = 0) -> Path:
    """Write demo data of ``kind`` ("cine" or "ct") below ``dst`` and prepare it; return the datalist path.

    The raw files go to ``dst/raw`` in the public layout of the real dataset, the prepared datalist to
    ``dst/prepared``. ``cases`` defaults to 8 patients (cine) or volumes (CT). ``dst/demo.json`` records how the
    demo was made; a ``dst/raw`` that it marks as demo output is replaced, any other non-empty one is refused.
    """
    if kind not in DEMO_DATASETS:
        raise DataError(None, f"unknown demo kind {kind!r}; choose one of {sorted(DEMO_DATASETS)}")
    cases = DEFAULT_CASES if cases is None else int(cases)
    if cases < 1:
        raise DataError(None, f"cases must be at least 1, got {cases}")
    dst = Path(dst)
    raw, marker = dst / "raw", dst / "demo.json"
    if raw.exists() and any(raw.iterdir()):
        if not marker.is_file():
            raise DataError(
                raw, "already exists, is not empty and was not written by `samzoo demo`; choose another --dst"
            )
        shutil.rmtree(raw)
    if kind == "cine":
        from .cine import write_cine_raw as write_raw
    else:
        from .ct import write_ct_raw as write_raw
    from ..prepare import prepare

    dst.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"kind": kind, "cases": cases, "seed": seed, "samzoo_version": __version__}))
    write_raw(raw, cases=cases, seed=seed)
    logger.info("wrote %d synthetic %s case(s) to %s", cases, kind, raw)
    return prepare(DEMO_DATASETS[kind], raw, dst / "prepared", seed=seed)


def ellipse_coords(
    points: np.ndarray, center: Sequence[float], semi_axes: Sequence[float], angle: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius and in-plane angle of ``points`` (..., D) in the frame of an ellipse (D=2) or ellipsoid.

    The frame is centred at ``center`` (D,), its first two axes rotated by ``angle`` (radians) in the plane of the
    first two coordinates; ``semi_axes`` (D,) are in that frame. The radius is 1 on the outline, < 1 inside.
    Returns (radius, angle), both (...).
    """
    d = points - np.asarray(center, dtype=points.dtype)
    c, s = np.cos(angle), np.sin(angle)
    scaled = [(c * d[..., 0] + s * d[..., 1]) / semi_axes[0], (c * d[..., 1] - s * d[..., 0]) / semi_axes[1]]
    scaled += [d[..., k] / semi_axes[k] for k in range(2, d.shape[-1])]
    radius = np.sqrt(sum(x * x for x in scaled))
    return radius, np.arctan2(scaled[1], scaled[0])


def lobulation(phi: np.ndarray, lobes: np.ndarray) -> np.ndarray:
    """Outline radius factor ``1 + sum_n a_n cos((n + 2) phi + p_n)`` for ``lobes`` rows (a_n, p_n).

    Harmonics start at 2 so that the outline stays centred; multiply a normalised radius bound by it to make an
    ellipse irregular in a smooth, anatomy-like way.
    """
    factor = np.ones_like(phi)
    for n, (amplitude, phase) in enumerate(lobes, start=2):
        factor += amplitude * np.cos(n * phi + phase)
    return factor


def random_lobes(rng: np.random.Generator, count: int, amplitude: float) -> np.ndarray:
    """``count`` random harmonics (count, 2) for :func:`lobulation`, amplitudes up to ``amplitude``."""
    return np.stack([rng.uniform(0.3, 1.0, count) * amplitude, rng.uniform(0, 2 * np.pi, count)], axis=1)
