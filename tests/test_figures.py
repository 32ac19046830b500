"""Evaluation pictures: overlays, cine animations, and learning curves from the training log."""

from __future__ import annotations

import logging
from unittest import mock

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from PIL import Image
from samzoo.data.nifti import save_nifti
from samzoo.engine import LearningCurves, TrainingLog
from samzoo.engine.training_log import read_training_log
from samzoo.errors import DataError
from samzoo.metrics.curves import plot_learning_curves
from samzoo.metrics.figures import overlay_planes, write_figures


def _ring(shape: tuple[int, int], radius: float, shift: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - shape[0] / 2 - shift, xx - shape[1] / 2)
    return ((r > radius - 3) & (r < radius)).astype(np.uint8)


def _item(tmp_path, name: str, image: np.ndarray, label: np.ndarray, **fields) -> dict:
    affine = np.eye(4)
    paths = {}
    for key, array in (("image", image), ("label", label)):
        paths[key] = str(save_nifti(array, affine, tmp_path / key / f"{name}.nii.gz"))
    return {"case_id": name, **paths, **fields}


def test_cine_overlay_and_animation(tmp_path):
    frames = 6
    label = np.stack([_ring((40, 48), 10 + t) * 2 for t in range(frames)], axis=-1)
    pred = np.stack([_ring((40, 48), 10 + t, shift=2) * 2 for t in range(frames)], axis=-1)
    image = label * 100.0 + np.random.default_rng(0).normal(0, 5, label.shape)
    item = _item(tmp_path, "cine", image, label, ed_frame=0, es_frame=3, labelled_frames=[0, 3], view="SAX")
    second = _item(tmp_path, "second", image, label, ed_frame=0, es_frame=3, labelled_frames=[0, 3], view="SAX")
    written = write_figures([item, second], [pred, pred], {2: "myocardium"}, tmp_path / "eval", animate=1)
    overlay, gif = tmp_path / "eval" / "overlays" / "cine.png", tmp_path / "eval" / "animations" / "cine.gif"
    assert written == [overlay, gif, tmp_path / "eval" / "overlays" / "second.png"]  # one animation, as capped
    with Image.open(overlay) as png:
        width, height = png.size
        assert 300 < width < 1000 and 200 < height < 400  # two panels side by side plus the legend
        assert len(np.unique(np.asarray(png.convert("RGB")).reshape(-1, 3), axis=0)) > 20  # a picture, not blank
    with Image.open(gif) as animation:
        assert animation.n_frames == frames
        first = np.asarray(animation.convert("RGB"))
        animation.seek(frames - 1)
        assert not np.array_equal(first, np.asarray(animation.convert("RGB")))


def test_volume_overlay_shows_the_largest_label_and_prediction_slices(tmp_path):
    label = np.zeros((32, 32, 9), dtype=np.uint8)
    label[8:20, 8:20, 2] = 1
    label[10:14, 10:14, 3] = 1
    pred = np.zeros_like(label)
    pred[5:25, 5:25, 6] = 1
    item = {"image": "unused", "label": "unused"}
    assert overlay_planes(item, label, pred) == [(2, "slice 2"), (6, "slice 6")]
    assert overlay_planes(item, label, label) == [(2, "slice 2")]
    assert overlay_planes(item, np.zeros_like(label), np.zeros_like(label)) == [(4, "slice 4")]
    ct = _item(tmp_path, "ct", label * 50.0, label)
    (path,) = write_figures([ct], [pred], {1: "liver"}, tmp_path / "eval")
    assert path.name == "ct.png" and Image.open(path).size[0] > 300


def test_figures_name_a_shape_mismatch(tmp_path):
    label = np.zeros((16, 16, 4), dtype=np.uint8)
    item = _item(tmp_path, "case", np.zeros((16, 16, 5)), label)
    with pytest.raises(DataError, match=r"case\.nii\.gz: image \(16, 16, 5\), label \(16, 16, 4\)"):
        write_figures([item], [label], {1: "liver"}, tmp_path / "eval")


