"""Evaluation of predicted masks: per-slice Dice, Hausdorff distances and MASD, with reports for every bundle.

:func:`report_predictions` scores predicted label maps (NIfTI files or arrays) and writes the report; it is the one
path of ``samzoo evaluate`` (:func:`evaluate_folder`, a folder of NIfTI files) and of every bundle's evaluation
(:class:`samzoo.engine.EvaluationReport`). See docs/metrics.md.
"""

from .evaluation import (
    classes_from_labels,
    evaluate_folder,
    evaluate_items,
    find_predictions,
    prediction_candidates,
    report_predictions,
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
    "report_predictions",
    "results_table",
    "summarize",
    "worst_case_distance",
    "write_csv",
    "write_report",
]
