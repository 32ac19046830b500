"""MultiMix (Haque, Imran, Wang and Terzopoulos, "MultiMix: sparingly-supervised, extreme multitask learning from
medical images", ISBI 2021): one U-Net encoder shared by a classification branch and a segmentation decoder, joined
by the saliency bridge.

- Encoder: five levels of two 3x3 convolutions (instance norm, LeakyReLU 0.2, dropout after the second), 16 to 256
  channels, 2x max pooling between levels.
- Classification branch: 2x max pooling of the deepest features, global average pooling and a fully connected
  layer with two outputs (absent, present), trained with cross-entropy.
- Saliency bridge: the saliency map of the predicted class, |d max_c y_c / d x| (Simonyan et al.), computed with
  dropout off and detached, is concatenated with the image, resized to 1/8 of the slice and concatenated with the
  first decoder level's inputs, so the classifier's evidence guides the segmentation.
- Segmentation decoder: four levels of 2x bilinear upsampling, concatenation with the encoder skip and two 3x3
  convolutions, then a 1x1 convolution to the mask logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["MultiMix"]

ACT = ("leakyrelu", {"negative_slope": 0.2})


def _double_conv(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by instance norm and LeakyReLU; dropout after the second."""
    return nn.Sequential(
        Convolution(2, in_channels, out_channels, kernel_size=3, norm="instance", act=ACT),
        Convolution(2, out_channels, out_channels, kernel_size=3, norm="instance", act=ACT, dropout=dropout,
                    adn_ordering="NAD"),
    )  # fmt: skip


class MultiMix(nn.Module):
    """MultiMix for 2D slices, H and W multiples of 2^(levels - 1).

    (B, in_channels, H, W) -> ``{"mask": (B, out_channels, H, W) logits, "score": (B, 1) presence logit,
    "cam": (B, in_channels, H, W) saliency map}``. ``score`` is the difference of the two class logits, so its
    sigmoid is the softmax probability of "present" and binary cross-entropy on it equals the two-class
    cross-entropy; ``cam`` is the bridged saliency, under the name the CT engine shows class maps by.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if len(features) != 5:
            raise ValueError(f"MultiMix has 5 encoder levels, got features={tuple(features)}")
        self.encoder = nn.ModuleList(
            _double_conv(c_in, c_out, dropout) for c_in, c_out in zip((in_channels, *features), features, strict=False)
        )
        self.fc = nn.Linear(features[-1], 2)
        bridge = 2 * in_channels  # image and its saliency
        skips = features[-2::-1]
        self.decoder = nn.ModuleList(
            _double_conv(c_in + skip + (bridge if level == 0 else 0), skip, dropout)
            for level, (c_in, skip) in enumerate(zip(features[::-1], skips, strict=False))
        )
        self.segmentation = nn.Conv2d(features[0], out_channels, kernel_size=1)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Features of the five levels, fine to coarse, level k of (B, features[k], H / 2^k, W / 2^k)."""
        levels = [self.encoder[0](image)]
        for block in self.encoder[1:]:
            levels.append(block(F.max_pool2d(levels[-1], 2)))
        return levels

    def classify(self, deepest: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 2) from the deepest features."""
        return self.fc(F.max_pool2d(deepest, 2).mean(dim=(-2, -1)))

    def saliency(self, image: torch.Tensor) -> torch.Tensor:
        """|gradient of the predicted class's logit with respect to the image| (B, C, H, W), without dropout and
        without a graph: the bridge carries it as an input, not as a path for gradients."""
        training = self.training
        self.eval()
        try:
            with torch.enable_grad():
                x = image.detach().requires_grad_(True)
                logits = self.classify(self.encode(x)[-1])
                (grad,) = torch.autograd.grad(logits.max(dim=1).values.sum(), x)
        finally:
            self.train(training)
        return grad.abs()

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        saliency = self.saliency(image)
        levels = self.encode(image)
        logits = self.classify(levels[-1])
        x = levels[-1]
        bridge = F.interpolate(
            torch.cat([image, saliency], dim=1), size=levels[-2].shape[-2:], mode="bilinear", align_corners=True
        )
        for k, (block, skip) in enumerate(zip(self.decoder, levels[-2::-1], strict=True)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = block(torch.cat([x, skip, bridge] if k == 0 else [x, skip], dim=1))
        return {
            "mask": self.segmentation(x),
            "score": logits[:, 1:] - logits[:, :1],
            "cam": saliency,
        }
