"""The metric row: its columns and the groups it is reported in (slice position, phase).

One row holds the metrics of one class on one 2D slice of one case at one phase; ``metrics.csv`` is a list of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROW_FIELDS = (
    "dataset",
    "case_id",
    "patient_id",
    "view",
    "slice_index",
    "slice_position",
    "phase",
    "frame",
    "class",
    "dice",
    "hd_px",
    "hd95_px",
    "masd_px",
    "hd_mm",
    "hd95_mm",
    "masd_mm",
    "gt_empty",
    "pred_empty",
    "dice_3d",
)
"""Columns of ``metrics.csv``; mm columns are ``None`` where the spacing is unknown, ``dice_3d`` is CT only."""

POSITIONS = ("basal", "mid", "apical")
"""Short-axis slice positions, base first."""

PHASES = ("ED", "ES")
"""Phases reported by name; every other labelled frame is grouped as "other"."""

PHASE_GROUPS = (*PHASES, "other")
"""The groups of the phase breakdown, in report order."""


def counted(row: Mapping[str, Any]) -> bool:
    """Whether a row enters statistics and plots: not both the ground truth and the prediction empty."""
    return not (row["gt_empty"] and row["pred_empty"])


def phase_group(row: Mapping[str, Any]) -> str:
    """ "ED", "ES", "other" for any other labelled frame, or "" for rows without a phase (CT)."""
    return row["phase"] if row["phase"] in PHASES or not row["phase"] else "other"


def position_group(row: Mapping[str, Any]) -> str:
    """The row's slice position, "" where it has none (LAX, CT)."""
    return row["slice_position"]
