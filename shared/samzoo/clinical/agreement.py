"""Agreement of clinical indices with the ground truth, as the ACDC challenge judged them.

Per index over patients, with d = prediction - ground truth: mean absolute error (mean |d|), bias (mean d), the
95 % limits of agreement of Bland and Altman (bias ± 1.96 x the sample standard deviation of d) and Pearson's
correlation between prediction and ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOA_FACTOR = 1.96
"""Standard normal quantile of the 95 % limits of agreement."""


def bland_altman(pred: Sequence[float], truth: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``mae``, ``bias``, ``sd`` (of the differences, n - 1), ``loa_lower``, ``loa_upper``, ``pearson_r``.

    The spread needs two patients and the correlation three with varying values; statistics that cannot be computed
    are None (never NaN).
    """
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if p.shape != g.shape or p.ndim != 1:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} must be two lists of the same length")
    if not (np.isfinite(p).all() and np.isfinite(g).all()):
        raise ValueError("prediction and ground truth must be finite")
    n = len(p)
    if n == 0:
        return {"n": 0, "mae": None, "bias": None, "sd": None, "loa_lower": None, "loa_upper": None, "pearson_r": None}
    d = p - g
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else None
    r = None
    if n > 2 and p.std() > 0 and g.std() > 0:
        r = float(np.corrcoef(p, g)[0, 1])
    return {
        "n": n,
        "mae": float(np.abs(d).mean()),
        "bias": bias,
        "sd": sd,
        "loa_lower": None if sd is None else bias - LOA_FACTOR * sd,
        "loa_upper": None if sd is None else bias + LOA_FACTOR * sd,
        "pearson_r": r,
    }


def frame_agreement(distances: Sequence[int]) -> dict[str, float | int | None]:
    """How far the curve's ED (or ES) lies from the dataset's: ``n``, ``mean_abs`` frames, ``exact``, ``within_1``."""
    d = np.asarray(distances, dtype=np.float64)
    if not len(d):
        return {"n": 0, "mean_abs": None, "exact": 0, "within_1": 0}
    return {"n": len(d), "mean_abs": float(d.mean()), "exact": int((d == 0).sum()), "within_1": int((d <= 1).sum())}
