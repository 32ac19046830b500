"""Engine hooks and handlers used by the bundles' MONAI workflows."""

from .checkpoints import ResumeFromLatestCheckpoint, latest_checkpoint
from .cine_inference import CineMaskAssembler, ViewPromptInferer, expand_cine_inputs
from .report import EvaluationReport

__all__ = [
    "CineMaskAssembler",
    "EvaluationReport",
    "ResumeFromLatestCheckpoint",
    "ViewPromptInferer",
    "expand_cine_inputs",
    "latest_checkpoint",
]
