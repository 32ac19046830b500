"""MLflow runs of the bundles: what ``python -m monai.bundle run ... --tracking mlflow`` logs beyond MONAI's handler.

``--tracking mlflow`` appends MONAI's :class:`~monai.handlers.MLFlowHandler` to ``train#handlers`` and
``validate#handlers``. With the bundles' ``experiment_name`` and ``run_name`` it logs the loss and learning rate
of every iteration, the validation metrics of every epoch, and the executed config file. The trackers here find
that handler in the same lists and complete its run:

- :class:`TrainingTracker`: the config as flat parameters (``learning_rate``, ``network_def.backbone``), the
  learning rate of each epoch and, when training completes, the best model (``model/model.pt``, its SHA-256 as tag
  ``samzoo.model_sha256``);
- :class:`EvaluationTracker`: the same parameters, the numbers of the report's JSON files (``summary.json``,
  ``classification.json``) as metrics, the report files (tables, plots, overlays, animations; not the predicted
  NIfTI masks) as artifacts under ``evaluation/``, and a link to the training run of the evaluated checkpoint
  (``mlflow.parentRunId``, so the evaluation shows under it).

Without ``--tracking`` there is no MLFlowHandler and the trackers do nothing; mlflow is then not even imported, so
a bundle trains where it is not installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "EvaluationTracker",
    "TrainingTracker",
    "config_params",
    "executed_config_path",
    "find_mlflow_handler",
    "numeric_leaves",
]

logger = logging.getLogger(__name__)

MAX_PARAM_VALUE_LENGTH = 6000
MAX_NAME_LENGTH = 250
"""MLflow's limits on a parameter value and on a parameter or metric name (``mlflow.utils.validation``)."""

SKIPPED_SECTIONS = ("imports", "initialize", "run", "finalize", "_meta_")
"""Top-level config entries that are code to run or bundle metadata, not settings of the run."""

_ID_SEPARATOR = re.compile(r"::|#")
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /]")
_MONAI_LITERAL_PATH = re.compile(r"^(?P<dir>.*) \+ '/(?P<name>config_[\w.]+\.json)'$")
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def find_mlflow_handler(handlers: Sequence[Any]) -> MLFlowHandler | None:
    """The MLFlowHandler that ``--tracking mlflow`` appended to ``handlers`` (the last one), or None."""
    found = [h for h in handlers if isinstance(h, MLFlowHandler)]
    return found[-1] if found else None


def executed_config_path(value: str | Path | None) -> Path | None:
    """The file MONAI exported the executed config to (``save_execute_config``), or None when it was not exported.

    When ``output_dir`` is given as a plain path (``--output_dir /some/dir``), MONAI 1.x appends the file name to it
    as expression text, ``"/some/dir + '/config_<time>.json'"``, while it writes the file to the right place; that
    text is mapped back to the file.
    """
    if not value or isinstance(value, bool):
        return None
    path = Path(value)
    if path.is_file():
        return path
    match = _MONAI_LITERAL_PATH.match(str(value))
    if match and (Path(match["dir"]) / match["name"]).is_file():
        return Path(match["dir"]) / match["name"]
    logger.warning("executed config %s not found: the run gets no config parameters", value)
    return None


def _key(name: str) -> str:
    """An MLflow parameter or metric name: characters MLflow rejects become '_', cut to MLflow's length limit."""
    return _INVALID_KEY_CHARS.sub("_", name)[:MAX_NAME_LENGTH]


def _lookup(config: Mapping[str, Any], ref: str) -> Any:
    """The raw config content at a MONAI id (``a#b#0``, or ``a::b::0`` as MONAI exports it), or KeyError."""
    node: Any = config
    for part in _ID_SEPARATOR.split(ref):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _resolve(config: Mapping[str, Any], value: Any, depth: int = 8) -> Any:
    """Follow a pure reference (``"@learning_rate"``) to the literal it names; a reference to an object, an
    expression or a section, and anything else, is kept as written."""
    reference = value
    while depth and isinstance(value, str) and value.startswith("@"):
        try:
            value = _lookup(config, value[1:])
        except (KeyError, IndexError, ValueError, TypeError):
            return reference
        depth -= 1
    if isinstance(value, str):
        return reference if value.startswith(("$", "@")) else value
    return value if value is reference or not isinstance(value, dict | list) or _is_scalar_list(value) else reference


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, dict | list) for v in value)


