"""Low-rank adaptation (LoRA; Hu et al., 2021) of the attention projections of a SAM image encoder.

A frozen linear layer W gains a trainable update: y = W x + (alpha / r) B A x with A (r, d_in) and B (d_out, r).
B starts at zero, so a wrapped model computes exactly what the original did until training moves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LoRALinear", "add_lora", "lora_parameters"]


class LoRALinear(nn.Module):
    """``base`` (frozen) plus a rank-``rank`` update scaled by ``alpha / rank``; (..., d_in) -> (..., d_out)."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (x @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype)
        return self.base(x) + self.scale * update


def add_lora(
    module: nn.Module, rank: int = 8, alpha: float | None = None, targets: Sequence[str] = ("qkv", "proj")
) -> list[str]:
    """Freeze every parameter of ``module`` and wrap its attention projections in :class:`LoRALinear`, in place.

    A projection is a ``nn.Linear`` child named in ``targets`` of a module that has a ``qkv`` layer (the attention
    blocks of SAM's ViT and of LiteMedSAM's TinyViT). Returns the names of the wrapped layers; only their
    ``lora_a`` / ``lora_b`` parameters are trainable afterwards.
    """
    module.requires_grad_(False)
    wrapped = []
    for name, parent in list(module.named_modules()):
        if not isinstance(getattr(parent, "qkv", None), nn.Linear):
            continue
        for target in targets:
            child = getattr(parent, target, None)
            if isinstance(child, nn.Linear):
                setattr(parent, target, LoRALinear(child, rank, alpha))
                wrapped.append(f"{name}.{target}" if name else target)
    if not wrapped:
        raise ValueError(f"no attention projection named {list(targets)} found to adapt")
    return wrapped


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The LoRA factors of every :class:`LoRALinear` in ``module``."""
    return [p for m in module.modules() if isinstance(m, LoRALinear) for p in (m.lora_a, m.lora_b)]
