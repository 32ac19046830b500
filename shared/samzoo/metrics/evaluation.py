"""Per-slice evaluation of predicted label maps against the labels of a datalist.

SAM methods segment 2D slices, so every metric is computed per 2D slice and class:

- cardiac cine items (label (H, W, T)): each of the item's ``labelled_frames``, with the phase named "ED", "ES" or
  "frame<k>";
- CT items (label (X, Y, Z)): each axial slice (last axis) on which the ground truth or the prediction holds the
  class. Slices where both are empty are skipped: they would each add a perfect Dice and pull the mean towards 1
  in proportion to how much of the scan lies outside the organ. A per-volume 3D Dice is added as ``dice_3d``.

Distances are in pixels always and in mm when the item's ``spacing_known`` is true (in-plane spacing
``item["spacing"][:2]``). Empty-mask cases follow :mod:`samzoo.metrics.surface` and are flagged by ``gt_empty`` and
``pred_empty``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.datalist import datalist_info, load_datalist
from ..data.nifti import NiftiVolume, check_same_grid, load_label
from ..errors import DataError
from .report import results_table, write_report
from .rows import ROW_FIELDS
from .surface import boundary_distances, dice_score

logger = logging.getLogger(__name__)

LabelSource = str | Path | np.ndarray | torch.Tensor
"""A predicted label map given as a NIfTI file or as an array already in memory."""


def classes_from_labels(labels: Mapping[str, str]) -> dict[int, str]:
    """The classes to evaluate from a datalist's ``labels`` (value -> name): every value except background 0."""
    return {int(value): name for value, name in labels.items() if int(value) != 0}


def strip_nifti(name: str) -> str:
    """A file name without its ``.nii.gz`` or ``.nii`` suffix."""
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def prediction_candidates(pred_dir: str | Path, item: Mapping[str, Any], pred_postfix: str = "") -> list[Path]:
    """Where the prediction for ``item`` may lie, in the order they are tried.

    For ``name`` the label file's name without ``.nii.gz``/``.nii`` (then the image file's, for predictions named
    after the image): ``<name><pred_postfix>.nii.gz`` and MONAI ``SaveImage``'s layouts ``<name>/<name>_seg.nii.gz``
    and ``<name>_seg.nii.gz``; each also with ``.nii``.
    """
    pred_dir = Path(pred_dir)
    names = dict.fromkeys(strip_nifti(Path(item[key]).name) for key in ("label", "image") if item.get(key))
    candidates = []
    for name in names:
        for ext in (".nii.gz", ".nii"):
            candidates += [
                pred_dir / f"{name}{pred_postfix}{ext}",
                pred_dir / name / f"{name}_seg{ext}",
                pred_dir / f"{name}_seg{ext}",
            ]
    return list(dict.fromkeys(candidates))


