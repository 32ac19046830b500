"""Pictures of the clinical read-out: a Bland-Altman plot per index and a volume-time curve per patient.

Bare :class:`~matplotlib.figure.Figure` objects on an Agg canvas, as in :mod:`samzoo.metrics.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..atomic import atomic_path


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def plot_bland_altman(
    pred: Sequence[float], truth: Sequence[float], stats: Mapping[str, Any], title: str, path: str | Path
) -> Path:
    """Difference (prediction - ground truth) against the mean of the two, with the bias and limits of agreement."""
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    fig = Figure(figsize=(5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter((p + g) / 2, p - g, s=18, color="C0")
    lines = [("bias", stats.get("bias"), "-"), ("+1.96 SD", stats.get("loa_upper"), "--")]
    lines.append(("-1.96 SD", stats.get("loa_lower"), "--"))
    for name, value, style in lines:
        if value is not None:
            ax.axhline(value, color="C3", linestyle=style, linewidth=1)
            ax.annotate(
                f"{name} {value:.2f}",
                (1.0, value),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=8,
                color="C3",
            )
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel(f"mean of prediction and ground truth ({title})")
    ax.set_ylabel("prediction - ground truth")
    r = stats.get("pearson_r")
    ax.set_title(f"{title}: n = {stats.get('n', len(p))}" + ("" if r is None else f", r = {r:.3f}"))
    return _save(fig, Path(path), dpi=90)


def plot_volume_curve(
    volumes: Mapping[str, np.ndarray],
    unit: str,
    phases: Mapping[str, int],
    truth: Mapping[str, Mapping[int, float]],
    title: str,
    path: str | Path,
) -> Path:
    """Volume against frame for each structure in ``volumes`` (LV, RV; NaN where a frame was not predicted), with
    the dataset's ED/ES and the curve's marked.

    ``phases`` maps ``ED``, ``ES`` (the dataset's frames) and ``ED (curve)``, ``ES (curve)`` to frames; ``truth``
    gives the ground-truth volume per structure at its labelled frames, drawn as crosses.
    """
    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for k, (name, curve) in enumerate(volumes.items()):
        ax.plot(np.arange(len(curve)), curve, color=f"C{k}", marker=".", label=f"{name} prediction")
        frames = sorted(truth.get(name, {}))
        if frames:
            ax.plot(
                frames,
                [truth[name][f] for f in frames],
                "x",
                color=f"C{k}",
                markersize=9,
                mew=2,
                label=f"{name} ground truth",
            )
    for name, frame in phases.items():
        curve_phase = "curve" in name
        ax.axvline(
            frame, color="C3" if name.startswith("ED") else "C2", linestyle=":" if curve_phase else "--", linewidth=1
        )
        ax.annotate(
            name, (frame, 1.0), xycoords=("data", "axes fraction"), rotation=90, ha="right", va="top", fontsize=7
        )
    ax.set_xlabel("frame")
    ax.set_ylabel(f"volume ({unit})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, Path(path), dpi=80)