def _log(path, tag: str, steps: range, session: str) -> None:
    """Rows as one training process (``session``) writes them."""
    with mock.patch("samzoo.engine.training_log.SESSION", session):
        TrainingLog(path, output_transform=float, tag_name=tag).write([(tag, step, float(step)) for step in steps])


def test_learning_curves_follow_resumed_and_restarted_runs(tmp_path):
    log = tmp_path / "training_log.csv"
    _log(log, "train_loss", range(1, 6), "first")
    _log(log, "train_loss", range(6, 9), "resumed")  # continues the steps
    assert [s for s, _ in read_training_log(log)["train_loss"]] == list(range(1, 9))
    _log(log, "train_loss", range(1, 4), "restarted")  # started from scratch: replaces the old curve
    _log(log, "val_mean_dice", [1, 1, 2], "restarted")  # two stages validated at the same epoch number: both kept
    curves = read_training_log(log)
    assert curves["train_loss"] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert curves["val_mean_dice"] == [(1, 1.0), (1, 1.0), (2, 2.0)]
    path = plot_learning_curves(curves, ["train_loss"], tmp_path / "curves.png")
    assert Image.open(path).size == (1100, 400)


def test_training_log_rows_from_a_trainer_and_a_validator(tmp_path):
    log = tmp_path / "runs" / "training_log.csv"
    trainer = Engine(lambda e, batch: [{"loss": 10.0 - e.state.iteration}])
    TrainingLog(log, output_transform=lambda output: output[0]["loss"]).attach(trainer)
    validator = Engine(lambda e, batch: None)
    validator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_mean_dice=0.5))
    TrainingLog(log).attach(validator)
    # like MONAI's ValidationHandler: the validator runs to the trainer's epoch
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validator.run([0], max_epochs=e.state.epoch))
    trainer.run([0] * 2, max_epochs=2)
    assert read_training_log(log) == {
        "train_loss": [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0)],
        "val_mean_dice": [(1, 0.5), (2, 0.5)],
    }
    lines = log.read_text().splitlines()
    assert lines[0] == "session,tag,step,value" and len(lines) == 7
    log.write_text(lines[0] + "\nx,train_loss,one,1.0\n")
    with pytest.raises(DataError, match=r"training_log.csv: line 2 is not a training log row"):
        read_training_log(log)


def test_training_log_reads_the_losses_once_per_epoch(tmp_path):
    """Losses stay tensors on their device during the epoch (no wait on the GPU per step) and land at its end."""
    log = tmp_path / "training_log.csv"
    trainer = Engine(lambda e, batch: {"loss": torch.tensor(float(e.state.iteration))})
    handler = TrainingLog(log, output_transform=lambda output: output["loss"])
    handler.attach(trainer)
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: seen.append((log.exists(), [type(v) for _, v in handler._pending]))
    )
    trainer.run([0] * 3, max_epochs=1)
    assert seen[-1] == (False, [torch.Tensor] * 3)
    assert read_training_log(log) == {"train_loss": [(1, 1.0), (2, 2.0), (3, 3.0)]}


def test_learning_curves_handler_skips_a_missing_log(tmp_path, caplog):
    engine = Engine(lambda e, b: None)
    LearningCurves(tmp_path / "no_log.csv", tmp_path / "eval").attach(engine)
    with caplog.at_level(logging.WARNING):
        engine.run([0])
    assert "learning curves skipped" in caplog.text and not (tmp_path / "eval").exists()
    _log(tmp_path / "training_log.csv", "train_loss", range(1, 4), "run")
    engine = Engine(lambda e, b: None)
    LearningCurves(tmp_path / "training_log.csv", tmp_path / "eval").attach(engine)
    engine.run([0])
    assert (tmp_path / "eval" / "learning_curves.png").is_file()
