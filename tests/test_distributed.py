"""Training on several processes: the shared mechanism alone, then every DDP-capable bundle under torchrun with two
gloo processes on tiny settings (rank-0-only outputs, validation scored on every rank's shard, resuming with
another number of processes) and two loopback "nodes"."""

from __future__ import annotations

import csv
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from ignite.handlers import Checkpoint
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.handlers import CheckpointSaver as MonaiCheckpointSaver
from monai.handlers import LrScheduleHandler, StatsHandler, ValidationHandler
from samzoo.engine import CheckpointSaver, ResumeFromLatestCheckpoint, TrainingLog, TrainingProgress, distributed
from samzoo.engine.distributed import AverageLossOverRanks, ShardedBatchSampler, rank_handlers
from tiny_bundles import BUNDLES, CASES, REPO, environment, tiny_settings, torchrun, torchrun_command


def test_sharded_batch_sampler_deals_whole_batches_alike_to_every_rank():
    batches = [[i, i + 100] for i in range(7)]
    shards = [list(ShardedBatchSampler(batches, num_replicas=2, rank=r)) for r in range(2)]
    assert shards == [[batches[0], batches[2], batches[4]], [batches[1], batches[3], batches[5]]]
    assert [len(ShardedBatchSampler(batches, num_replicas=2, rank=r)) for r in range(2)] == [3, 3]
    assert list(ShardedBatchSampler(batches, num_replicas=1, rank=0)) == batches
    with pytest.raises(ValueError, match="rank 2"):
        ShardedBatchSampler(batches, num_replicas=2, rank=2)


def test_other_ranks_keep_the_training_handlers_and_drop_the_writers(monkeypatch, tmp_path):
    net = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    training = [
        LrScheduleHandler(torch.optim.lr_scheduler.StepLR(optimizer, 1)),
        ValidationHandler(interval=1),
        ResumeFromLatestCheckpoint(tmp_path, {"network": net}, {"seed": 0}),
    ]
    writers = [
        TrainingProgress(),
        StatsHandler(),
        TrainingLog(tmp_path / "log.csv"),
        CheckpointSaver(str(tmp_path), {"network": net}, save_interval=1),
        MonaiCheckpointSaver(str(tmp_path), {"network": net}, save_final=True),
    ]
    handlers = [writers[0], *training[:2], *writers[1:], training[2]]
    assert rank_handlers(handlers, average_loss=True) == handlers  # one process: everything, no averaging
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "global_rank", lambda: 0)
    first, *rest = rank_handlers(handlers, average_loss=True)
    assert isinstance(first, AverageLossOverRanks) and rest == handlers
    monkeypatch.setattr(distributed, "global_rank", lambda: 1)
    assert rank_handlers(handlers) == training


def test_multi_gpu_config_outside_torchrun_says_how_to_launch(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        distributed.init_process_group()


def _settings(bundle: str, tiny_demos: dict[str, Path], root: Path) -> tuple[list[str], Path, dict]:
    """(train config files, the multi-GPU overlay, overrides rooted at ``root``) of ``bundle``."""
    files, overlay_bundle, overrides = tiny_settings(bundle, tiny_demos, root)
    return files, BUNDLES / overlay_bundle / "configs" / "multi_gpu_train.json", overrides


def _train_in_process(files: list[str], overrides: dict, max_epochs: int) -> list[int]:
    """Train in this process (no process group) up to ``max_epochs``; return the epochs it ran."""
    meta = Path(files[0]).parent / "metadata.json"
    workflow = ConfigWorkflow(
        config_file=files, meta_file=str(meta), logging_file=False, workflow_type="train", **overrides
    )
    workflow.initialize()
    started: list[int] = []
    trainer = workflow.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: started.append(engine.state.epoch))
    workflow.run()
    return started


