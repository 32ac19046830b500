"""The training log every bundle writes for its learning curves: one CSV file of scalars.

:class:`TrainingLog` appends ``session,tag,step,value`` rows: on a trainer the loss of every iteration, on a
validator every metric of each validation at the trainer's epoch. ``session`` names the process that wrote the
row, so :func:`read_training_log` can tell the runs in one folder apart: a run resumed from a checkpoint continues
the step count and extends the curves; a run started from scratch counts from 1 again and replaces the points from
its first step on, as TensorBoard does for a restarted run. The log needs nothing beyond the standard library, so
it works wherever a bundle trains.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from ..errors import DataError
from ..metrics.curves import Curve

__all__ = ["FIELDS", "TrainingLog", "read_training_log"]

FIELDS = ("session", "tag", "step", "value")
SESSION = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
"""This process's session name in the log."""


class TrainingLog:
    """Append an engine's scalars to the CSV file ``path``.

    With ``output_transform`` (a trainer): ``tag_name`` = the transformed output, step = the iteration, every
    iteration; the values stay on the device until the epoch ends and are then read in one transfer, so logging
    never makes a training step wait for the GPU. Without (a validator): every entry of ``engine.state.metrics``
    under its own name, step = the epoch, once per run.
    """

    def __init__(
        self, path: str | Path, output_transform: Callable[[Any], Any] | None = None, tag_name: str = "train_loss"
    ) -> None:
        self.path = Path(path)
        self.output_transform = output_transform
        self.tag_name = tag_name
        self._pending: list[tuple[int, Any]] = []

    def attach(self, engine: Engine) -> None:
        if self.output_transform is None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.log_metrics)
        else:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect_output)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.flush_outputs)
            engine.add_event_handler(Events.TERMINATE, self.flush_outputs)

    def collect_output(self, engine: Engine) -> None:
        value = self.output_transform(engine.state.output)
        self._pending.append((engine.state.iteration, value.detach() if isinstance(value, torch.Tensor) else value))

    def flush_outputs(self, engine: Engine) -> None:
        if not self._pending:
            return
        steps, values = zip(*self._pending, strict=True)
        self._pending = []
        tensors = [torch.as_tensor(v).float().reshape(()) for v in values]
        read = torch.stack([t.to(tensors[0].device) for t in tensors]).cpu().tolist()
        self.write([(self.tag_name, step, value) for step, value in zip(steps, read, strict=True)])

    def log_metrics(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        self.write([(name, epoch, float(value)) for name, value in engine.state.metrics.items()])

    def write(self, rows: list[tuple[str, int, float]]) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(FIELDS)
            writer.writerows((SESSION, tag, step, repr(value)) for tag, step, value in rows)


def read_training_log(path: str | Path) -> dict[str, Curve]:
    """Curves by tag from a :class:`TrainingLog` file (empty when there is none), restarted runs resolved as in the
    module docstring."""
    path = Path(path)
    if not path.is_file():
        return {}
    sessions: dict[str, dict[str, Curve]] = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                point = (int(row["step"]), float(row["value"]))
                sessions.setdefault(row["session"], {}).setdefault(row["tag"], []).append(point)
            except (KeyError, TypeError, ValueError) as error:
                raise DataError(path, f"line {line} is not a training log row {FIELDS}: {error}") from error
    curves: dict[str, Curve] = {}
    for tags in sessions.values():
        for tag, points in tags.items():
            first = points[0][0]
            curves[tag] = [p for p in curves.get(tag, []) if p[0] < first] + points
    return curves