def _text(value: Any) -> str:
    """A parameter value: strings (expressions too) as written, everything else as JSON; cut to MLflow's limit."""
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        marker = f"... [{len(text)} characters]"
        text = text[: MAX_PARAM_VALUE_LENGTH - len(marker)] + marker
    return text


def config_params(config: Mapping[str, Any], skip: Sequence[str] = SKIPPED_SECTIONS) -> dict[str, str]:
    """Flatten a bundle config (as MONAI exports it, ids nested) into MLflow parameters.

    Names join the ids with '.' (``network_def.backbone``, ``train.handlers.0.interval``); a list of plain values
    is one parameter (``roi_size`` = ``[64, 64]``). A value that only references another id (``"@backbone"``) is
    replaced by the literal it names, so parameters read ``vit_tiny`` rather than ``@backbone``; expressions stay as
    written (``$@bundle_root + '/runs'``), since evaluating them would build objects. Values longer than MLflow
    accepts are cut, with their full length noted.
    """
    params: dict[str, str] = {}

    def visit(name: str, value: Any) -> None:
        value = _resolve(config, value)
        if isinstance(value, dict):
            for key, child in value.items():
                visit(f"{name}.{key}" if name else str(key), child)
        elif isinstance(value, list) and not _is_scalar_list(value):
            for index, child in enumerate(value):
                visit(f"{name}.{index}", child)
        else:
            params[_key(name)] = _text(value)

    for key, value in config.items():
        if key not in skip:
            visit(str(key), value)
    return params


def numeric_leaves(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(name, value)`` of every number in nested dicts and lists, names joined with '.' (booleans and text
    skipped)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from numeric_leaves(value, f"{prefix}.{index}")
    elif isinstance(data, int | float) and not isinstance(data, bool):
        yield _key(prefix), float(data)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in blocks: identifies a checkpoint across training and evaluation runs."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _RunTracker(ABC):
    """Finds the MLFlowHandler of ``handlers`` and, once its run has started, logs the config parameters.

    Attach it after the engine was built (in the bundle's ``run`` list), so its handlers run after the
    MLFlowHandler's on the same event.
    """

    stage = ""

    def __init__(self, handlers: Sequence[Any], config_file: str | Path | bool | None = None) -> None:
        self.handler = find_mlflow_handler(handlers)
        self.config_file = config_file
        self.run_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        return self.handler.client

    def attach(self, engine: Engine) -> None:
        if self.handler is None:
            return
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        if self.handler.cur_run is None:
            return
        self.run_id = self.handler.cur_run.info.run_id
        self.client.set_tag(self.run_id, "samzoo.stage", self.stage)
        config = executed_config_path(self.config_file)
        if config is not None:
            self.log_params(config_params(json.loads(config.read_text())))
            self.log_config(config)

    @abstractmethod
    def completed(self, engine: Engine) -> None:
        """What the tracker logs when the engine completes."""

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log the parameters the run does not hold yet (a run may only set each parameter once)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in logged]
        self.client.log_batch(self.run_id, params=new)
        logger.info("MLflow run %s: %d config parameters logged", self.run_id, len(new))

    def log_config(self, config: Path) -> None:
        """Log the executed config as ``config/<name>`` now, so a run that fails still has it, and take it out of the
        MLFlowHandler's end-of-run artifacts, so it is logged once."""
        self.client.log_artifact(self.run_id, str(config), artifact_path="config")
        self.handler.artifacts = tuple(a for a in self.handler.artifacts if a != self.config_file)


