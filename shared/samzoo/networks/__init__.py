"""Networks: the SAM backbone registry and the methods built on it."""

from .builder import build_backbone
from .checkpoint import LoadReport, load_pretrained, read_checkpoint
from .cmr2dt_sam import CMR2DTSAM
from .registry import BackboneEntry, InputConvention, PretrainedWeights, backbone_entry, list_backbones
from .sam_vit import ViTConfig, build_sam_vit
from .text_prompts import VIEW_PROMPTS, compute_text_prompts, load_text_prompts, save_text_prompts
from .trainable import split_trainable

__all__ = [
    "CMR2DTSAM",
    "VIEW_PROMPTS",
    "BackboneEntry",
    "InputConvention",
    "LoadReport",
    "PretrainedWeights",
    "ViTConfig",
    "backbone_entry",
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
