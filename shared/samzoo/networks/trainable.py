"""Which parameters of a network train: the list the tests assert and the benchmarks count."""

from __future__ import annotations

from torch import nn


def split_trainable(module: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable and the frozen parameters of ``module``, in registration order."""
    trainable, frozen = [], []
    for name, param in module.named_parameters():
        (trainable if param.requires_grad else frozen).append(name)
    return trainable, frozen
