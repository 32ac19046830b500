"""Engine hooks for a slice network on CT volumes (the sam_mix bundle: SAM-Mix and its SAM-PP variant).

Training works on 2D slices (:class:`SamMixPrepareBatch`; the loss is :class:`samzoo.losses.SamMixLoss`);
evaluation and inference run the slice network over whole CT volumes (:class:`SliceBatchInferer`). Evaluation feeds
the shared report (:class:`~samzoo.engine.report.EvaluationReport`) with :class:`MiddleSlicePredictions` and writes
the slice classification accuracy (:class:`PresenceAccuracy`); inference writes the per-slice presence
probabilities (:class:`PresenceWriter`) of the volumes :func:`inference_items` lists.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.engines.utils import PrepareBatch
from monai.inferers import Inferer

from ..data.datalist import load_datalist
from ..data.nifti import check_distinct_stems, load_nifti, nifti_stem
from ..errors import DataError
from ..transforms.ct import middle_slice_range
from .report import CollectedPredictions

logger = logging.getLogger(__name__)

__all__ = [
    "MiddleSlicePredictions",
    "PresenceAccuracy",
    "PresenceWriter",
    "SamMixPrepareBatch",
    "SliceBatchInferer",
    "inference_items",
]


class SamMixPrepareBatch(PrepareBatch):
    """Slice batch -> (image, targets, (), {"gate": ...}) for :class:`~samzoo.networks.sam_mix.SamMix`.

    targets holds ``seg`` (B, 1, H, W), ``presence`` (B, 1) and ``labelled`` (B, 1; ones when the batch has no
    such key). ``gate_key`` names the batch entry that decides which slices SAM segments: ``"labelled"`` in
    training (SAM runs only where the segmentation loss can use it), None to let the classifier decide. The gate
    stays on the host, where the batch comes from, so the network can pick those slices without waiting for the
    device.
    """

    def __init__(self, gate_key: str | None = "labelled") -> None:
        self.gate_key = gate_key

    def __call__(
        self, batchdata: dict[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple, dict[str, Any]]:
        def to(x: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(x).to(device=device, non_blocking=non_blocking, **kwargs)

        presence = torch.as_tensor(batchdata["presence"]).float()
        labelled = (
            torch.as_tensor(batchdata["labelled"]).float() if "labelled" in batchdata else torch.ones_like(presence)
        )
        flags = {"presence": presence, "labelled": labelled}
        gate = None if self.gate_key is None else flags[self.gate_key].flatten().cpu() > 0
        targets = {"seg": to(batchdata["label"]).float(), **{key: to(value) for key, value in flags.items()}}
        return to(batchdata["image"]), targets, (), {"gate": gate}


class SliceBatchInferer(Inferer):
    """Run a slice network on every axial slice of volumes (B, 1, H, W, D), ``batch_size`` slices at a time.

    Returns ``{"mask": (B, 1, H, W, D), "cam": (B, 1, H, W, D), "prob": (B, D)}``, the last being the presence
    probability of each slice.
    """

    def __init__(self, batch_size: int = 16) -> None:
        self.batch_size = batch_size

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        slices = inputs.movedim(-1, 1).flatten(0, 1)  # (B * D, 1, H, W)
        outputs = [network(chunk, *args, **kwargs) for chunk in torch.split(slices, self.batch_size)]
        batch, depth = inputs.shape[0], inputs.shape[-1]

        def volume(key: str) -> torch.Tensor:
            joined = torch.cat([o[key].float() for o in outputs])
            return joined.unflatten(0, (batch, depth)).movedim(1, -1)

        return {"mask": volume("mask"), "cam": volume("cam"), "prob": torch.sigmoid(volume("score"))[:, 0]}


def _source_name(item: Mapping[str, Any], key: str = "image") -> str:
    """File name of an item's image without its NIfTI suffix."""
    return nifti_stem(str(item[key].meta["filename_or_obj"]))


