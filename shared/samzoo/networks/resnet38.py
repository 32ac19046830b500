"""ResNet-38: the wide residual network of Wu, Shen and van den Hengel ("Wider or deeper: revisiting the ResNet
model for visual recognition", Pattern Recognition 90, 2019), as used for class activation maps.

Pre-activation residual blocks in six stages, 37 convolutions plus the fully connected layer. The last three stages
keep the resolution and dilate instead (output stride 8), so a 256 x 256 slice gives a 32 x 32 activation map, the
usual form of the network in weakly supervised segmentation. ``width`` scales every stage's channels, from the
paper's 64 ... 4096 (``width=1``) down to small networks for CPU demos.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["RESNET38_WIDTHS", "BottleneckBlock", "ResNet38", "ResidualBlock"]

RESNET38_WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096)
"""Channels of the stem and of stages b2 ... b7 at ``width=1``."""


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False)


class ResidualBlock(nn.Module):
    """Two pre-activated 3 x 3 convolutions; a 1 x 1 projection of the activated input when the shape changes."""

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
    ) -> None:
        super().__init__()
        first = dilation if first_dilation is None else first_dilation
        self.bn_a = nn.BatchNorm2d(in_ch)
        self.conv_a = _conv(in_ch, mid_ch, 3, stride, first)
        self.bn_b = nn.BatchNorm2d(mid_ch)
        self.conv_b = _conv(mid_ch, out_ch, 3, 1, dilation)
        self.shortcut = None if in_ch == out_ch and stride == 1 else _conv(in_ch, out_ch, 1, stride)
        self.act = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        y = self.act(self.bn_a(x))
        shortcut = x if self.shortcut is None else self.shortcut(y)
        return shortcut + self.conv_b(self.act(self.bn_b(self.conv_a(y))))


class BottleneckBlock(nn.Module):
    """Pre-activated 1 x 1 -> dilated 3 x 3 -> 1 x 1 convolutions (widths out/4, out/2, out) with dropout."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.bn_a = nn.BatchNorm2d(in_ch)
        self.conv_a = _conv(in_ch, out_ch // 4, 1)
        self.bn_b = nn.BatchNorm2d(out_ch // 4)
        self.conv_b = _conv(out_ch // 4, out_ch // 2, 3, 1, dilation)
        self.bn_c = nn.BatchNorm2d(out_ch // 2)
        self.conv_c = _conv(out_ch // 2, out_ch, 1)
        self.shortcut = _conv(in_ch, out_ch, 1)
        self.act = nn.ReLU(inplace=False)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        y = self.act(self.bn_a(x))
        out = self.conv_b(self.drop(self.act(self.bn_b(self.conv_a(y)))))
        out = self.conv_c(self.drop(self.act(self.bn_c(out))))
        return self.shortcut(y) + out


class ResNet38(nn.Module):
    """ResNet-38 classifier: encoder, global average pooling, fully connected layer.

    Args:
        in_channels: image channels (1 for CT).
        num_classes: outputs of the fully connected layer (1: a single "present" logit for binary focal loss).
        width: channel multiplier of :data:`RESNET38_WIDTHS` (each stage keeps at least 4 channels).
        dropout: dropout of the two bottleneck stages (the reference network uses 0.3 and 0.5).

    ``forward`` returns the logits (B, num_classes); :meth:`features` the last feature maps F_last
    (B, C, H / 8, W / 8) whose FC-weighted sum is the class activation map.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 1, width: float = 1.0, dropout: Sequence[float] = (0.3, 0.5)
    ) -> None:
        super().__init__()
        c0, c2, c3, c4, c5, c6, c7 = (max(4, round(c * width)) for c in RESNET38_WIDTHS)
        self.stem = _conv(in_channels, c0, 3)
        self.b2 = nn.Sequential(ResidualBlock(c0, c2, c2, 2), ResidualBlock(c2, c2, c2), ResidualBlock(c2, c2, c2))
        self.b3 = nn.Sequential(ResidualBlock(c2, c3, c3, 2), ResidualBlock(c3, c3, c3), ResidualBlock(c3, c3, c3))
        self.b4 = nn.Sequential(ResidualBlock(c3, c4, c4, 2), *(ResidualBlock(c4, c4, c4) for _ in range(5)))
        self.b5 = nn.Sequential(
            ResidualBlock(c4, c4, c5, 1, dilation=2, first_dilation=1),
            ResidualBlock(c5, c4, c5, dilation=2),
            ResidualBlock(c5, c4, c5, dilation=2),
        )
        self.b6 = BottleneckBlock(c5, c6, dilation=4, dropout=dropout[0])
        self.b7 = BottleneckBlock(c6, c7, dilation=4, dropout=dropout[1])
        self.bn7 = nn.BatchNorm2d(c7)
        self.act = nn.ReLU(inplace=False)
        self.fc = nn.Linear(c7, num_classes)
        self.out_channels = c7

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> F_last (B, C, H / 8, W / 8), after the final batch norm and ReLU."""
        x = self.b5(self.b4(self.b3(self.b2(self.stem(x)))))
        return self.act(self.bn7(self.b7(self.b6(x))))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """F_last (B, C, h, w) -> logits (B, num_classes): global average pooling, then the FC layer (Eq. 2)."""
        return self.fc(features.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))
