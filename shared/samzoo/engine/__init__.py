"""Engine hooks and handlers used by the bundles' MONAI workflows."""

from samzoo.engine.checkpoints import ResumeFromLatestCheckpoint, latest_checkpoint
from samzoo.engine.cine_inference import CineMaskAssembler, expand_cine_inputs
from samzoo.engine.report import EvaluationReport

__all__ = [
    "CineMaskAssembler",
    "EvaluationReport",
    "ResumeFromLatestCheckpoint",
    "expand_cine_inputs",
    "latest_checkpoint",
]
