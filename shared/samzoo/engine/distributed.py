"""Training on several processes (GPUs, nodes) with ``torch.distributed``: the one mechanism behind every bundle's
``configs/multi_gpu_train.json``.

Each bundle's overlay, placed after its ``train.json`` and run under ``torchrun`` as the MONAI model zoo does,
joins the process group torchrun describes (:func:`init_process_group`: NCCL on CUDA, gloo on CPU), wraps only the
trainer's network in ``DistributedDataParallel`` (:func:`data_parallel`; the optimizer, validation and checkpoints
keep the plain module, so a checkpoint has the same keys whatever the number of processes), gives each rank its
shard of the data (MONAI's ``DistributedSampler``, whose epoch MONAI's workflow sets each epoch, or
:class:`ShardedBatchSampler` over a bundle's own batch sampler) and keeps the writers on rank 0
(:func:`rank_handlers`, :func:`attach`). Validation runs on every rank's shard; MONAI's cumulative metrics and
ignite's metrics gather their values over the ranks before they compute, so every rank sees the same score.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver as MonaiCheckpointSaver
from monai.handlers import MLFlowHandler, StatsHandler, TensorBoardHandler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from .progress import TrainingProgress
from .report import EvaluationReport, LearningCurves
from .tracking import EvaluationTracker, TrainingTracker
from .training_log import TrainingLog

logger = logging.getLogger(__name__)

LAUNCH = (
    "run it under torchrun, e.g. torchrun --nproc_per_node=2 -m monai.bundle run --config_file "
    "\"['bundles/<name>/configs/train.json','bundles/<name>/configs/multi_gpu_train.json']\""
)


def is_distributed() -> bool:
    """Whether this process is one of a process group."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes training together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def global_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Whether this process writes the run's outputs (global rank 0)."""
    return global_rank() == 0


def local_device() -> torch.device:
    """The device of this process: the GPU of its local rank on a CUDA machine (torchrun's ``LOCAL_RANK``), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_process_group() -> None:
    """Join the process group that torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``...): NCCL with one GPU per process on a CUDA machine, gloo on CPU."""
    if is_distributed():
        return
    missing = [name for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR") if name not in os.environ]
    if missing:
        raise RuntimeError(f"multi_gpu_train.json needs torchrun's environment ({', '.join(missing)} unset): {LAUNCH}")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_device())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    logger.info("process %d of %d joined the process group (%s)", global_rank(), world_size(), dist.get_backend())


def destroy_process_group() -> None:
    """Leave the process group, if any (the overlays' ``finalize``)."""
    if is_distributed():
        dist.destroy_process_group()


def data_parallel(
    module: torch.nn.Module, device: torch.device, find_unused_parameters: bool = False
) -> DistributedDataParallel:
    """``module`` (already on ``device``) in ``DistributedDataParallel``. Frozen parameters (``requires_grad=False``,
    e.g. SAM's frozen ViT blocks) are not synchronised and need no flag; ``find_unused_parameters`` is for networks
    whose trainable parameters may miss a forward pass, and costs a graph traversal every step."""
    return DistributedDataParallel(
        module,
        device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over the ranks (a new tensor; ``tensor`` itself when not distributed)."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


class ShardedBatchSampler(Sampler[list[int]]):
    """Every ``world_size``-th batch of ``batch_sampler``, starting at this rank's: for the bundles that compose
    their batches themselves (SAM-Mix's labelled + unlabelled batches), so a rank's batch is one whole batch of that
    sampler. Every rank draws the same order (the wrapped sampler is seeded alike on every rank) and keeps the same
    number of batches: the last ``len % world_size`` batches of an epoch are dropped, as DDP needs every rank to step
    alike."""

    def __init__(
        self, batch_sampler: Iterable[list[int]], num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        self.batch_sampler = batch_sampler
        self.num_replicas = world_size() if num_replicas is None else num_replicas
        self.rank = global_rank() if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside 0..{self.num_replicas - 1}")

    def __len__(self) -> int:
        return len(self.batch_sampler) // self.num_replicas  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[list[int]]:
        keep = len(self) * self.num_replicas
        for number, batch in enumerate(self.batch_sampler):
            if number >= keep:
                break
            if number % self.num_replicas == self.rank:
                yield batch


class AverageLossOverRanks:
    """Trainer handler: replace the iteration's ``loss`` output by its mean over the ranks, so that rank 0's log,
    progress bar and MLflow curve show the loss of the global batch. Attach it before those handlers. The mean stays
    on the device (no host synchronisation)."""

    def __init__(self, key: str = "loss") -> None:
        self.key = key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        losses = [item for item in items if isinstance(item, dict) and isinstance(item.get(self.key), torch.Tensor)]
        if not losses:
            return
        mean = all_reduce_mean(losses[0][self.key])
        for item in losses:
            item[self.key] = mean


WRITERS: tuple[type, ...] = (
    MonaiCheckpointSaver,
    StatsHandler,
    TensorBoardHandler,
    MLFlowHandler,
    TrainingProgress,
    TrainingLog,
    TrainingTracker,
    EvaluationTracker,
    EvaluationReport,
    LearningCurves,
)
"""Handler types that write the run's outputs (checkpoints, logs, progress, MLflow, reports and figures);
:func:`rank_handlers` keeps them on rank 0 only."""


def rank_handlers(handlers: Sequence[Any] | None, average_loss: bool = False) -> list[Any]:
    """The handlers this process runs: all of them on rank 0; on the other ranks those that take part in training
    (learning-rate schedules, validation, resuming...), without the writers (checkpoints, logs, progress bars,
    MLflow, reports). ``average_loss`` puts :class:`AverageLossOverRanks` first (for a trainer's handlers)."""
    kept = [h for h in handlers or () if is_main() or not isinstance(h, WRITERS)]
    return [AverageLossOverRanks(), *kept] if average_loss and is_distributed() else kept


def attach(handlers: Sequence[Any], engine: Engine) -> None:
    """Attach :func:`rank_handlers` of ``handlers`` to ``engine`` (the overlays' ``run`` list)."""
    for handler in rank_handlers(handlers):
        handler.attach(engine)


__all__ = [
    "WRITERS",
    "AverageLossOverRanks",
    "ShardedBatchSampler",
    "all_reduce_mean",
    "attach",
    "data_parallel",
    "destroy_process_group",
    "global_rank",
    "init_process_group",
    "is_distributed",
    "is_main",
    "local_device",
    "rank_handlers",
    "world_size",
]
