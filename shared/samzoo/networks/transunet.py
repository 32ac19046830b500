"""TransUNet (Chen et al., "TransUNet: Transformers make strong encoders for medical image segmentation"): a hybrid
R50-ViT encoder and a cascaded upsampler (CUP) with U-Net skip connections.

Neither MONAI nor a maintained PyTorch package provides it, so it is assembled here from torchvision's ResNet-50
layers (stem and stages 1-3) and MONAI's patch embedding, transformer and U-Net up-sampling blocks:

- the CNN stem and stages 1-3 (3, 4 and 9 bottleneck blocks, as the ViT hybrid's ResNet-50, whose stage 4 is
  removed and stage 3 given the blocks it loses) bring a slice to 1/16 of its side with 1024 channels, and keep
  their 1/2, 1/4 and 1/8 outputs as skips (64, 256 and 512 channels);
- the 1/16 feature map is embedded with patch size 1 (one token per position, learnable position embeddings) and
  passes 12 pre-norm transformer layers (hidden size 768, 12 heads, MLP 3072) and a final layer norm;
- the CUP reshapes the tokens back to the 1/16 grid, a 3x3 convolution maps them to 512 channels, and four
  blocks (2x bilinear upsampling, concatenation with the skip of that scale, two 3x3 convolutions with batch norm
  and ReLU) go back to full size, 256, 128, 64 and 16 channels, the last without a skip; a 3x3 convolution gives
  the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import pairwise

import torch
from monai.networks.blocks import Convolution, PatchEmbeddingBlock, TransformerBlock
from monai.networks.nets.basic_unet import UpCat
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

__all__ = ["HybridResNetEncoder", "TransUNet"]

STRIDE = 16
"""Downsampling of the CNN encoder: image sides must be multiples of it."""


class HybridResNetEncoder(nn.Module):
    """ResNet-50 stem and stages 1-3 (torchvision bottleneck blocks, ``layers`` blocks per stage).

    (B, C_in, H, W) -> features (B, 1024, H/16, W/16) and skips [(B, 512, H/8, W/8), (B, 256, H/4, W/4),
    (B, 64, H/2, W/2)], coarse to fine. ``norm_groups`` > 0 uses group norm with that many groups (the ViT
    hybrid's BiT ResNet), 0 batch norm.
    """

    skip_channels = (512, 256, 64)
    out_channels = 1024

    def __init__(self, in_channels: int = 1, layers: Sequence[int] = (3, 4, 9), norm_groups: int = 32) -> None:
        super().__init__()
        if len(layers) != 3:
            raise ValueError(f"the hybrid encoder has 3 ResNet stages, got layers={tuple(layers)}")
        norm = partial(nn.GroupNorm, norm_groups) if norm_groups else nn.BatchNorm2d
        resnet = ResNet(Bottleneck, [*layers, 1], norm_layer=norm)  # stage 4 (one block) is dropped below
        stem = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's own convs
        self.root = nn.Sequential(stem, resnet.bn1, resnet.relu)
        self.pool = resnet.maxpool
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.root(x)
        skips = [x]
        x = self.pool(x)
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        features = skips.pop()
        return features, skips[::-1]


class TransUNet(nn.Module):
    """TransUNet for 2D slices: (B, in_channels, H, W) -> logits (B, out_channels, H, W), H and W multiples of 16.

    Defaults are the paper's R50-ViT-B/16 with the cascaded upsampler and three skips; ``image_size`` fixes the
    token grid of the position embeddings, (image_size / 16)^2 tokens.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        image_size: int = 256,
        resnet_layers: Sequence[int] = (3, 4, 9),
        norm_groups: int = 32,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        dropout_rate: float = 0.1,
        head_channels: int = 512,
        decoder_channels: Sequence[int] = (256, 128, 64, 16),
    ) -> None:
        super().__init__()
        if image_size % STRIDE:
            raise ValueError(f"TransUNet needs an image side that is a multiple of {STRIDE}, got {image_size}")
        if len(decoder_channels) != 4:
            raise ValueError(f"the cascaded upsampler has 4 blocks, got decoder_channels={tuple(decoder_channels)}")
        self.image_size = image_size
        self.encoder = HybridResNetEncoder(in_channels, resnet_layers, norm_groups)
        self.embedding = PatchEmbeddingBlock(
            in_channels=self.encoder.out_channels,
            img_size=image_size // STRIDE,
            patch_size=1,
            hidden_size=hidden_size,
            num_heads=num_heads,
            dropout_rate=dropout_rate,
            spatial_dims=2,
        )
        self.transformer = nn.Sequential(
            *(TransformerBlock(hidden_size, mlp_dim, num_heads, dropout_rate, qkv_bias=True) for _ in range(num_layers))
        )
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.head = Convolution(2, hidden_size, head_channels, kernel_size=3, norm="batch", act="relu", bias=False)
        skips = (*self.encoder.skip_channels, 0)
        self.decoder = nn.ModuleList(
            UpCat(
                2,
                c_in,
                skip,
                c_out,
                act="relu",
                norm="batch",
                bias=False,
                upsample="nontrainable",
                pre_conv=None,
                interp_mode="bilinear",
                halves=False,
            )
            for (c_in, c_out), skip in zip(pairwise((head_channels, *decoder_channels)), skips, strict=True)
        )
        self.segmentation = nn.Conv2d(decoder_channels[-1], out_channels, kernel_size=3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"TransUNet was built for {self.image_size}^2 slices, got {tuple(image.shape[-2:])}")
        features, skips = self.encoder(image)  # (B, 1024, H/16, W/16), skips coarse to fine
        tokens = self.norm(self.transformer(self.embedding(features)))  # (B, N, hidden), N = H/16 * W/16
        x = tokens.transpose(1, 2).unflatten(2, features.shape[-2:])  # (B, hidden, H/16, W/16)
        x = self.head(x)
        for block, skip in zip(self.decoder, [*skips, None], strict=True):
            x = block(x, skip)
        return self.segmentation(x)