def _validate_in_process(files: list[str], overrides: dict) -> float:
    """The key validation metric of ``models/model.pt`` on the whole validation split, in this process."""
    parser = ConfigParser()
    parser.read_config(files)
    parser.update({**overrides, "validate#handlers": []})
    saved = parser.get_parsed_content("validate#best_model#save_dict")
    Checkpoint.load_objects(saved, torch.load(Path(overrides["ckpt_dir"]) / "model.pt", weights_only=True))
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    return float(evaluator.state.metrics[evaluator.state.key_metric_name])


def _log(root: Path) -> dict[str, list[tuple[int, float]]]:
    """The training log as tag -> [(step, value)]."""
    rows: dict[str, list[tuple[int, float]]] = {}
    with open(root / "runs" / "training_log.csv") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("bundle", sorted(CASES))
def test_two_processes_train_validate_on_all_shards_and_resume_on_one(bundle, tiny_demos, tmp_path):
    files, overlay, overrides = _settings(bundle, tiny_demos, tmp_path)
    output = torchrun([*files, overlay], {**overrides, "max_epochs": 1}, tmp_path)

    # Rank 0 alone writes: one checkpoint of each kind, one log row per iteration of the global batch.
    models = sorted(p.name for p in (tmp_path / "models").glob("*.pt"))
    assert models == ["checkpoint_epoch=1.pt", "model.pt"]
    parser = ConfigParser()
    parser.read_config(files)
    parser.update(overrides)
    batches = len(parser.get_parsed_content("train#dataloader"))  # of one process
    sharded = "batch_sampler" in parser["train"]["dataloader"]  # whole batches dealt out, the odd one dropped
    log = _log(tmp_path)
    assert batches >= 2 and len(log["train_loss"]) == (batches // 2 if sharded else -(-batches // 2))
    assert output.count("Saved checkpoint at epoch: 1") == 1

    # Validation was scored on both ranks' shards together: the whole validation split, as one process scores it.
    (epoch, score), *_ = log[next(iter(parser["validate"]["key_metric"]))]
    assert epoch == 1
    assert _validate_in_process(files, overrides) == pytest.approx(score, abs=1e-5)

    # The checkpoint the two ranks wrote resumes in one process at the next epoch, a whole pass over the data.
    assert _train_in_process(files, {**overrides, "max_epochs": 2}, 2) == [2]
    assert len(_log(tmp_path)["train_loss"]) == len(log["train_loss"]) + batches
    assert (tmp_path / "models" / "checkpoint_epoch=2.pt").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_one_process_checkpoint_resumes_on_two_loopback_nodes(tiny_demos, tmp_path):
    """``torchrun --nnodes 2 --rdzv_backend c10d`` on this machine, one process per "node", continuing a run that a
    single process started."""
    files, overlay, overrides = _settings("cmr2dt_sam", tiny_demos, tmp_path)
    assert _train_in_process(files, {**overrides, "max_epochs": 1}, 1) == [1]
    first_epoch = _log(tmp_path)["train_loss"]

    port = _free_port()
    launch = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}"]
    launch.append("--rdzv_id=loopback")
    nodes = []
    for node in range(2):
        workdir = tmp_path / f"node{node}"
        workdir.mkdir()
        command = torchrun_command([*files, overlay], {**overrides, "max_epochs": 2}, workdir, launch)
        nodes.append(
            subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    outputs = [node.communicate(timeout=240)[0].decode() for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-4000:] for o in outputs)
    output = "".join(outputs)

    assert output.count("resumed from") == 2 and "at epoch 1" in output  # both ranks loaded the checkpoint
    assert output.count("Saved checkpoint at epoch: 2") == 1  # by global rank 0 only
    assert (tmp_path / "models" / "checkpoint_epoch=2.pt").is_file()
    second_epoch = _log(tmp_path)["train_loss"][len(first_epoch) :]
    steps = [step for step, _ in second_epoch]
    # The single process ran 4 iterations of batch 2; each node runs 2 on its half of the 8 items, an epoch being
    # one pass over the data whatever the checkpoint's epoch length was. The count restarts at 1 epoch x 2 iterations.
    assert len(first_epoch) == 4 and steps == [3, 4]
