"""MONAI dictionary transforms for the samzoo bundles."""

from .cine import (
    ChannelsToFramesd,
    CropHeartd,
    FramesToChannelsd,
    RandCineAugmentd,
    RandCropHeartd,
    RandSamplePhasesd,
    SamplePhasesd,
    cine_transforms,
    heart_crop_box,
    label_centre,
    motion_centre,
    phase_group_count,
    sample_phase_indices,
)

__all__ = [
    "ChannelsToFramesd",
    "CropHeartd",
    "FramesToChannelsd",
    "RandCineAugmentd",
    "RandCropHeartd",
    "RandSamplePhasesd",
    "SamplePhasesd",
    "cine_transforms",
    "heart_crop_box",
    "label_centre",
    "motion_centre",
    "phase_group_count",
    "sample_phase_indices",
]
