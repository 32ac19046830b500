"""Resizing of SAM's position tables to another token grid, so one checkpoint serves any input size.

A SAM ViT holds two kinds: the absolute position embedding added to the patch tokens (1, H, W, C), and the
relative-position tables of each attention block (2S - 1, head_dim). :func:`resize_position_table` picks the right
resampling from a checkpoint key; the loader (:func:`samzoo.networks.checkpoint.load_pretrained`) uses it for every
tensor whose shape changed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_abs_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resample SAM's absolute position embedding (1, H, W, C) to (1, h, w, C), bicubic with antialiasing.

    The embedding stays a function of the position in the image, as the token grid covers the whole image at any
    size. Returned unchanged when the grid already matches.
    """
    if tuple(pos_embed.shape[1:3]) == tuple(grid):
        return pos_embed
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2).float(), size=grid, mode="bicubic", antialias=True, align_corners=False
    )
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype)


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Resample a relative-position table (L, C) to (length, C) linearly, as ``segment_anything``'s ``get_rel_pos``
    does when it meets a grid its table was not made for. Returned unchanged when the length already matches."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.T[None].float(), size=length, mode="linear")
    return resized[0].T.to(table.dtype)


def resize_position_table(key: str, value: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """``value``, the checkpoint tensor ``key``, resized to ``shape`` when it is a position table whose grid
    changed (same channels); None when it is not one, i.e. when the shapes differ for another reason."""
    if key.endswith("pos_embed") and value.ndim == 4 and value.shape[-1] == shape[-1]:
        return resize_abs_pos_embed(value, (shape[1], shape[2]))
    if key.endswith(("rel_pos_h", "rel_pos_w")) and value.ndim == 2 and value.shape[1] == shape[1]:
        return resize_rel_pos(value, shape[0])
    return None
