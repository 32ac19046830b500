"""MLflow glue: config flattening, the executed-config path, and the trackers on a real MLflow store."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest
import torch
from ignite.engine import Engine, Events
from mlflow.entities import RunStatus
from mlflow.utils import validation
from monai.handlers import MLFlowHandler, StatsHandler
from monai.utils import path_to_sqlite_uri
from samzoo.engine.tracking import (
    MAX_NAME_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    EvaluationTracker,
    TrainingTracker,
    config_params,
    executed_config_path,
    find_mlflow_handler,
    numeric_leaves,
)

CONFIG = {
    "imports": ["$import torch"],
    "backbone": "vit_tiny",
    "learning_rate": 0.0001,
    "roi_size": [64, 64],
    "output_dir": "$@bundle_root + '/runs'",
    "network_def": {"_target_": "Net", "backbone": "@backbone", "size": "@roi_size", "width": "@missing"},
    "network": "$@network_def.to('cpu')",
    "optimizer": {"_target_": "torch.optim.Adam", "lr": "@learning_rate", "params": "@network"},
    "train": {"handlers": [{"_target_": "StatsHandler", "tag_name": "train_loss"}], "lr": "@optimizer::lr"},
    "weird key#1": "x" * (MAX_PARAM_VALUE_LENGTH + 10),
    "run": ["$@trainer.run()"],
    "_meta_": {"version": "0.1.0"},
}


def test_config_params_are_flat_readable_and_within_mlflow_limits():
    params = config_params(CONFIG)
    assert params["backbone"] == "vit_tiny" and params["learning_rate"] == "0.0001"
    assert params["roi_size"] == "[64, 64]"
    # pure references become the literal they name, across '::' too; references to objects stay references
    assert params["network_def.backbone"] == "vit_tiny" and params["network_def.size"] == "[64, 64]"
    assert params["optimizer.lr"] == "0.0001" and params["train.lr"] == "0.0001"
    assert params["optimizer.params"] == "@network" and params["network_def.width"] == "@missing"
    assert params["output_dir"] == "$@bundle_root + '/runs'"
    assert params["train.handlers.0._target_"] == "StatsHandler"
    assert not any(k.startswith(("imports", "run", "_meta_")) for k in params)
    long = params["weird key_1"]
    assert len(long) == MAX_PARAM_VALUE_LENGTH and long.endswith(f"[{MAX_PARAM_VALUE_LENGTH + 10} characters]")
    assert MAX_PARAM_VALUE_LENGTH == validation.MAX_PARAM_VAL_LENGTH  # the limits follow the installed MLflow
    assert MAX_NAME_LENGTH == validation.MAX_ENTITY_KEY_LENGTH


def test_executed_config_path(tmp_path, caplog):
    config = tmp_path / "config_20260101_120000.json"
    config.write_text("{}")
    assert executed_config_path(str(config)) == config
    # MONAI's text when output_dir was given as a plain path
    assert executed_config_path(f"{tmp_path} + '/config_20260101_120000.json'") == config
    assert executed_config_path(True) is None and executed_config_path(None) is None
    with caplog.at_level(logging.WARNING):
        assert executed_config_path(tmp_path / "config_gone.json") is None
    assert "config_gone.json not found" in caplog.text


def test_numeric_leaves_flatten_numbers_only():
    data = {"a": {"mean": 0.5, "count": 3, "ok": True, "name": "x"}, "b": [1, {"c": 2.5}]}
    assert dict(numeric_leaves(data, "summary")) == {
        "summary.a.mean": 0.5,
        "summary.a.count": 3.0,
        "summary.b.0": 1.0,
        "summary.b.1.c": 2.5,
    }


def _training_engine(epochs_lr: list[float]) -> Engine:
    """3 iterations per epoch, loss 1/iteration, an optimizer whose lr steps through ``epochs_lr``."""
    engine = Engine(lambda e, batch: 1.0 / e.state.iteration)
    engine.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=epochs_lr[0])
    engine.add_event_handler(
        Events.EPOCH_COMPLETED,
        lambda e: engine.optimizer.param_groups[0].update(lr=epochs_lr[min(e.state.epoch, len(epochs_lr) - 1)]),
    )
    return engine


def _artifacts(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for entry in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return found


def test_trackers_complete_the_training_and_evaluation_runs(tmp_path):
    uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    config = tmp_path / "config_20260101_120000.json"
    config.write_text(json.dumps(CONFIG))
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    settings = {"tracking_uri": uri, "experiment_name": "bundle", "run_name": "variant/vit_tiny"}

    # two stages as in sam_pp: the first has no MLFlowHandler of its own and logs with the "classifier_" prefix
    handler = MLFlowHandler(
        **settings, tag_name="train_loss", output_transform=float, artifacts=str(config), close_on_complete=True
    )
    handlers = [StatsHandler(), handler]
    first, second = _training_engine([0.5]), _training_engine([0.1, 0.05])
    TrainingTracker(handlers, str(config), prefix="classifier_").attach(first)
    first.run([0] * 3, max_epochs=1)
    handler.attach(second)
    TrainingTracker(handlers, str(config), model=model).attach(second)
    second.run([0] * 3, max_epochs=2)

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("bundle")
    (train,) = client.search_runs([experiment.experiment_id])
    assert train.info.run_name == "variant/vit_tiny" and train.info.status == "FINISHED"
    assert train.data.params["network_def.backbone"] == "vit_tiny"

    def history(key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in client.get_metric_history(train.info.run_id, key)]

    assert history("classifier_loss") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert history("classifier_learning_rate") == [(1, 0.5)]
    assert [s for s, _ in history("train_loss")] == [1, 2, 3, 4, 5, 6]
    assert history("learning_rate") == [(1, 0.1), (2, 0.05)]
    assert sorted(_artifacts(client, train.info.run_id)) == [f"config/{config.name}", "model/model.pt"]
    sha = train.data.tags["samzoo.model_sha256"]

    report = tmp_path / "eval"
    (report / "overlays").mkdir(parents=True)
    (report / "summary.json").write_text(json.dumps({"classes": {"liver": {"all": {"dice": {"mean": 0.75}}}}}))
    (report / "overlays" / "case.png").write_bytes(b"png")
    (report / "case_seg.nii.gz").write_bytes(b"nifti")
    evaluation_handler = MLFlowHandler(**{**settings, "run_name": "variant/vit_tiny/evaluate"}, iteration_log=False)
    evaluator = Engine(lambda e, batch: None)
    evaluation_handler.attach(evaluator)
    EvaluationTracker([evaluation_handler], report, str(config), model=model).attach(evaluator)
    evaluator.run([0])

    evaluation = next(
        r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name.endswith("/evaluate")
    )
    assert evaluation.info.status == RunStatus.to_string(RunStatus.FINISHED)
    assert evaluation.data.metrics["summary.classes.liver.all.dice.mean"] == 0.75
    assert evaluation.data.tags["mlflow.parentRunId"] == train.info.run_id
    assert evaluation.data.tags["samzoo.model_sha256"] == sha
    assert sorted(_artifacts(client, evaluation.info.run_id)) == [
        f"config/{config.name}",
        "evaluation/overlays/case.png",
        "evaluation/summary.json",
    ]


def test_an_earlier_stage_ends_the_run_when_it_is_the_last(tmp_path):
    uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    model = tmp_path / "model.pt"
    model.write_bytes(b"classifier weights")
    handler = MLFlowHandler(uri, experiment_name="bundle", run_name="0-labelled/vit_tiny", output_transform=float)
    classifier = _training_engine([0.5])
    TrainingTracker([handler], model=model, prefix="classifier_", close=True).attach(classifier)
    classifier.run([0] * 2, max_epochs=1)  # the stage after it (holding ``handler``) never runs
    client = mlflow.MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("bundle").experiment_id])
    assert found.info.status == "FINISHED" and _artifacts(client, found.info.run_id) == ["model/model.pt"]
    assert [m.step for m in client.get_metric_history(found.info.run_id, "classifier_loss")] == [1, 2]


def test_trackers_do_nothing_without_tracking(tmp_path):
    assert find_mlflow_handler([StatsHandler()]) is None
    engine = _training_engine([0.1])
    TrainingTracker([StatsHandler()], True, model=tmp_path / "model.pt").attach(engine)
    EvaluationTracker([], tmp_path, True).attach(engine)
    engine.run([0] * 2, max_epochs=1)
    assert not list(Path(tmp_path).iterdir())


@pytest.fixture(autouse=True)
def _no_tracking_environment(monkeypatch):
    """MLFLOW_TRACKING_URI would send every handler here to the user's server instead of the test store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
