"""Inference with a trained nnU-Net, written back in the datalist's form.

:func:`nnunet_predictor` puts the trained network (:func:`trained_network`), its weights and nnU-Net's plans from the
bundle's ``models`` folder into an ``nnUNetPredictor``. Cases are then predicted with the predictor's in-process
single-array path (nnU-Net's preprocessing, sliding window with Gaussian weighting, optional mirroring, resampling
back), which spawns no worker processes. Arrays go in as nnU-Net's own reader returns them: axes and spacing
reversed from the NIfTI order.

:class:`SegmentCases` is the evaluator iteration: each case (a stack or cine of the datalist, or an input file) is
predicted and written as NIfTI, datalist cases as one (H, W, T) label map per slice item with the prediction at the
case's frame, so :class:`~samzoo.engine.EvaluationReport` scores them like any other bundle's predictions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from ..data.nifti import load_label, load_nifti, nifti_stem, save_nifti
from ..errors import DataError
from .dataset import case_arrays
from .training import DESCRIPTION


def trained_network(ckpt_dir: str | Path) -> torch.nn.Module:
    """The network of the model in ``ckpt_dir`` (untrained weights), built from its ``plans.json`` and
    ``dataset.json`` by MONAI's ``get_network_from_nnunet_plans``, with the full-resolution output only."""
    from monai.apps.nnunet import get_network_from_nnunet_plans

    ckpt_dir = Path(ckpt_dir)
    description = _description(ckpt_dir)
    network = get_network_from_nnunet_plans(
        str(ckpt_dir / "plans.json"), str(ckpt_dir / "dataset.json"), description["configuration"]
    )
    network.decoder.deep_supervision = False
    return network


def _description(ckpt_dir: Path) -> dict[str, Any]:
    for name in (DESCRIPTION, "plans.json", "dataset.json"):
        if not (ckpt_dir / name).is_file():
            raise DataError(ckpt_dir / name, "not found: train the bundle first (train.json) or pass its --ckpt_dir")
    return json.loads((ckpt_dir / DESCRIPTION).read_text())


def nnunet_predictor(
    network: torch.nn.Module,
    ckpt_dir: str | Path,
    device: torch.device | str = "cpu",
    mirroring: bool = False,
    tile_step_size: float = 0.5,
) -> Any:
    """nnU-Net's ``nnUNetPredictor`` for ``network`` (:func:`trained_network`) with the weights of
    ``ckpt_dir/model.pt``: the plans, dataset description and mirroring axes come from ``ckpt_dir``.

    This is what MONAI's ``ModelnnUNetWrapper`` sets up, done with public calls (the predictor's
    ``manual_initialization``). The wrapper itself cannot be used with nnunetv2 2.8: MONAI 1.6 passes the network
    settings in the order of nnU-Net's former ``build_network_architecture`` signature, which fails with "got
    multiple values for argument 'enable_deep_supervision'".
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    ckpt_dir = Path(ckpt_dir)
    description = _description(ckpt_dir)
    if not (ckpt_dir / "model.pt").is_file():
        raise DataError(ckpt_dir / "model.pt", "not found: train the bundle first (train.json) or pass its --ckpt_dir")
    weights = torch.load(ckpt_dir / "model.pt", map_location="cpu", weights_only=True)
    plans_manager = PlansManager(json.loads((ckpt_dir / "plans.json").read_text()))
    predictor = nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=bool(mirroring),
        device=torch.device(device),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    axes = description["inference_allowed_mirroring_axes"]
    predictor.manual_initialization(
        network,
        plans_manager,
        plans_manager.get_configuration(description["configuration"]),
        [weights.get("network_weights", weights)],
        json.loads((ckpt_dir / "dataset.json").read_text()),
        description["trainer_name"],
        None if axes is None else tuple(axes),
    )
    return predictor


def predict_volume(predictor: Any, image: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Label map (X, Y, Z) of one single-channel image (X, Y, Z) with voxel size ``spacing`` (x, y, z)."""
    array = np.ascontiguousarray(image.transpose(2, 1, 0)[None], dtype=np.float32)  # 1 x Z x Y x X
    segmentation = predictor.predict_single_npy_array(array, {"spacing": [float(s) for s in spacing[::-1]]})
    return np.asarray(segmentation).transpose(2, 1, 0).astype(np.uint8)


class SegmentCases:
    """Evaluator iteration: predict every case of the batch and write its NIfTI outputs into ``out_dir``.

    A datalist case (``items``, from :func:`~samzoo.nnunet.dataset.dataset_cases`) gives one file per slice item,
    named after its label (``<label name>.nii.gz``) with the label's shape and affine; a ``stack`` case fills the
    frame it shows, so the ED and ES cases of one slice meet in the same file. An input case (``image``,
    ``output``) gives ``output`` on the image's grid.
    """

    def __init__(self, predictor: Any, out_dir: str | Path) -> None:
        self.predictor = predictor
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
            prediction = predict_volume(self.predictor, volume.array, volume.zooms[:3])
            return [save_nifti(prediction, volume.affine, case["output"])]
        image, _ = case_arrays(case)
        prediction = predict_volume(self.predictor, image, case["spacing"])
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
