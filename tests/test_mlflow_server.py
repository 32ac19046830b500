"""``--tracking mlflow`` against a real MLflow tracking server: a tiny cmr2dt_sam training logs into it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from monai.bundle import run
from samzoo.data.demo import write_demo

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "cmr2dt_sam" / "configs"
STARTUP_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """An ``mlflow server`` on 127.0.0.1 with a SQLite store and artifacts in ``tmp_path``, started (not yet
    answering: see :func:`_wait_until_healthy`); stopped with its whole process group at the end."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers for a test server
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in the finaliser
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"),
        *("--artifacts-destination", str(tmp_path / "artifacts")),
    ]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", server, tmp_path / "server.log"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.read().strip() == b"OK":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {STARTUP_S} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_training_logs_into_a_tracking_server(mlflow_server, tmp_path, monkeypatch):
    url, server, log = mlflow_server
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    datalist = write_demo("cine", tmp_path / "demo", cases=6, seed=3)
    _wait_until_healthy(url, server, log)
    run(
        config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "variants" / "lax.json")],
        logging_file=False,
        tracking="mlflow",
        tracking_uri=url,
        dataset_dir=str(datalist.parent),
        output_dir=str(tmp_path / "runs"),
        ckpt_dir=str(tmp_path / "models"),
        roi_size=[32, 32],
        num_phases=4,
        batch_size=2,
        num_workers=0,
        val_interval=1,
        max_epochs=2,
    )
    assert not (tmp_path / "runs" / "mlruns.db").exists()  # everything went to the server

    client = mlflow.MlflowClient(url)
    experiment = client.get_experiment_by_name("cmr2dt_sam")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "lax/vit_tiny" and found.info.status == "FINISHED"
    params = found.data.params
    assert params["learning_rate"] == "0.0001" and params["network_def.backbone"] == "vit_tiny"
    assert params["train_views"] == '["LAX"]' and params["roi_size"] == "[32, 32]"

    def history(key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, key)]

    iterations = int(params["epoch_length"]) * 2
    assert [step for step, _ in history("train_loss")] == list(range(1, iterations + 1))
    assert history("learning_rate") == [(1, 0.0001), (2, 0.0001)]
    dice = history("val_mean_dice")
    assert [step for step, _ in dice] == [1, 2] and all(0.0 <= v <= 1.0 for _, v in dice)

    artifacts = {a.path for folder in ("config", "model") for a in client.list_artifacts(found.info.run_id, folder)}
    config = next(a for a in artifacts if a.startswith("config/config_"))
    assert artifacts == {config, "model/model.pt"}
    model = Path(
        mlflow.artifacts.download_artifacts(
            run_id=found.info.run_id,
            artifact_path="model/model.pt",
            dst_path=str(tmp_path / "download"),
            tracking_uri=url,
        )
    )
    assert model.read_bytes() == (tmp_path / "models" / "model.pt").read_bytes()
