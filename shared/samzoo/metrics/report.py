"""Summaries, tables and report files of metric rows.

Statistics leave out the rows where both the ground truth and the prediction are empty for the class: they hold
Dice 1 and distance 0 by convention and would pull every mean towards perfect agreement in proportion to how many
slices lie outside the structure. They stay in ``metrics.csv`` (``gt_empty`` and ``pred_empty`` both 1) and are
counted in the summary. Rows with exactly one empty mask (Dice 0, distances at the worst case) are part of the
statistics and counted separately, so a reader can tell a missed structure from a poor contour.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from .plots import plot_metrics
from .provenance import evaluation_record
from .rows import PHASE_GROUPS, POSITIONS, ROW_FIELDS, counted, phase_group, position_group

METRICS = ("dice", "hd_px", "hd95_px", "masd_px", "hd_mm", "hd95_mm", "masd_mm")
"""Slice-level metric columns summarised, in report order."""

_TABLE_ROWS = (
    ("dice", "Dice"),
    ("hd_px", "HD (pixel)"),
    ("hd95_px", "HD95 (pixel)"),
    ("masd_px", "MASD (pixel)"),
    ("hd_mm", "HD (mm)"),
    ("hd95_mm", "HD95 (mm)"),
    ("masd_mm", "MASD (mm)"),
)


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation (0 for a single value) and count."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "count": len(array)}


def _group_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Statistics of every slice-level metric that has values in ``rows`` (mm only where spacing was known)."""
    out = {}
    for metric in METRICS:
        values = [row[metric] for row in rows if row[metric] is not None]
        if values:
            out[metric] = describe(values)
    return out


def _breakdown(
    rows: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str], order: Sequence[str] = ()
) -> dict[str, Any]:
    """Statistics per group: groups named in ``order`` first, others as first seen; rows with an empty key skipped."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if key(row):
            groups.setdefault(key(row), []).append(row)
    names = sorted(groups, key=lambda g: order.index(g) if g in order else len(order))
    return {name: _group_stats(groups[name]) for name in names}


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per class: counts, statistics of all rows and by slice position, phase and view; units available.

    Each statistic is ``{"mean", "std", "count"}``. ``dice_3d`` (CT) is summarised over one value per case.
    """
    classes: dict[str, Any] = {}
    for name in dict.fromkeys(row["class"] for row in rows):
        mine = [row for row in rows if row["class"] == name]
        used = [row for row in mine if counted(row)]
        positions = {"all": _group_stats(used)} | _breakdown(used, position_group, POSITIONS)
        entry: dict[str, Any] = {
            "counts": {
                "rows": len(mine),
                "evaluated": len(used),
                "both_empty": len(mine) - len(used),
                "gt_empty_only": sum(r["gt_empty"] and not r["pred_empty"] for r in mine),
                "pred_empty_only": sum(r["pred_empty"] and not r["gt_empty"] for r in mine),
            },
            "all": positions["all"],
            "slice_position": positions,
            "phase": _breakdown(used, phase_group, PHASE_GROUPS),
            "view": _breakdown(used, lambda r: r["view"]),
        }
        volumes = {r["case_id"]: r["dice_3d"] for r in mine if r["dice_3d"] is not None}
        if volumes:
            entry["dice_3d"] = describe(list(volumes.values()))
        classes[name] = entry
    with_mm = sum(row["hd_mm"] is not None for row in rows)
    return {
        "num_rows": len(rows),
        "num_cases": len({row["case_id"] for row in rows}),
        "units": {"px": len(rows), "mm": with_mm},
        "classes": classes,
    }


def results_table(summary: Mapping[str, Any]) -> str:
    """Markdown table per class in the layout of the CMR2D+T-SAM paper: rows metric, columns all/basal/mid/apical.

    Cells are ``mean ± std`` over the evaluated slices; a column per view is added when there is more than one.
    """
    blocks = []
    for name, entry in summary["classes"].items():
        evaluated = entry["counts"]["evaluated"]
        if not evaluated:
            blocks.append(f"{name}: no slice holds {name} in the ground truth or the prediction\n")
            continue
        columns = [(f"{p.capitalize()} slices", stats) for p, stats in entry["slice_position"].items()]
        if len(entry["view"]) > 1:
            columns += list(entry["view"].items())
        lines = [
            f"{name} ({evaluated} slices evaluated)",
            "",
            "| " + " | ".join(["Metric", *(title for title, _ in columns)]) + " |",
            "|" + "---|" * (len(columns) + 1),
        ]
        for metric, title in _TABLE_ROWS:
            if metric in entry["all"]:
                lines.append("| " + " | ".join([title, *(_cell(stats.get(metric)) for _, stats in columns)]) + " |")
        if "dice_3d" in entry:
            lines += ["", f"3D Dice per volume: {_cell(entry['dice_3d'])} ({entry['dice_3d']['count']} volumes)"]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _cell(stats: Mapping[str, float] | None) -> str:
    return "-" if stats is None else f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then rename it, so no half-written report remains."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_csv(rows: Iterable[Mapping[str, Any]], path: Path, fields: Sequence[str]) -> None:
    """Rows as CSV: ``None`` as an empty cell, flags as 0/1, metrics rounded to 6 decimals."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(fields))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_value(v) for k, v in row.items()})

    _write_atomic(path, write)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    return round(value, 6) if isinstance(value, float) else value


def write_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    items: Sequence[Mapping[str, Any]],
    selection: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``metrics.csv``, ``summary.json`` and ``metrics.png`` into ``out_dir`` (created); return the summary.

    ``items`` are the datalist items the rows were computed on: ``summary.json`` records their fingerprint and the
    metric version under ``"evaluation"`` (:func:`~samzoo.metrics.provenance.evaluation_record`, with
    ``selection``), which ``samzoo compare`` checks.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows) | {"evaluation": evaluation_record(items, selection)}
    write_csv(rows, out_dir / "metrics.csv", ROW_FIELDS)
    _write_atomic(
        out_dir / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    )
    _write_atomic(out_dir / "metrics.png", lambda tmp: plot_metrics([r for r in rows if counted(r)], tmp))
    return summary
