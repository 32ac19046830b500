"""LiTS (Liver Tumor Segmentation Benchmark) in its public layout, prepared for liver segmentation.

LiTS ships pairs ``volume-N.nii`` (CT, HU) and ``segmentation-N.nii`` (0 background, 1 liver, 2 tumour) in the
folders "Training Batch 1" and "Training Batch 2"; any folder structure below the source folder is accepted, and
so are ``.nii.gz`` files and volumes and segmentations kept in separate folders. The tumour lies inside the
liver, so the liver label is 1 and 2 together.

:func:`write_liver_case` is the CT preparation step shared with TotalSegmentator: check the pair, put the slice
axis last in closest-canonical (RAS) order, write the binary liver label and describe the volume as a datalist item.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ...errors import DataError
from ..datalist import LIVER_LABELS
from ..nifti import NiftiVolume, check_same_grid, load_label, load_nifti, save_nifti

logger = logging.getLogger(__name__)

LABELS = LIVER_LABELS
DATASET = "lits"
LITS_VALUES = {0, 1, 2}

_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")
_SEGMENTATION = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$")


def collect(src: Path, dst: Path) -> list[dict[str, Any]]:
    """Prepare every LiTS volume found below ``src``; return one datalist item per volume (case ``lits_NNN``).

    Each volume is its own patient: LiTS does not publish which scans share a patient.
    """
    src, dst = Path(src), Path(dst)
    volumes, segmentations = _numbered(src, _VOLUME), _numbered(src, _SEGMENTATION)
    if not volumes:
        raise DataError(src, "no LiTS volume-N.nii(.gz) files found below this folder")
    for number, path in segmentations.items():
        if number not in volumes:
            raise DataError(path, f"has no matching volume-{number}.nii(.gz) below {src}")
    items = []
    for number, image_path in sorted(volumes.items()):
        if number not in segmentations:
            raise DataError(image_path, f"has no matching segmentation-{number}.nii(.gz) below {src}")
        label = load_label(segmentations[number], allowed=LITS_VALUES)
        case_id = f"lits_{number:03d}"
        items.append(write_liver_case(image_path, label, label.array > 0, dst, case_id, DATASET))
    logger.info("LiTS: prepared %d volume(s) from %s", len(items), src)
    return items


def write_liver_case(
    image_path: Path, label: NiftiVolume, liver: np.ndarray, dst: Path, case_id: str, dataset: str
) -> dict[str, Any]:
    """Check a CT volume against its label file, write the binary liver label and return the datalist item.

    ``liver`` (X, Y, Z) bool is on ``label``'s grid. The label is written to ``dst/labels/<case_id>.nii.gz`` in
    closest-canonical orientation (slice axis last, from inferior to superior). The image is referenced in place
    (absolute path) when it is already stored that way, otherwise a reoriented copy is written to
    ``dst/images/<case_id>.nii.gz``; sources are never modified.
    """
    image = load_nifti(image_path, dtype=None)
    if image.array.ndim != 3:
        raise DataError(image.path, f"expected a 3D CT volume, got shape {image.array.shape}")
    check_same_grid(image, label)
    ornt = nib.io_orientation(image.affine)
    affine = image.affine @ nib.orientations.inv_ornt_aff(ornt, image.array.shape)
    liver = nib.orientations.apply_orientation(liver, ornt).astype(np.uint8)
    spacing = tuple(round(float(s), 4) for s in np.linalg.norm(affine[:3, :3], axis=0))
    item: dict[str, Any] = {"image": str(image.path.resolve())}
    if not np.array_equal(ornt, nib.io_orientation(np.eye(4))):
        array = _compact(nib.orientations.apply_orientation(image.array, ornt))
        save_nifti(array, affine, dst / "images" / f"{case_id}.nii.gz", zooms=spacing)
        item["image"] = f"images/{case_id}.nii.gz"
    save_nifti(liver, affine, dst / "labels" / f"{case_id}.nii.gz", zooms=spacing)
    item.update(
        label=f"labels/{case_id}.nii.gz",
        case_id=case_id,
        patient_id=case_id,
        dataset=dataset,
        spacing=list(spacing),
        spacing_known=True,
        num_slices=int(liver.shape[2]),
        liver_slices=[int(k) for k in np.flatnonzero(liver.any(axis=(0, 1)))],
    )
    return item


def _numbered(src: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    """Files below ``src`` whose name matches ``pattern``, by their number; a number found twice is an error."""
    found: dict[int, Path] = {}
    for path in sorted(src.rglob("*.nii*")):
        match = pattern.match(path.name)
        if match is None or not path.is_file():
            continue
        number = int(match.group(1))
        if number in found:
            raise DataError(path, f"duplicates {found[number]} (same case number {number}); keep only one copy")
        found[number] = path
    return found


def _compact(array: np.ndarray) -> np.ndarray:
    """HU as int16 when they are whole numbers within its range (as CT stores them), otherwise float32."""
    if np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize <= 2:
        return array
    info = np.iinfo(np.int16)
    if array.size and np.array_equal(array, np.round(array)) and info.min <= array.min() and array.max() <= info.max:
        return array.astype(np.int16)
    return array.astype(np.float32)