def find_predictions(pred_dir: str | Path, items: Sequence[Mapping[str, Any]], pred_postfix: str = "") -> list[Path]:
    """The prediction file of every item; raise :class:`DataError` naming the missing ones and how many there are."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "prediction folder not found")
    found, missing = [], []
    for item in items:
        candidates = prediction_candidates(pred_dir, item, pred_postfix)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(candidates[0])
        found.append(path)
    if missing:
        shown = ", ".join(p.name for p in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            missing[0],
            f"prediction not found; {len(missing)} of {len(items)} predictions are missing in {pred_dir} ({shown})",
        )
    return found


def _load(source: LabelSource, allowed: set[int] | None, label_path: Path) -> tuple[np.ndarray, NiftiVolume | None]:
    """A prediction as an integer array, with its checked NIfTI volume when it came from a file (else ``None``)."""
    if isinstance(source, str | Path):
        vol = load_label(source, allowed)
        return vol.array, vol
    array = np.asarray(source.detach().cpu() if isinstance(source, torch.Tensor) else source)
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise DataError(label_path, "the prediction holds non-integer values (probabilities rather than labels?)")
    found = {int(v) for v in np.unique(array)}
    if allowed is not None and not found <= allowed:
        raise DataError(label_path, f"the prediction holds unexpected label values {sorted(found - allowed)}")
    return array.astype(np.int64), None


def _planes(item: Mapping[str, Any], label: np.ndarray, label_path: Path) -> list[dict[str, Any]]:
    """The 2D planes of an item to evaluate, each with its index on the last axis and its row fields."""
    if label.ndim != 3:
        raise DataError(label_path, f"expected a 3D label map (H, W, T) or (X, Y, Z), got shape {label.shape}")
    if "labelled_frames" not in item:
        return [{"index": z, "slice_index": z, "phase": "", "frame": None} for z in range(label.shape[-1])]
    planes = []
    for frame in item["labelled_frames"]:
        if not 0 <= frame < label.shape[-1]:
            raise DataError(label_path, f"labelled frame {frame} is outside the {label.shape[-1]} frames")
        phase = {item.get("ed_frame"): "ED", item.get("es_frame"): "ES"}.get(frame, f"frame{frame}")
        planes.append({"index": frame, "slice_index": item.get("slice_index"), "phase": phase, "frame": frame})
    return planes


def _item_rows(
    item: Mapping[str, Any], label: np.ndarray, pred: np.ndarray, classes: Mapping[int, str], label_path: Path
) -> list[dict[str, Any]]:
    """Rows of one item: every evaluated plane and class."""
    planes = _planes(item, label, label_path)
    per_frame = "labelled_frames" in item
    spacing = tuple(item["spacing"][:2]) if item.get("spacing_known") else None
    base = {
        "dataset": item.get("dataset", ""),
        "case_id": item.get("case_id", ""),
        "patient_id": item.get("patient_id", ""),
        "view": item.get("view") or "",
        "slice_position": item.get("slice_position") or "",
    }
    index = [p["index"] for p in planes]
    rows = []
    for value, name in classes.items():
        gt = np.moveaxis(label[..., index] == value, -1, 0)  # N x H x W
        pr = np.moveaxis(pred[..., index] == value, -1, 0)
        keep = np.ones(len(planes), dtype=bool) if per_frame else gt.any(axis=(1, 2)) | pr.any(axis=(1, 2))
        if not keep.any():
            continue
        gt, pr = gt[keep], pr[keep]
        dice = dice_score(pr, gt)
        px = boundary_distances(pr, gt)
        mm = boundary_distances(pr, gt, spacing) if spacing is not None else None
        dice_3d = float(dice_score((pred == value)[None], (label == value)[None])[0]) if not per_frame else None
        kept = [p for p, k in zip(planes, keep, strict=True) if k]
        for i, plane in enumerate(kept):
            row = dict(base, slice_index=plane["slice_index"], phase=plane["phase"], frame=plane["frame"])
            row["class"] = name
            row["dice"] = float(dice[i])
            for metric in ("hd", "hd95", "masd"):
                row[f"{metric}_px"] = float(px[metric][i])
                row[f"{metric}_mm"] = None if mm is None else float(mm[metric][i])
            row["gt_empty"] = not gt[i].any()
            row["pred_empty"] = not pr[i].any()
            row["dice_3d"] = dice_3d
            rows.append({key: row[key] for key in ROW_FIELDS})
    return rows


def evaluate_items(
    items: Sequence[Mapping[str, Any]],
    predictions: Iterable[LabelSource],
    classes: Mapping[int, str],
    label_values: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """Metric rows (columns :data:`ROW_FIELDS`) of predicted label maps against the items' labels.

    ``items`` follow the datalist schema (``item["label"]`` a NIfTI file, read here on its own grid);
    ``predictions`` give one label map per item, in the same order and with the label's shape (cine (H, W, T), CT
    (X, Y, Z)), as NIfTI files or arrays; they are read one at a time, so a generator keeps memory low.
    ``classes`` maps label values to the names written in the ``class`` column (e.g. ``{2: "myocardium"}``);
    ``label_values``, when given, is the full set of values labels and predictions may hold.
    """
    allowed = None if label_values is None else {int(v) for v in label_values}
    if allowed is not None and not set(classes) <= allowed:
        raise DataError(None, f"classes {sorted(set(classes) - allowed)} are not among the label values {allowed}")
    predictions = iter(predictions)
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        prediction = next(predictions, None)
        if prediction is None:
            raise DataError(None, f"got {i} predictions for {len(items)} items")
        label = load_label(item["label"], allowed)
        pred, pred_vol = _load(prediction, allowed, label.path)
        if pred_vol is not None:
            check_same_grid(label, pred_vol)
        elif pred.shape != label.array.shape:
            raise DataError(label.path, f"prediction shape {pred.shape} does not match label shape {label.array.shape}")
        rows += _item_rows(item, label.array, pred, classes, label.path)
    if next(predictions, None) is not None:
        raise DataError(None, f"got more predictions than the {len(items)} items")
    return rows


def report_predictions(
    items: Sequence[Mapping[str, Any]],
    predictions: Iterable[LabelSource],
    classes: Mapping[int, str],
    out_dir: str | Path,
    label_values: Iterable[int] | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Score ``predictions`` against the items' labels (:func:`evaluate_items`), keep the rows ``keep`` accepts
    (all when None), write ``metrics.csv``, ``summary.json`` and ``metrics.png`` into ``out_dir``
    (:func:`~samzoo.metrics.report.write_report`) and log the results table; return the summary.

    The one evaluation-report path: ``samzoo evaluate`` and every bundle's evaluation handler
    (:class:`samzoo.engine.EvaluationReport`) come here.
    """
    rows = evaluate_items(items, predictions, classes, label_values)
    if keep is not None:
        rows = [row for row in rows if keep(row)]
    summary = write_report(rows, out_dir)
    logger.info(
        "evaluated %d items (%d rows), report in %s\n%s", len(items), len(rows), out_dir, results_table(summary)
    )
    return summary


def evaluate_folder(
    pred_dir: Path,
    datalist: Path,
    out_dir: Path,
    split: str = "test",
    pred_postfix: str = "",
    classes: Mapping[int, str] | None = None,
) -> Path:
    """Evaluate the predictions in ``pred_dir`` for ``split`` of ``datalist``; write the report; return metrics.csv.

    ``classes`` defaults to every non-background value of the datalist's ``labels``. Writes ``metrics.csv``,
    ``summary.json`` and ``metrics.png`` into ``out_dir`` (nothing outside it) and logs the results table.
    """
    items = load_datalist(datalist, split)
    if not items:
        raise DataError(datalist, f"split {split!r} has no items to evaluate")
    labels = datalist_info(datalist).get("labels")
    if not labels:
        raise DataError(datalist, "has no 'labels' (value -> name) to take the classes and label values from")
    label_values = {int(v) for v in labels}
    classes = classes_from_labels(labels) if classes is None else dict(classes)
    logger.info("evaluating the predictions in %s for split %s of %s", pred_dir, split, datalist)
    report_predictions(items, find_predictions(pred_dir, items, pred_postfix), classes, out_dir, label_values)
    return Path(out_dir) / "metrics.csv"