class MiddleSlicePredictions(CollectedPredictions):
    """The report's prediction source: each volume's binary mask in the label's geometry, ``output[key]``
    (1, X, Y, Z), in the order of ``items``.

    With ``slice_fraction`` (the ``eval_slice_fraction`` the evaluated volumes were cut to) only those middle
    slices are scored, counted in the RAS order the cut was made in.
    """

    def __init__(
        self, items: Sequence[Mapping[str, Any]], key: str = "pred_native", slice_fraction: float | None = None
    ) -> None:
        super().__init__(items, key)
        self.slice_fraction = slice_fraction

    def keep(self, row: Mapping[str, Any]) -> bool:
        return self.slice_fraction is None or row["slice_index"] in self._scored_slices(row["case_id"])

    def _scored_slices(self, case_id: str) -> range:
        """Label-array indices of the middle slices of a case: :func:`middle_slice_range` in RAS order, mirrored
        when the label's last axis runs from superior to inferior."""
        item = next(i for i in self.items if i["case_id"] == case_id)
        label = nib.load(item["label"])
        depth = label.shape[-1]
        band = middle_slice_range(depth, self.slice_fraction)
        if nib.aff2axcodes(label.affine)[-1] == "I":
            return range(depth - band.stop, depth - band.start)
        return band


class PresenceAccuracy:
    """Evaluator handler: the slice-level presence accuracy, per case and overall, written to
    ``out_dir/classification.json`` and logged when the evaluator completes.

    Args:
        items: the evaluated datalist items, in the evaluator's order (their ``case_id`` names the cases).
        out_dir: report folder.
        prob_key, presence_key: output entries of the predicted probabilities (D,) and true presence (D,)
            (looked up in the output, then in the batch).
        threshold: probability from which a slice is classed positive.
    """

    def __init__(
        self,
        items: Sequence[Mapping[str, Any]],
        out_dir: str | Path,
        prob_key: str = "prob",
        presence_key: str = "presence",
        threshold: float = 0.5,
    ) -> None:
        self.items = list(items)
        self.out_dir = Path(out_dir)
        self.keys = (prob_key, presence_key)
        self.threshold = threshold
        self.cases: dict[str, dict[str, int]] = {}
        self.seen = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine) -> None:
        self.cases, self.seen = {}, 0

    def collect(self, engine: Engine) -> None:
        prob_key, presence_key = self.keys
        for batch, output in zip(engine.state.batch, engine.state.output, strict=True):
            item = self.items[self.seen]
            self.seen += 1
            predicted = output[prob_key].detach().cpu() >= self.threshold
            truth = {**batch, **output}[presence_key].detach().cpu() > 0
            self.cases[item["case_id"]] = {
                "slices": int(truth.numel()),
                "correct": int((predicted == truth).sum()),
                "positive": int(truth.sum()),
                "predicted_positive": int(predicted.sum()),
            }

    def write(self, engine: Engine) -> None:
        slices = sum(a["slices"] for a in self.cases.values())
        correct = sum(a["correct"] for a in self.cases.values())
        classification = {"accuracy": correct / max(slices, 1), "slices": slices, "cases": self.cases}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "classification.json").write_text(json.dumps(classification, indent=2))
        logger.info("slice presence accuracy %.4f over %d slices", classification["accuracy"], slices)


def inference_items(
    input_files: str | Path | Sequence[str | Path], dataset_dir: str | Path = ""
) -> list[dict[str, str]]:
    """Items ``{"image": path}`` of the CT volumes to segment, every one checked before any output is written.

    ``input_files`` is a path or a list of paths (``--input_files ct.nii.gz`` arrives as one string). Without it,
    the volumes are those of ``dataset_dir``: the test split of its ``datalist.json`` when it is a folder written by
    ``samzoo prepare`` (or that datalist itself; prepared CTs may stay in their source folder, so ``images/`` does
    not hold them all), otherwise every ``.nii``/``.nii.gz`` file directly in it. Raises :class:`DataError` when
    there is no volume, two volumes share a file name (their outputs would overwrite each other), or one cannot be
    read or holds NaN (:func:`~samzoo.data.nifti.load_nifti`).
    """
    if isinstance(input_files, (str, Path)):
        input_files = [input_files] if str(input_files) else []
    files = [Path(f) for f in input_files] or _dataset_volumes(dataset_dir)
    check_distinct_stems(files)
    for file in files:
        load_nifti(file)
    return [{"image": str(file)} for file in files]


