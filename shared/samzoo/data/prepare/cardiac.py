"""The prepared form every cardiac cine dataset ends in: one NIfTI per slice and view, shape (H, W, T).

Each reader (ACDC, M&Ms, M&Ms-2, STACOM) turns its source layout into :class:`CineStack` objects, one per view of
a case, and hands them to :func:`write_cine_stack`. That one function writes
``dst/images/<case>_<view>_s<ZZ>.nii.gz`` and ``dst/labels/<same name>`` and returns the datalist items, so the
files, their geometry, the label convention (ACDC's :data:`~samzoo.data.datalist.CARDIAC_LABELS`) and the item
fields are the same whatever the source.

Slice positions (``basal``, ``mid``, ``apical``) are thirds of the short-axis slices that carry labels at end
diastole, base first. Stacks are stored base-to-apex in some datasets and apex-to-base in others, so the base side
is read from the data: the left ventricle (myocardium, blood pool and everything they enclose) is larger at the
base than at the apex, and the end of the stack whose labelled half has the larger mean area at ED is the base.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy.ndimage import binary_fill_holes

from ...errors import DataError
from ..datalist import CARDIAC_LABELS
from ..nifti import NiftiVolume, check_same_grid, load_label, save_nifti

logger = logging.getLogger(__name__)

ACDC_VALUES = frozenset(int(v) for v in CARDIAC_LABELS)
"""Label values of the prepared files: 0 background, 1 RV, 2 myocardium, 3 LV."""

MNMS_TO_ACDC = {0: 0, 1: 3, 2: 2, 3: 1}
"""M&Ms and M&Ms-2 label 1 LV, 2 myocardium, 3 RV, mapped to ACDC's 3, 2, 1."""

MYOCARDIUM, LV = 2, 3
POSITIONS = ("basal", "mid", "apical")
_TIME_UNITS_MS = {"sec": 1000.0, "msec": 1.0, "usec": 0.001}


@dataclass
class CineStack:
    """One view of one case as read from its source, ready to be written slice by slice.

    ``image`` and ``label`` are (X, Y, Z, T) in the source's voxel order, Z = 1 for a single long-axis slice; the
    label is already in the ACDC convention and 0 on frames without annotation. ``affine`` is the source stack's
    voxel-to-world matrix (4 x 4) and ``spacing`` its voxel size (x, y, slice) in mm. Frame indices are 0-based.
    A stack may be one part of a larger set: a long-axis view ``k`` of ``n`` has ``first_slice=k`` and
    ``total_slices=n``. The three paths name the files that errors point at.
    """

    case_id: str
    patient_id: str
    view: str
    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    ed_frame: int
    es_frame: int
    labelled_frames: list[int]
    spacing_known: bool
    image_path: Path
    label_path: Path
    timing_path: Path
    cine: bool = True
    frame_time_ms: float | None = None
    first_slice: int = 0
    total_slices: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def image_array(volume: NiftiVolume) -> np.ndarray:
    """The image as int16 when its values are stored as integers that fit, float32 otherwise (values as given)."""
    array = volume.array
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(np.int16)
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(np.int16, copy=False)
    return array.astype(np.float32, copy=False)


def read_label(
    path: Path,
    image: NiftiVolume,
    allowed: set[int] | frozenset[int],
    mapping: dict[int, int] | None = None,
    spatial_dims: int | None = 3,
) -> np.ndarray:
    """Load a label map checked against ``allowed`` and the image's grid, then remap it to the ACDC convention.

    ``spatial_dims=3`` compares only (X, Y, Z) (a 3D label of one frame of a 4D cine); ``None`` compares the full
    shape. Returns a uint8 array of the label's own shape.
    """
    label = load_label(path, allowed=set(allowed))
    check_same_grid(image, label, spatial_dims=spatial_dims)
    return label.array if mapping is None else remap_labels(label.array, mapping)


