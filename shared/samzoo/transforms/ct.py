"""Dictionary transforms and a 2D slice dataset for abdominal CT liver segmentation.

The preprocessing follows SAM-Mix (Ward and Imran, "Annotation-efficient task guidance for medical Segment
Anything", section 3): an abdominal window of width 400 HU around 40 HU scaled to [0, 1], 256 x 256 slices, only
the middle 30 % of the slices of each volume (the liver spans a small part of a scan, so this limits the imbalance
between slices with and without liver) and a slice-level liver-presence label, 1 where the slice's mask holds any
liver. A CT item (see :mod:`samzoo.data.datalist`) holds one volume; :func:`ct_volume_transforms` turns it into
``(1, 256, 256, D)`` tensors plus a ``(D,)`` presence vector, and :class:`CTSliceDataset` serves its slices one by
one as 2D items for training.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import CacheDataset, MetaTensor
from monai.transforms import (
    Compose,
    Crop,
    Cropd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    Resized,
    ScaleIntensityRanged,
)
from monai.utils import convert_to_tensor, ensure_tuple_rep
from torch.utils.data import Dataset

__all__ = [
    "ABDOMINAL_WINDOW",
    "CTSliceDataset",
    "MiddleSlices",
    "MiddleSlicesd",
    "SlicePresenced",
    "ct_volume_transforms",
    "hu_window",
    "middle_slice_range",
]


def hu_window(center: float = 40.0, width: float = 400.0) -> tuple[float, float]:
    """The HU range ``(low, high)`` of a display window; the default abdominal window is (-160, 240)."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return center - width / 2, center + width / 2


ABDOMINAL_WINDOW = hu_window(40.0, 400.0)


def middle_slice_range(num_slices: int, fraction: float) -> range:
    """Indices of the central ``fraction`` of ``num_slices`` slices.

    ``round(fraction * num_slices)`` slices are kept (at least one), centred; when the remainder is odd the extra
    slice is dropped at the top. E.g. 30 % of 10 slices is ``range(3, 6)``, of 40 slices ``range(14, 26)``.
    """
    if num_slices < 1:
        raise ValueError(f"need at least one slice, got {num_slices}")
    _check_fraction(fraction)
    keep = max(1, round(fraction * num_slices))
    start = (num_slices - keep) // 2
    return range(start, start + keep)


class MiddleSlices(Crop):
    """Keep the central ``fraction`` of the slices along the last spatial axis of a channel-first image.

    An invertible MONAI crop: the affine of a MetaTensor follows the crop, and ``inverse`` pads the slices back.
    """

    def __init__(self, fraction: float = 0.3, lazy: bool = False) -> None:
        super().__init__(lazy=lazy)
        self.fraction = _check_fraction(fraction)

    def slices(self, img: torch.Tensor) -> range:
        """Kept slice indices of ``img`` (C, ..., D)."""
        shape = img.peek_pending_shape() if isinstance(img, MetaTensor) else img.shape[1:]
        return middle_slice_range(int(shape[-1]), self.fraction)

    def __call__(self, img: torch.Tensor, lazy: bool | None = None) -> torch.Tensor:  # type: ignore[override]
        """Crop ``img`` (C, ..., D) to (C, ..., round(fraction * D))."""
        kept = self.slices(img)
        spatial = img.ndim - 1
        roi = (slice(None),) * (spatial - 1) + (slice(kept.start, kept.stop),)
        return super().__call__(img=img, slices=roi, lazy=self.lazy if lazy is None else lazy)


class MiddleSlicesd(Cropd):
    """Dictionary :class:`MiddleSlices`; all ``keys`` must have the same number of slices.

    The index of the first kept slice is stored under ``start_key`` (when given), so slices can be traced back to
    the volume they came from.
    """

    def __init__(
        self,
        keys: KeysCollection,
        fraction: float = 0.3,
        start_key: str | None = "slice_start",
        allow_missing_keys: bool = False,
        lazy: bool = False,
    ) -> None:
        super().__init__(keys, MiddleSlices(fraction, lazy=lazy), allow_missing_keys=allow_missing_keys, lazy=lazy)
        self.start_key = start_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, Any]:
        d = dict(data)
        kept = {key: self.cropper.slices(d[key]) for key in self.key_iterator(d)}
        if len(set(kept.values())) > 1:
            raise ValueError(f"{sorted(map(str, kept))} differ in their number of slices")
        d = super().__call__(d, lazy=lazy)
        if self.start_key is not None and kept:
            d[self.start_key] = next(iter(kept.values())).start
        return d


