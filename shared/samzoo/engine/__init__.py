"""Engine hooks and handlers used by the bundles' MONAI workflows."""

from .batch_norm import BatchNormRecalibration, recalibrate_batch_norm
from .checkpoints import (
    AtomicDiskSaver,
    CheckpointLoader,
    CheckpointSaver,
    ResumeFromLatestCheckpoint,
    ensure_writable,
    latest_checkpoint,
    load_checkpoint,
)
from .cine_inference import CineMaskAssembler, PhaseGroupInferer, ViewPromptInferer, expand_cine_inputs
from .progress import TrainingProgress
from .random_states import RandomStates
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
    "CheckpointLoader",
    "CheckpointSaver",
    "CineMaskAssembler",
    "ClinicalReport",
    "CollectedPredictions",
    "EvaluationReport",
    "LearningCurves",
    "PhaseGroupInferer",
    "PredictionFiles",
    "PredictionSource",
    "RandomStates",
    "ResumeFromLatestCheckpoint",
    "TrainingLog",
    "TrainingProgress",
    "ViewPromptInferer",
    "ensure_writable",
    "expand_cine_inputs",
    "latest_checkpoint",
    "load_checkpoint",
    "recalibrate_batch_norm",
]
