"""Single slices segmented from prompts: the evaluation's prediction source and inference on files (sam_prompt).

:class:`SlicePredictions` is the prediction source of the shared report
(:class:`~samzoo.engine.report.EvaluationReport`): it turns an evaluator's low-resolution per-class mask logits into
label maps on each slice's own grid (:meth:`~samzoo.networks.sam_prompt.SamPromptModel.label_map`, the rule of the
zero-shot grid and inference) and gathers them into the datalist's volumes.
:func:`segment_file` segments one frame of an image file from user prompts (a JSON file or boxes around an existing
label map), and :class:`SegmentFiles` runs it as the iteration of the inference evaluator. :class:`ClickInferer`
segments a slice from an annotator's clicks (MONAI Label's interactive models), re-using the slice's embedding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai.inferers import Inferer

from ..data.nifti import check_same_grid, load_label, load_nifti, save_nifti
from ..embedding_cache import EmbeddingCache
from ..errors import DataError
from ..networks.sam_prompt import SamPromptModel, resized_size, to_sam_input
from ..prompts import ClassPrompts
from ..prompts.io import boxes_from_label, read_prompts
from ..transforms.sam_prompt import guidance_prompts, slice_volumes
from .report import PredictionSource

logger = logging.getLogger(__name__)


class SlicePredictions(PredictionSource):
    """The report's prediction source: the evaluator's ``pred`` logits (C, 256, 256) per sample, turned into label
    maps on each slice's grid and, at the end, gathered into the datalist items' (H, W, T) volumes
    (:func:`~samzoo.transforms.sam_prompt.slice_volumes`).

    Args:
        network: turns mask logits into a label map on each slice's grid (:meth:`SamPromptModel.label_map`); the
            evaluator must pass ``pred`` as logits, without thresholding postprocessing.
        samples: the evaluated samples (:func:`samzoo.transforms.sam_prompt.slice_samples`); batches carry their
            ``index``.
        classes: label value -> name, in the order of the mask channels.
    """

    def __init__(
        self, network: SamPromptModel, samples: Sequence[Mapping[str, Any]], classes: Mapping[int, str]
    ) -> None:
        self.network = network
        self.samples = samples
        self.classes = dict(classes)
        self.predictions_by_index: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.predictions_by_index.clear()

    def collect(self, engine: Engine) -> None:
        for batch, output in zip(engine.state.batch, engine.state.output, strict=True):
            size = tuple(int(s) for s in batch["original_size"])
            logits = torch.as_tensor(output["pred"])
            label = self.network.label_map(logits, size, list(self.classes))
            self.predictions_by_index[int(batch["index"])] = label

    def predictions(self) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
        return slice_volumes(self.samples, self.predictions_by_index)


@torch.no_grad()
def prompted_label_map(
    network: SamPromptModel, embedding: torch.Tensor, prompts: Mapping[int, ClassPrompts], shape: tuple[int, int]
) -> np.ndarray:
    """The (H, W) label map of one slice from its embedding (1, 256, g, g) and user prompts per label value on the
    slice's grid: each class decoded separately, its prompts scaled to the encoder grid, then painted in ascending
    label order (:meth:`SamPromptModel.label_map`)."""
    height, width = resized_size(shape, network.input_spec.image_size)
    scale = np.array([width / shape[1], height / shape[0]], dtype=np.float32)
    device = embedding.device
    values, logits = sorted(prompts), []
    for value in values:
        p = prompts[value]
        points = torch.as_tensor(p.points * scale, device=device)[None, None] if len(p.points) else None
        labels = torch.as_tensor(p.labels, device=device)[None, None] if len(p.points) else None
        box = None if p.box is None else torch.as_tensor(p.box.reshape(2, 2) * scale, device=device).reshape(1, 1, 4)
        logits.append(network(embedding, points, labels, box)[0, 0])
    return network.label_map(torch.stack(logits), tuple(shape), values)


@torch.no_grad()
def segment_file(
    network: SamPromptModel,
    image: str | Path,
    output: str | Path,
    frame: int = 0,
    prompts: str | Path | None = None,
    label: str | Path | None = None,
    classes: Sequence[int] = (1, 2, 3),
    margin: int = 5,
) -> Path:
    """Segment one frame of an image file (H, W) or (H, W, T) and save the label map on the image's grid.

    Prompts come from the JSON file ``prompts`` (:func:`samzoo.prompts.io.read_prompts`) or, when only ``label``
    is given, are boxes with ``margin`` around each class of ``classes`` present in that label file's frame. Each
    class is decoded separately and painted in ascending label order (later class wins where masks overlap). The
    output has the image's shape, with only ``frame`` filled for a cine. The prompts (see ``read_prompts``) and the
    label file (the image's grid, ``frame`` among its frames) are checked before the model runs.
    """
    volume = load_nifti(image)
    array = volume.array if volume.array.ndim == 3 else volume.array[..., None]
    if array.ndim != 3 or not 0 <= frame < array.shape[-1]:
        raise DataError(image, f"expected an (H, W) or (H, W, T) image holding frame {frame}, got {volume.array.shape}")
    if prompts is not None:
        given = read_prompts(prompts, classes, array.shape[:2])
    elif label is not None:
        label_volume = load_label(label)
        check_same_grid(volume, label_volume, spatial_dims=2)
        frames = label_volume.array.reshape(*label_volume.array.shape[:2], -1)
        if not 0 <= frame < frames.shape[-1]:
            raise DataError(label, f"frame {frame} is beyond the label file's {frames.shape[-1]} frame(s)")
        given = boxes_from_label(frames[..., frame], classes, margin)
        if not given:
            raise DataError(label, f"frame {frame} holds none of the classes {list(classes)}: no box to prompt with")
    else:
        raise ValueError("segment_file needs a prompt file or a label file")
    network.eval()
    slice_ = array[..., frame]
    embedding = network.embed(to_sam_input(slice_, network.input_spec)[None])
    result = np.zeros(array.shape, dtype=np.uint8)
    result[..., frame] = prompted_label_map(network, embedding, given, slice_.shape)
    result = result.reshape(volume.array.shape)
    out = save_nifti(result, volume.affine, output, zooms=volume.zooms, units=volume.units)
    logger.info("segmented frame %d of %s (classes %s) -> %s", frame, image, sorted(given), out)
    return out


class SegmentFiles:
    """``iteration_update`` of the inference evaluator: :func:`segment_file` for each item of the batch.

    Items hold ``image``, ``output`` and ``prompts`` (a JSON file) or ``label`` (a label map to box); the data
    loader passes them as a list (``collate_fn`` identity) because prompt files are optional.
    """

    def __init__(self, frame: int = 0, classes: Sequence[int] = (1, 2, 3), margin: int = 5) -> None:
        self.frame = frame
        self.classes = tuple(classes)
        self.margin = margin

    def __call__(self, engine: Engine, batch: Sequence[Mapping[str, Any]]) -> list[dict[str, Path]]:
        return [
            {
                "pred": segment_file(
                    engine.network,
                    item["image"],
                    item["output"],
                    self.frame,
                    item.get("prompts"),
                    item.get("label"),
                    self.classes,
                    self.margin,
                )
            }
            for item in batch
        ]


class ClickInferer(Inferer):
    """Interactive segmentation (MONAI Label's DeepGrow-type models): clicks and a box on one slice become the mask
    decoder's prompts.

    ``inputs`` (B, 4, H, W, D) are the image and the guidance channels of
    :class:`~samzoo.transforms.sam_prompt.ClickGuidanced`; the output (B, 1, H, W, D) holds ``label_value`` where
    the decoder segments the prompted slice, 0 on it elsewhere and on every other slice. The slice's embedding comes
    from an :class:`~samzoo.embedding_cache.EmbeddingCache` kept in memory (``memory_size`` slices) across
    requests, so the encoder runs at the first click on a slice and every further click costs the decoder only.
    """

    def __init__(self, memory_size: int = 16, cache_dir: str | Path | None = None, label_value: int = 1) -> None:
        super().__init__()
        self.memory_size = memory_size
        self.cache_dir = cache_dir
        self.label_value = label_value
        self._caches: dict[str, EmbeddingCache] = {}

    def cache(self, network: SamPromptModel) -> EmbeddingCache:
        """The embedding cache of ``network``'s encoder (one per encoder identity)."""
        identity = network.identity
        if identity not in self._caches:
            self._caches[identity] = EmbeddingCache(network.embed, identity, self.cache_dir, self.memory_size)
        return self._caches[identity]

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: SamPromptModel, *args: Any, **kwargs: Any) -> torch.Tensor:
        cache = self.cache(network)
        output = torch.zeros((inputs.shape[0], 1, *inputs.shape[2:]), dtype=torch.uint8)
        for b, sample in enumerate(inputs):
            k, prompts = guidance_prompts(sample[1:])
            image = sample[0, ..., k].float().cpu()
            start, misses = time.perf_counter(), cache.misses
            embedding = cache(to_sam_input(image, network.input_spec))[None]
            embedded = time.perf_counter()
            device = next(network.parameters()).device
            mask = prompted_label_map(network, embedding.to(device), {self.label_value: prompts}, tuple(image.shape))
            output[b, 0, ..., k] = torch.as_tensor(mask)
            logger.info(
                "slice %d: embedding %s in %.3f s, %d clicks%s decoded in %.3f s",
                k,
                "computed" if cache.misses > misses else "from the cache",
                embedded - start,
                len(prompts.points),
                " and a box" if prompts.box is not None else "",
                time.perf_counter() - embedded,
            )
        return output.to(inputs.device)
