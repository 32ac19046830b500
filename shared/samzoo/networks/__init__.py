"""Networks: the SAM backbone registry and the methods built on it."""

from .backbones import (
    LoadReport,
    PretrainedWeights,
    ViTConfig,
    build_backbone,
    build_sam_vit,
    list_backbones,
    load_pretrained,
    read_checkpoint,
    split_trainable,
)
from .cmr2dt_sam import CMR2DTSAM
from .text_prompts import VIEW_PROMPTS, compute_text_prompts, load_text_prompts, save_text_prompts

__all__ = [
    "CMR2DTSAM",
    "VIEW_PROMPTS",
    "LoadReport",
    "PretrainedWeights",
    "ViTConfig",
    "build_backbone",
    "build_sam_vit",
    "compute_text_prompts",
    "list_backbones",
    "load_pretrained",
    "load_text_prompts",
    "read_checkpoint",
    "save_text_prompts",
    "split_trainable",
]
