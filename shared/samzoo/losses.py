"""Losses that respect sparse annotations.

Labels of cine MRI usually exist only at ED and ES. The cine transforms mark every voxel of an unlabelled frame
with an ignore value, and :class:`MaskedDiceBCELoss` counts only the other voxels, so unlabelled frames contribute
nothing to the gradient while the network still sees them as temporal context. In CT, SAM-Mix has presence labels
for every slice and masks for only N of them: :class:`SamMixLoss` scores the masks of the labelled slices alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss, MaskedDiceLoss
from torch import nn

IGNORE_VALUE = -1
"""Label value of voxels that carry no annotation (frames without labels)."""


class MaskedDiceBCELoss(nn.Module):
    """Weighted sum of binary cross-entropy and Dice loss over annotated voxels (CMR2D+T-SAM §2.2).

    ``input`` holds logits (B, C, spatial...), one independent binary mask per channel (sigmoid, not softmax: every
    channel's background counts, unlike MONAI's ``DiceCELoss`` whose cross-entropy is a softmax over C > 1
    channels). ``target`` holds 0/1 with :data:`IGNORE_VALUE` on unannotated voxels, the same in every channel (the
    Dice mask is read from channel 0). The Dice term is computed per channel and averaged; it pools the whole batch
    (``batch=True``) so a clip whose labelled frames are empty does not produce an undefined per-sample Dice.
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_bce: float = 1.0, ignore_value: int = IGNORE_VALUE) -> None:
        super().__init__()
        self.lambda_dice = lambda_dice
        self.lambda_bce = lambda_bce
        self.ignore_value = ignore_value
        self.dice = MaskedDiceLoss(sigmoid=True, batch=True)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.shape != target.shape:
            raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} must have the same shape")
        input = input.float()
        valid = (target != self.ignore_value).to(input.dtype)
        target = target.to(input.dtype) * valid
        dice = self.dice(input, target, mask=valid[:, :1])
        bce = F.binary_cross_entropy_with_logits(input, target, weight=valid, reduction="sum")
        bce = bce / valid.sum().clamp_min(1.0)
        return self.lambda_dice * dice + self.lambda_bce * bce


class SamMixLoss(nn.Module):
    """lambda_cls * binary focal loss on the presence logits of every slice (Eq. 3) + lambda_seg * Dice loss
    (Eq. 9) averaged over the labelled slices of the batch (zero when the batch has none).

    ``pred`` is :class:`~samzoo.networks.sam_mix.SamMix`'s output (``score`` (B, 1), ``mask`` (B, 1, H, W));
    ``target`` is what :class:`~samzoo.engine.ct_slices.SamMixPrepareBatch` prepares (``presence`` (B, 1), ``seg``
    (B, 1, H, W), ``labelled`` (B, 1)).
    """

    def __init__(
        self, alpha: float = 0.25, gamma: float = 2.0, lambda_cls: float = 1.0, lambda_seg: float = 1.0
    ) -> None:
        super().__init__()
        self.focal = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)
        self.dice = DiceLoss(sigmoid=True, reduction="none")
        self.lambda_cls = lambda_cls
        self.lambda_seg = lambda_seg

    def forward(self, pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> torch.Tensor:
        cls = self.focal(pred["score"].float(), target["presence"])
        weight = target["labelled"].flatten()
        seg = self.dice(pred["mask"].float(), target["seg"]).flatten()
        seg = (seg * weight).sum() / weight.sum().clamp(min=1.0)
        return self.lambda_cls * cls + self.lambda_seg * seg
