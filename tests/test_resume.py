"""Exact resume: a training killed with SIGKILL at a random iteration and started again ends with the same weights
as an uninterrupted run, even when its newest checkpoint is damaged and a killed save left its temporary file.

Checked for cmr2dt_sam (MONAI data loading and random transforms) and nnunet (nnU-Net's own loader and
augmentation, in the main process)."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow
from samzoo.data.demo import write_demo

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
MAX_EPOCHS = 3

# Runs the training of the given overrides and kills its own process (SIGKILL, as `kill -9`) after an iteration.
KILLED_RUN = """
import json, os, signal, sys
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
torch.set_num_threads(1)  # as the test process: float sums over another thread count may round differently
configs, overrides, kill_at = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
wf = ConfigWorkflow(config_file=configs + "/train.json", meta_file=configs + "/metadata.json", logging_file=False,
                    workflow_type="train", **overrides)
wf.initialize()
trainer = wf.parser.get_parsed_content("train#trainer")
trainer.add_event_handler(Events.ITERATION_COMPLETED(once=kill_at), lambda _: os.kill(os.getpid(), signal.SIGKILL))
wf.run()
"""


def _settings(bundle: str, root: Path, dataset: Path, name: str) -> dict:
    """Overrides for a training of a few seconds: three epochs of two iterations on tiny inputs."""
    common = {
        "bundle_root": str(BUNDLES / bundle),
        "dataset_dir": str(dataset),
        "ckpt_dir": str(root / name / "models"),
        "output_dir": str(root / name / "runs"),
        "max_epochs": MAX_EPOCHS,
        "val_interval": 1,
        "batch_size": 2,
    }
    if bundle == "nnunet":  # two random slices per stack, nnU-Net's augmentation in the main process
        return {**common, "num_slices": 2, "epoch_length": 2, "val_iterations": 1, "augmentation_workers": 0}
    # Long-axis slices only: four training cines, two iterations per epoch.
    return {**common, "train_views": ["LAX"], "roi_size": [32, 32], "num_phases": 4, "num_workers": 0}


def _train(bundle: str, settings: dict) -> tuple[dict[str, torch.Tensor], ConfigWorkflow]:
    configs = BUNDLES / bundle / "configs"
    wf = ConfigWorkflow(
        config_file=str(configs / "train.json"),
        meta_file=str(configs / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **settings,
    )
    wf.initialize()
    wf.run()
    network = wf.parser.get_parsed_content("network")
    return {k: v.detach().clone() for k, v in network.state_dict().items()}, wf


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ["cmr2dt_sam", "nnunet"])
def test_killed_and_resumed_training_matches_the_uninterrupted_one(bundle, tmp_path, caplog):
    dataset = write_demo("cine", tmp_path / "demo", cases=6, seed=3).parent
    reference, wf = _train(bundle, _settings(bundle, tmp_path, dataset, "uninterrupted"))
    trainer = wf.parser.get_parsed_content("train#trainer")
    epoch_length = trainer.state.epoch_length
    assert epoch_length >= 2 and trainer.state.epoch == MAX_EPOCHS

    # Killed after a random iteration past the first epoch, so a periodic checkpoint exists and work is lost.
    kill_at = random.randint(epoch_length + 1, MAX_EPOCHS * epoch_length - 1)
    settings = _settings(bundle, tmp_path, dataset, "killed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BUNDLES.parent / "shared"), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(BUNDLES / bundle / "configs"), json.dumps(settings), str(kill_at)],
        env=env,
        cwd=BUNDLES.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == -9, done.stderr[-2000:]
    ckpt_dir = Path(settings["ckpt_dir"])
    saved = sorted(p.name for p in ckpt_dir.glob("checkpoint_epoch=*.pt"))
    last_epoch = (kill_at - 1) // epoch_length
    assert saved == [f"checkpoint_epoch={last_epoch}.pt"], f"killed after iteration {kill_at}"

    # What a kill during the next save could leave: a damaged newest checkpoint and the temporary file.
    damaged = ckpt_dir / f"checkpoint_epoch={last_epoch + 1}.pt"
    damaged.write_bytes((ckpt_dir / saved[0]).read_bytes()[:1000])
    (ckpt_dir / ".tmp_abcd.pt").write_bytes(b"")

    with caplog.at_level(logging.WARNING, logger="samzoo.engine.checkpoints"):
        resumed, wf = _train(bundle, settings)
    assert f"resuming from the older intact {saved[0]} instead" in caplog.text
    assert str(damaged) in caplog.text
    assert wf.parser.get_parsed_content("train#trainer").state.epoch == MAX_EPOCHS

    assert reference.keys() == resumed.keys()
    differing = [k for k in reference if not torch.equal(reference[k], resumed[k])]
    assert not differing, f"killed after iteration {kill_at}: {len(differing)} tensors differ, e.g. {differing[:3]}"
    # Only the final periodic checkpoint and the best model remain (beside nnU-Net's description of the model): no
    # temporary file, no superseded checkpoint.
    expected = {f"checkpoint_epoch={MAX_EPOCHS}.pt", "model.pt"}
    if bundle == "nnunet":
        expected |= {"plans.json", "dataset.json", "nnunet.json"}
    assert {p.name for p in ckpt_dir.iterdir() if p.is_file()} == expected
