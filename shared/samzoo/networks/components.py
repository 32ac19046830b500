"""Connected regions of batched 2D masks, computed with tensor operations only (no host round trip).

:func:`label_components` labels the connected regions of a batch of masks on whatever device the masks are on, in
a number of steps fixed by the image size, so it never has to read the data back to decide when to stop.
:func:`region_boxes` turns the labels into the bounding boxes of the largest regions, padded to a fixed count with a
validity mask. Together they give static shapes and no device-to-host synchronisation, which is what lets a training
step derive box prompts from an activation map on an accelerator without stalling (:mod:`samzoo.networks.cam`).

The labelling is a hook-and-compress algorithm in the Shiloach-Vishkin family. Every pixel points to a parent; at
the start of a round all trees are flat (each pixel points to its tree's root). In a round, (1) every root hooks
onto the smallest root of a neighbouring tree that is smaller than itself; (2) every root that neither hooked nor
was hooked onto in (1), and still has a neighbouring tree, hooks onto one of them; (3) ``ceil(log2(H W))`` pointer
jumps flatten the trees again. Two trees that take no part in (1) are never adjacent (the larger would have hooked
onto the smaller), so (2) only hooks onto trees already merging and no cycle can form; every tree that has a
neighbour merges in each round, so the number of trees of a region at least halves per round and
``ceil(log2(H W))`` rounds leave one tree per region, whatever its shape.
"""

from __future__ import annotations

import math

import torch

__all__ = ["label_components", "region_boxes"]

_OFFSETS = {
    4: ((0, 1), (1, 0), (0, -1), (-1, 0)),
    8: ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)),
}


def _neighbour(grid: torch.Tensor, dy: int, dx: int, fill: int | bool) -> torch.Tensor:
    """``grid`` (B, H, W) shifted so that entry (y, x) holds grid[y + dy, x + dx]; ``fill`` outside the image."""
    batch, height, width = grid.shape
    padded = grid.new_full((batch, height + 2, width + 2), fill)
    padded[:, 1:-1, 1:-1] = grid
    return padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]


def label_components(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """Connected regions of ``mask`` (B, H, W) bool -> labels (B, H, W) int64.

    Pixels of one region share a label, the flat index ``b * H * W + y * W + x`` of one of its pixels (the root);
    background pixels keep their own index. ``connectivity`` 8 joins diagonal neighbours (scipy's
    ``ndimage.label`` with a 3 x 3 structure), 4 only edge neighbours. Runs on the mask's device with no
    synchronisation with the host.
    """
    if mask.ndim != 3 or mask.dtype != torch.bool:
        raise ValueError(f"expected a (B, H, W) bool mask, got {tuple(mask.shape)} {mask.dtype}")
    if connectivity not in _OFFSETS:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    batch, height, width = mask.shape
    pixels = batch * height * width
    steps = max(1, math.ceil(math.log2(height * width)))
    nowhere = pixels  # extra slot: scatters of pixels that write nothing go there
    parent = torch.arange(pixels + 1, device=mask.device)
    index = parent[:pixels].clone()
    offsets = _OFFSETS[connectivity]
    linked = [mask & _neighbour(mask, dy, dx, False) for dy, dx in offsets]

    def hook(roots: torch.Tensor, targets: torch.Tensor, include_self: bool) -> torch.Tensor:
        """parent[r] = min of the targets aimed at r, for every pixel whose target is a real root."""
        slots = torch.where(targets < pixels, roots, nowhere)
        hooked = parent.scatter_reduce(0, slots, targets, "amin", include_self=include_self)
        hooked[nowhere] = nowhere
        return hooked

    for _ in range(steps):
        root = parent[:pixels]
        grid = root.view(batch, height, width)
        near = [
            torch.where(ok, _neighbour(grid, dy, dx, -1), pixels) for ok, (dy, dx) in zip(linked, offsets, strict=True)
        ]
        # (1) every root hooks onto the smallest smaller root of a neighbouring tree
        parent = hook(root, torch.stack([torch.where(n < grid, n, pixels) for n in near]).amin(0).flatten(), True)
        hooked = (root == index) & (parent[:pixels] != index)
        hooked_on = torch.zeros_like(parent, dtype=torch.bool)
        hooked_on[torch.where(hooked, parent[:pixels], nowhere)] = True
        # (2) trees left out of (1) hook onto a neighbouring tree; all of those are merging already
        stagnant = ((parent[:pixels] == index) & ~hooked_on[:pixels])[root]
        other = torch.stack([torch.where(n != grid, n, pixels) for n in near]).amin(0).flatten()
        parent = hook(root, torch.where(stagnant, other, pixels), False)
        # (3) flatten: trees are less than H * W high, so ceil(log2(H W)) jumps reach the roots
        for _ in range(steps):
            parent = parent[parent]
    return parent[:pixels].view(batch, height, width)


def region_boxes(labels: torch.Tensor, mask: torch.Tensor, max_regions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes of the ``max_regions`` largest labelled regions of each image.

    Args:
        labels: (B, H, W) int64 from :func:`label_components`.
        mask: (B, H, W) bool, the labelled pixels (others are background).
        max_regions: K, the boxes per image.

    Returns:
        boxes (B, K, 4) float32 ``(x_min, y_min, x_max, y_max)`` in pixel indices, x along columns, and valid
        (B, K) bool. Ties in size go to the region whose first pixel comes first in row-major order; the kept
        boxes are ordered by that first pixel, the padding (zeros, not valid) comes last.
    """
    batch, height, width = labels.shape
    area_size = height * width
    pixels = batch * area_size
    flat = labels.flatten()
    inside = mask.flatten()
    index = torch.arange(pixels, device=labels.device)
    slot = torch.where(inside, flat, pixels)  # background pixels land in a slot that is never read

    def reduce(values: torch.Tensor, how: str, start: int) -> torch.Tensor:
        out = torch.full((pixels + 1,), start, dtype=torch.int64, device=labels.device)
        return out.scatter_reduce(0, slot, values, how)[:pixels].view(batch, area_size)

    local = index % area_size
    rows, cols = local // width, local % width
    area = reduce(torch.ones_like(index), "sum", 0)
    first = reduce(local, "amin", area_size)
    # larger regions first, then the earlier first pixel; -1 for label slots that hold no region
    key = torch.where(area > 0, area * (area_size + 1) + (area_size - 1 - first), -1)
    top_key, top = key.topk(max_regions, dim=1)
    valid = top_key >= 0
    order = torch.where(valid, first.gather(1, top), area_size).argsort(dim=1)
    top, valid = top.gather(1, order), valid.gather(1, order)
    extent = [reduce(v, how, start) for v, how, start in ((cols, "amin", width), (rows, "amin", height))]
    extent += [reduce(v, "amax", -1) for v in (cols, rows)]
    boxes = torch.stack([e.gather(1, top) for e in extent], dim=-1).float()
    return boxes * valid[..., None], valid
