"""The clinical read-out of predicted cardiac stacks and its agreement with the ground truth.

For every patient (:mod:`samzoo.clinical.stacks`): areas per slice and frame, volumes by the summation of discs,
the LV volume-time curve when every frame is predicted, EDV/ESV/SV/EF of the LV (and the RV when the method
segments it) and the myocardial mass at ED, from the prediction and from the ground truth at the dataset's ED and
ES. ED and ES are also read from the curve (largest and smallest LV volume) and compared with the dataset's.

Files written to ``out_dir`` (each atomically):

- ``clinical.csv``: one row per patient, ``<index>_pred`` next to ``<index>_gt``;
- ``clinical_areas.csv``: areas per patient, source, frame and slice, with the ring rule used;
- ``clinical_summary.json``: agreement per index and unit (MAE, bias, limits of agreement, Pearson r), ED/ES frame
  agreement and the flags;
- ``bland_altman/<index>_<unit>.png`` and ``volume_curves/<patient>.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..data.datalist import datalist_info, load_datalist
from ..data.errors import DataError
from ..metrics.report import write_csv
from .agreement import bland_altman, frame_agreement
from .plots import plot_bland_altman, plot_volume_curve
from .stacks import PatientStack, patient_stacks
from .volumes import (
    LV,
    RV,
    StackAreas,
    Units,
    curve_phases,
    disc_volumes,
    frame_distance,
    missing_slices,
    myocardial_mass,
    ring_counts,
    stack_areas,
    ventricle_indices,
)

logger = logging.getLogger(__name__)

VOLUME_INDICES = ("lv_edv", "lv_esv", "lv_sv", "myo_volume_ed", "rv_edv", "rv_esv", "rv_sv")
"""Indices in the patient's volume unit (ml, or voxels without a known spacing)."""

PAIRED_INDICES = (
    "lv_edv",
    "lv_esv",
    "lv_sv",
    "lv_ef",
    "myo_volume_ed",
    "myo_mass",
    "rv_edv",
    "rv_esv",
    "rv_sv",
    "rv_ef",
)
"""Indices computed from both the prediction and the ground truth at the dataset's ED and ES."""

CLINICAL_FIELDS = (
    "patient_id",
    "case_id",
    "num_frames",
    "slices",
    "missing_slices",
    "spacing_known",
    "volume_unit",
    "ed_frame",
    "es_frame",
    "ed_frame_curve",
    "es_frame_curve",
    "ed_frame_distance",
    "es_frame_distance",
    *(f"{index}_{source}" for index in PAIRED_INDICES for source in ("pred", "gt")),
    "lv_edv_curve",
    "lv_esv_curve",
    "lv_ef_curve",
    "cavity",
    "ring_open",
    "ring_no_cavity",
    "heart_cut",
)
"""Columns of ``clinical.csv``."""

AREA_FIELDS = ("patient_id", "source", "frame", "phase", "slice_index", "lv", "myocardium", "rv", "area_unit", "ring")
"""Columns of ``clinical_areas.csv``."""


def _indices(areas: StackAreas, stack: PatientStack, units: Units) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Indices at the dataset's ED/ES and the volume curves of one segmentation of ``stack``."""
    curves = {"LV": disc_volumes(areas.lv, stack.slice_indices, units)}
    myo = disc_volumes(areas.myocardium, stack.slice_indices, units)
    ed, es = stack.ed_frame, stack.es_frame
    out: dict[str, Any] = dict(ventricle_indices(curves["LV"], ed, es, "lv"))
    out["myo_volume_ed"] = float(myo[ed])
    out["myo_mass"] = myocardial_mass(float(myo[ed])) if units.known else None
    if areas.rv is not None:
        curves["RV"] = disc_volumes(areas.rv, stack.slice_indices, units)
        out |= ventricle_indices(curves["RV"], ed, es, "rv")
    return out, curves


def _area_rows(stack: PatientStack, areas: StackAreas, source: str, units: Units) -> list[dict[str, Any]]:
    phases = {stack.ed_frame: "ED", stack.es_frame: "ES"}
    rows = []
    for t in areas.frames:
        for z, index in enumerate(stack.slice_indices):
            rows.append(
                {
                    "patient_id": stack.patient_id,
                    "source": source,
                    "frame": t,
                    "phase": phases.get(t, ""),
                    "slice_index": index,
                    "lv": areas.lv[z, t] * units.pixel_area,
                    "myocardium": areas.myocardium[z, t] * units.pixel_area,
                    "rv": None if areas.rv is None else areas.rv[z, t] * units.pixel_area,
                    "area_unit": units.area,
                    "ring": "" if areas.ring is None else areas.ring[z, t],
                }
            )
    return rows


