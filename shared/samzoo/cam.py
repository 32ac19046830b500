"""Class activation maps and the box prompts SAM-Mix derives from them (Ward and Imran, section 2, Eqs. 4-8).

The CAM of class c is the sum of the last feature maps weighted by that class's fully connected weights,
g = sum_i w_i^(c) F_last,i (Eq. 4), upsampled bilinearly to the image. It is thresholded at tau = omega * max(g)
(Eqs. 5-6), and every connected activated region (8-connected) becomes one box (x_min, y_min, x_max, y_max) in pixel
indices, x along image columns and y along rows (Eqs. 7-8).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.visualize.class_activation_maps import default_upsampler
from scipy import ndimage

__all__ = ["cam_boxes", "class_activation_map"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def class_activation_map(
    features: torch.Tensor, fc_weight: torch.Tensor, class_index: int, spatial_size: Sequence[int]
) -> torch.Tensor:
    """Eq. 4: features F_last (B, C, h, w) and FC weights (K, C) -> CAM of ``class_index`` (B, 1, H, W).

    The FC bias is left out (it would shift the map and with it the threshold of Eq. 6). The map is not
    normalised, so its sign keeps its meaning: negative values argue against the class.
    """
    weight = fc_weight[class_index].to(features.dtype)
    cam = torch.einsum("bchw,c->bhw", features, weight)[:, None]
    return default_upsampler(spatial_size)(cam)


def cam_boxes(cam: torch.Tensor | np.ndarray, omega: float = 0.5, max_boxes: int | None = None) -> torch.Tensor:
    """Eqs. 5-8: one CAM (H, W) -> boxes (K, 4) float32, one per connected region where g >= omega * max(g).

    Boxes are ordered by their first pixel in row-major order. ``max_boxes`` keeps only the regions with the most
    pixels (ties go to the earlier region), which bounds the cost of a noisy map. A map whose maximum is not
    positive has no activated region and gives no box (K = 0).
    """
    if not 0.0 < omega <= 1.0:
        raise ValueError(f"omega must lie in (0, 1], got {omega}")
    g = cam.detach().float().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {g.shape}")
    peak = float(g.max())
    if peak <= 0.0:
        return torch.zeros(0, 4)
    regions, count = ndimage.label(g >= omega * peak, structure=_EIGHT_CONNECTED)
    extents = ndimage.find_objects(regions)
    if max_boxes is not None and count > max_boxes:
        areas = np.bincount(regions.ravel(), minlength=count + 1)[1:]
        keep = sorted(np.argsort(-areas, kind="stable")[:max_boxes])
        extents = [extents[i] for i in keep]
    boxes = [(cols.start, rows.start, cols.stop - 1, rows.stop - 1) for rows, cols in extents]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
