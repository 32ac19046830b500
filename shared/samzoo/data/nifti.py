"""Checked NIfTI reading and atomic writing.

Every reader in samzoo goes through :func:`load_nifti`, so a missing, unreadable or NaN-holding file fails with a
:class:`DataError` that names it, and every writer goes through :func:`save_nifti`, which writes to a temporary
file and renames it so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..atomic import atomic_path
from ..errors import DataError


@dataclass
class NiftiVolume:
    """A NIfTI image as an array in the file's own voxel order, with its affine, voxel sizes and their units
    (space, time), e.g. ("mm", "sec") or ("mm", "msec")."""

    path: Path
    array: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, ...]
    units: tuple[str, str] = ("mm", "sec")


def load_nifti(path: str | Path, dtype: np.dtype | type | None = np.float32, allow_nan: bool = False) -> NiftiVolume:
    """Read ``path``; raise :class:`DataError` naming it when missing, unreadable or (unless allowed) holding NaN."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        img = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel raises many types for corrupt files
        raise DataError(path, f"cannot be read as NIfTI ({type(err).__name__}: {err})") from err
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if not allow_nan and np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise DataError(path, f"contains {bad} NaN or infinite voxel(s)")
    zooms = tuple(float(z) for z in img.header.get_zooms())
    affine = np.asarray(img.affine, dtype=np.float64)
    return NiftiVolume(path=path, array=array, affine=affine, zooms=zooms, units=img.header.get_xyzt_units())


def load_label(path: str | Path, allowed: set[int] | None = None) -> NiftiVolume:
    """Read a label map as uint8; raise :class:`DataError` for non-integer values or values outside ``allowed``."""
    vol = load_nifti(path, dtype=None)
    values = vol.array
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise DataError(path, "label map contains NaN or infinite values")
        if not np.array_equal(values, np.round(values)):
            raise DataError(path, "label map holds non-integer values (is this an image rather than a label?)")
    found = {int(v) for v in np.unique(values)}
    if allowed is not None and not found <= allowed:
        raise DataError(path, f"unexpected label values {sorted(found - allowed)} (allowed: {sorted(allowed)})")
    if min(found, default=0) < 0 or max(found, default=0) > 255:
        raise DataError(path, f"label values {sorted(found)} do not fit 0..255")
    vol.array = values.astype(np.uint8)
    return vol


def save_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | Path,
    zooms: tuple[float, ...] | None = None,
    units: tuple[str, str] = ("mm", "sec"),
) -> Path:
    """Write ``array`` atomically (temporary file, then rename); ``zooms`` sets voxel sizes beyond the affine's (a
    cine's frame interval), in ``units`` (space, time)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units(*units)
    if zooms is not None:
        img.header.set_zooms(tuple(zooms)[: array.ndim])
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def nifti_stem(path: str | Path) -> str:
    """The file name of ``path`` without its ``.nii`` or ``.nii.gz`` suffix (outputs are named after it)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def check_distinct_stems(paths: Sequence[str | Path]) -> None:
    """Raise :class:`DataError` when two inputs share a :func:`nifti_stem`: their outputs would overwrite each other
    (e.g. TotalSegmentator's ``<case>/ct.nii.gz``), so such inputs are refused before anything is written."""
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        first = seen.setdefault(nifti_stem(path), path)
        if first != path:
            raise DataError(
                path,
                f"has the same name as {first}, so their outputs would overwrite each other; "
                "rename one of them or run them separately",
            )


def check_same_grid(image: NiftiVolume, label: NiftiVolume, spatial_dims: int | None = None) -> None:
    """Raise :class:`DataError` naming the label when its shape or affine differs from the image's."""
    ishape, lshape = image.array.shape, label.array.shape
    if spatial_dims is not None:
        ishape, lshape = ishape[:spatial_dims], lshape[:spatial_dims]
    if ishape != lshape:
        raise DataError(
            label.path, f"shape {label.array.shape} does not match image {image.path.name} {image.array.shape}"
        )
    if not np.allclose(image.affine, label.affine, atol=1e-3, rtol=1e-4):
        raise DataError(label.path, f"geometry (affine) differs from image {image.path.name}")