class PatientReadout:
    """The read-out of one patient: its ``clinical.csv`` row, its area rows and what its curve picture shows."""

    def __init__(self, stack: PatientStack, cavity: str, rv: bool, gt_cavity: str) -> None:
        units = Units.from_spacing(stack.spacing, stack.spacing_known)
        frames = stack.predicted_frames()
        curve = len(frames) == stack.num_frames
        pred_areas = stack_areas(stack.pred, frames, cavity=cavity, rv=rv)
        gt_areas = stack_areas(stack.label, stack.labelled_frames, cavity=gt_cavity, rv=rv)
        pred, self.curves = _indices(pred_areas, stack, units)
        labelled = {stack.ed_frame, stack.es_frame} <= set(stack.labelled_frames)
        if not labelled:
            logger.warning("%s: no ground truth at ED and ES; its indices are left empty", stack.patient_id)
        gt, gt_curves = _indices(gt_areas, stack, units)
        self.truth = {name: {t: float(v[t]) for t in stack.labelled_frames} for name, v in gt_curves.items()}
        row: dict[str, Any] = {
            "patient_id": stack.patient_id,
            "case_id": stack.case_id,
            "num_frames": stack.num_frames,
            "slices": " ".join(map(str, stack.slice_indices)),
            "missing_slices": " ".join(map(str, missing_slices(stack.slice_indices))),
            "spacing_known": stack.spacing_known,
            "volume_unit": units.volume,
            "ed_frame": stack.ed_frame,
            "es_frame": stack.es_frame,
            "cavity": cavity,
            "heart_cut": "; ".join(stack.heart_cut()),
        }
        counts = ring_counts(pred_areas)
        row["ring_open"], row["ring_no_cavity"] = counts["open"], counts["no_cavity"]
        for index in PAIRED_INDICES:
            row[f"{index}_pred"] = pred.get(index)
            row[f"{index}_gt"] = gt.get(index) if labelled else None
        self.phases = {"ED": stack.ed_frame, "ES": stack.es_frame}
        if curve:
            ed, es = curve_phases(self.curves["LV"])
            curve_indices = ventricle_indices(self.curves["LV"], ed, es, "lv")
            row |= {
                "ed_frame_curve": ed,
                "es_frame_curve": es,
                "ed_frame_distance": frame_distance(ed, stack.ed_frame, stack.num_frames),
                "es_frame_distance": frame_distance(es, stack.es_frame, stack.num_frames),
                "lv_edv_curve": curve_indices["lv_edv"],
                "lv_esv_curve": curve_indices["lv_esv"],
                "lv_ef_curve": curve_indices["lv_ef"],
            }
            self.phases |= {"ED (curve)": ed, "ES (curve)": es}
        self.curve = curve
        shown = np.full(stack.num_frames, np.nan)
        shown[frames] = 0.0
        self.curves = {name: volumes + shown for name, volumes in self.curves.items()}  # unpredicted frames: gaps
        self.row = {key: row.get(key) for key in CLINICAL_FIELDS}
        self.areas = _area_rows(stack, pred_areas, "prediction", units) + _area_rows(
            stack, gt_areas, "ground_truth", units
        )
        self.unit = units.volume
        self.title = f"{stack.patient_id} ({'all frames' if curve else f'{len(frames)} frames predicted'})"


def _unit(index: str, row: Mapping[str, Any]) -> str:
    if index.endswith(("_ef", "_ef_curve")):
        return "percent"
    return "g" if index == "myo_mass" else row["volume_unit"]


