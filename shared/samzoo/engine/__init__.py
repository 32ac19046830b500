"""Engine hooks and handlers used by the bundles' MONAI workflows."""

from .batch_norm import BatchNormRecalibration, recalibrate_batch_norm
from .checkpoints import AtomicDiskSaver, CheckpointSaver, ResumeFromLatestCheckpoint, latest_checkpoint
from .cine_inference import CineMaskAssembler, PhaseGroupInferer, ViewPromptInferer, expand_cine_inputs
from .progress import TrainingProgress
from .report import (
    ClinicalReport,
    CollectedPredictions,
    EvaluationReport,
    LearningCurves,
    PredictionFiles,
    PredictionSource,
)
from .training_log import TrainingLog

__all__ = [
    "AtomicDiskSaver",
    "BatchNormRecalibration",
    "CheckpointSaver",
    "CineMaskAssembler",
    "ClinicalReport",
    "CollectedPredictions",
    "EvaluationReport",
    "LearningCurves",
    "PhaseGroupInferer",
    "PredictionFiles",
    "PredictionSource",
    "ResumeFromLatestCheckpoint",
    "TrainingLog",
    "TrainingProgress",
    "ViewPromptInferer",
    "expand_cine_inputs",
    "latest_checkpoint",
    "recalibrate_batch_norm",
]
