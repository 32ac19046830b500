"""Checkpoints: atomic saves, the best-model record across a resume, and the run record a resume checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from samzoo.engine import CheckpointSaver, ResumeFromLatestCheckpoint
from samzoo.errors import DataError

RECORD = {"datalist": "/data/datalist.json", "backbone": "vit_tiny", "seed": 0}


def _failing_save(obj: object, f: str | Path, **kwargs: object) -> None:
    """torch.save that dies half-way through writing."""
    Path(f).write_bytes(b"half a checkpoint")
    raise OSError("disk full")


def _trainer(net: torch.nn.Linear, scores: dict[int, float] | None = None) -> Engine:
    """An engine whose epoch sets the net's weights to the epoch number and, with ``scores``, the epoch's "dice"."""
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _epoch(e: Engine) -> None:
        with torch.no_grad():
            net.weight.fill_(e.state.epoch)
        if scores is not None:
            e.state.metrics["dice"] = scores[e.state.epoch]

    return engine


def _run(
    ckpt_dir: Path, max_epochs: int, record: dict = RECORD, resume: bool = True, scores: dict | None = None
) -> tuple[Engine, list[int]]:
    """One training session in ``ckpt_dir`` as the bundles wire it; returns the engine and the epochs it ran."""
    net = torch.nn.Linear(1, 1, bias=False)
    engine = _trainer(net, scores)
    save_dict: dict = {"network": net, "trainer": engine}
    if scores is not None:
        best = CheckpointSaver(
            str(ckpt_dir),
            {"network": net},
            save_key_metric=True,
            key_metric_name="dice",
            key_metric_filename="model.pt",
        )
        best.attach(engine)
        save_dict["best_model"] = best
    ResumeFromLatestCheckpoint(ckpt_dir, save_dict, record, enabled=resume).attach(engine)
    CheckpointSaver(str(ckpt_dir), save_dict, run_record=record, save_interval=1, n_saved=1).attach(engine)
    started: list[int] = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: started.append(e.state.epoch))
    engine.run([0], max_epochs=max_epochs)
    return engine, started


def _weight(path: Path) -> float:
    state = torch.load(path, weights_only=True)
    return float(state.get("network", state)["weight"])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _run(tmp_path, 1, scores={1: 0.5})
    before = _files(tmp_path)
    assert set(before) == {"checkpoint_epoch=1.pt", "model.pt"}
    monkeypatch.setattr(torch, "save", _failing_save)
    with pytest.raises(OSError, match="disk full"):
        _run(tmp_path, 2, scores={2: 0.9})  # the better score replaces model.pt first: that save fails
    assert _files(tmp_path) == before  # no half-written file, nothing removed
    assert _weight(tmp_path / "model.pt") == 1.0 and _weight(tmp_path / "checkpoint_epoch=1.pt") == 1.0


def test_superseded_checkpoints_are_removed_after_the_new_one_is_saved(tmp_path):
    _run(tmp_path, 3, scores={1: 0.5, 2: 0.7, 3: 0.6})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=3.pt", "model.pt"]
    assert _weight(tmp_path / "model.pt") == 2.0  # the best epoch
    assert (tmp_path / "model.pt").stat().st_mode & 0o044  # readable by others, as the plain save wrote it


def test_a_worse_score_after_a_resume_leaves_the_best_model(tmp_path):
    _run(tmp_path, 1, scores={1: 0.8})
    best = (tmp_path / "model.pt").read_bytes()
    _, started = _run(tmp_path, 2, scores={2: 0.5})
    assert started == [2] and (tmp_path / "model.pt").read_bytes() == best
    _run(tmp_path, 3, scores={3: 0.9})
    assert _weight(tmp_path / "model.pt") == 3.0


def test_the_same_run_resumes_and_continues(tmp_path):
    _run(tmp_path, 2)
    engine, started = _run(tmp_path, 4)
    assert started == [3, 4] and engine.state.epoch == 4 and engine.state.max_epochs == 4
    assert torch.load(tmp_path / "checkpoint_epoch=4.pt", weights_only=True)["run_record"] == RECORD


def test_another_run_is_refused_naming_the_file_and_settings(tmp_path):
    _run(tmp_path, 2)
    before = _files(tmp_path)
    with pytest.raises(DataError) as error:
        _run(tmp_path, 4, record={**RECORD, "seed": 1, "backbone": "vit_b"})
    message = str(error.value)
    assert error.value.path == tmp_path / "checkpoint_epoch=2.pt"
    assert "backbone: 'vit_tiny' -> 'vit_b'; seed: 0 -> 1" in message and "datalist" not in message
    assert "--resume false" in message and "--ckpt_dir DIR --output_dir DIR" in message
    assert _files(tmp_path) == before


def test_a_checkpoint_without_a_record_is_refused(tmp_path):
    torch.save({"network": {}, "trainer": {}}, tmp_path / "checkpoint_epoch=5.pt")
    with pytest.raises(DataError, match="no run record"):
        _run(tmp_path, 6)


def test_resume_false_replaces_the_old_run_and_a_later_resume_continues_the_new_one(tmp_path):
    _run(tmp_path, 3)
    other = {**RECORD, "seed": 1}
    _, started = _run(tmp_path, 1, record=other, resume=False)
    assert started == [1] and [p.name for p in tmp_path.iterdir()] == ["checkpoint_epoch=1.pt"]
    _, started = _run(tmp_path, 2, record=other)
    assert started == [2]
