"""Box plots of per-slice Dice and HD95 by slice position and by phase.

Drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas), so plotting never touches pyplot's global state or
needs a display.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .rows import PHASE_GROUPS, POSITIONS, phase_group, position_group


def _boxes(
    ax: Axes,
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    group: Callable[[Mapping[str, Any]], str],
    order: Sequence[str],
    classes: Sequence[str],
) -> None:
    """One box per (group, class): groups along x ("all" first), classes side by side within a group."""
    groups = ["all", *(g for g in order if any(group(r) == g for r in rows))]
    if not rows:
        ax.text(0.5, 0.5, "no slice holds the classes", transform=ax.transAxes, ha="center", va="center")
    width = 0.8 / max(len(classes), 1)
    for k, name in enumerate(classes):
        data, positions = [], []
        for i, g in enumerate(groups):
            values = [r[metric] for r in rows if r["class"] == name and (g == "all" or group(r) == g)]
            if values:
                data.append(values)
                positions.append(i - 0.4 + width * (k + 0.5))
        if data:
            parts = ax.boxplot(
                data,
                positions=positions,
                widths=width * 0.9,
                patch_artist=True,
                manage_ticks=False,
                medianprops={"color": "black"},
            )
            for box in parts["boxes"]:
                box.set_facecolor(f"C{k}")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.5, len(groups) - 0.5)


def plot_metrics(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Save a 2 x 2 grid of box plots to ``path``: Dice (top) and HD95 (bottom), by slice position (left) and phase.

    ``rows`` are metric rows as in metrics.csv; :func:`~samzoo.metrics.report.write_report` passes those that enter
    the statistics (not both masks empty). HD95 is shown in mm when every row has it, else in pixels.
    """
    path = Path(path)
    classes = list(dict.fromkeys(r["class"] for r in rows))
    hd95 = "hd95_mm" if rows and all(r["hd95_mm"] is not None for r in rows) else "hd95_px"
    fig = Figure(figsize=(11, 7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    for col, (group, order, title) in enumerate(
        ((position_group, POSITIONS, "slice position"), (phase_group, PHASE_GROUPS, "phase"))
    ):
        for row_index, (metric, label) in enumerate((("dice", "Dice"), (hd95, f"HD95 ({hd95[-2:]})"))):
            ax = axes[row_index, col]
            _boxes(ax, rows, metric, group, order, classes)
            ax.set_title(f"{label} by {title}")
            ax.set_ylabel(label)
    if classes:
        handles = [Patch(facecolor=f"C{k}", label=name) for k, name in enumerate(classes)]
        fig.legend(handles=handles, loc="outside right upper")
    fig.savefig(path, dpi=100)
    return path
