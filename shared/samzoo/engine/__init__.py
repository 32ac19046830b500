"""Engine hooks and handlers used by the bundles' MONAI workflows."""

from .checkpoints import ResumeFromLatestCheckpoint, latest_checkpoint
from .cine_inference import CineMaskAssembler, ViewPromptInferer, expand_cine_inputs
from .progress import TrainingProgress
from .report import EvaluationReport, LearningCurves
from .training_log import TrainingLog

__all__ = [
    "CineMaskAssembler",
    "EvaluationReport",
    "LearningCurves",
    "ResumeFromLatestCheckpoint",
    "TrainingLog",
    "TrainingProgress",
    "ViewPromptInferer",
    "expand_cine_inputs",
    "latest_checkpoint",
]
