"""What a training step needs besides image and label: which voxels are supervised, and which view prompt to use."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from ..losses import IGNORE_VALUE

VIEWS = ("SAX", "LAX")
"""View names in prompt-index order (index 0 selects the "sax" text prompt, 1 the "lax" one)."""


def view_index(view: str, source: str = "?") -> int:
    """Index of a view name (any case) in :data:`VIEWS`; ``source`` names the item or option in the error."""
    name = str(view).upper()
    if name not in VIEWS:
        raise ValueError(f"unknown view {view!r} in {source}: expected one of {VIEWS}")
    return VIEWS.index(name)


def view_choices(default: str = "SAX") -> list[str]:
    """Every view name, ``default`` first: MONAI Label shows a list option as a drop-down preset to its first
    entry."""
    first = VIEWS[view_index(default, "the default view")]
    return [first, *(v for v in VIEWS if v != first)]


class IgnoreUnlabelledFramesd(MapTransform):
    """Set every voxel of frames without annotation to ``ignore_value`` so losses skip them.

    Labels are (C, H, W, T); ``frame_mask`` (T,) is 1 on annotated frames (from the cine transforms). Frames that
    were never annotated are then distinguishable from annotated background, which the label files alone are not.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "frame_mask", ignore_value: int = IGNORE_VALUE) -> None:
        super().__init__(keys)
        self.mask_key = mask_key
        self.ignore_value = ignore_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        unlabelled = torch.as_tensor(d[self.mask_key]) == 0
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key]).clone().float()
            label[..., unlabelled] = float(self.ignore_value)
            d[key] = label
        return d


class ViewIndexd(MapTransform):
    """Turn the item's view name ("SAX"/"LAX") into the integer index the network's text prompts use."""

    def __init__(self, keys: KeysCollection = "view", output_key: str = "view_index") -> None:
        super().__init__(keys)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            index = view_index(d[key], f"item {d.get('case_id', '?')}")
            d[self.output_key] = torch.tensor(index, dtype=torch.long)
        return d


class DiscardUnlabelledd(MapTransform):
    """Zero prediction and label wherever the label is ``ignore_value``, so metrics see only annotated frames.

    Zeroing both sides adds nothing to a Dice intersection or sum, so a clip's Dice equals the Dice of its
    annotated frames.
    """

    def __init__(self, keys: KeysCollection, label_key: str = "label", ignore_value: int = IGNORE_VALUE) -> None:
        super().__init__(keys)
        self.label_key = label_key
        self.ignore_value = ignore_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ignored = torch.as_tensor(d[self.label_key]) == self.ignore_value
        for key in {*self.key_iterator(d), self.label_key}:
            d[key] = torch.where(ignored, torch.zeros_like(d[key]), d[key])
        return d
