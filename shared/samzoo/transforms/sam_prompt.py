"""Data pipeline of the SAM prompting bundle: 2D ED/ES slices, encoder inputs, cached embeddings, prompts, targets.

A cine datalist item (image and label (H, W, T)) gives one sample per phase (ED, ES) whose label holds every class:
the sparse-annotation thesis (§4.1.2) leaves out slices that miss a class, since a prompt for an absent structure
cannot be simulated. Per sample the transforms produce::

    image         (H, W) slice (LoadSliced), then (3, S, S) encoder input (SamInputd), then (256, g, g) embedding
                  from the embedding cache (CachedEmbeddingd)
    label         (H, W) label map (LoadSliced), then (C, 256, 256) binary masks on the decoder's low-resolution
                  grid (SamTargetd, after the prompts are drawn from the label map)
    points        (C, P, 2) (x, y) on the encoder grid, point_labels (C, P), boxes (C, 4) (SamplePromptsd)
    original_size (2,) the slice's (H, W); index: position of the sample in its list

``image`` and ``label`` keep MONAI's default keys so engines' ``prepare_batch`` find them. Predictions made per
sample go back to (H, W, T) volumes for evaluation with :func:`slice_volumes`.

C is the number of classes (RV, myocardium, LV), P = positives + negatives x (C - 1).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from ..data.nifti import load_label, load_nifti
from ..embedding_cache import EmbeddingCache
from ..errors import DataError
from ..networks.sam_prompt import SamInputSpec, resized_size, to_sam_input
from ..prompts import has_classes, sample_prompts

PHASE_KEYS = {"ED": "ed_frame", "ES": "es_frame"}


def select_volumes(
    samples: Sequence[Mapping[str, Any]],
    num_volumes: int | None,
    seed: int = 0,
    phases: Sequence[str] = ("ED", "ES"),
) -> list[dict[str, Any]]:
    """The samples of ``num_volumes`` annotated volumes (patient x phase) drawn by patient with ``seed``.

    The thesis counts annotated volumes (ACDC's 160 training volumes are 80 patients x ED/ES). Patients are sorted
    and permuted by ``seed``; their volumes present in ``samples`` are listed patient by patient, in ``phases``
    order, and the first ``num_volumes`` are kept. Both phases of a patient therefore go together (an odd number
    takes one phase of the last patient), and with one seed the smaller sets are subsets of the larger ones, as when
    annotating more volumes over time. None or more than there are keeps every volume. ``index`` is renumbered to
    the position in the returned list.
    """
    present = {(sample["patient_id"], sample["phase"]) for sample in samples}
    patients = sorted({patient for patient, _ in present})
    if num_volumes is not None and num_volumes < 1:
        raise ValueError(f"num_volumes must be at least 1, got {num_volumes}")
    order = np.random.default_rng(seed).permutation(len(patients))
    volumes = [(patients[i], phase) for i in order for phase in phases if (patients[i], phase) in present]
    kept = set(volumes[:num_volumes])
    chosen = [sample for sample in samples if (sample["patient_id"], sample["phase"]) in kept]
    return [dict(sample, index=index) for index, sample in enumerate(chosen)]


def slice_samples(
    items: Sequence[Mapping[str, Any]], classes: Sequence[int], phases: Sequence[str] = ("ED", "ES")
) -> list[dict[str, Any]]:
    """One sample per item and phase whose labelled frame holds every class of ``classes``.

    Each sample is the item plus ``frame``, ``phase`` and ``index`` (its position in the returned list).
    """
    samples = []
    for item in items:
        label = load_label(item["label"])
        for phase in phases:
            frame = item[PHASE_KEYS[phase]]
            if frame not in item.get("labelled_frames", [frame]):
                raise DataError(label.path, f"{phase} frame {frame} is not among the labelled frames")
            if has_classes(label.array[..., frame], classes):
                samples.append(dict(item, frame=frame, phase=phase, index=len(samples)))
    return samples


def slice_volumes(
    samples: Sequence[Mapping[str, Any]], predictions: Mapping[int, np.ndarray]
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Predicted (H, W) label maps, keyed by sample index, gathered per datalist item into (H, W, T) volumes.

    Returns the items, each with ``labelled_frames`` restricted to the frames predicted, and their volumes (zero on
    the other frames), ready for :func:`~samzoo.metrics.evaluate_items`: the inverse of :func:`slice_samples`.
    """
    by_item: dict[str, list[Mapping[str, Any]]] = {}
    for sample in samples:
        if sample["index"] in predictions:
            by_item.setdefault(str(sample["label"]), []).append(sample)
    items, arrays = [], []
    for group in by_item.values():
        first = group[0]
        height, width = predictions[first["index"]].shape
        volume = np.zeros((height, width, first["num_frames"]), dtype=np.uint8)
        for sample in group:
            volume[..., sample["frame"]] = predictions[sample["index"]]
        items.append(dict(first, labelled_frames=[s["frame"] for s in group]))
        arrays.append(volume)
    return items, arrays


class LoadSliced(MapTransform):
    """Read the ``frame`` of each (H, W, T) file in ``keys``: image as float32, label as int64, both (H, W)."""

    def __init__(self, keys: KeysCollection = ("image", "label"), label_key: str = "label") -> None:
        super().__init__(keys)
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            array = load_label(d[key]).array if key == self.label_key else load_nifti(d[key]).array
            if array.ndim != 3 or not 0 <= d["frame"] < array.shape[-1]:
                raise DataError(d[key], f"expected (H, W, T) with frame {d['frame']}, got shape {array.shape}")
            d[key] = array[..., d["frame"]].astype(np.int64 if key == self.label_key else np.float32)
        d["original_size"] = np.array(d[self.first_key(d)].shape, dtype=np.int64)
        return d


class SamInputd(MapTransform):
    """Turn the (H, W) ``image`` into encoder input (3, S, S) with :func:`to_sam_input`."""

    def __init__(self, spec: SamInputSpec, keys: KeysCollection = "image") -> None:
        super().__init__(keys)
        self.spec = spec

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = to_sam_input(d[key], self.spec)
        return d


class CachedEmbeddingd(MapTransform):
    """Replace each encoder input (3, S, S) in ``keys`` by its embedding (256, g, g) from ``cache``."""

    def __init__(self, cache: EmbeddingCache, keys: KeysCollection = "image") -> None:
        super().__init__(keys)
        self.cache = cache

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cache(torch.as_tensor(d[key]))
        return d


class SamTargetd(MapTransform):
    """Replace the (H, W) label by binary masks (C, m, m) of ``classes`` on the decoder's low-resolution grid.

    Draw prompts (:class:`SamplePromptsd`) before this transform: they need the label map. The label is taken to
    the encoder grid (resized, padded to ``image_size``) like the image, then area-averaged to ``mask_size`` and
    thresholded at 0.5.
    """

    def __init__(
        self,
        classes: Sequence[int],
        image_size: int,
        mask_size: int = 256,
        keys: KeysCollection = "label",
    ) -> None:
        super().__init__(keys)
        self.classes = list(classes)
        self.image_size = image_size
        self.mask_size = mask_size

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = torch.as_tensor(np.asarray(d[key]))
            masks = torch.stack([label == value for value in self.classes]).float()
            height, width = resized_size(tuple(label.shape), self.image_size)
            masks = F.interpolate(masks[None], size=(height, width), mode="nearest-exact")[0]
            masks = F.pad(masks, (0, self.image_size - width, 0, self.image_size - height))
            masks = F.interpolate(masks[None], size=(self.mask_size, self.mask_size), mode="area")[0]
            d[key] = (masks >= 0.5).float()
        return d


class SamplePromptsd(Randomizable, MapTransform):
    """Prompts for every class (:func:`samzoo.prompts.sample_prompts`) on the encoder grid.

    With ``seed`` None the prompts are redrawn on every call (training: each epoch sees new clicks). With a
    ``seed`` they depend only on the seed and the sample's ``index``, so an evaluation is reproducible whatever
    the order or batching of the samples.

    Outputs ``points`` (C, P, 2) float32, ``point_labels`` (C, P) int64 and, with ``use_box``, ``boxes`` (C, 4).
    """

    def __init__(
        self,
        classes: Sequence[int],
        image_size: int,
        num_positive: int = 2,
        num_negative: int = 1,
        use_box: bool = True,
        margin: int = 5,
        seed: int | None = None,
        label_key: str = "label",
    ) -> None:
        MapTransform.__init__(self, label_key)
        self.classes = list(classes)
        self.image_size = image_size
        self.num_positive = num_positive
        self.num_negative = num_negative
        self.use_box = use_box
        self.margin = margin
        self.seed = seed
        self.label_key = label_key

    def randomize(self, data: Any = None) -> None:
        """Prompts are drawn in :meth:`__call__` from ``self.R`` or a generator seeded per sample."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = np.asarray(d[self.label_key])
        rng = self.R if self.seed is None else np.random.default_rng([self.seed, int(d["index"])])
        prompts = sample_prompts(
            label, self.classes, self.num_positive, self.num_negative, self.use_box, rng, self.margin
        )
        height, width = resized_size(label.shape, self.image_size)
        scale = np.array([width / label.shape[1], height / label.shape[0]], dtype=np.float32)
        d["points"] = torch.as_tensor(np.stack([prompts[c].points * scale for c in self.classes]))
        d["point_labels"] = torch.as_tensor(np.stack([prompts[c].labels for c in self.classes]))
        if self.use_box:
            d["boxes"] = torch.as_tensor(np.stack([prompts[c].box.reshape(2, 2) * scale for c in self.classes]))
            d["boxes"] = d["boxes"].reshape(len(self.classes), 4)
        return d
