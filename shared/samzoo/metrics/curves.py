"""Learning curves: the training loss per iteration and the validation metrics per epoch, from the training log
(:func:`samzoo.engine.training_log.read_training_log`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["Curve", "plot_learning_curves"]

Curve = list[tuple[int, float]]
"""``(step, value)`` points in the order they were written."""


def plot_learning_curves(
    curves: Mapping[str, Curve], loss_tags: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Save two panels to ``path``: the ``loss_tags`` curves against the iteration and every other curve (validation
    metrics) against the epoch."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, epoch_ax = fig.subplots(1, 2)
    panels = (
        (loss_ax, [t for t in curves if t in loss_tags], "iteration", "training loss"),
        (epoch_ax, [t for t in curves if t not in loss_tags], "epoch", "per epoch"),
    )
    for ax, tags, xlabel, name in panels:
        for tag in tags:
            steps, values = zip(*curves[tag], strict=True)
            ax.plot(steps, values, marker="o" if len(steps) < 50 else None, markersize=3, label=tag)
        if tags:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "nothing logged", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel(xlabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return Path(path)
