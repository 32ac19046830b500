"""Dictionary transforms for cardiac cine clips (2D+T), shared by every cardiac bundle.

A cine item (see :mod:`samzoo.data.datalist`) holds one slice's cine: after ``LoadImaged`` and
``EnsureChannelFirstd`` its image and label are ``(1, H, W, T)``, with label 0 on unlabelled frames. The transforms
here resample the cycle to a fixed number of phases that always includes ED and ES, crop around the heart
(invertibly, so predictions can be written back in the input's geometry) and augment every frame of a clip alike.
:func:`cine_transforms` assembles them into the standard pipeline; each transform also works alone and is
constructible from plain keyword arguments, so bundle configs may list them one by one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForeground,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    GaussianSmooth,
    InvertibleTransform,
    LabelToMaskd,
    LoadImaged,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    Randomizable,
    RandShiftIntensityd,
    ScaleIntensityd,
)
from monai.utils import convert_to_tensor, ensure_tuple

from ..data.phases import sample_phase_indices
from ..errors import DataError

__all__ = [
    "ChannelsToFramesd",
    "CropHeartd",
    "FramesToChannelsd",
    "RandCineAugmentd",
    "RandCropHeartd",
    "RandSamplePhasesd",
    "SamplePhasesd",
    "cine_transforms",
    "heart_crop_box",
    "label_centre",
    "motion_centre",
]


def _source(img: Any) -> str | None:
    """The file an image was loaded from, for error messages."""
    return img.meta.get("filename_or_obj") if isinstance(img, MetaTensor) else None


class SamplePhasesd(MapTransform):
    """Resample cine clips ``(C, H, W, T)`` to ``num_phases`` phases that include ED and ES.

    The frames are chosen by :func:`sample_phase_indices` (offset 0) from the item's ``ed_frame`` and ``es_frame``;
    every key gets the same frames. Two entries are added: ``frame_mask``, float32 ``(num_phases,)``, 1 where the
    sampled frame is one of ``labelled_frames`` (losses and metrics use only those), and ``frame_indices``, int64
    ``(num_phases,)``, the source frame of each phase.

    ``num_phases=None`` keeps every frame (inference and full-cine evaluation): the clips are untouched,
    ``frame_indices`` is ``0..T-1`` and ED/ES are not needed; ``labelled_frames`` may then be absent (no frame is
    marked).

    Bad items raise :class:`DataError` naming the file: clips of different lengths, a ``num_frames`` entry that
    disagrees with the clip, ED/ES or labelled frames outside the cine, non-finite values.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        num_phases: int | None = 15,
        ed_key: str = "ed_frame",
        es_key: str = "es_frame",
        labelled_key: str = "labelled_frames",
        num_frames_key: str = "num_frames",
        mask_key: str = "frame_mask",
        indices_key: str = "frame_indices",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_phases is not None and num_phases < 1:
            raise ValueError(f"num_phases must be a positive number or None, got {num_phases}")
        self.num_phases = num_phases
        self.ed_key, self.es_key, self.labelled_key = ed_key, es_key, labelled_key
        self.num_frames_key = num_frames_key
        self.mask_key, self.indices_key = mask_key, indices_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        return self._sample(d, self._num_frames(d), offset=0)

    def _num_frames(self, d: dict[Hashable, Any]) -> int:
        """The clips' common length, after checking the clips and the item's ``num_frames``."""
        lengths = {}
        for key in self.key_iterator(d):
            clip = torch.as_tensor(d[key])
            if clip.ndim != 4:
                raise DataError(_source(d[key]), f"{key!r} has shape {tuple(clip.shape)}, expected (C, H, W, T)")
            if torch.is_floating_point(clip) and not torch.isfinite(clip).all():
                raise DataError(_source(d[key]), f"{key!r} contains NaN or infinite values")
            lengths[key] = int(clip.shape[-1])
        if not lengths:
            raise KeyError(f"none of the keys {self.keys} is in the item")
        first = self.first_key(d)
        path = _source(d[first])
        if len(set(lengths.values())) > 1:
            raise DataError(path, f"clips have different numbers of frames: {lengths}")
        num_frames = lengths[first]
        stated = d.get(self.num_frames_key)
        if stated is not None and int(stated) != num_frames:
            raise DataError(path, f"item says {self.num_frames_key}={stated} but the clip has {num_frames} frames")
        return num_frames

    def _sample(self, d: dict[Hashable, Any], num_frames: int, offset: int) -> dict[Hashable, Any]:
        path = _source(d[self.first_key(d)])
        labelled = np.zeros(num_frames, dtype=np.float32)
        frames = d.get(self.labelled_key)
        if frames is None and self.num_phases is not None:
            raise DataError(path, f"item has no {self.labelled_key!r}, needed for the frame mask")
        for frame in () if frames is None else frames:
            if not 0 <= int(frame) < num_frames:
                raise DataError(path, f"labelled frame {frame} lies outside the cine's {num_frames} frames")
            labelled[int(frame)] = 1.0
        if self.num_phases is None:
            indices = np.arange(num_frames, dtype=np.int64)
        else:
            for key in (self.ed_key, self.es_key):
                if d.get(key) is None:
                    raise DataError(path, f"item has no {key!r}, needed to sample phases")
            if num_frames < self.num_phases:  # allowed, so that short cines fill a batch, but never unnoticed
                warnings.warn(
                    f"{path}: {num_frames} frames for {self.num_phases} phases, so frames are repeated "
                    "(a --num_phases up to the shortest cine's frame count avoids it)",
                    stacklevel=2,
                )
            try:
                indices = sample_phase_indices(
                    num_frames, self.num_phases, int(d[self.ed_key]), int(d[self.es_key]), offset
                )
            except DataError as err:
                raise DataError(path, err.problem) from err
            select = torch.as_tensor(indices)
            for key in self.key_iterator(d):
                d[key] = d[key][..., select]
        d[self.mask_key] = torch.as_tensor(labelled[indices], dtype=torch.float32)
        d[self.indices_key] = torch.as_tensor(indices, dtype=torch.int64)
        return d


