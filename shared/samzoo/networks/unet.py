"""2D U-Net paths around a transformer: a contracting path that replaces patch embedding, and an expanding path
whose skip connections are filtered by cross-attention with the decoder features (U-Transformer).

Convolution blocks are MONAI's ``BasicUNet`` ones (two 3x3 convolutions, instance norm, LeakyReLU).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from .attention import SkipCrossAttention

ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
NORM = ("instance", {"affine": True})


class UNetDown(nn.Module):
    """Two convolutions, then per further level a 2x max-pooling and two convolutions.

    (N, C_in, H, W) -> ``len(channels)`` feature maps, the k-th of shape (N, channels[k], H / 2^k, W / 2^k).
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.stem = TwoConv(2, in_channels, channels[0], ACT, NORM, bias=True)
        self.levels = nn.ModuleList(Down(2, c_in, c_out, ACT, NORM, bias=True) for c_in, c_out in pairwise(channels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for level in self.levels:
            features.append(level(features[-1]))
        return features


class UNetUp(nn.Module):
    """Per skip (coarse to fine): gate the skip by cross-attention with the current decoder features, upsample the
    decoder features 2x (transposed convolution), concatenate and apply two convolutions.

    Each stage's gate is computed from the output of the previous stage's two convolutions, so every cross-attention
    follows two convolutions, as in CMR2D+T-SAM; the first stage's gate reads the mask decoder's output.
    """

    def __init__(self, in_channels: int, skip_channels: Sequence[int], num_heads: int) -> None:
        super().__init__()
        self.gates = nn.ModuleList()
        self.stages = nn.ModuleList()
        for channels in skip_channels:
            self.gates.append(SkipCrossAttention(in_channels, channels, num_heads, ACT, NORM))
            self.stages.append(UpCat(2, in_channels, channels, channels, ACT, NORM, bias=True, upsample="deconv"))
            in_channels = channels
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        """x: (N, in_channels, h, w); skips coarse to fine, skip k of (N, skip_channels[k], h 2^(k+1), w 2^(k+1))
        -> (N, skip_channels[-1], h 2^K, w 2^K)."""
        for gate, stage, skip in zip(self.gates, self.stages, skips, strict=True):
            x = stage(x, gate(x, skip))
        return x
