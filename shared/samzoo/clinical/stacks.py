"""Short-axis stacks per patient from a datalist's per-slice items and their predicted masks.

The datalist holds one item per slice, (H, W, T); clinical indices need the whole stack. Items of one case and
view ``SAX`` are put together in ``slice_index`` order. The prediction of each slice is either its own file (the
layouts :func:`~samzoo.metrics.evaluation.prediction_candidates` lists, as ``samzoo evaluate`` accepts them) or
slice ``slice_index`` of one whole-stack mask (H, W, Z, T) named after the case (``<case_id>.nii.gz`` or
``<case_id>_<anything>.nii.gz``, e.g. ``patient001_4d_seg.nii.gz`` as the cine inference writes it). Either way,
prediction and ground truth are compared on exactly the datalist's slices: a stack mask of a larger field of view
than the prepared crop contributes only those slices, and only when its grid matches theirs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..data.errors import DataError
from ..data.nifti import check_same_grid, load_label
from ..data.prepare.cardiac import slice_affine
from ..metrics.evaluation import prediction_candidates
from .volumes import LV, MYOCARDIUM, RV

_NAMES = {RV: "RV", MYOCARDIUM: "myocardium", LV: "LV"}
_CINE_FIELDS = ("case_id", "label", "slice_index", "ed_frame", "es_frame", "spacing")


@dataclass
class PatientStack:
    """One patient's short-axis stack: ground truth and prediction (H, W, Z, T), slices in ``slice_indices`` order."""

    patient_id: str
    case_id: str
    slice_indices: list[int]
    num_slices: int
    label: np.ndarray
    pred: np.ndarray
    ed_frame: int
    es_frame: int
    labelled_frames: list[int]
    spacing: list[float]
    spacing_known: bool
    sources: list[Path] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.label.shape[-1]

    def predicted_frames(self) -> list[int]:
        """Frames where the prediction holds any structure on any slice (a method that segments only ED and ES
        leaves the others empty)."""
        return [int(t) for t in np.nonzero(self.pred.any(axis=(0, 1, 2)))[0]]

    def heart_cut(self) -> list[str]:
        """Where the stack may cut the heart, read from the ground truth at the labelled frames.

        ``in-plane: ...``: structures touching the border of the field of view; ``slice k: ...``: the LV or
        myocardium present on the stack's first or last slice, so the heart may go on beyond it.
        """
        gt = self.label[..., self.labelled_frames]
        border = np.concatenate([gt[[0, -1]].ravel(), gt[:, [0, -1]].ravel()])
        flags = []
        touching = [_NAMES[v] for v in (RV, MYOCARDIUM, LV) if (border == v).any()]
        if touching:
            flags.append("in-plane: " + ", ".join(touching))
        for end in sorted({0, self.num_slices - 1}):
            if end in self.slice_indices:
                plane = gt[:, :, self.slice_indices.index(end)]
                found = [_NAMES[v] for v in (MYOCARDIUM, LV) if (plane == v).any()]
                if found:
                    flags.append(f"slice {end}: " + ", ".join(found))
        return flags


