"""Engine hooks and handlers used by the bundles' MONAI workflows."""

from samzoo.engine.checkpoints import ResumeFromLatestCheckpoint, latest_checkpoint

__all__ = ["ResumeFromLatestCheckpoint", "latest_checkpoint"]
