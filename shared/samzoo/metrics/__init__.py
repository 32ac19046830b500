"""Evaluation of predicted masks: per-slice Dice, Hausdorff distances and MASD, with reports for every bundle.

:func:`evaluate_folder` scores a folder of predicted NIfTI files (``samzoo evaluate``); bundles holding predictions
in memory call :func:`evaluate_items` and :func:`write_report`. See docs/metrics.md.
"""

from .evaluation import (
    classes_from_labels,
    evaluate_folder,
    evaluate_items,
    find_predictions,
    prediction_candidates,
)
from .plots import plot_metrics
from .report import results_table, summarize, write_csv, write_report
from .rows import ROW_FIELDS
from .surface import boundary_distances, dice_score, worst_case_distance

__all__ = [
    "ROW_FIELDS",
    "boundary_distances",
    "classes_from_labels",
    "dice_score",
    "evaluate_folder",
    "evaluate_items",
    "find_predictions",
    "plot_metrics",
    "prediction_candidates",
    "results_table",
    "summarize",
    "worst_case_distance",
    "write_csv",
    "write_report",
]