def _dataset_volumes(dataset_dir: str | Path) -> list[Path]:
    """The volumes :func:`inference_items` takes from ``dataset_dir`` when no input file is given."""
    if not str(dataset_dir):
        raise DataError(None, "no input volume: set input_files to one or more CT files, or dataset_dir to a folder")
    path = Path(dataset_dir)
    if path.is_dir() and not (path / "datalist.json").is_file():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.name.endswith((".nii", ".nii.gz")))
        if not files:
            raise DataError(path, "holds neither a datalist.json (written by samzoo prepare) nor .nii/.nii.gz files")
        return files
    datalist = path / "datalist.json" if path.is_dir() else path
    return [Path(item["image"]) for item in load_datalist(datalist, "test")]


def _file_slice_indices(image: MetaTensor, depth: int) -> np.ndarray:
    """For each RAS axial slice 0..depth-1 of a volume loaded and reoriented by the inference preprocessing, its
    index in the input file along the file's axis closest to inferior-superior (reorienting only permutes and
    flips axes, so that axis has ``depth`` slices and runs the other way when the file stores superior first)."""
    ornt = nib.io_orientation(np.asarray(image.meta["original_affine"], dtype=np.float64))
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    indices = np.arange(depth)
    return indices[::-1] if ornt[axis, 1] < 0 else indices


class PresenceWriter:
    """Inference handler: for each volume write ``<name>_presence.csv`` and, with ``save_cam``, ``<name>_cam.png``,
    the CAM of every slice classed positive beside the slice itself.

    The network sees the axial slices in RAS order (inferior to superior), so the CSV's ``slice_index`` and the
    CAM image count in that order; ``file_slice_index`` is the same slice's index in the input file, the grid of
    the written mask (see :func:`_file_slice_indices`).
    """

    def __init__(
        self, output_dir: str | Path, save_cam: bool = False, threshold: float = 0.5, prob_key: str = "prob"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.save_cam = save_cam
        self.threshold = threshold
        self.prob_key = prob_key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for batch, output in zip(engine.state.batch, engine.state.output, strict=True):
            name = _source_name(batch)
            prob = output[self.prob_key].detach().cpu().numpy()
            in_file = _file_slice_indices(batch["image"], len(prob))
            with open(self.output_dir / f"{name}_presence.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["slice_index", "file_slice_index", "presence_probability"])
                writer.writerows((z, in_file[z], f"{p:.6f}") for z, p in enumerate(prob))
            if self.save_cam:
                self._plot(batch["image"], output["cam"], prob, in_file, self.output_dir / f"{name}_cam.png")

    def _plot(self, image: torch.Tensor, cam: torch.Tensor, prob: np.ndarray, in_file: np.ndarray, path: Path) -> None:
        """Rows of (slice, CAM) pairs for the positive slices (model grid, RAS, displayed with rows as y)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = np.flatnonzero(prob >= self.threshold)
        fig, axes = plt.subplots(max(len(shown), 1), 2, figsize=(5, 2.5 * max(len(shown), 1)), squeeze=False)
        for row, z in zip(axes, shown, strict=False):
            row[0].imshow(image[0, ..., z].detach().cpu().T, cmap="gray", origin="lower")
            row[1].imshow(cam[0, ..., z].detach().cpu().float().T, cmap="jet", origin="lower")
            row[0].set_title(f"slice {z} (file slice {in_file[z]}), p = {prob[z]:.2f}", fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
