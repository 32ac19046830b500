"""The LV cavity of a myocardium-only segmentation: the region the myocardial ring encloses, slice by slice.

Methods that segment only the myocardium (CMR2D+T-SAM, the cine baselines) have no cavity label, so the blood pool
is derived per short-axis slice and frame by one rule, applied in this order:

- ``closed``: the ring encloses holes; the cavity is the holes (:func:`scipy.ndimage.binary_fill_holes` minus the
  myocardium), papillary muscles included, as ACDC labels them.
- ``open``: no hole (a basal slice cut through the outflow tract, or a ring with a gap); the cavity is the convex
  hull of the myocardium minus the myocardium, provided that area is at least ``min_open_fraction`` of the hull.
  The hull closes the gap with a straight chord, the shortest wall the opening could have had.
- ``no_cavity``: no hole and a hull barely larger than the myocardium (an apical cap, a solid blob); the cavity is
  empty.
- ``no_ring``: no myocardium on the slice; the cavity is empty.

``open`` and ``no_cavity`` are the slices where the rule decided something the segmentation did not say; the
read-out flags them.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
from scipy.ndimage import binary_fill_holes
from scipy.spatial import ConvexHull, QhullError

MIN_OPEN_FRACTION = 0.2
"""Smallest share of the convex hull the enclosed gap must cover to count as an open ring. A C-shaped ring leaves
about half its hull to the cavity; a solid apical cap leaves next to nothing."""


class Ring(str, Enum):
    """How the cavity of one slice was found (see the module docstring)."""

    CLOSED = "closed"
    OPEN = "open"
    NO_CAVITY = "no_cavity"
    NO_RING = "no_ring"


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie in the convex hull of the centres of ``mask``'s pixels (H x W, bool).

    The hull of the centres, not of the pixel squares, adds nothing along a convex digital outline, so a solid
    disc is its own hull. Pixels on one line span no area; their hull is the mask itself.
    """
    rows, cols = np.nonzero(mask)
    try:
        hull = ConvexHull(np.stack([rows, cols], axis=1).astype(np.float64))
    except QhullError:
        return mask.copy()
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    grid = np.stack(np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij"), axis=-1).reshape(-1, 2)
    # hull.equations: rows (a, b, c) with a*r + b*c + c0 <= 0 inside; a small tolerance keeps centres on an edge
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2] <= 1e-9).all(axis=1)
    out = np.zeros_like(mask, dtype=bool)
    out[r0:r1, c0:c1] = inside.reshape(r1 - r0, c1 - c0)
    return out | mask


def cavity_from_ring(myocardium: np.ndarray, min_open_fraction: float = MIN_OPEN_FRACTION) -> tuple[np.ndarray, Ring]:
    """The LV cavity (H x W, bool) one slice's myocardium (H x W, bool) encloses, and which rule gave it."""
    myocardium = np.asarray(myocardium, dtype=bool)
    if myocardium.ndim != 2:
        raise ValueError(f"expected one slice (H, W), got shape {myocardium.shape}")
    if not myocardium.any():
        return np.zeros_like(myocardium), Ring.NO_RING
    holes = binary_fill_holes(myocardium) & ~myocardium
    if holes.any():
        return holes, Ring.CLOSED
    hull = convex_hull_mask(myocardium)
    gap = hull & ~myocardium
    if gap.sum() >= min_open_fraction * hull.sum():
        return gap, Ring.OPEN
    return np.zeros_like(myocardium), Ring.NO_CAVITY
