"""Learning curves read back from the TensorBoard event files training wrote.

Every bundle's training writes its loss per iteration and its validation metrics per epoch with MONAI's
``TensorBoardStatsHandler`` into ``output_dir``; :func:`read_scalars` reads them and :func:`plot_learning_curves`
draws the loss against the iteration and the per-epoch values against the epoch.

Each training process writes its own event file. A run resumed from a checkpoint continues the step count and
extends the curves; a run started from scratch in the same folder counts from 1 again and replaces the points from
its first step on, as TensorBoard itself does for a restarted run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["event_files", "plot_learning_curves", "read_scalars"]

Curve = list[tuple[int, float]]
"""``(step, value)`` points in the order they were written."""


def event_files(log_dir: str | Path) -> list[Path]:
    """The TensorBoard event files directly in ``log_dir``, oldest first (their names start with the time)."""
    return sorted(Path(log_dir).glob("events.out.tfevents.*"))


def read_scalars(log_dir: str | Path) -> dict[str, Curve]:
    """Scalar curves by tag from the event files directly in ``log_dir`` (empty when there are none)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, Curve] = {}
    for path in event_files(log_dir):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            points = [(int(e.step), float(e.value)) for e in events.Scalars(tag)]
            if points:
                first = points[0][0]
                curves[tag] = [p for p in curves.get(tag, []) if p[0] < first] + points
    return curves


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
