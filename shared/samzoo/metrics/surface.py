"""Dice and boundary distances for batches of binary masks, finite for every input.

MONAI computes the metrics. What MONAI leaves open, NaN or inf when a mask is empty, is decided here so that every
row of a report holds a number:

- both masks empty: Dice 1 and every distance 0 (the masks agree);
- exactly one mask empty: Dice 0 and every distance equal to :func:`worst_case_distance`, the diagonal of the field
  of view, which is larger than any distance two non-empty masks on that grid can have.

Boundaries are MONAI's: the mask pixels that a binary erosion with the 4-connected (6-connected in 3D) structuring
element removes. Distances are Euclidean between boundary pixel centres, scaled by ``spacing``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

DISTANCES = ("hd", "hd95", "masd")
"""Names of the boundary distances returned by :func:`boundary_distances`."""


def _as_batch(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, *spatial) masks -> N x 1 x spatial float tensor of 0 and 1, the one-hot layout MONAI expects."""
    return torch.as_tensor(np.asarray(masks, dtype=bool)).unsqueeze(1).float()


def dice_score(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> np.ndarray:
    """Dice of each mask pair: 1 where both are empty, 0 where exactly one is.

    ``pred`` and ``gt`` are (N, *spatial) binary masks of one class; returns (N,) float64.
    """
    dice = compute_dice(_as_batch(pred), _as_batch(gt), include_background=True, ignore_empty=False)
    return dice[:, 0].double().numpy()


def worst_case_distance(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Diagonal of the field of view ``shape`` (pixels) times ``spacing``: the distance given when one mask is empty.

    It exceeds the largest distance between two pixel centres of the grid, so a missed or hallucinated structure
    always scores worse than any real contour.
    """
    spacing = (1.0,) * len(shape) if spacing is None else spacing
    return math.hypot(*(n * float(s) for n, s in zip(shape, spacing, strict=True)))


def boundary_distances(
    pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, spacing: Sequence[float] | None = None
) -> dict[str, np.ndarray]:
    """Symmetric Hausdorff distance, its 95th percentile and the mean absolute surface distance of each mask pair.

    ``pred`` and ``gt`` are (N, *spatial) binary masks of one class; ``spacing`` gives the size of a pixel along each
    spatial axis (``None``: distances in pixels). Returns ``{"hd", "hd95", "masd"}``, each (N,) float64:

    - ``hd``: the largest distance from a boundary pixel of either mask to the other mask's boundary;
    - ``hd95``: the larger of the two directed 95th percentiles (MONAI's ``percentile=95``);
    - ``masd``: the mean over the boundary pixels of both masks of the distance to the other mask's boundary
      (MONAI's symmetric average surface distance).
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    spatial = pred.shape[1:]
    spacing = (1.0,) * len(spatial) if spacing is None else tuple(float(s) for s in spacing)
    pred_any = pred.reshape(len(pred), -1).any(axis=1)
    gt_any = gt.reshape(len(gt), -1).any(axis=1)
    one_empty = np.where(pred_any ^ gt_any, worst_case_distance(spatial, spacing), 0.0)
    out = {name: one_empty.copy() for name in DISTANCES}
    both = pred_any & gt_any
    if both.any():
        p, g = _as_batch(pred[both]), _as_batch(gt[both])
        common = {"include_background": True, "spacing": spacing}
        out["hd"][both] = compute_hausdorff_distance(p, g, **common)[:, 0].numpy()
        out["hd95"][both] = compute_hausdorff_distance(p, g, percentile=95, **common)[:, 0].numpy()
        out["masd"][both] = compute_average_surface_distance(p, g, symmetric=True, **common)[:, 0].numpy()
    return out
