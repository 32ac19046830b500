"""TotalSegmentator CT data prepared for liver segmentation.

Accepted layouts below the source folder (any depth; each case once):

- the TotalSegmentator dataset: ``<case>/ct.nii.gz`` with ``<case>/segmentations/liver.nii.gz`` (a 0/1 mask);
- TotalSegmentator's multi-label output (``--ml``) next to the CT: ``<case>/ct.nii.gz`` with
  ``<case>/segmentations.nii.gz``;
- flat pairs ``<case>_ct.nii.gz`` with ``<case>_seg.nii.gz`` (multi-label), as TotalSegmentator's example files.

In multi-label files the liver is the value ``liver_label``: 5 in TotalSegmentator's class maps (v1, 104 classes,
and v2, 117 classes). A case without that value has no liver in view and keeps an empty label; the value missing
from every file, or a file holding only 0 and 1, means the setting does not fit the data and stops preparation.
A label file must lie on its CT's grid: TotalSegmentator's ``example_seg.nii.gz`` belongs to
``example_ct_sm.nii.gz``, not to the larger ``example_ct.nii.gz``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..datalist import LIVER_LABELS
from ..nifti import load_label
from .lits import write_liver_case

logger = logging.getLogger(__name__)

LABELS = LIVER_LABELS
DATASET = "totalseg"
TOTALSEG_LIVER = 5


def collect(src: Path, dst: Path, liver_label: int = TOTALSEG_LIVER) -> list[dict[str, Any]]:
    """Prepare every TotalSegmentator case found below ``src``; return one datalist item per CT (case = its name).

    ``liver_label`` is the liver's value in multi-label files; single-structure ``liver.nii.gz`` masks are 0/1.
    Each case is its own patient.
    """
    src, dst = Path(src), Path(dst)
    if isinstance(liver_label, bool) or not isinstance(liver_label, (int, np.integer)) or not 1 <= liver_label <= 255:
        raise DataError(None, f"liver_label must be an integer label value in 1..255, got {liver_label!r}")
    cases = _find_cases(src)
    if not cases:
        raise DataError(src, "no TotalSegmentator CT found below this folder (<case>/ct.nii.gz or <case>_ct.nii.gz)")
    items: list[dict[str, Any]] = []
    without_liver: list[str] = []
    multi_label = multi_label_without_liver = 0
    for case_id, (image_path, label_path, is_multi_label) in sorted(cases.items()):
        if is_multi_label:
            label = load_label(label_path)
            values = set(np.unique(label.array).tolist())
            if values <= {0, 1} and liver_label != 1:
                raise DataError(
                    label_path,
                    f"holds only the values {sorted(values)}, a single-structure mask, while liver_label is "
                    f"{liver_label}; pass liver_label=1 if this mask is the liver",
                )
            liver = label.array == int(liver_label)
            multi_label += 1
            multi_label_without_liver += not liver.any()
        else:
            label = load_label(label_path, allowed={0, 1})
            liver = label.array == 1
        if not liver.any():
            without_liver.append(case_id)
        items.append(write_liver_case(image_path, label, liver, dst, case_id, DATASET))
    if multi_label and multi_label_without_liver == multi_label:
        raise DataError(
            src,
            f"liver label {liver_label} occurs in none of the {multi_label} multi-label segmentation(s); "
            f"set liver_label to the liver's value in these files",
        )
    if without_liver:
        logger.warning("TotalSegmentator: %d case(s) have no liver in view: %s", len(without_liver), without_liver)
    logger.info("TotalSegmentator: prepared %d case(s) from %s", len(items), src)
    return items


def _find_cases(src: Path) -> dict[str, tuple[Path, Path, bool]]:
    """Case name -> (CT, label file, whether the label file is multi-label), for every layout found below ``src``."""
    cases: dict[str, tuple[Path, Path, bool]] = {}
    for image_path in sorted(src.rglob("*ct.nii.gz")):
        if image_path.parent.name == "segmentations":  # a structure mask, not a CT
            continue
        if image_path.name == "ct.nii.gz":
            case_id, folder = image_path.parent.name, image_path.parent
            single, multi = folder / "segmentations" / "liver.nii.gz", folder / "segmentations.nii.gz"
            if single.is_file() and multi.is_file():
                raise DataError(folder, f"holds both {single.relative_to(folder)} and {multi.name}; keep only one")
            if not (single.is_file() or multi.is_file()):
                raise DataError(image_path, "has neither segmentations/liver.nii.gz nor segmentations.nii.gz beside it")
            found = (image_path, single, False) if single.is_file() else (image_path, multi, True)
        elif image_path.name.endswith("_ct.nii.gz"):
            case_id = image_path.name[: -len("_ct.nii.gz")]
            label_path = image_path.with_name(f"{case_id}_seg.nii.gz")
            if not label_path.is_file():
                raise DataError(image_path, f"has no {label_path.name} beside it")
            found = (image_path, label_path, True)
        else:
            continue
        if case_id in cases:
            raise DataError(
                image_path, f"case name {case_id!r} also used by {cases[case_id][0]}; case names must be unique"
            )
        cases[case_id] = found
    return cases