class TrainingTracker(_RunTracker):
    """Completes the training run of ``--tracking mlflow`` (see the module docstring).

    Args:
        handlers: the trainer's handlers (``@train#handlers``), where ``--tracking mlflow`` put its MLFlowHandler.
        config_file: the executed config MONAI exported (``@save_execute_config``).
        model: the best-model checkpoint, logged under ``model/`` when training completes.
        prefix: prefix of this engine's metric names. A training stage that runs before the one holding the
            MLFlowHandler (the classifier stage of sam_pp) gets its own MLFlowHandler for the same run, logging
            ``<prefix>loss`` per iteration.
        close: end the run when this engine completes; for such an earlier stage when it is the last one to run
            (sam_pp with no labelled slice skips the SAM stage).
    """

    stage = "train"

    def __init__(
        self,
        handlers: Sequence[Any],
        config_file: str | Path | bool | None = None,
        model: str | Path | None = None,
        prefix: str = "",
        close: bool = False,
    ) -> None:
        super().__init__(handlers, config_file)
        self.model = None if model is None else Path(model)
        self.prefix = prefix
        self.close = close

    def attach(self, engine: Engine) -> None:
        if self.handler is None:
            return
        if not engine.has_event_handler(self.handler.start, Events.STARTED):
            self.handler = self._stage_handler()
            self.handler.attach(engine)
        super().attach(engine)
        engine.add_event_handler(Events.EPOCH_STARTED, self.log_learning_rate)

    def _stage_handler(self) -> MLFlowHandler:
        """An MLFlowHandler logging into the same experiment and run (found by name) with this stage's loss name."""
        main = self.handler
        return MLFlowHandler(
            tracking_uri=main.client.tracking_uri,
            experiment_name=main.experiment_name,
            run_name=main.run_name,
            tag_name=f"{self.prefix}loss",
            output_transform=main.output_transform,
            epoch_log=False,
            optimizer_param_names=(),
            artifact_location=main.artifact_location,
        )

    def log_learning_rate(self, engine: Engine) -> None:
        """``<prefix>learning_rate`` of the first parameter group, at the epoch it is used in."""
        optimizer = getattr(engine, "optimizer", None)
        if self.run_id is None or optimizer is None:
            return
        lr = float(optimizer.param_groups[0]["lr"])
        self.client.log_metric(self.run_id, f"{self.prefix}learning_rate", lr, step=engine.state.epoch)

    def completed(self, engine: Engine) -> None:
        if self.run_id is None:
            return
        if self.model is not None and self.model.is_file():
            self.client.log_artifact(self.run_id, str(self.model), artifact_path="model")
            self.client.set_tag(self.run_id, "samzoo.model_sha256", file_sha256(self.model))
        elif self.model is not None:
            logger.warning("MLflow run %s: no best model at %s to log", self.run_id, self.model)
        if self.close:
            self.handler.close()


class EvaluationTracker(_RunTracker):
    """Completes and closes the evaluation run of ``--tracking mlflow`` (see the module docstring).

    Args:
        handlers: the evaluator's handlers (``@validate#handlers``).
        report_dir: the report folder; read when the evaluator completes, after the report handlers wrote it.
        config_file: the executed config MONAI exported (``@save_execute_config``).
        model: the evaluated checkpoint; the latest training run that logged the same file becomes the parent.
    """

    stage = "evaluate"

    def __init__(
        self,
        handlers: Sequence[Any],
        report_dir: str | Path,
        config_file: str | Path | bool | None = None,
        model: str | Path | None = None,
    ) -> None:
        super().__init__(handlers, config_file)
        self.report_dir = Path(report_dir)
        self.model = None if model is None else Path(model)

    def started(self, engine: Engine) -> None:
        super().started(engine)
        if self.run_id is not None and self.model is not None and self.model.is_file():
            self._link_training_run(file_sha256(self.model))

    def _link_training_run(self, sha256: str) -> None:
        self.client.set_tag(self.run_id, "samzoo.model_sha256", sha256)
        experiment = self.handler.cur_run.info.experiment_id
        found = self.client.search_runs(
            [experiment],
            filter_string=f"tags.`samzoo.model_sha256` = '{sha256}' and tags.`samzoo.stage` = 'train'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found:
            self.client.set_tag(self.run_id, "mlflow.parentRunId", found[0].info.run_id)
            logger.info("MLflow run %s evaluates the model of training run %s", self.run_id, found[0].info.run_id)

    def completed(self, engine: Engine) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(name, value, now, 0)
            for path in sorted(self.report_dir.glob("*.json"))
            for name, value in numeric_leaves(json.loads(path.read_text()), path.stem)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)
        for path in sorted(p for p in self.report_dir.rglob("*") if p.is_file()):
            if not path.name.endswith(_NIFTI_SUFFIXES) and not path.name.startswith("."):
                folder = path.parent.relative_to(self.report_dir)
                self.client.log_artifact(self.run_id, str(path), artifact_path=str(Path("evaluation") / folder))
        logger.info(
            "MLflow run %s: %d report metrics and the files of %s logged", self.run_id, len(metrics), self.report_dir
        )
        self.handler.close()