def agreement_pairs(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """(prediction, ground truth) values per index and unit, over the patients where both exist; the curve's EF is
    paired with the ground-truth EF at the dataset's frames. Units are never mixed."""
    pairs: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    columns = [(index, f"{index}_pred", f"{index}_gt") for index in PAIRED_INDICES]
    columns.append(("lv_ef_curve", "lv_ef_curve", "lv_ef_gt"))
    for index, pred_key, gt_key in columns:
        for row in rows:
            if row[pred_key] is not None and row[gt_key] is not None:
                pred, gt = pairs.setdefault(index, {}).setdefault(_unit(index, row), ([], []))
                pred.append(float(row[pred_key]))
                gt.append(float(row[gt_key]))
    return pairs


def summarize_clinical(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Agreement per index and unit, ED/ES frame agreement of the curves, and the flags (clinical_summary.json)."""
    units: dict[str, list[str]] = {}
    for row in rows:
        units.setdefault(row["volume_unit"], []).append(row["patient_id"])
    agreement = {
        index: {unit: bland_altman(p, g) for unit, (p, g) in by_unit.items()}
        for index, by_unit in agreement_pairs(rows).items()
    }
    frames = {
        phase: frame_agreement([r[f"{phase}_frame_distance"] for r in rows if r[f"{phase}_frame_distance"] is not None])
        for phase in ("ed", "es")
    }
    return {
        "num_patients": len(rows),
        "cavity": sorted({r["cavity"] for r in rows}),
        "volume_units": units,
        "curves": sum(r["ed_frame_curve"] is not None for r in rows),
        "agreement": agreement,
        "frames": frames,
        "flags": {
            "heart_cut": [r["patient_id"] for r in rows if r["heart_cut"]],
            "missing_slices": [r["patient_id"] for r in rows if r["missing_slices"]],
            "ring_open": sum(r["ring_open"] for r in rows),
            "ring_no_cavity": sum(r["ring_no_cavity"] for r in rows),
        },
    }


def agreement_table(summary: Mapping[str, Any]) -> str:
    """Markdown table of the agreement: one row per index and unit."""
    lines = ["| index | unit | n | MAE | bias | 95 % LoA | r |", "|---|---|---|---|---|---|---|"]
    for index, by_unit in summary["agreement"].items():
        for unit, s in by_unit.items():
            loa = "-" if s["loa_lower"] is None else f"[{s['loa_lower']:.2f}, {s['loa_upper']:.2f}]"
            r = "-" if s["pearson_r"] is None else f"{s['pearson_r']:.3f}"
            lines.append(f"| {index} | {unit} | {s['n']} | {s['mae']:.2f} | {s['bias']:.2f} | {loa} | {r} |")
    return "\n".join(lines)


def write_clinical_report(
    stacks: Iterable[PatientStack],
    out_dir: str | Path,
    cavity: str = "label",
    rv: bool = True,
    gt_cavity: str = "label",
) -> dict[str, Any]:
    """Read out every stack, write the files of the module docstring into ``out_dir``; return the summary.

    ``cavity`` and ``rv`` describe what the method segments (``"ring"``: myocardium only, the cavity derived from
    it); ``gt_cavity`` the same for the ground truth.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, areas = [], []
    for stack in stacks:
        readout = PatientReadout(stack, cavity, rv, gt_cavity)
        rows.append(readout.row)
        areas += readout.areas
        plot_volume_curve(
            readout.curves,
            readout.unit,
            readout.phases,
            readout.truth,
            readout.title,
            out_dir / "volume_curves" / f"{stack.patient_id}.png",
        )
    if not rows:
        raise DataError(out_dir, "no patient to read clinical indices from")
    summary = summarize_clinical(rows)
    write_csv(rows, out_dir / "clinical.csv", CLINICAL_FIELDS)
    write_csv(areas, out_dir / "clinical_areas.csv", AREA_FIELDS)
    with atomic_path(out_dir / "clinical_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    for index, (by_unit, pairs) in ((i, (summary["agreement"][i], p)) for i, p in agreement_pairs(rows).items()):
        for unit, (pred, gt) in pairs.items():
            name = f"{index}_{unit}"
            plot_bland_altman(pred, gt, by_unit[unit], f"{index} ({unit})", out_dir / "bland_altman" / f"{name}.png")
    logger.info("clinical indices of %d patients written to %s\n%s", len(rows), out_dir, agreement_table(summary))
    return summary


def cavity_rule(classes: Iterable[int]) -> tuple[str, bool]:
    """How to read a segmentation holding ``classes``: the cavity from the LV label, else from the myocardial
    ring; the RV only when it is segmented."""
    classes = {int(c) for c in classes}
    if LV not in classes and 2 not in classes:
        raise DataError(None, f"classes {sorted(classes)} hold neither the LV (3) nor the myocardium (2)")
    return ("label" if LV in classes else "ring"), RV in classes


def clinical_readout(
    items: Sequence[Mapping[str, Any]],
    pred_dir: str | Path,
    out_dir: str | Path,
    classes: Iterable[int],
    label_values: Sequence[int] = (0, 1, 2, 3),
    pred_postfix: str = "",
) -> dict[str, Any]:
    """The read-out of ``items``' predictions in ``pred_dir`` for a method that segments ``classes``."""
    cavity, rv = cavity_rule(classes)
    gt_cavity = "label" if LV in set(label_values) else "ring"
    stacks = patient_stacks(items, pred_dir, label_values, pred_postfix)
    return write_clinical_report(stacks, out_dir, cavity=cavity, rv=rv and RV in set(label_values), gt_cavity=gt_cavity)


def clinical_folder(
    pred_dir: str | Path,
    datalist: str | Path,
    out_dir: str | Path,
    split: str = "test",
    pred_postfix: str = "",
    classes: Iterable[int] | None = None,
) -> Path:
    """``samzoo clinical``: read out the predictions in ``pred_dir`` for ``split`` of ``datalist``; return the CSV.

    ``classes`` (the label values the method segments) default to every non-background value of the datalist's
    ``labels``; a myocardium-only method passes ``[2]``.
    """
    items = load_datalist(datalist, split)
    labels = datalist_info(datalist).get("labels")
    if not labels:
        raise DataError(datalist, "has no 'labels' (value -> name) to take the label values from")
    label_values = sorted(int(v) for v in labels)
    classes = [v for v in label_values if v != 0] if classes is None else [int(c) for c in classes]
    clinical_readout(items, pred_dir, out_dir, classes, label_values, pred_postfix)
    return Path(out_dir) / "clinical.csv"