def remap_labels(label: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map label values through ``mapping`` (values not in it stay as they are); returns uint8."""
    table = np.arange(256, dtype=np.uint8)
    for old, new in mapping.items():
        table[old] = new
    return table[label.astype(np.uint8, copy=False)]


def stack_frames(frames: dict[int, np.ndarray], num_frames: int) -> np.ndarray:
    """Place per-frame labels {frame: (X, Y, Z)} into a (X, Y, Z, T) uint8 array, 0 on the other frames."""
    shape = next(iter(frames.values())).shape
    label = np.zeros((*shape, num_frames), dtype=np.uint8)
    for frame, values in frames.items():
        label[..., frame] = values
    return label


def header_spacing_known(zooms: tuple[float, ...]) -> bool:
    """Whether a header's voxel size is real: exactly 1 x 1 x 1 mm is what converters write when it was lost."""
    return not all(z == 1.0 for z in zooms[:3])


def frame_time_ms(path: Path) -> float | None:
    """The time between frames of a 4D NIfTI in ms, when its header records one with a time unit, else None."""
    header = nib.load(str(path)).header
    unit = header.get_xyzt_units()[1]
    zooms = header.get_zooms()
    if len(zooms) < 4 or unit not in _TIME_UNITS_MS or zooms[3] <= 0 or zooms[3] == 1.0:
        return None
    return float(zooms[3]) * _TIME_UNITS_MS[unit]


def lv_area(label: np.ndarray) -> int:
    """Pixels of the left ventricle in one (X, Y) slice: myocardium, LV blood pool and what they enclose."""
    return int(binary_fill_holes((label == MYOCARDIUM) | (label == LV)).sum())


def slice_positions(label_ed: np.ndarray) -> list[str | None]:
    """Position of each slice of a (X, Y, Z) ED label stack: thirds of the labelled slices, base first.

    Unlabelled slices get None. The base is the end whose half of the labelled slices has the larger mean LV
    area; with a tie (or a single labelled slice) slice 0 is taken as basal, the ACDC order.
    """
    num_slices = label_ed.shape[2]
    labelled = [k for k in range(num_slices) if label_ed[:, :, k].any()]
    positions: list[str | None] = [None] * num_slices
    half = len(labelled) // 2
    if half:
        areas = [lv_area(label_ed[:, :, k]) for k in labelled]
        if np.mean(areas[-half:]) > np.mean(areas[:half]):
            labelled.reverse()
    for name, part in zip(POSITIONS, np.array_split(np.asarray(labelled, dtype=int), 3), strict=True):
        for k in part:
            positions[int(k)] = name
    return positions


def slice_affine(affine: np.ndarray, index: int, time_zoom: float = 1.0) -> np.ndarray:
    """Affine of one slice's cine: the stack's in-plane axes, origin at slice ``index``, time as the third axis.

    The third column points along the stack's slice direction with length ``time_zoom`` (1 unless the frame time
    is known), so viewers place the frames like a thin stack at the slice's position.
    """
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] = (affine @ np.array([0.0, 0.0, float(index), 1.0]))[:3]
    normal = affine[:3, 2]
    if not np.linalg.norm(normal) > 0:
        normal = np.cross(affine[:3, 0], affine[:3, 1])
    out[:3, 2] = normal / np.linalg.norm(normal) * time_zoom
    return out


def _validate(stack: CineStack) -> None:
    """Raise :class:`DataError` naming the responsible file for inconsistent shapes, frames or label values."""
    if stack.image.ndim != 4:
        raise DataError(stack.image_path, f"expected a (X, Y, Z, T) cine, got shape {stack.image.shape}")
    if stack.label.shape != stack.image.shape:
        raise DataError(stack.label_path, f"labels {stack.label.shape} do not match the cine {stack.image.shape}")
    num_frames = stack.image.shape[3]
    frames = [("ED", stack.ed_frame), ("ES", stack.es_frame)] + [("labelled", f) for f in stack.labelled_frames]
    for name, frame in frames:
        if not 0 <= frame < num_frames:
            raise DataError(
                stack.timing_path,
                f"{name} frame {frame} (0-based) lies outside the {num_frames} frames of {stack.image_path.name}",
            )
    found = {int(v) for v in np.unique(stack.label)}
    if not found <= ACDC_VALUES:
        raise DataError(stack.label_path, f"label values {sorted(found - ACDC_VALUES)} outside {sorted(ACDC_VALUES)}")
    if np.issubdtype(stack.image.dtype, np.floating) and not np.isfinite(stack.image).all():
        raise DataError(stack.image_path, "contains NaN or infinite voxels")


def write_cine_stack(stack: CineStack, dst: Path, dataset: str) -> list[dict[str, Any]]:
    """Write one (H, W, T) image and label file per slice of ``stack`` below ``dst``; return their datalist items.

    Files are ``images/<case>_<view>_s<ZZ>.nii.gz`` and ``labels/<same name>`` (paths in the items are relative to
    ``dst``); writing again overwrites exactly these files. Items carry the fields documented in
    :mod:`samzoo.data.datalist`, plus ``cine`` (False for a two-frame ED/ES clip) and the stack's ``extra``.
    """
    _validate(stack)
    num_slices = stack.image.shape[2]
    labelled_frames = sorted(set(stack.labelled_frames))
    positions = slice_positions(stack.label[..., stack.ed_frame]) if stack.view == "SAX" else [None] * num_slices
    time_zoom = stack.frame_time_ms or 1.0
    items = []
    for k in range(num_slices):
        index = stack.first_slice + k
        name = f"{stack.case_id}_{stack.view}_s{index:02d}.nii.gz"
        affine = slice_affine(stack.affine, k, time_zoom)
        label = stack.label[:, :, k, :]
        save_nifti(stack.image[:, :, k, :], affine, dst / "images" / name)
        save_nifti(label, affine, dst / "labels" / name)
        items.append(
            {
                "image": f"images/{name}",
                "label": f"labels/{name}",
                "case_id": stack.case_id,
                "patient_id": stack.patient_id,
                "dataset": dataset,
                "view": stack.view,
                "slice_index": index,
                "num_slices": stack.total_slices or num_slices,
                "slice_position": positions[k],
                "num_frames": int(stack.image.shape[3]),
                "ed_frame": int(stack.ed_frame),
                "es_frame": int(stack.es_frame),
                "labelled_frames": labelled_frames,
                "labelled": bool(label[..., labelled_frames].any()),
                "spacing": [round(float(s), 6) for s in stack.spacing],
                "spacing_known": bool(stack.spacing_known),
                "cine": stack.cine,
                **stack.extra,
            }
        )
    logger.info(
        "%s %s %s: %d slice(s) x %d frames, ED %d, ES %d",
        dataset,
        stack.case_id,
        stack.view,
        num_slices,
        stack.image.shape[3],
        stack.ed_frame,
        stack.es_frame,
    )
    return items
