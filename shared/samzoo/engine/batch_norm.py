"""Batch-norm statistics recomputed with the current weights before a network is evaluated ("precise BN").

In training, batch norm normalises with each batch's statistics; in evaluation, with running averages that start
at mean 0 and variance 1 and move 10 % of the way towards each batch's statistics. After thousands of steps those
averages describe the current weights. After a few dozen, as in a CPU demo, they are still dominated by their
starting values and by batches seen with older weights, and in a deep pre-activation network the error compounds
from layer to layer: the SAM-Mix classifier then gives every slice nearly the same presence probability in
evaluation although it separates them in training. Recomputing the statistics as plain averages over training
batches with the weights as they are (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021) removes the
mismatch for the cost of forward passes; dropout is off meanwhile, as it is in evaluation. Under several processes
each rank averages over its own batches and the ranks then take the mean of their statistics, so every rank
validates and saves the same network.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

import torch
from ignite.engine import Engine, Events
from torch import nn

from .distributed import all_reduce_mean

logger = logging.getLogger(__name__)

__all__ = ["BatchNormRecalibration", "recalibrate_batch_norm"]


def recalibrate_batch_norm(module: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of every batch-norm layer of ``module`` by their averages over ``batches``
    (inputs of ``module``, moved to its device), computed without gradients and with dropout off.

    Returns the number of batches used; ``module`` keeps its training or evaluation mode and momenta.
    """
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ValueError("no batches to recompute the batch-norm statistics from")
    if not layers:
        return 0
    device = next(module.parameters()).device
    training, momenta = module.training, [m.momentum for m in layers]
    module.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches
        layer.train()
    count = 0
    with torch.no_grad():
        for batch in itertools.chain([first], batches):
            module(batch.to(device))
            count += 1
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
        for stats in (layer.running_mean, layer.running_var):
            if stats is not None:
                stats.copy_(all_reduce_mean(stats))
    module.train(training)
    return count


class BatchNormRecalibration:
    """Trainer handler: at the end of every epoch, recompute the batch-norm statistics of ``module`` over at most
    ``max_batches`` batches of ``loader`` (``image_key`` of each). Attach it before the validation handler, so that
    validation and the checkpoints saved at the end of the epoch use the new statistics."""

    def __init__(
        self, module: nn.Module, loader: Iterable[dict], image_key: str = "image", max_batches: int | None = None
    ) -> None:
        self.module = module
        self.loader = loader
        self.image_key = image_key
        self.max_batches = max_batches

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        batches = (batch[self.image_key] for batch in itertools.islice(self.loader, self.max_batches))
        count = recalibrate_batch_norm(self.module, batches)
        logger.info("epoch %d: batch-norm statistics recomputed over %d batches", engine.state.epoch, count)
