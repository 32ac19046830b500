"""Meta's SAM with a ViT image encoder: ``vit_b``, ``vit_l``, ``vit_h``, and the small random ``vit_tiny``.

As in ``segment_anything/build_sam.py``, the variants differ only in a few numbers (:class:`ViTConfig`) and share
one builder, :func:`build_sam_vit`, and SAM's prompt encoder and mask decoder at width 256. The builders make a
randomly initialised :class:`segment_anything.modeling.Sam` whose keys match the official checkpoints; the weights,
their files and the input convention are named in :mod:`samzoo.networks.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ViTConfig:
    """The numbers that distinguish SAM's ViT variants (``build_sam.py``); the prompt side is shared."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    image_size: int = 1024
    patch_size: int = 16
    prompt_dim: int = 256


def build_sam_vit(config: ViTConfig, grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """A randomly initialised SAM with a ViT image encoder.

    Args:
        config: the variant's numbers.
        grid_size: token grid side (``image_size / patch_size`` for SAM's own 1024 input, 64). Position embeddings
            and the relative-position tables of global blocks are sized for it, so checkpoints are resized on load.
        window_size: window attention size of the non-global blocks; 0 makes every block global.
    """
    grid = grid_size or config.image_size // config.patch_size
    image_size = grid * config.patch_size
    encoder = ImageEncoderViT(
        img_size=image_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=4.0,
        out_chans=config.prompt_dim,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=config.window_size if window_size is None else window_size,
        global_attn_indexes=config.global_attn_indexes,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=_prompt_encoder(config.prompt_dim, grid, image_size),
        mask_decoder=_mask_decoder(config.prompt_dim),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )


def _prompt_encoder(dim: int, grid: int, image_size: int) -> PromptEncoder:
    return PromptEncoder(
        embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(image_size, image_size), mask_in_chans=16
    )


def _mask_decoder(dim: int) -> MaskDecoder:
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=2048, num_heads=8),
        transformer_dim=dim,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


VIT_B = ViTConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11))
VIT_L = ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))
VIT_H = ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))
VIT_TINY = ViTConfig(embed_dim=96, depth=4, num_heads=3, global_attn_indexes=(1, 3), window_size=7, image_size=256)


def vit_b(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """SAM ViT-B: 12 blocks of width 768 (91M parameters in the image encoder)."""
    return build_sam_vit(VIT_B, grid_size, window_size)


def vit_l(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """SAM ViT-L: 24 blocks of width 1024."""
    return build_sam_vit(VIT_L, grid_size, window_size)


def vit_h(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """SAM ViT-H: 32 blocks of width 1280, the encoder CMR2D+T-SAM uses in its paper."""
    return build_sam_vit(VIT_H, grid_size, window_size)


def vit_tiny(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """A 4-block, width-96 SAM-style ViT with random weights: for demos and tests on a CPU, not a foundation model."""
    return build_sam_vit(VIT_TINY, grid_size, window_size)
