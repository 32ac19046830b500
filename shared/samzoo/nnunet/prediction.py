"""Inference with a trained nnU-Net through MONAI's ``ModelnnUNetWrapper``, written back in the datalist's form.

The wrapper restores nnU-Net's network, plans and weights from the bundle's ``models`` folder into an
``nnUNetPredictor``. Cases are then predicted with the predictor's in-process single-array path (nnU-Net's
preprocessing, sliding window with Gaussian weighting, optional mirroring, resampling back), which spawns no worker
processes. Arrays go in as nnU-Net's own reader returns them: axes and spacing reversed from the NIfTI order.

:class:`SegmentCases` is the evaluator iteration: each case (a stack or cine of the datalist, or an input file) is
predicted and written as NIfTI, datalist cases as one (H, W, T) label map per slice item with the prediction at the
case's frame, so :class:`~samzoo.engine.EvaluationReport` scores them like any other bundle's predictions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from ..data.errors import DataError
from ..data.nifti import load_label, load_nifti, nifti_stem, save_nifti
from .dataset import cine_arrays, stack_arrays

logger = logging.getLogger(__name__)


def nnunet_predictor(
    ckpt_dir: str | Path,
    fold: int | str = 0,
    device: torch.device | str = "cpu",
    mirroring: bool = False,
    tile_step_size: float = 0.5,
) -> Any:
    """MONAI's ``ModelnnUNetWrapper`` around an ``nnUNetPredictor`` for the model in ``ckpt_dir/fold_<fold>/model.pt``
    (with ``plans.json``, ``dataset.json`` and ``nnunet_checkpoint.pth`` in ``ckpt_dir``)."""
    from monai.apps.nnunet import ModelnnUNetWrapper
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    model_folder = Path(ckpt_dir) / f"fold_{fold}"
    for path in (model_folder / "model.pt", Path(ckpt_dir) / "nnunet_checkpoint.pth", Path(ckpt_dir) / "plans.json"):
        if not path.is_file():
            raise DataError(path, "not found: train the bundle first (train.json) or pass its --ckpt_dir")
    predictor = nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=bool(mirroring),
        device=torch.device(device),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    return ModelnnUNetWrapper(predictor, model_folder, "model.pt")


def predict_volume(wrapper: Any, image: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Label map (X, Y, Z) of one single-channel image (X, Y, Z) with voxel size ``spacing`` (x, y, z)."""
    array = np.ascontiguousarray(image.transpose(2, 1, 0)[None], dtype=np.float32)  # 1 x Z x Y x X
    segmentation = wrapper.predictor.predict_single_npy_array(array, {"spacing": [float(s) for s in spacing[::-1]]})
    return np.asarray(segmentation).transpose(2, 1, 0).astype(np.uint8)


class SegmentCases:
    """Evaluator iteration: predict every case of the batch and write its NIfTI outputs into ``out_dir``.

    A datalist case (``items``, from :func:`~samzoo.nnunet.dataset.dataset_cases`) gives one file per slice item,
    named after its label (``<label name>.nii.gz``) with the label's shape and affine; a ``stack`` case fills the
    frame it shows, so the ED and ES cases of one slice meet in the same file. An input case (``image``,
    ``output``) gives ``output`` on the image's grid.
    """

    def __init__(self, wrapper: Any, out_dir: str | Path) -> None:
        self.wrapper = wrapper
        self.out_dir = Path(out_dir)
        self._pending: dict[Path, np.ndarray] = {}

    def __call__(self, engine: Engine, batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        written = []
        for case in batch:
            written += self._case(case)
        return {"written": written}

    def _case(self, case: Mapping[str, Any]) -> list[Path]:
        if "items" not in case:
            volume = load_nifti(case["image"])
            if volume.array.ndim != 3:
                raise DataError(case["image"], f"expected one 3D image (X, Y, Z), got shape {volume.array.shape}")
            prediction = predict_volume(self.wrapper, volume.array, volume.zooms[:3])
            return [save_nifti(prediction, volume.affine, case["output"])]
        if "frame" in case:
            image, _ = stack_arrays({**case, "case_id": case["name"]}, None, 0)
        else:
            image, _ = cine_arrays(case["items"][0], 0)
        prediction = predict_volume(self.wrapper, image, case["spacing"])
        written = []
        for z, item in enumerate(case["items"]):
            path = self.out_dir / f"{nifti_stem(item['label'])}.nii.gz"
            label = load_label(item["label"])
            if path not in self._pending:
                self._pending[path] = np.zeros(label.array.shape, dtype=np.uint8)
            if "frame" in case:
                self._pending[path][..., case["frame"]] = prediction[..., z]
            else:
                self._pending[path][...] = prediction
            written.append(save_nifti(self._pending[path], label.affine, path))
        return written
