"""Evaluation pictures: overlays, cine animations and learning curves read back from TensorBoard logs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from ignite.engine import Engine
from PIL import Image
from samzoo.data.errors import DataError
from samzoo.data.nifti import save_nifti
from samzoo.engine import LearningCurves
from samzoo.metrics.curves import plot_learning_curves, read_scalars
from samzoo.metrics.figures import overlay_planes, write_figures
from torch.utils.tensorboard import SummaryWriter


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
    written = write_figures([item], [pred], {2: "myocardium"}, tmp_path / "eval", animate=True)
    overlay, gif = tmp_path / "eval" / "overlays" / "cine.png", tmp_path / "eval" / "animations" / "cine.gif"
    assert written == [overlay, gif]
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


def _log(log_dir, tag: str, steps: range) -> None:
    writer = SummaryWriter(log_dir=str(log_dir))
    for step in steps:
        writer.add_scalar(tag, float(step), step)
    writer.close()


def test_learning_curves_follow_resumed_and_restarted_runs(tmp_path):
    _log(tmp_path, "train_loss", range(1, 6))
    _log(tmp_path, "train_loss", range(6, 9))  # resumed: continues the steps
    assert [s for s, _ in read_scalars(tmp_path)["train_loss"]] == list(range(1, 9))
    _log(tmp_path, "train_loss", range(1, 4))  # started from scratch: replaces the old curve
    _log(tmp_path, "val_mean_dice", range(1, 3))
    curves = read_scalars(tmp_path)
    assert curves["train_loss"] == [(1, 1.0), (2, 2.0), (3, 3.0)] and len(curves["val_mean_dice"]) == 2
    path = plot_learning_curves(curves, ["train_loss"], tmp_path / "curves.png")
    assert Image.open(path).size == (1100, 400)


def test_learning_curves_handler_skips_missing_logs(tmp_path, caplog):
    engine = Engine(lambda e, b: None)
    LearningCurves(tmp_path / "no_logs", tmp_path / "eval").attach(engine)
    with caplog.at_level(logging.WARNING):
        engine.run([0])
    assert "learning curves skipped" in caplog.text and not (tmp_path / "eval").exists()
    _log(tmp_path / "logs", "train_loss", range(1, 4))
    engine = Engine(lambda e, b: None)
    LearningCurves(tmp_path / "logs", tmp_path / "eval").attach(engine)
    engine.run([0])
    assert (tmp_path / "eval" / "learning_curves.png").is_file()
