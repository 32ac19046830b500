"""CMR2D+T-SAM (Chen, Kim et al.): myocardium segmentation of cine MRI clips with a spatio-temporally adapted SAM.

(B, 1, H, W, T) clip -> U-Net contracting path per frame -> frozen SAM ViT blocks refined with temporal attention
and adapters -> SAM neck -> SAM's two-way prompt transformer with its output tokens and an optional CLIP text token
("sax"/"lax") -> U-Net expanding path with cross-attention-gated skips -> 1x1 convolution -> (B, 1, H, W, T) logits.
See docs/networks.md for every design decision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from segment_anything.modeling import Sam
from torch import nn

from ..errors import DataError
from .attention import two_way_block
from .builder import build_backbone
from .checkpoint import LoadReport
from .registry import backbone_entry
from .spatiotemporal import spatiotemporal_encoder
from .text_prompts import load_text_prompts
from .unet import UNetUp

logger = logging.getLogger(__name__)


class CMR2DTSAM(nn.Module):
    """CMR2D+T-SAM network.

    Args:
        backbone: a registered backbone name (``vit_h`` as in the paper, ``vit_b``, ``vit_l``, ``lite_medsam``,
            ``vit_tiny``), or a built ``Sam`` whose weights the caller has loaded.
        checkpoint: SAM weights file (see :func:`samzoo.networks.builder.build_backbone`).
        pretrained: load ``checkpoint``; False keeps random weights (tests, benchmarks, the CPU demo).
        image_size: the training crop side; ViT position tables are resized once to its token grid
            (``image_size / 2^(len(unet_channels) - 1)``, 16 for 128 and the default channels). Other sizes work and
            resample the tables on the fly.
        text_prompts: embedding files in view-index order (``sax.npy``, ``lax.npy``); each sample's view index
            selects its prompt token. None: no text token (the SAX-only, LAX-only and "Multi w/o prompt" variants).
        unet_channels: channels of the U-Net contracting path levels for the ViT backbones (TinyViT brings its own).
        adapter_ratio: adapter bottleneck width as a fraction of the block width.
        adapter_scale: the adapter output scale s (0.5 in the paper).
        cross_attention_heads: heads of each skip cross-attention.
        checkpoint_blocks: recompute transformer blocks in the backward pass (activation checkpointing) to save
            memory during training.
    """

    def __init__(
        self,
        backbone: str | Sam = "vit_h",
        checkpoint: str | Path | None = None,
        pretrained: bool = False,
        image_size: int = 128,
        text_prompts: Sequence[str | Path] | None = None,
        unet_channels: Sequence[int] = (32, 64, 128, 256),
        adapter_ratio: float = 0.25,
        adapter_scale: float = 0.5,
        cross_attention_heads: int = 4,
        checkpoint_blocks: bool = False,
    ) -> None:
        super().__init__()
        report: LoadReport | None = None
        if isinstance(backbone, str):
            downsampling = 2 ** (len(unet_channels) - 1)
            grid = backbone_entry(backbone).inputs.grid_options(image_size, downsampling, window_size=0)
            backbone, report = build_backbone(backbone, checkpoint, pretrained, **grid)
        self.encoder = spatiotemporal_encoder(
            backbone.image_encoder, unet_channels, adapter_ratio, adapter_scale, checkpoint_blocks
        )
        if image_size % self.encoder.downsampling:  # found when the network is built, before any data is read
            raise DataError(
                None,
                f"roi_size {image_size}: this network's encoder downsamples by {self.encoder.downsampling}, so the "
                f"crop must be a multiple of {self.encoder.downsampling}",
            )
        prompt_dim = backbone.prompt_encoder.embed_dim
        self.pe_layer = backbone.prompt_encoder.pe_layer
        self.no_mask_embed = backbone.prompt_encoder.no_mask_embed
        self.iou_token = backbone.mask_decoder.iou_token
        self.mask_tokens = backbone.mask_decoder.mask_tokens
        self.prompt_layers = backbone.mask_decoder.transformer.layers
        self.text_proj: nn.Linear | None = None
        self.register_buffer("text_embeddings", None)
        if text_prompts is not None:
            self.text_embeddings = load_text_prompts(text_prompts)
            self.text_proj = nn.Linear(self.text_embeddings.shape[1], prompt_dim)
        self.up = UNetUp(prompt_dim, self.encoder.skip_channels[::-1], cross_attention_heads)
        self.head = nn.Conv2d(self.up.out_channels, 1, kernel_size=1)
        self.load_report = None if report is None else report.for_module(backbone, self)
        if self.load_report is not None:
            logger.info("CMR2D+T-SAM network, %s", self.load_report.summary())

    def forward(self, image: torch.Tensor, view: torch.Tensor | None = None) -> torch.Tensor:
        """image: (B, 1, H, W, T), H and W multiples of the encoder's downsampling; view: (B,) or (B, 1) integer view
        index (0 = SAX, 1 = LAX), required when the network has text prompts -> logits (B, 1, H, W, T)."""
        b, channels, height, width, frames = image.shape
        step = self.encoder.downsampling
        if height % step or width % step:
            raise ValueError(
                f"image of {height} x {width} pixels: this network's encoder downsamples by {step}, so both sides "
                f"must be multiples of {step} (set roi_size accordingly)"
            )
        x = image.permute(0, 4, 1, 2, 3).reshape(b * frames, channels, height, width)
        embedding, skips = self.encoder(x, frames)
        embedding = embedding + self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        embedding = self._attend_prompts(embedding, self._prompt_tokens(b, frames, view))
        logits = self.head(self.up(embedding, skips[::-1]))
        return logits.reshape(b, frames, 1, height, width).permute(0, 2, 3, 4, 1)

    def _prompt_tokens(self, batch: int, frames: int, view: torch.Tensor | None) -> torch.Tensor:
        """SAM's output tokens, plus the projected text token of each sample's view: (B * T, 5 or 6, D)."""
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).expand(batch * frames, -1, -1)
        if self.text_proj is None:
            return tokens
        if view is None:
            raise ValueError("this network has text prompts: pass view, a (B,) tensor with 0 = SAX, 1 = LAX")
        text = self.text_proj(self.text_embeddings[view.reshape(-1)]).repeat_interleave(frames, dim=0)
        return torch.cat([tokens, text[:, None]], dim=1)

    def _attend_prompts(self, embedding: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """SAM's two-way transformer between the prompt tokens and the image embedding (N, D, h, w); returns the
        updated embedding, which feeds the U-Net expanding path in place of SAM's upscaling."""
        n, dim, height, width = embedding.shape
        keys = embedding.flatten(2).transpose(1, 2)
        key_pe = self.pe_layer((height, width)).flatten(1).transpose(0, 1)[None]
        queries = tokens
        for layer in self.prompt_layers:
            queries, keys = two_way_block(layer, queries, keys, tokens, key_pe)
        return keys.transpose(1, 2).reshape(n, dim, height, width)
