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
]
