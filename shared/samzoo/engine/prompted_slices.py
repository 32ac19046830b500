"""Single slices segmented from prompts: the evaluation's prediction source and inference on files (sam_prompt).

:class:`SlicePredictions` is the prediction source of the shared report
(:class:`~samzoo.engine.report.EvaluationReport`): it turns an evaluator's low-resolution per-class mask logits into
label maps on each slice's own grid (:meth:`~samzoo.networks.sam_prompt.SamPromptModel.label_map`, the rule of the
zero-shot grid and inference) and gathers them into the datalist's volumes.
:func:`segment_file` segments one frame of an image file from user prompts (a JSON file or boxes around an existing
label map), and :class:`SegmentFiles` runs it as the iteration of the inference evaluator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from ..data.nifti import check_same_grid, load_label, load_nifti, save_nifti
from ..errors import DataError
from ..networks.sam_prompt import SamPromptModel, resized_size, to_sam_input
from ..prompts.io import boxes_from_label, read_prompts
from ..transforms.sam_prompt import slice_volumes
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
    spec = network.input_spec
    embedding = network.embed(to_sam_input(slice_, spec)[None])
    height, width = resized_size(slice_.shape, spec.image_size)
    scale = np.array([width / slice_.shape[1], height / slice_.shape[0]], dtype=np.float32)
    values, logits = sorted(given), []
    for value in values:
        p = given[value]
        device = embedding.device
        points = torch.as_tensor(p.points * scale, device=device)[None, None] if len(p.points) else None
        labels = torch.as_tensor(p.labels, device=device)[None, None] if len(p.points) else None
        box = None if p.box is None else torch.as_tensor(p.box.reshape(2, 2) * scale, device=device).reshape(1, 1, 4)
        logits.append(network(embedding, points, labels, box)[0, 0])
    result = np.zeros(array.shape, dtype=np.uint8)
    result[..., frame] = network.label_map(torch.stack(logits), slice_.shape, values)
    result = result.reshape(volume.array.shape)
    out = save_nifti(result, volume.affine, output, zooms=volume.zooms, units=volume.units)
    logger.info("segmented frame %d of %s (classes %s) -> %s", frame, image, values, out)
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
