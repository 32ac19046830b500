"""Handler that turns the predictions an evaluator has written into the foundation metrics report."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from ..metrics import evaluate_items, find_predictions, results_table, write_report

logger = logging.getLogger(__name__)


class EvaluationReport:
    """When the evaluator completes, score its NIfTI predictions in ``pred_dir`` against the items' labels.

    ``items`` are the datalist items the evaluator predicted (absolute paths, as ``load_datalist`` returns them).
    Writes ``metrics.csv``, ``summary.json`` and ``metrics.png`` to ``out_dir`` (see docs/metrics.md), so a bundle's
    evaluate step and ``samzoo evaluate`` produce the same report.
    """

    def __init__(
        self,
        items: Sequence[Mapping[str, Any]],
        pred_dir: str | Path,
        out_dir: str | Path,
        classes: Mapping[int, str],
        label_values: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        self.items = list(items)
        self.pred_dir = Path(pred_dir)
        self.out_dir = Path(out_dir)
        self.classes = {int(k): v for k, v in classes.items()}
        self.label_values = {int(v) for v in label_values}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        predictions = find_predictions(self.pred_dir, self.items)
        rows = evaluate_items(self.items, predictions, self.classes, self.label_values)
        summary = write_report(rows, self.out_dir)
        logger.info("metrics of %d items written to %s\n%s", len(self.items), self.out_dir, results_table(summary))
