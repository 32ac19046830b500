"""Class activation maps and the box prompts SAM-Mix derives from them (Ward and Imran, section 2, Eqs. 4-8).

The CAM of class c is the sum of the last feature maps weighted by that class's fully connected weights,
g = sum_i w_i^(c) F_last,i (Eq. 4), upsampled bilinearly to the image. It is thresholded at tau = omega * max(g)
(Eqs. 5-6), and every connected activated region (8-connected) becomes one box (x_min, y_min, x_max, y_max) in pixel
indices, x along image columns and y along rows (Eqs. 7-8).

:func:`cam_boxes` finds the boxes of one map with scipy on the host; :func:`cam_box_prompts` those of a batch of maps
as fixed-size tensors, on the maps' device (:mod:`samzoo.networks.components`) so that an accelerator never waits
for the host. Both give the same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.visualize.class_activation_maps import default_upsampler
from scipy import ndimage

from .components import label_components, region_boxes

__all__ = ["cam_box_prompts", "cam_boxes", "class_activation_map"]

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
    _check_omega(omega)
    g = cam.detach().float().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {g.shape}")
    peak = float(g.max())
    if peak <= 0.0:
        return torch.zeros(0, 4)
    regions, count = ndimage.label(g.astype(np.float64) >= omega * peak, structure=_EIGHT_CONNECTED)
    extents = ndimage.find_objects(regions)
    if max_boxes is not None and count > max_boxes:
        areas = np.bincount(regions.ravel(), minlength=count + 1)[1:]
        keep = sorted(np.argsort(-areas, kind="stable")[:max_boxes])
        extents = [extents[i] for i in keep]
    boxes = [(cols.start, rows.start, cols.stop - 1, rows.stop - 1) for rows, cols in extents]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def cam_box_prompts(
    cam: torch.Tensor, omega: float = 0.5, max_boxes: int | None = None, tensor_labelling: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 5-8 for a batch: CAMs (B, H, W) -> boxes (B, K, 4) float32 and valid (B, K) bool, on ``cam``'s device.

    The boxes of map b are ``cam_boxes(cam[b], omega, max_boxes)`` followed by zero rows that ``valid`` marks as
    padding. K is ``max_boxes``; with ``max_boxes=None`` (one box per region) it is the largest number of regions in
    the batch, which has to be read on the host: one synchronisation with the device.

    ``tensor_labelling`` chooses how regions are found: True with tensor operations on the maps' device
    (:func:`samzoo.networks.components.label_components`; no host round trip when K is fixed), False with scipy on the
    host, one map at a time. None takes scipy for maps on the CPU, where it is the faster, and tensor operations on
    any other device.
    """
    _check_omega(omega)
    if cam.ndim != 3:
        raise ValueError(f"expected (B, H, W) maps, got shape {tuple(cam.shape)}")
    if max_boxes is not None and max_boxes < 1:
        raise ValueError(f"max_boxes must be at least 1 or None, got {max_boxes}")
    if tensor_labelling is None:
        tensor_labelling = cam.device.type != "cpu"
    if not tensor_labelling:
        found = [cam_boxes(g, omega, max_boxes) for g in cam]
        count = max_boxes or max([1, *(len(b) for b in found)])
        boxes = torch.zeros(len(cam), count, 4)
        valid = torch.zeros(len(cam), count, dtype=torch.bool)
        for b, kept in enumerate(found):
            boxes[b, : len(kept)], valid[b, : len(kept)] = kept, True
        return boxes.to(cam.device), valid.to(cam.device)
    g = cam.detach().float()
    peak = g.amax(dim=(1, 2), keepdim=True)
    mask = (g.double() >= omega * peak.double()) & (peak > 0)
    labels = label_components(mask)
    if max_boxes is None:
        roots = (labels == torch.arange(labels.numel(), device=cam.device).view_as(labels)) & mask
        max_boxes = max(1, int(roots.sum(dim=(1, 2)).max()))  # the one read back to the host
    return region_boxes(labels, mask, max_boxes)


def _check_omega(omega: float) -> None:
    if not 0.0 < omega <= 1.0:
        raise ValueError(f"omega must lie in (0, 1], got {omega}")
