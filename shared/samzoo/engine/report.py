"""Evaluator handlers that write the evaluation report: metrics of the predictions, pictures, learning curves."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from ..metrics import evaluate_items, find_predictions, results_table, write_report
from ..metrics.curves import plot_learning_curves
from ..metrics.figures import write_figures
from .training_log import read_training_log

logger = logging.getLogger(__name__)


class EvaluationReport:
    """When the evaluator completes, score its NIfTI predictions in ``pred_dir`` against the items' labels.

    ``items`` are the datalist items the evaluator predicted (absolute paths, as ``load_datalist`` returns them).
    Writes ``metrics.csv``, ``summary.json`` and ``metrics.png`` to ``out_dir`` (see docs/metrics.md), so a bundle's
    evaluate step and ``samzoo evaluate`` produce the same report, plus an overlay per item in ``overlays/`` and an
    animated GIF of each of the first ``animate`` predicted cines (every one when None) in ``animations/``
    (:func:`~samzoo.metrics.figures.write_figures`).
    """

    def __init__(
        self,
        items: Sequence[Mapping[str, Any]],
        pred_dir: str | Path,
        out_dir: str | Path,
        classes: Mapping[int, str],
        label_values: Sequence[int] = (0, 1, 2, 3),
        animate: int | None = 0,
    ) -> None:
        self.items = list(items)
        self.pred_dir = Path(pred_dir)
        self.out_dir = Path(out_dir)
        self.classes = {int(k): v for k, v in classes.items()}
        self.label_values = {int(v) for v in label_values}
        self.animate = animate

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        predictions = find_predictions(self.pred_dir, self.items)
        rows = evaluate_items(self.items, predictions, self.classes, self.label_values)
        summary = write_report(rows, self.out_dir, self.items)
        logger.info("metrics of %d items written to %s\n%s", len(self.items), self.out_dir, results_table(summary))
        write_figures(self.items, predictions, self.classes, self.out_dir, animate=self.animate)


class LearningCurves:
    """When the evaluator completes, plot the learning curves of the training that wrote ``log_file`` (its
    :class:`~samzoo.engine.training_log.TrainingLog`) to ``out_dir/learning_curves.png``.

    ``loss_tags`` are the per-iteration loss tags; every other scalar is drawn per epoch
    (:func:`~samzoo.metrics.curves.plot_learning_curves`). Without a log (a model trained elsewhere) the picture is
    skipped with a warning; evaluation goes on.
    """

    def __init__(self, log_file: str | Path, out_dir: str | Path, loss_tags: Sequence[str] = ("train_loss",)) -> None:
        self.log_file = Path(log_file)
        self.out_dir = Path(out_dir)
        self.loss_tags = tuple(loss_tags)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        curves = read_training_log(self.log_file)
        if not curves:
            logger.warning("no training log at %s: learning curves skipped", self.log_file)
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = plot_learning_curves(curves, self.loss_tags, self.out_dir / "learning_curves.png", str(self.log_file))
        logger.info("learning curves of %s written to %s", ", ".join(curves), path)