def group_cases(items: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Short-axis items by case, slices in order; items without a view count as short axis, LAX items are left out."""
    cases: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        missing = [key for key in _CINE_FIELDS if key not in item]
        if missing:
            raise DataError(item.get("label"), f"item without {', '.join(missing)}: not a cardiac cine slice")
        if (item.get("view") or "SAX") == "SAX":
            cases.setdefault(str(item["case_id"]), []).append(item)
    for case, members in cases.items():
        members.sort(key=lambda i: int(i["slice_index"]))
        first = members[0]
        for item in members[1:]:
            for key in ("ed_frame", "es_frame", "num_frames", "spacing", "spacing_known", "num_slices"):
                if item.get(key) != first.get(key):
                    raise DataError(
                        item["label"], f"{key} {item.get(key)!r} differs from {first.get(key)!r} of {first['label']}"
                    )
        indices = [int(i["slice_index"]) for i in members]
        if len(set(indices)) != len(indices):
            raise DataError(first["label"], f"case {case} repeats slice indices {indices}")
    return cases


def _stack_prediction(pred_dir: Path, case_id: str, pred_postfix: str) -> Path | None:
    """The one whole-stack (4D) mask named after ``case_id`` in ``pred_dir``, or None; several are an error."""
    names = [f"{case_id}{pred_postfix}.nii.gz", f"{case_id}{pred_postfix}.nii"]
    found = [p for p in pred_dir.glob(f"{case_id}_*.nii*")] + [pred_dir / n for n in names]
    stacks = sorted({p for p in found if p.is_file() and len(nib.load(str(p)).shape) == 4})
    if len(stacks) > 1:
        raise DataError(pred_dir, f"several stack masks for {case_id}: {', '.join(p.name for p in stacks)}")
    return stacks[0] if stacks else None


def _slice_predictions(
    pred_dir: Path, members: Sequence[Mapping[str, Any]], labels: Sequence[Any], pred_postfix: str, allowed: set[int]
) -> tuple[list[np.ndarray], list[Path]]:
    """Each slice's prediction, from per-slice files or from the case's stack mask (module docstring)."""
    files = [
        next((c for c in prediction_candidates(pred_dir, item, pred_postfix) if c.is_file()), None) for item in members
    ]
    if all(f is not None for f in files):
        preds = []
        for label, file in zip(labels, files, strict=True):
            pred = load_label(file, allowed)
            check_same_grid(label, pred)
            preds.append(pred.array)
        return preds, files
    case_id = str(members[0]["case_id"])
    stack = _stack_prediction(pred_dir, case_id, pred_postfix)
    if stack is None:
        missing = prediction_candidates(pred_dir, members[files.index(None)], pred_postfix)[0]
        raise DataError(missing, f"prediction not found, and no stack mask {case_id}_*.nii.gz in {pred_dir}")
    vol = load_label(stack, allowed)
    preds = []
    for item, label in zip(members, labels, strict=True):
        z = int(item["slice_index"])
        h, w, t = label.array.shape
        if vol.array.shape[0] != h or vol.array.shape[1] != w or vol.array.shape[3] != t or z >= vol.array.shape[2]:
            raise DataError(stack, f"shape {vol.array.shape} has no slice {z} of shape {(h, w, t)} for {label.path}")
        cols = [0, 1, 3]
        if not np.allclose(slice_affine(vol.affine, z)[:3, cols], label.affine[:3, cols], atol=1e-3, rtol=1e-4):
            raise DataError(stack, f"slice {z} lies elsewhere than {label.path} (affines differ)")
        preds.append(vol.array[:, :, z, :])
    return preds, [stack]


def patient_stacks(
    items: Sequence[Mapping[str, Any]],
    pred_dir: str | Path,
    label_values: Sequence[int] = (0, 1, 2, 3),
    pred_postfix: str = "",
) -> Iterator[PatientStack]:
    """The short-axis stacks of ``items`` with their predictions in ``pred_dir``, one case at a time."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "prediction folder not found")
    allowed = {int(v) for v in label_values}
    cases = group_cases(items)
    if not cases:
        raise DataError(pred_dir, "no short-axis items to read clinical indices from")
    for case_id, members in cases.items():
        labels = [load_label(item["label"], allowed) for item in members]
        for label in labels:
            if label.array.ndim != 3 or label.array.shape != labels[0].array.shape:
                raise DataError(label.path, f"shape {label.array.shape}: expected one (H, W, T) cine per slice")
        preds, sources = _slice_predictions(pred_dir, members, labels, pred_postfix, allowed)
        first = members[0]
        frames = [int(f) for f in first.get("labelled_frames", [first["ed_frame"], first["es_frame"]])]
        yield PatientStack(
            patient_id=str(first.get("patient_id", case_id)),
            case_id=case_id,
            slice_indices=[int(i["slice_index"]) for i in members],
            num_slices=int(first.get("num_slices") or len(members)),
            label=np.stack([label.array for label in labels], axis=2),
            pred=np.stack(preds, axis=2),
            ed_frame=int(first["ed_frame"]),
            es_frame=int(first["es_frame"]),
            labelled_frames=frames,
            spacing=[float(s) for s in first["spacing"]],
            spacing_known=bool(first.get("spacing_known", False)),
            sources=sources,
        )
