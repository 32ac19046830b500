"""SAM-Mix (Ward and Imran, "Annotation-efficient task guidance for medical Segment Anything"): a ResNet-38 liver
presence classifier whose class activation map prompts a LoRA-adapted SAM with boxes.

(B, 1, H, W) CT slice in [0, 1] -> ResNet-38 -> presence logit (B, 1) and CAM (B, 1, H, W) -> boxes (one per
activated region) for the slices that are gated positive -> SAM image encoder (LoRA rank 8 on the attention
projections, base weights frozen), prompt encoder (boxes), mask decoder with three masks and their scores per box
-> the highest-scoring mask of each box, united over the slice's boxes -> mask logits (B, 1, H, W).
See docs/README.md of the sam_mix bundle for the design decisions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

from .builder import build_backbone
from .cam import cam_box_prompts, class_activation_map
from .checkpoint import LoadReport
from .lora import add_lora
from .registry import backbone_entry
from .resnet38 import ResNet38

logger = logging.getLogger(__name__)

__all__ = ["EMPTY_LOGIT", "SamMix"]

EMPTY_LOGIT = -20.0
"""Mask logit of slices without a prompt: sigmoid gives about 2e-9, an empty mask."""


class SamMix(nn.Module):
    """Classifier-prompted SAM, the network of SAM-Mix and of the SAM-PP baseline.

    Args:
        backbone: registered SAM backbone (``vit_b`` in the paper, ``lite_medsam`` offline and medical, ``vit_tiny``
            for CPU demos).
        checkpoint: SAM weights file (see :func:`samzoo.networks.builder.build_backbone`).
        pretrained: load ``checkpoint``.
        image_size: slice side; ViT position tables are resized to its token grid.
        classifier_width: ResNet-38 channel multiplier (1 is the reference network).
        lora_rank: rank r of the LoRA factors.
        lora_alpha: LoRA scale numerator (scale alpha / r); None means alpha = r.
        train_decoder: fine-tune SAM's mask decoder along with the LoRA factors (the prompt encoder stays frozen).
        omega: CAM threshold factor, tau = omega * max(g).
        max_boxes: prompts per slice at most, the largest activated regions (None: one per region, as in the
            paper; an untrained classifier's noisy map can have dozens).
        presence_threshold: presence probability from which a slice counts as positive at inference.

    ``forward(image, gate=None)`` returns ``{"mask": (B, 1, H, W) logits, "score": (B, 1) presence logits,
    "cam": (B, 1, H, W)}``. ``gate`` (B,) bool chooses the slices that get prompts; None uses the classifier's own
    decision (score >= logit of ``presence_threshold``). Slices outside the gate skip SAM and get ``EMPTY_LOGIT``.
    Which slices SAM segments decides the shapes that follow, so the network reads the gate on the host: a gate
    given as a CPU tensor (training, where it comes with the batch) costs nothing, the classifier's own decision on
    an accelerator one synchronisation per call. The box prompts are found on the slices' device
    (:func:`samzoo.networks.cam.cam_box_prompts`), ``max_boxes`` per slice padded with a validity mask.
    """

    def __init__(
        self,
        backbone: str = "vit_b",
        checkpoint: str | Path | None = None,
        pretrained: bool = False,
        image_size: int = 256,
        classifier_width: float = 1.0,
        lora_rank: int = 8,
        lora_alpha: float | None = None,
        train_decoder: bool = True,
        omega: float = 0.5,
        max_boxes: int | None = 3,
        presence_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        inputs = backbone_entry(backbone).inputs
        sam, self.load_report = build_backbone(backbone, checkpoint, pretrained, **inputs.grid_options(image_size))
        self.sam: Sam = sam
        self.pixel_scale = inputs.pixel_scale
        self.lora_layers = add_lora(self.sam.image_encoder, lora_rank, lora_alpha)
        self.sam.prompt_encoder.requires_grad_(False)
        self.sam.mask_decoder.requires_grad_(train_decoder)
        self.classifier = ResNet38(in_channels=1, num_classes=1, width=classifier_width)
        self.image_size = image_size
        self.omega = omega
        self.max_boxes = max_boxes
        self.presence_logit = float(torch.logit(torch.tensor(presence_threshold)))
        self.classifier_frozen = False

    @property
    def report(self) -> LoadReport:
        return self.load_report

    def freeze_classifier(self) -> SamMix:
        """Fix the classifier (weights and batch-norm statistics), as SAM-PP does after its first stage."""
        self.classifier_frozen = True
        self.classifier.requires_grad_(False)
        self.classifier.eval()
        return self

    def train(self, mode: bool = True) -> SamMix:
        super().train(mode)
        if self.classifier_frozen:
            self.classifier.eval()
        return self

    def forward(self, image: torch.Tensor, gate: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        features = self.classifier.features(image)
        score = self.classifier.classify(features)
        cam = class_activation_map(features, self.classifier.fc.weight, 0, image.shape[-2:])
        if gate is None:
            gate = score[:, 0] >= self.presence_logit
        mask = torch.full_like(image, EMPTY_LOGIT, dtype=cam.dtype)
        selected = gate.nonzero()[:, 0]  # waits for the device unless the gate is a host tensor, as in training
        if len(selected):
            selected = selected.to(image.device, non_blocking=True)
            boxes, valid = self.prompts(cam[selected, 0])
            mask = mask.index_put((selected,), self.segment(image[selected], boxes, valid).to(mask.dtype))
        return {"mask": mask, "score": score, "cam": cam}

    def prompts(self, cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CAMs (S, H, W) of positive slices -> boxes (S, K, 4) and valid (S, K); a slice whose CAM has no positive
        activation gets the whole slice as its one box."""
        boxes, valid = cam_box_prompts(cam, self.omega, self.max_boxes)
        height, width = cam.shape[-2:]
        whole = torch.zeros_like(boxes[:, 0])  # built on the device: no host tensor to copy over
        whole[:, 2], whole[:, 3] = width - 1.0, height - 1.0
        none = ~valid.any(dim=1)
        boxes[:, 0] = torch.where(none[:, None], whole, boxes[:, 0])
        valid[:, 0] |= none
        return boxes, valid

    def segment(self, image: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """SAM on slices (S, 1, H, W) with boxes (S, K, 4), of which ``valid`` (S, K) are used -> mask logits
        (S, 1, H, W). Every slice needs at least one valid box; None means all are.

        For each box the mask decoder predicts three masks with confidence scores; the highest-scoring mask is
        kept, and the masks of a slice's valid boxes are united (pixel-wise maximum of the logits). Padding boxes
        go through the decoder too, so that shapes do not depend on the data, and are then left out.
        """
        if valid is None:
            valid = torch.ones(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
        rgb = image.expand(-1, 3, -1, -1) * self.pixel_scale
        embeddings = self.sam.image_encoder(self.sam.preprocess(rgb))
        dense_pe = self.sam.prompt_encoder.get_dense_pe()
        masks = []
        for embedding, slice_boxes, slice_valid in zip(embeddings, boxes, valid, strict=True):
            sparse, dense = self.sam.prompt_encoder(points=None, boxes=slice_boxes, masks=None)
            low_res, scores = self.sam.mask_decoder(
                image_embeddings=embedding[None],
                image_pe=dense_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
            best = low_res[torch.arange(len(slice_boxes), device=low_res.device), scores.argmax(dim=1)]
            masks.append(best.masked_fill(~slice_valid[:, None, None], float("-inf")).amax(dim=0, keepdim=True))
        low_res = torch.stack(masks)
        return F.interpolate(low_res.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