class RandSamplePhasesd(Randomizable, SamplePhasesd):
    """:class:`SamplePhasesd` with a random grid offset per call (training): ED and ES stay in, the frames between
    them vary. The offset is uniform over ``0 .. max(1, T // num_phases) - 1``."""

    def __init__(self, keys: KeysCollection = ("image", "label"), num_phases: int = 15, **kwargs: Any) -> None:
        if num_phases is None:
            raise ValueError("RandSamplePhasesd needs num_phases; use SamplePhasesd(num_phases=None) to keep all")
        super().__init__(keys, num_phases=num_phases, **kwargs)
        self._offset = 0

    def randomize(self, num_frames: int) -> None:
        self._offset = int(self.R.randint(max(1, num_frames // self.num_phases)))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        num_frames = self._num_frames(d)
        self.randomize(num_frames)
        return self._sample(d, num_frames, offset=self._offset)


def label_centre(label: torch.Tensor | np.ndarray) -> np.ndarray | None:
    """Centre ``(row, col)`` of the bounding box of the foreground (label > 0) over all channels and frames.

    Args:
        label: ``(C, H, W, ...)``; unlabelled frames are all 0, so the union covers exactly the labelled frames.

    Returns:
        float64 ``(2,)`` in pixel-edge coordinates (pixel ``i`` spans ``[i, i + 1)``), or None without foreground.
    """
    foreground = torch.as_tensor(label) > 0
    plane = foreground.reshape(*foreground.shape[:3], -1).any(-1).any(0)
    rows = torch.nonzero(plane.any(1)).flatten()
    cols = torch.nonzero(plane.any(0)).flatten()
    if rows.numel() == 0:
        return None
    return np.array([(rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2], dtype=np.float64)


def motion_centre(
    image: torch.Tensor | np.ndarray, sigma: float = 8.0, central_fraction: float = 0.8, threshold: float = 0.3
) -> np.ndarray:
    """Centre ``(row, col)`` of the beating heart, from the image alone.

    The temporal standard deviation is high where tissue moves through the cycle, which in a breath-held cine is
    the heart. The map is smoothed (Gaussian, ``sigma`` pixels) so the bright rims of the moving walls merge into
    one blob, everything outside the central ``central_fraction`` of each axis is ignored (edge artefacts), and
    the centroid of the part above ``threshold`` times its maximum is returned. A clip without motion (a single
    frame, a constant image) gives the image centre.

    Args:
        image: ``(C, H, W, T)`` clip.

    Returns:
        float64 ``(2,)`` in pixel-edge coordinates (pixel ``i`` spans ``[i, i + 1)``).
    """
    clip = convert_to_tensor(image, dtype=torch.float32, track_meta=False)
    if clip.ndim != 4:
        raise ValueError(f"expected a clip (C, H, W, T), got shape {tuple(clip.shape)}")
    height, width = clip.shape[1:3]
    std = clip.std(dim=-1, correction=0).mean(0, keepdim=True)
    smooth = GaussianSmooth(sigma)(std)[0]
    margin_h = round(height * (1 - central_fraction) / 2)
    margin_w = round(width * (1 - central_fraction) / 2)
    central = torch.zeros_like(smooth)
    central[margin_h : height - margin_h, margin_w : width - margin_w] = 1
    smooth = smooth * central
    peak = float(smooth.max())
    if peak <= 0:
        return np.array([height / 2, width / 2], dtype=np.float64)
    weight = torch.clamp(smooth - threshold * peak, min=0).double()
    rows = torch.arange(height, dtype=torch.float64)[:, None] + 0.5
    cols = torch.arange(width, dtype=torch.float64)[None, :] + 0.5
    total = weight.sum()
    return np.array([float((weight * rows).sum() / total), float((weight * cols).sum() / total)])


def heart_crop_box(
    spatial_shape: Sequence[int], centre: Sequence[float], roi_size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of an ``roi_size`` in-plane box around ``centre``, over every spatial dimension.

    Along an in-plane axis at least as long as the box, the box is centred on ``centre`` and shifted inside the
    image; along a shorter axis it is centred on the image, so the image is padded evenly (the odd pixel at the
    start). Dimensions after the first two (the frames) are kept whole.

    Returns:
        int64 ``start`` and ``end`` with ``len(spatial_shape)`` entries each; negative starts or ends past the image
        mean padding.
    """
    start = np.zeros(len(spatial_shape), dtype=np.int64)
    end = np.asarray(spatial_shape, dtype=np.int64).copy()
    for axis, (size, roi, c) in enumerate(zip(spatial_shape[:2], roi_size, centre, strict=True)):
        if size >= roi:
            start[axis] = min(max(math.floor(c - roi / 2 + 0.5), 0), size - roi)
        else:
            start[axis] = (size - roi) // 2
        end[axis] = start[axis] + roi
    return start, end


class CropHeartd(MapTransform, InvertibleTransform):
    """Crop ``(C, H, W, T)`` clips to ``roi_size`` in-plane around the heart; invertible with ``Invertd``.

    The centre comes from the labels when ``label_key`` is given and the label has foreground
    (:func:`label_centre`), otherwise from the image's motion (:func:`motion_centre`): pass ``label_key=None`` at
    inference, and in evaluation to crop exactly as at inference. The box is placed by :func:`heart_crop_box`;
    parts outside the image are padded with a constant: the clip's minimum for ``image_key`` (so padding neither
    changes the min-max scaling that follows nor draws an edge), 0 for every other key. Crop and padding are
    recorded as one operation of MONAI's :class:`~monai.transforms.CropForeground`, so ``Invertd`` puts a
    prediction back on the input's grid.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        roi_size: Sequence[int] = (128, 128),
        image_key: str = "image",
        label_key: str | None = "label",
        sigma: float = 8.0,
        central_fraction: float = 0.8,
        threshold: float = 0.3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.cropper = CropForeground()
        if len(roi_size) != 2:
            raise ValueError(f"roi_size must give (H, W), got {roi_size}")
        self.roi_size = tuple(int(s) for s in roi_size)
        self.image_key, self.label_key = image_key, label_key
        self.sigma, self.central_fraction, self.threshold = sigma, central_fraction, threshold

    def centre(self, data: Mapping[Hashable, Any]) -> np.ndarray:
        """Heart centre ``(row, col)``: from the label's foreground when there is one, else from image motion."""
        if self.label_key is not None and self.label_key in data:
            centre = label_centre(data[self.label_key])
            if centre is not None:
                return centre
        return motion_centre(data[self.image_key], self.sigma, self.central_fraction, self.threshold)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        return self._crop(d, self.centre(d))

    def _crop(self, d: dict[Hashable, Any], centre: np.ndarray) -> dict[Hashable, Any]:
        start, end = heart_crop_box(d[self.image_key].shape[1:], centre, self.roi_size)
        for key in self.key_iterator(d):
            value = float(d[key].min()) if key == self.image_key else 0.0
            d[key] = self.cropper.crop_pad(d[key], start, end, value=value)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d


class RandCropHeartd(Randomizable, CropHeartd):
    """:class:`CropHeartd` whose centre moves by a random whole number of pixels, uniform in
    ``[-jitter, jitter]`` per axis (training), so the network also sees the heart off-centre as at inference."""

    def __init__(self, keys: KeysCollection = ("image", "label"), jitter: int = 10, **kwargs: Any) -> None:
        super().__init__(keys, **kwargs)
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {jitter}")
        self.jitter = int(jitter)
        self._shift = np.zeros(2)

    def randomize(self, data: Any = None) -> None:
        self._shift = self.R.randint(-self.jitter, self.jitter + 1, size=2).astype(np.float64)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        return self._crop(d, self.centre(d) + self._shift)


class FramesToChannelsd(MapTransform):
    """Move frames into channels, ``(1, H, W, T) -> (T, H, W)``, so 2D spatial transforms treat all frames alike.

    Metadata travels along; the affine keeps describing the two in-plane axes. Undo with
    :class:`ChannelsToFramesd`.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            clip = d[key]
            if clip.ndim != 4 or clip.shape[0] != 1:
                raise ValueError(f"{key!r} must be a one-channel clip (1, H, W, T), got {tuple(clip.shape)}")
            d[key] = clip[0].permute(2, 0, 1).contiguous()
        return d


class ChannelsToFramesd(MapTransform):
    """Inverse of :class:`FramesToChannelsd`: ``(T, H, W) -> (1, H, W, T)``."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            frames = d[key]
            if frames.ndim != 3:
                raise ValueError(f"{key!r} must be frames as channels (T, H, W), got {tuple(frames.shape)}")
            d[key] = frames.permute(1, 2, 0).contiguous()[None]
        return d


class RandCineAugmentd(Compose):
    """The CMR2D+T-SAM training augmentations, applied identically to every frame of ``(1, H, W, T)`` clips.

    Frames become channels of one 2D image (:class:`FramesToChannelsd`), so each MONAI transform below draws its
    parameters once per clip: rotation and translation (``RandAffined``), a flip of each in-plane axis
    (``RandFlipd``), Gaussian noise (``RandGaussianNoised``, std drawn from ``[0, noise_std]``), contrast (gamma
    in ``contrast_gamma``, ``RandAdjustContrastd``) and brightness (an offset in ``±brightness_offset``,
    ``RandShiftIntensityd``). Images are resampled bilinearly, labels with nearest neighbour; intensity changes
    touch images only. Meant for images already scaled to [0, 1]; noise and brightness may take them slightly
    outside. ``set_random_state`` seeds every step.

    Args:
        image_keys, label_keys: the clips to augment; geometric changes apply to both, intensity ones to images.
        affine_prob: chance of the rotation/translation.
        rotate_range: largest rotation in radians (default 15 degrees).
        translate_range: largest translation in pixels along each in-plane axis.
        flip_prob: chance of flipping, for each in-plane axis on its own.
        noise_prob, noise_std: chance and largest standard deviation of additive Gaussian noise.
        contrast_prob, contrast_gamma: chance and range of the gamma change.
        brightness_prob, brightness_offset: chance and largest magnitude of the intensity offset.
    """

    def __init__(
        self,
        image_keys: KeysCollection = ("image",),
        label_keys: KeysCollection = ("label",),
        affine_prob: float = 0.5,
        rotate_range: float = math.pi / 12,
        translate_range: float = 10.0,
        flip_prob: float = 0.5,
        noise_prob: float = 0.2,
        noise_std: float = 0.05,
        contrast_prob: float = 0.3,
        contrast_gamma: Sequence[float] = (0.7, 1.5),
        brightness_prob: float = 0.3,
        brightness_offset: float = 0.1,
    ) -> None:
        images = list(ensure_tuple(image_keys))
        keys = images + list(ensure_tuple(label_keys))
        modes = ["bilinear"] * len(images) + ["nearest"] * (len(keys) - len(images))
        super().__init__(
            [
                FramesToChannelsd(keys),
                RandAffined(
                    keys,
                    prob=affine_prob,
                    rotate_range=rotate_range,
                    translate_range=(translate_range, translate_range),
                    mode=modes,
                    padding_mode="zeros",
                ),
                RandFlipd(keys, prob=flip_prob, spatial_axis=0),
                RandFlipd(keys, prob=flip_prob, spatial_axis=1),
                RandGaussianNoised(images, prob=noise_prob, std=noise_std),
                RandAdjustContrastd(images, prob=contrast_prob, gamma=tuple(contrast_gamma)),
                RandShiftIntensityd(images, offsets=brightness_offset, prob=brightness_prob),
                ChannelsToFramesd(keys),
            ]
        )


def cine_transforms(
    train: bool,
    num_phases: int | None = 15,
    roi_size: Sequence[int] = (128, 128),
    image_key: str = "image",
    label_key: str | None = "label",
    select_labels: int | Sequence[int] | None = None,
    jitter: int = 10,
    augment: Mapping[str, Any] | None = None,
    extra: Sequence[Callable] = (),
) -> Compose:
    """The standard cine pipeline from datalist item to network input.

    load -> channel first -> phase sampling -> crop -> min-max scaling to [0, 1] per clip -> label selection
    (optional) -> augmentation (training) -> float32 tensors. Outputs ``image`` ``(1, *roi_size, P)``, ``label``
    likewise (when ``label_key`` is set), ``frame_mask`` float32 ``(P,)`` and ``frame_indices`` int64 ``(P,)``,
    with ``P = num_phases``, or the cine's frame count when ``num_phases`` is None. ``frame_mask`` replaces the
    item's ``labelled_frames``, which is dropped: its length varies between items and would stop batching.

    Training samples phases with a random offset, crops around the labelled heart with ``jitter`` and augments
    (``augment`` holds :class:`RandCineAugmentd` keyword arguments). Otherwise phases are sampled at offset 0 (or
    all kept) and the crop follows the image's motion, exactly as at inference, so validation scores what a
    deployed model sees. A constant clip scales to zeros.

    Args:
        train: training pipeline (random) or evaluation/inference pipeline (deterministic).
        num_phases: phases per clip; None keeps every frame (evaluation and inference only).
        roi_size: in-plane crop size (H, W).
        image_key, label_key: item keys of the cine files; ``label_key=None`` for images without labels.
        select_labels: label value(s) turned into a 0/1 mask (e.g. 2 for myocardium), or None to keep all labels.
        jitter: largest random shift of the training crop centre in pixels.
        augment: keyword arguments for :class:`RandCineAugmentd`.
        extra: transforms run after the standard ones, such as a bundle's supervision keys; one pipeline (rather
            than two nested ones) so that ``Invertd`` and the random states see every step in order.
    """
    if train and (label_key is None or num_phases is None):
        raise ValueError("the training pipeline needs label_key and num_phases")
    keys = [image_key] if label_key is None else [image_key, label_key]
    crop = {"keys": keys, "roi_size": roi_size, "image_key": image_key}
    steps: list[Any] = [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys, channel_dim="no_channel")]
    if train:
        steps += [
            RandSamplePhasesd(keys, num_phases=num_phases),
            RandCropHeartd(label_key=label_key, jitter=jitter, **crop),
        ]
    else:
        steps += [SamplePhasesd(keys, num_phases=num_phases), CropHeartd(label_key=None, **crop)]
    steps.append(ScaleIntensityd(image_key, minv=0.0, maxv=1.0))
    if select_labels is not None and label_key is not None:
        steps.append(LabelToMaskd(label_key, select_labels=select_labels))
    if train:
        steps.append(RandCineAugmentd(image_keys=image_key, label_keys=label_key, **dict(augment or {})))
    steps += [EnsureTyped(keys, dtype=torch.float32), DeleteItemsd("labelled_frames"), *extra]
    return Compose(steps)
