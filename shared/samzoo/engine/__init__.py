"""Engine hooks and handlers used by the bundles' MONAI workflows."""

from .checkpoints import ResumeFromLatestCheckpoint, latest_checkpoint
from .cine_inference import CineMaskAssembler, expand_cine_inputs
from .progress import TrainingProgress
from .report import EvaluationReport, LearningCurves

__all__ = [
    "CineMaskAssembler",
    "EvaluationReport",
    "LearningCurves",
    "ResumeFromLatestCheckpoint",
    "TrainingProgress",
    "expand_cine_inputs",
    "latest_checkpoint",
]
