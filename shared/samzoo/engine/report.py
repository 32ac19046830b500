"""Evaluator handlers that write the evaluation report: metrics of the predictions, pictures, learning curves and
clinical indices.

Every bundle writes its report the same way: :class:`EvaluationReport` takes the predictions from a
:class:`PredictionSource`, the bundle's hook, and hands them to :func:`~samzoo.metrics.report_predictions`
(metrics.csv, summary.json, metrics.png, the results table in the log) and
:func:`~samzoo.metrics.figures.write_figures` (overlays, animations). Sources here cover the two common cases:
NIfTI files the evaluator saved (:class:`PredictionFiles`) and label maps it returned (:class:`CollectedPredictions`);
a bundle whose predictions need more (SAM prompting's per-slice logits) adds a source of its own.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from ..clinical import clinical_readout
from ..metrics import find_predictions, report_predictions
from ..metrics.curves import plot_learning_curves
from ..metrics.evaluation import LabelSource
from ..metrics.figures import write_figures
from .training_log import read_training_log

logger = logging.getLogger(__name__)


class PredictionSource(ABC):
    """Where an :class:`EvaluationReport` gets the predictions it scores: a bundle's hook.

    The report calls :meth:`reset` when the evaluator starts, :meth:`collect` after every iteration and, when the
    evaluator completes, :meth:`predictions` for the evaluated items and one label map per item (the label's shape,
    as a NIfTI file or an array), and :meth:`keep` for each metric row (to score only part of what was predicted).
    """

    def reset(self) -> None:
        """Forget the predictions of an earlier run (nothing to forget for a source that reads files)."""
        return None

    def collect(self, engine: Engine) -> None:
        """Take the predictions of the iteration that just completed (``engine.state.batch`` and ``output``); a
        source that reads files takes nothing."""
        return None

    @abstractmethod
    def predictions(self) -> tuple[Sequence[Mapping[str, Any]], Iterable[LabelSource]]:
        """The evaluated datalist items and their predicted label maps, in the same order."""

    def keep(self, row: Mapping[str, Any]) -> bool:
        """Whether a metric row counts in the report (every row by default)."""
        return True

    @property
    def selection(self) -> dict[str, Any]:
        """The settings of :meth:`keep`, recorded with the split in ``summary.json`` (none by default)."""
        return {}


class PredictionFiles(PredictionSource):
    """The NIfTI predictions the evaluator saved to ``pred_dir`` for ``items`` (absolute paths, as ``load_datalist``
    returns them), found by :func:`~samzoo.metrics.find_predictions`."""

    def __init__(self, items: Sequence[Mapping[str, Any]], pred_dir: str | Path) -> None:
        self.items = list(items)
        self.pred_dir = Path(pred_dir)

    def predictions(self) -> tuple[list[Mapping[str, Any]], list[Path]]:
        return self.items, find_predictions(self.pred_dir, self.items)


class CollectedPredictions(PredictionSource):
    """The label maps the evaluator returned as ``output[key]`` (1, *label shape), one item per batch entry, in the
    order of ``items``."""

    def __init__(self, items: Sequence[Mapping[str, Any]], key: str = "pred") -> None:
        self.items = list(items)
        self.key = key
        self.collected: list[np.ndarray] = []

    def reset(self) -> None:
        self.collected = []

    def collect(self, engine: Engine) -> None:
        for output in engine.state.output:
            self.collected.append(np.asarray(output[self.key].detach().cpu())[0].astype(np.uint8))

    def predictions(self) -> tuple[list[Mapping[str, Any]], list[np.ndarray]]:
        if len(self.collected) != len(self.items):
            raise RuntimeError(f"evaluated {len(self.collected)} of {len(self.items)} items")
        return self.items, self.collected


class EvaluationReport:
    """When the evaluator completes, score the predictions of ``source`` against the items' labels and write the
    report to ``out_dir``: ``metrics.csv``, ``summary.json`` and ``metrics.png`` (see docs/metrics.md), as
    ``samzoo evaluate`` does, plus an overlay per item in ``overlays/`` and an animated GIF of each of the first
    ``animate`` predicted cines (every one when None) in ``animations/``.

    Args:
        source: the bundle's :class:`PredictionSource`.
        out_dir: report folder.
        classes: label value -> name of the classes to score (e.g. ``{2: "myocardium"}``).
        label_values: every value labels and predictions may hold (None: not checked).
        animate: how many cines to animate.
    """

    def __init__(
        self,
        source: PredictionSource,
        out_dir: str | Path,
        classes: Mapping[int, str],
        label_values: Sequence[int] | None = None,
        animate: int | None = 0,
    ) -> None:
        self.source = source
        self.out_dir = Path(out_dir)
        self.classes = {int(k): v for k, v in classes.items()}
        self.label_values = None if label_values is None else {int(v) for v in label_values}
        self.animate = animate

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.source.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.source.collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        items, predictions = self.source.predictions()
        report_predictions(
            items, predictions, self.classes, self.out_dir, self.label_values, self.source.keep, self.source.selection
        )
        write_figures(items, predictions, self.classes, self.out_dir, animate=self.animate)


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


class ClinicalReport:
    """When the evaluator completes, read the clinical indices (EDV, ESV, SV, EF, myocardial mass, volume-time
    curves) from its NIfTI predictions in ``pred_dir`` and the items' labels, and write them to ``out_dir``
    (:func:`~samzoo.clinical.clinical_readout`, docs/clinical.md).

    ``classes`` are the label values the method segments (``{2: "myocardium"}``: the cavity is derived from the
    myocardial ring). Attach it after :class:`EvaluationReport`, which it complements with the same predictions.
    """

    def __init__(
        self,
        items: Sequence[Mapping[str, Any]],
        pred_dir: str | Path,
        out_dir: str | Path,
        classes: Mapping[int, str] | Sequence[int],
        label_values: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        self.items = list(items)
        self.pred_dir = Path(pred_dir)
        self.out_dir = Path(out_dir)
        self.classes = [int(k) for k in classes]
        self.label_values = [int(v) for v in label_values]

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        clinical_readout(self.items, self.pred_dir, self.out_dir, self.classes, self.label_values)
