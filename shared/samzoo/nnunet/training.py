"""Hooks that run nnU-Net's training pieces in MONAI engines (MONAI's nnU-Net bundle pattern).

:func:`monai.apps.nnunet.get_nnunet_trainer` builds nnU-Net's trainer: network, deep-supervision loss (with the
ignore label when the dataset has one), SGD optimizer, data loaders with nnU-Net's augmentation and patch
sampling. A MONAI ``SupervisedTrainer`` then runs the iterations with :class:`NnUNetPrepareBatch`, and
:class:`GradientClipping` restores the one step of nnU-Net's ``train_step`` that the MONAI iteration lacks (gradient
norm clipped at 12). Validation runs nnU-Net's own ``validation_step`` (:class:`NnUNetValidationStep`), scored by
:class:`PseudoDice`, the foreground Dice nnU-Net selects its models with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric
from monai.engines.utils import IterationEvents
from nnunetv2.training.lr_scheduler import polylr as nnunet_polylr

from ..atomic import atomic_path
from .workers import worker_threads

DESCRIPTION = "nnunet.json"
"""The file in ``ckpt_dir`` naming the nnU-Net trainer, configuration, fold and mirroring axes of the model."""


class NnUNetPrepareBatch:
    """MONAI ``prepare_batch`` for nnU-Net's loader: ``(data, target)``, the target one tensor per deep-supervision
    output (full resolution first)."""

    def __call__(
        self, batchdata: Mapping[str, Any], device: torch.device | str | None = None, non_blocking: bool = False, **_
    ) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
        data = batchdata["data"].to(device, non_blocking=non_blocking)
        target = batchdata["target"]
        if isinstance(target, list | tuple):
            return data, [t.to(device, non_blocking=non_blocking) for t in target]
        return data, target.to(device, non_blocking=non_blocking)


class GradientClipping:
    """Clip the gradient norm after every backward pass, before the optimizer step (nnU-Net clips at 12).

    With MONAI's mixed precision the gradients are unscaled first, so the norm is that of the true gradients.
    """

    def __init__(self, max_norm: float = 12.0) -> None:
        self.max_norm = float(max_norm)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if getattr(engine, "amp", False) and getattr(engine, "scaler", None) is not None:
            engine.scaler.unscale_(engine.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm)


class NnUNetValidationStep:
    """Evaluator iteration: nnU-Net's ``validation_step`` on one batch of validation patches, in eval mode.

    Returns nnU-Net's dict: ``loss`` and per foreground class the true/false positive and false negative voxel
    counts, voxels under the ignore label left out.
    """

    def __init__(self, nnunet_trainer: Any) -> None:
        self.nnunet_trainer = nnunet_trainer

    def __call__(self, engine: Engine, batch: Mapping[str, Any]) -> dict[str, Any]:
        self.nnunet_trainer.network.eval()
        with torch.no_grad():
            return self.nnunet_trainer.validation_step(dict(batch))


class PseudoDice(Metric):
    """nnU-Net's online validation score: per class 2 TP / (2 TP + FP + FN) over all validation patches of the
    epoch, then the mean over the classes that occur (in the ground truth or the prediction)."""

    required_output_keys = ("tp_hard", "fp_hard", "fn_hard")

    def reset(self) -> None:
        self._counts: np.ndarray | None = None

    def update(self, output: tuple[Any, Any, Any]) -> None:
        counts = np.stack([np.asarray(count, dtype=np.float64) for count in output])
        self._counts = counts if self._counts is None else self._counts + counts

    def compute(self) -> float:
        if self._counts is None:
            raise ValueError("PseudoDice needs at least one validation batch")
        tp, fp, fn = self._counts
        present = (tp + fp + fn) > 0
        return float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present]))) if present.any() else 0.0


def save_nnunet_description(nnunet_trainer: Any, ckpt_dir: str | Path) -> Path:
    """Write what inference needs besides the weights into ``ckpt_dir``: nnU-Net's ``plans.json`` and
    ``dataset.json`` and :data:`DESCRIPTION` (trainer class, configuration, fold, mirroring axes)."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    axes = nnunet_trainer.inference_allowed_mirroring_axes
    files = {
        "plans.json": nnunet_trainer.plans_manager.plans,
        "dataset.json": nnunet_trainer.dataset_json,
        DESCRIPTION: {
            "trainer_name": type(nnunet_trainer).__name__,
            "configuration": nnunet_trainer.configuration_name,
            "fold": nnunet_trainer.fold,
            "inference_allowed_mirroring_axes": None if axes is None else [int(a) for a in axes],
        },
    }
    for name, content in files.items():
        with atomic_path(ckpt_dir / name) as tmp:
            tmp.write_text(json.dumps(content, indent=1) + "\n")
    return ckpt_dir


class PolyLRScheduler(nnunet_polylr.PolyLRScheduler):
    """nnU-Net's poly schedule, ``lr = initial_lr * (1 - epoch / max_epochs) ** 0.9``, over this run's
    ``max_epochs`` (nnU-Net's own trainer spans its 1000 epochs), stepped once per epoch.

    nnU-Net's scheduler saves ``max_steps`` with its state, so a training resumed with a larger ``max_epochs`` would
    keep the old length: a rate of 0 for the first added epoch, then a complex-valued rate that stops the optimizer.
    Here a loaded state keeps its epoch count but takes this run's length, and the optimizer gets the rate of the
    current epoch on it: with the same ``max_epochs`` that is the saved rate (exact resume); with a larger one the
    rest of the schedule is stretched to the new end. Past the end the rate stays 0.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, max_epochs: int) -> None:
        super().__init__(optimizer, float(initial_lr), int(max_epochs))

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        self._set_rate(current_step)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        max_steps = self.max_steps
        super().load_state_dict(state_dict)
        self.max_steps = max_steps
        self._set_rate(self.ctr - 1)  # the epoch the rate in use belongs to

    def _set_rate(self, step: int) -> None:
        rate = self.initial_lr * max(0.0, 1 - step / self.max_steps) ** self.exponent
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self._last_lr = [rate] * len(self.optimizer.param_groups)


def nnunet_trainer(
    dataset_id: int, configuration: str, ckpt_dir: str | Path, fold: int | str = 0, device: torch.device | str = "cpu"
) -> Any:
    """nnU-Net's trainer from MONAI's :func:`monai.apps.nnunet.get_nnunet_trainer`, initialised (network, loss,
    optimizer, data loaders), with its description saved to ``ckpt_dir`` (:func:`save_nnunet_description`)."""
    from monai.apps.nnunet import get_nnunet_trainer

    with worker_threads():
        trainer = get_nnunet_trainer(dataset_id, configuration, fold, device=str(torch.device(device)))
    save_nnunet_description(trainer, ckpt_dir)
    return trainer
