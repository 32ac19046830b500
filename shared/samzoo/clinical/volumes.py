"""Areas per slice, volumes by the summation of discs, and the indices a cardiologist reads from them.

Volumes follow the summation-of-discs (Simpson's) rule of short-axis cine MRI: each slice stands for a disc as
thick as the slice spacing, the distance between slice centres, so

    V(t) = sum_k A_k(t) * dz,

with ``A_k`` the area on slice ``k`` and ``dz`` the spacing. Using the spacing rather than the slice thickness
counts the gap between slices: each slice stands for the tissue up to halfway to its neighbours (ACDC's own
evaluation computes voxel count times voxel volume, the same number). A slice missing inside the stack (an index
absent from the datalist or the prediction) is filled by linear interpolation of its neighbours' areas, frame by
frame, and reported; nothing is extrapolated beyond the first and last slice present.

Units are mm², ml and g only when the spacing is known; otherwise areas are in pixels and volumes in voxels
(pixel area times slice count), never mixed within one patient. EF does not depend on the unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .ring import Ring, cavity_from_ring

RV, MYOCARDIUM, LV = 1, 2, 3
"""samzoo's cardiac label values (ACDC's convention)."""

MYOCARDIUM_DENSITY = 1.05
"""g/ml: myocardial mass = myocardial volume x 1.05."""


@dataclass(frozen=True)
class Units:
    """Area and volume units of one patient: mm² and ml with a known spacing, pixels and voxels without."""

    pixel_area: float
    slice_spacing: float
    known: bool

    @classmethod
    def from_spacing(cls, spacing: Sequence[float], known: bool) -> Units:
        """From a datalist item's ``spacing`` (x, y, slice) in mm and ``spacing_known``."""
        if not known:
            return cls(1.0, 1.0, False)
        if len(spacing) < 3 or min(spacing[:3]) <= 0:
            raise ValueError(f"spacing {list(spacing)} needs three positive values (x, y, slice) in mm")
        return cls(float(spacing[0]) * float(spacing[1]), float(spacing[2]), True)

    @property
    def area(self) -> str:
        return "mm2" if self.known else "px"

    @property
    def volume(self) -> str:
        return "ml" if self.known else "voxel"

    @property
    def disc_volume(self) -> float:
        """Volume of one pixel of area on one slice: ml (mm² x mm / 1000) or 1 voxel."""
        return self.pixel_area * self.slice_spacing / 1000.0 if self.known else 1.0


@dataclass
class StackAreas:
    """Pixel counts per structure of one patient's short-axis stack, each (Z, T): slices in ``slice_indices`` order.

    ``ring`` holds the :class:`~samzoo.clinical.ring.Ring` rule of each slice and frame when the cavity was derived
    from the myocardium, else None. Frames not in ``frames`` were not segmented and hold 0.
    """

    lv: np.ndarray
    myocardium: np.ndarray
    rv: np.ndarray | None
    ring: np.ndarray | None
    frames: list[int]


def stack_areas(labels: np.ndarray, frames: Sequence[int], cavity: str = "label", rv: bool = True) -> StackAreas:
    """Areas of a label stack (H, W, Z, T) at ``frames``; the LV cavity from its label or from the ring.

    ``cavity="label"`` counts label :data:`LV`; ``"ring"`` derives it from the myocardium by
    :func:`~samzoo.clinical.ring.cavity_from_ring`. ``rv=False`` leaves the RV out (a method that does not segment it).
    """
    if labels.ndim != 4:
        raise ValueError(f"expected a label stack (H, W, Z, T), got shape {labels.shape}")
    if cavity not in ("label", "ring"):
        raise ValueError(f"cavity must be 'label' or 'ring', got {cavity!r}")
    shape = labels.shape[2:]
    myo = (labels == MYOCARDIUM).sum(axis=(0, 1)).astype(np.float64)
    rv_area = (labels == RV).sum(axis=(0, 1)).astype(np.float64) if rv else None
    if cavity == "label":
        lv, ring = (labels == LV).sum(axis=(0, 1)).astype(np.float64), None
    else:
        lv, ring = np.zeros(shape), np.full(shape, "", dtype=object)
        for z in range(shape[0]):
            for t in frames:
                found, rule = cavity_from_ring(labels[:, :, z, t] == MYOCARDIUM)
                lv[z, t], ring[z, t] = found.sum(), rule.value
    keep = np.zeros(shape[1], dtype=bool)
    keep[list(frames)] = True
    for area in (lv, myo, rv_area):
        if area is not None:
            area[:, ~keep] = 0.0
    return StackAreas(lv=lv, myocardium=myo, rv=rv_area, ring=ring, frames=sorted(frames))


def ring_counts(areas: StackAreas) -> dict[str, int]:
    """Slice-frames where the ring rule decided: ``open`` rings closed by the hull, ``no_cavity`` caps."""
    if areas.ring is None:
        return {Ring.OPEN.value: 0, Ring.NO_CAVITY.value: 0}
    return {rule.value: int((areas.ring == rule.value).sum()) for rule in (Ring.OPEN, Ring.NO_CAVITY)}


def missing_slices(slice_indices: Sequence[int]) -> list[int]:
    """Indices inside ``[min, max]`` of ``slice_indices`` that are absent: the gaps that are interpolated."""
    present = set(slice_indices)
    return [k for k in range(min(present), max(present) + 1) if k not in present] if present else []


def disc_volumes(areas: np.ndarray, slice_indices: Sequence[int], units: Units) -> np.ndarray:
    """Volume per frame (T,) of per-slice areas (Z, T) in pixels by the summation of discs (module docstring)."""
    areas = np.asarray(areas, dtype=np.float64)
    if areas.ndim != 2 or areas.shape[0] != len(slice_indices):
        raise ValueError(f"areas {areas.shape} do not match {len(slice_indices)} slice indices")
    if len(set(slice_indices)) != len(slice_indices):
        raise ValueError(f"slice indices {list(slice_indices)} repeat")
    order = np.argsort(slice_indices)
    index = np.asarray(slice_indices)[order]
    full = np.arange(index[0], index[-1] + 1)
    filled = np.stack([np.interp(full, index, areas[order, t]) for t in range(areas.shape[1])], axis=1)
    return filled.sum(axis=0) * units.disc_volume


def ventricle_indices(volumes: np.ndarray, ed: int, es: int, prefix: str) -> dict[str, float | None]:
    """EDV, ESV, SV and EF (%) of one ventricle's volume curve at frames ``ed`` and ``es``; EF None when EDV is 0."""
    edv, esv = float(volumes[ed]), float(volumes[es])
    sv = edv - esv
    return {
        f"{prefix}_edv": edv,
        f"{prefix}_esv": esv,
        f"{prefix}_sv": sv,
        f"{prefix}_ef": 100.0 * sv / edv if edv > 0 else None,
    }


def curve_phases(lv_volumes: np.ndarray) -> tuple[int, int]:
    """ED and ES from an LV volume-time curve over every frame: the largest and the smallest volume (first of ties)."""
    return int(np.argmax(lv_volumes)), int(np.argmin(lv_volumes))


def myocardial_mass(myocardium_volume_ml: float) -> float:
    """Myocardial mass in g from the myocardial volume in ml."""
    return MYOCARDIUM_DENSITY * myocardium_volume_ml


def frame_distance(a: int, b: int, num_frames: int) -> int:
    """Frames between ``a`` and ``b`` on the cardiac cycle, which wraps around (frame T-1 is next to frame 0)."""
    d = abs(a - b) % num_frames
    return min(d, num_frames - d)