class SlicePresenced(MapTransform):
    """Per-slice presence of a label: ``label`` (C, ..., D) -> float32 vector (D,) of 0/1 under ``presence_key``.

    A slice is 1 when any voxel of it is non-zero, the slice-level classification target of SAM-Mix.
    """

    def __init__(
        self, keys: KeysCollection, presence_key: Sequence[str] | str = "presence", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.presence_keys = ensure_tuple_rep(presence_key, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, presence_key in self.key_iterator(d, self.presence_keys):
            label = convert_to_tensor(d[key], track_meta=False)
            d[presence_key] = (label != 0).flatten(0, -2).any(dim=0).to(torch.float32)
        return d


def ct_volume_transforms(
    image_key: str = "image",
    label_key: str = "label",
    window: tuple[float, float] = ABDOMINAL_WINDOW,
    spatial_size: int = 256,
    slice_fraction: float | None = 0.3,
    presence_key: str = "presence",
) -> Compose:
    """Standard CT preprocessing of one datalist item (file paths) into model-ready volumes.

    Loads image and label channel-first in RAS orientation, keeps the middle ``slice_fraction`` of the slices
    (all when None), windows the image to ``window`` HU scaled to [0, 1] (clipped), resizes every slice to
    ``spatial_size`` squared (bilinear, anti-aliased when shrinking; labels nearest) and derives the per-slice
    presence. Output: image (1, S, S, D) float32, label (1, S, S, D) uint8, presence (D,) float32 and, with a
    slice fraction, ``slice_start`` (index of the first kept slice).
    """
    keys = [image_key, label_key]
    transforms: list[Callable] = [
        LoadImaged(keys, ensure_channel_first=True, image_only=True),
        Orientationd(keys, axcodes="RAS", labels=None),
    ]
    if slice_fraction is not None:
        transforms.append(MiddleSlicesd(keys, fraction=slice_fraction))
    transforms += [
        ScaleIntensityRanged(image_key, a_min=window[0], a_max=window[1], b_min=0.0, b_max=1.0, clip=True),
        Resized(
            keys,
            spatial_size=(spatial_size, spatial_size, -1),
            mode=("trilinear", "nearest-exact"),
            anti_aliasing=(True, False),
        ),
        EnsureTyped(label_key, dtype=torch.uint8),
        SlicePresenced(label_key, presence_key=presence_key),
    ]
    return Compose(transforms)


class CTSliceDataset(Dataset):
    """The axial slices of CT volumes as 2D items, for a trainer to shuffle and batch.

    Each volume goes once through ``transform`` (default :func:`ct_volume_transforms`; it must be deterministic)
    and is kept in memory by MONAI's :class:`~monai.data.CacheDataset`, so all slices of a volume share one load.
    Item ``i`` is a dict with image (1, H, W) float32, label (1, H, W) float32, presence (1,) float32,
    ``case_id`` and ``slice_index`` (the slice's index in the RAS volume); ``slice_transform`` (e.g. random
    augmentation) runs on it each time it is drawn.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        transform: Compose | None = None,
        slice_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        num_workers: int | None = 1,
        image_key: str = "image",
        label_key: str = "label",
        presence_key: str = "presence",
        start_key: str = "slice_start",
    ) -> None:
        self.volumes = CacheDataset(
            list(data), transform=transform or ct_volume_transforms(), num_workers=num_workers, progress=False
        )
        self.slice_transform = slice_transform
        self.keys = (image_key, label_key, presence_key, start_key)
        self.index = [(v, z) for v in range(len(self.volumes)) for z in range(self.volumes[v][image_key].shape[-1])]

    def __len__(self) -> int:
        return len(self.index)

    def presence(self) -> torch.Tensor:
        """Presence (N,) of every slice, read from the cached volumes without building items."""
        _, _, presence_key, _ = self.keys
        return torch.stack([self.volumes[v][presence_key][z] for v, z in self.index]).float()

    def __getitem__(self, i: int) -> dict[str, Any]:
        image_key, label_key, presence_key, start_key = self.keys
        v, z = self.index[i]
        volume = self.volumes[v]
        item = {
            image_key: convert_to_tensor(volume[image_key][..., z], track_meta=False).float().clone(),
            label_key: convert_to_tensor(volume[label_key][..., z], track_meta=False).float(),
            presence_key: volume[presence_key][z : z + 1].clone(),
            "case_id": volume["case_id"],
            "slice_index": int(volume.get(start_key, 0)) + z,
        }
        return item if self.slice_transform is None else self.slice_transform(item)


def _check_fraction(fraction: float) -> float:
    """``fraction`` when it is a valid share of slices, in (0, 1]."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"slice fraction must lie in (0, 1], got {fraction}")
    return fraction
