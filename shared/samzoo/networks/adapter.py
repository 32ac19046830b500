"""AdaptFormer's parallel adapter (Chen et al., 2022): a bottleneck MLP beside a frozen MLP, output scaled."""

from __future__ import annotations

import torch
from torch import nn


class Adapter(nn.Module):
    """``scale * up(relu(down(x)))`` with a ``bottleneck``-wide hidden layer.

    The up-projection starts at zero, so adding the adapter leaves the pretrained block's output unchanged until
    training moves it.
    """

    def __init__(self, dim: int, bottleneck: int, scale: float = 0.5) -> None:
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.ReLU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., dim) -> (..., dim)"""
        return self.scale * self.up(self.act(self.down(x)))
