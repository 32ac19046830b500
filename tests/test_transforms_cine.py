"""Cine (2D+T) transforms: phase sampling, heart crop, inversion, scaling, augmentation and the full pipeline."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, Invertd
from samzoo.data.nifti import save_nifti
from samzoo.data.phases import sample_phase_indices
from samzoo.errors import DataError
from samzoo.transforms import (
    ChannelsToFramesd,
    CropHeartd,
    FramesToChannelsd,
    RandCineAugmentd,
    RandCropHeartd,
    RandSamplePhasesd,
    SamplePhasesd,
    cine_transforms,
    heart_crop_box,
    label_centre,
    motion_centre,
)

NO_AUG = {"affine_prob": 0.0, "flip_prob": 0.0, "noise_prob": 0.0, "contrast_prob": 0.0, "brightness_prob": 0.0}


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.indices(shape) + 0.5
    return ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).astype(np.float32)


def _beating_clip(shape=(96, 112), centre=(60.0, 38.0), frames=20, seed=0) -> np.ndarray:
    """(H, W, T): a disc whose radius beats over one cycle, a bright static square elsewhere, and noise."""
    rng = np.random.default_rng(seed)
    clip = np.empty((*shape, frames), dtype=np.float32)
    for t in range(frames):
        radius = 12 + 5 * np.cos(2 * np.pi * t / frames)
        clip[..., t] = 100 * _disc(shape, centre, radius)
    clip[10:30, 70:100] += 300  # static and brighter than the heart: must not attract the crop
    return clip + rng.normal(0, 2, clip.shape).astype(np.float32)


def _item(num_frames=20, ed=0, es=8, labelled=None, shape=(40, 50)) -> dict:
    """Image whose frame t holds the value t everywhere; label 1 on labelled frames (a square), 0 elsewhere."""
    labelled = [ed, es] if labelled is None else labelled
    image = torch.arange(num_frames, dtype=torch.float32).expand(1, *shape, num_frames).clone()
    label = torch.zeros(1, *shape, num_frames)
    label[:, 10:20, 20:30, labelled] = 1
    meta = {"filename_or_obj": "/data/cine_007.nii.gz"}
    return {
        "image": MetaTensor(image, meta=dict(meta)),
        "label": MetaTensor(label, meta=dict(meta)),
        "num_frames": num_frames,
        "ed_frame": ed,
        "es_frame": es,
        "labelled_frames": labelled,
    }


# --- phase sampling ------------------------------------------------------------------------------------------------

CASES = [
    (n, ed, es) for n in (1, 2, 5, 12, 14, 15, 16, 25, 30, 31, 50) for ed, es in itertools.product(range(n), repeat=2)
]


@pytest.mark.parametrize("num_phases", [15, 4])
def test_sampling_keeps_ed_es_in_order(num_phases):
    for n, ed, es in CASES:
        for offset in range(max(1, n // num_phases)):
            idx = sample_phase_indices(n, num_phases, ed, es, offset)
            assert idx.shape == (num_phases,) and idx.dtype == np.int64
            assert ed in idx and es in idx, (n, ed, es, offset)
            assert np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < n
            if n >= num_phases:
                assert len(set(idx.tolist())) == num_phases  # no frame twice
                # evenly spread: the documented grid, with at most ED and ES moved in
                grid = {(ed + offset + k * n // num_phases) % n for k in range(num_phases)}
                assert len(set(idx.tolist()) - grid) <= 2
            else:
                assert set(idx.tolist()) == set(range(n))  # every frame kept, the nearest repeated


def test_sampling_hand_computed():
    # 30 frames, 15 phases: every second frame from ED=0; ES=11 replaces 10 (tie with 12, the earlier wins)
    assert sample_phase_indices(30, 15, 0, 11).tolist() == [0, 2, 4, 6, 8, 11, 12, 14, 16, 18, 20, 22, 24, 26, 28]
    # wrap-around (ES before ED), offset 1: grid 0, 2, ..., 28; ED=29 replaces 0, ES=5 replaces 4
    assert sample_phase_indices(30, 15, 29, 5, offset=1).tolist() == [2, 5, 6, *range(8, 29, 2), 29]
    # fewer frames than phases: 10 frames -> 15 phases, every frame once, every second one twice
    assert sample_phase_indices(10, 15, 3, 7).tolist() == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9]


def test_more_phases_than_frames_warns_with_the_file():
    item = _item(num_frames=10, ed=3, es=7, labelled=[3, 7])
    with pytest.warns(UserWarning, match="cine_007.nii.gz: 10 frames for 15 phases, so frames are repeated"):
        out = SamplePhasesd(num_phases=15)(item)
    assert out["frame_indices"].tolist() == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9]


@pytest.mark.parametrize(("args", "message"), [((10, 15, 10, 2), "ed_frame 10"), ((10, 3, 0, -1), "es_frame -1")])
def test_sampling_rejects_frames_outside(args, message):
    with pytest.raises(DataError, match=message):
        sample_phase_indices(*args)


def test_sample_phases_outputs_and_mask():
    item = _item(num_frames=30, ed=25, es=9, labelled=[25, 9, 14])
    out = SamplePhasesd(num_phases=15)(item)
    idx = out["frame_indices"]
    assert idx.dtype == torch.int64 and idx.tolist() == sample_phase_indices(30, 15, 25, 9).tolist()
    assert out["image"].shape == (1, 40, 50, 15)
    assert torch.equal(out["image"][0, 0, 0], idx.float())  # frame t of the input holds the value t
    assert out["frame_mask"].dtype == torch.float32
    assert out["frame_mask"].tolist() == [float(i in (25, 9, 14)) for i in idx.tolist()]
    assert torch.equal(out["label"].amax((0, 1, 2)), out["frame_mask"])  # labels moved with their frames
    assert out["image"].meta["filename_or_obj"] == "/data/cine_007.nii.gz"


def test_sample_phases_keep_all_frames():
    out = SamplePhasesd(num_phases=None)(_item(num_frames=12, labelled=[0, 8]))
    assert out["image"].shape == (1, 40, 50, 12)
    assert out["frame_indices"].tolist() == list(range(12))
    assert out["frame_mask"].tolist() == [float(i in (0, 8)) for i in range(12)]
    item = _item(num_frames=12)
    for key in ("label", "ed_frame", "es_frame", "labelled_frames"):
        item.pop(key)
    out = SamplePhasesd("image", num_phases=None)(item)  # inference: no label, no phase information
    assert out["frame_mask"].sum() == 0 and out["image"].shape[-1] == 12


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_frames": 25}, "num_frames=25 but the clip has 20"),
        ({"es_frame": 20}, "es_frame 20 lies outside"),
        ({"labelled_frames": [3, 40]}, "labelled frame 40"),
        ({"ed_frame": None}, "no 'ed_frame'"),
        ({"label": MetaTensor(torch.zeros(1, 40, 50, 19))}, "different numbers of frames"),
    ],
)
def test_sample_phases_bad_items_name_the_file(change, message):
    item = _item() | change
    with pytest.raises(DataError, match=re.escape(message)) as err:
        SamplePhasesd()(item)
    assert str(err.value).startswith("/data/cine_007.nii.gz: ")


def test_sample_phases_rejects_nan():
    item = _item()
    item["image"][0, 3, 3, 3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        SamplePhasesd()(item)


def test_random_offset_varies_and_is_reproducible():
    item = _item(num_frames=45, ed=40, es=12, labelled=[40, 12])
    draws = [
        tuple(t["frame_indices"].tolist())
        for t in map(RandSamplePhasesd(num_phases=15).set_random_state(3), [item] * 30)
    ]
    assert len(set(draws)) == 3  # 45 // 15 offsets
    assert all(40 in d and 12 in d for d in draws)
    again = [
        tuple(t["frame_indices"].tolist())
        for t in map(RandSamplePhasesd(num_phases=15).set_random_state(3), [item] * 30)
    ]
    assert draws == again


# --- heart crop ----------------------------------------------------------------------------------------------------


def test_crop_box_centres_shifts_inside_and_pads():
    start, end = heart_crop_box((200, 150, 15), (60.0, 100.0), (128, 128))
    assert start.tolist() == [0, 22, 0] and end.tolist() == [128, 150, 15]  # rows shifted inside, cols centred
    start, end = heart_crop_box((40, 51, 9), (5.0, 5.0), (64, 64))
    assert start.tolist() == [-12, -7, 0] and end.tolist() == [52, 57, 9]  # image smaller: padded evenly
    start, end = heart_crop_box((300, 300, 9), (150.5, 149.5), (64, 64))
    assert (start[:2] + 32).tolist() == [151, 150]  # centre rounded half up


def test_crop_pads_image_with_its_minimum_and_labels_with_zero():
    image = MetaTensor(torch.rand(1, 20, 30, 3) + 5)
    label = MetaTensor(torch.ones(1, 20, 30, 3))
    out = CropHeartd(roi_size=(24, 30))({"image": image, "label": label})
    assert out["image"].shape == (1, 24, 30, 3)
    assert torch.equal(out["image"][:, 2:22], image) and torch.equal(out["label"][:, 2:22], label)
    assert torch.all(out["image"][:, [0, 1, 22, 23]] == image.min())
    assert torch.all(out["label"][:, [0, 1, 22, 23]] == 0)


def test_label_centre_uses_all_labelled_frames():
    label = np.zeros((1, 60, 80, 6), dtype=np.float32)
    label[0, 10:20, 30:40, 1] = 2  # ED
    label[0, 14:30, 34:36, 4] = 3  # ES
    assert label_centre(label).tolist() == [20.0, 35.0]
    assert label_centre(np.zeros((1, 8, 8, 3))) is None


def test_crop_from_labels_centres_the_heart():
    image = torch.rand(1, 200, 180, 8)
    label = torch.zeros(1, 200, 180, 8)
    label[0, 130:170, 20:50, 0] = 1  # heart low and left
    out = CropHeartd(roi_size=(96, 96))({"image": MetaTensor(image), "label": MetaTensor(label)})
    assert out["image"].shape == out["label"].shape == (1, 96, 96, 8)
    rows, cols = np.nonzero(out["label"][0, :, :, 0].numpy())
    assert (rows.min() + rows.max() + 1) / 2 == 48  # 150 - (150 - 48): centred vertically
    assert (cols.min(), cols.max()) == (20, 49)  # 35 - 48 < 0: the box stops at the image's left edge
    assert torch.equal(out["image"], image[:, 102:198, 0:96])


def test_motion_centre_finds_beating_blob_off_centre():
    clip = _beating_clip()[None]
    centre = motion_centre(clip)
    assert np.abs(centre - [60.0, 38.0]).max() < 2
    assert motion_centre(np.full((1, 30, 40, 5), 7.0)).tolist() == [15.0, 20.0]  # no motion: image centre
    out = CropHeartd("image", roi_size=(48, 48), label_key=None)({"image": MetaTensor(clip)})
    assert out["image"].shape == (1, 48, 48, 20)
    # the disc's largest extent (radius 17) lies inside the crop, the bright static square does not
    std = out["image"][0].std(-1)
    rows, cols = np.nonzero((std > 20).numpy())
    assert abs((rows.min() + rows.max() + 1) / 2 - 24) <= 2 and abs((cols.min() + cols.max() + 1) / 2 - 24) <= 2
    assert out["image"].max() < 200


def test_crop_without_foreground_falls_back_to_motion():
    clip = MetaTensor(torch.as_tensor(_beating_clip())[None])
    from_motion = CropHeartd(roi_size=(48, 48), label_key=None)({"image": clip, "label": clip * 0})
    from_empty_label = CropHeartd(roi_size=(48, 48))({"image": clip, "label": clip * 0})
    assert torch.equal(from_motion["image"], from_empty_label["image"])


def test_crop_jitter_is_bounded_and_seeded():
    label = torch.zeros(1, 120, 120, 4)
    label[0, 50:70, 50:70] = 1
    item = {"image": MetaTensor(torch.rand(1, 120, 120, 4)), "label": MetaTensor(label)}
    crop = RandCropHeartd(roi_size=(64, 64), jitter=5).set_random_state(0)
    centres = []
    for _ in range(20):
        rows, cols = np.nonzero(crop(item)["label"][0, :, :, 0].numpy())
        centres.append(((rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2))
    shifts = 32 - np.array(centres)
    assert np.abs(shifts).max() <= 5 and len(set(centres)) > 5
    again = RandCropHeartd(roi_size=(64, 64), jitter=5).set_random_state(0)
    assert torch.equal(crop.set_random_state(0)(item)["image"], again(item)["image"])


@pytest.mark.parametrize(("shape", "label_key"), [((150, 170, 6), "label"), ((150, 170, 6), None), ((40, 90, 3), None)])
def test_crop_inverts_to_the_input_grid(shape, label_key):
    image = MetaTensor(torch.rand(1, *shape) + 1, affine=torch.diag(torch.tensor([1.4, 1.4, 10.0, 1.0])))
    label = torch.zeros(1, *shape)
    label[0, 5:25, 130:160] = 1 if shape[0] > 100 else 0
    crop = Compose([CropHeartd(roi_size=(64, 64), label_key=label_key)])
    out = crop({"image": image, "label": MetaTensor(label)})
    assert out["image"].shape == (1, 64, 64, shape[2])
    out["pred"] = out["image"].clone()
    back = Invertd("pred", transform=crop, orig_keys="image", nearest_interp=False)(out)["pred"]
    assert back.shape == image.shape
    kept = back != 0
    assert torch.equal(back[kept], image[kept])  # every cropped value is back where it came from
    assert int(kept.sum()) == min(64, shape[0]) * min(64, shape[1]) * shape[2]
    assert torch.allclose(back.affine, image.affine)


# --- scaling, augmentation ----------------------------------------------------------------------------------------


def test_augmentation_is_identical_across_frames():
    frame = torch.zeros(32, 40)
    frame[5:20, 8:14] = 1.0
    frame[5:8, 8:30] = 0.6  # asymmetric, so a flip shows
    clip = MetaTensor(frame[None, :, :, None].repeat(1, 1, 1, 7))
    aug = RandCineAugmentd(
        image_keys="image",
        label_keys=(),
        affine_prob=1.0,
        flip_prob=1.0,
        noise_prob=0.0,
        contrast_prob=1.0,
        brightness_prob=1.0,
    ).set_random_state(1)
    out = aug({"image": clip})["image"]
    assert out.shape == (1, 32, 40, 7)
    assert not torch.allclose(out[..., 0], clip[..., 0], atol=1e-3)
    assert torch.equal(out, out[..., :1].expand_as(out))


def test_augmentation_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    mask = torch.zeros(1, 64, 64, 5)
    for t in range(5):  # a different asymmetric L shape per frame
        r, c = rng.integers(10, 30, size=2)
        mask[0, r : r + 25, c : c + 8, t] = 1
        mask[0, r + 17 : r + 25, c : c + 22, t] = 1
    aug = RandCineAugmentd(flip_prob=0.5, affine_prob=1.0, noise_prob=0.0, contrast_prob=0.0, brightness_prob=0.0)
    aug.set_random_state(5)
    for _ in range(6):
        out = aug({"image": MetaTensor(mask.clone()), "label": MetaTensor(mask.clone())})
        image, label = out["image"], out["label"]
        assert set(label.unique().tolist()) <= {0.0, 1.0}  # nearest interpolation keeps label values
        assert not torch.equal(label, mask)
        for t in range(5):
            thresholded = image[..., t] > 0.5
            inter = (thresholded & (label[..., t] > 0)).sum()
            union = (thresholded | (label[..., t] > 0)).sum()
            assert inter / union > 0.9  # only boundary pixels may differ (bilinear vs nearest)


def test_frames_channels_round_trip():
    clip = MetaTensor(torch.rand(1, 9, 11, 4), affine=torch.diag(torch.tensor([2.0, 3.0, 5.0, 1.0])))
    frames = FramesToChannelsd("x")({"x": clip})["x"]
    assert frames.shape == (4, 9, 11) and torch.equal(frames[2], clip[0, :, :, 2])
    back = ChannelsToFramesd("x")({"x": frames})["x"]
    assert torch.equal(back, clip) and torch.equal(back.affine, clip.affine)
    with pytest.raises(ValueError, match="one-channel clip"):
        FramesToChannelsd("x")({"x": torch.rand(2, 9, 11, 4)})


# --- full pipeline on NIfTI files ----------------------------------------------------------------------------------


@pytest.fixture
def cine_item(tmp_path: Path) -> dict:
    """A 100 x 120 x 18 cine NIfTI with a beating heart off-centre, labels on ED (2) and ES (11)."""
    clip = _beating_clip(shape=(100, 120), centre=(62.0, 45.0), frames=18) + 50
    label = np.zeros(clip.shape, dtype=np.uint8)
    for t in (2, 11):
        radius = 12 + 5 * np.cos(2 * np.pi * t / 18)
        disc = _disc((100, 120), (62.0, 45.0), radius + 3).astype(bool)
        label[..., t] = np.where(disc, 2, 0)
        label[..., t][_disc((100, 120), (62.0, 45.0), radius).astype(bool)] = 3
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    save_nifti(clip, affine, tmp_path / "cine.nii.gz")
    save_nifti(label, affine, tmp_path / "cine_gt.nii.gz")
    return {
        "image": str(tmp_path / "cine.nii.gz"),
        "label": str(tmp_path / "cine_gt.nii.gz"),
        "num_frames": 18,
        "ed_frame": 2,
        "es_frame": 11,
        "labelled_frames": [2, 11],
    }


def test_training_pipeline(cine_item):
    pipeline = cine_transforms(train=True, roi_size=(64, 64)).set_random_state(0)
    out = pipeline(cine_item)
    assert out["image"].shape == out["label"].shape == (1, 64, 64, 15)
    assert out["image"].dtype == out["label"].dtype == torch.float32
    assert out["frame_mask"].shape == (15,) and out["frame_mask"].dtype == torch.float32
    assert out["frame_indices"].dtype == torch.int64
    assert {2, 11} <= set(out["frame_indices"].tolist())
    labelled = out["frame_mask"].bool()
    assert labelled.sum() == 2 and torch.equal(labelled, torch.isin(out["frame_indices"], torch.tensor([2, 11])))
    assert set(out["label"].unique().tolist()) <= {0.0, 2.0, 3.0}
    assert out["label"][..., ~labelled].sum() == 0 and (out["label"][..., labelled] > 0).any()
    assert out["image"].min() > -0.5 and out["image"].max() < 1.5
    again = cine_transforms(train=True, roi_size=(64, 64)).set_random_state(0)(cine_item)
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["label"], again["label"])
    other = cine_transforms(train=True, roi_size=(64, 64)).set_random_state(1)(cine_item)
    assert not torch.equal(out["image"], other["image"])
    plain = cine_transforms(train=True, roi_size=(64, 64), jitter=0, augment=NO_AUG)(cine_item)
    assert plain["image"].min() == 0.0 and plain["image"].max() == 1.0
    rows, cols = np.nonzero(plain["label"][0].amax(-1).numpy())
    assert ((rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2) == (32, 32)  # heart centred
    with pytest.raises(ValueError, match="needs label_key"):
        cine_transforms(train=True, label_key=None)


def test_pipeline_outputs_batch(cine_item):
    items = [cine_item, cine_item | {"labelled_frames": [2, 5, 11]}]  # different numbers of labelled frames
    batch = next(iter(DataLoader(Dataset(items, cine_transforms(train=True, roi_size=(64, 64))), batch_size=2)))
    assert batch["image"].shape == (2, 1, 64, 64, 15) and batch["frame_mask"].shape == (2, 15)
    assert batch["frame_mask"].sum(1).tolist() == [2.0, 3.0] and "labelled_frames" not in batch


def test_transforms_listed_one_by_one_in_a_bundle_config(cine_item):
    keys = ["image", "label"]
    steps = [
        {"_target_": "LoadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys, "channel_dim": "no_channel"},
        {"_target_": "samzoo.transforms.RandSamplePhasesd", "keys": keys, "num_phases": 15},
        {"_target_": "samzoo.transforms.RandCropHeartd", "keys": keys, "roi_size": [64, 64], "jitter": 4},
        {"_target_": "ScaleIntensityd", "keys": "image", "minv": 0.0, "maxv": 1.0},
        {"_target_": "samzoo.transforms.RandCineAugmentd", "contrast_gamma": [0.8, 1.2], "flip_prob": 0.2},
        {"_target_": "EnsureTyped", "keys": keys, "dtype": "$torch.float32"},
        {"_target_": "DeleteItemsd", "keys": "labelled_frames"},
    ]
    parser = ConfigParser({"train_transforms": {"_target_": "Compose", "transforms": steps}})
    from_config = parser.get_parsed_content("train_transforms").set_random_state(7)(cine_item)
    augment = {"contrast_gamma": (0.8, 1.2), "flip_prob": 0.2}
    expected = cine_transforms(train=True, roi_size=(64, 64), jitter=4, augment=augment).set_random_state(7)(cine_item)
    for key in ("image", "label", "frame_mask", "frame_indices"):
        assert torch.equal(from_config[key], expected[key])


def test_evaluation_pipeline_scales_and_selects(cine_item):
    out = cine_transforms(train=False, roi_size=(64, 64), select_labels=2)(cine_item)
    assert out["image"].shape == (1, 64, 64, 15)
    assert out["image"].min() == 0.0 and out["image"].max() == 1.0
    assert set(out["label"].unique().tolist()) == {0.0, 1.0}  # myocardium only
    assert out["frame_indices"].tolist() == sample_phase_indices(18, 15, 2, 11).tolist()
    assert out["label"][..., out["frame_mask"] == 0].sum() == 0  # unlabelled frames stay empty
    raw = nib.load(cine_item["label"]).get_fdata()
    assert out["label"].sum() == (raw == 2).sum()  # the crop around the motion keeps all of the myocardium


def test_constant_clip_scales_to_zeros(cine_item, tmp_path):
    save_nifti(np.full((30, 30, 18), 7.0, dtype=np.float32), np.eye(4), tmp_path / "flat.nii.gz")
    out = cine_transforms(train=False, roi_size=(32, 32), label_key=None)(
        cine_item | {"image": str(tmp_path / "flat.nii.gz")}
    )
    assert torch.isfinite(out["image"]).all() and out["image"].abs().max() == 0


def test_inference_pipeline_inverts_to_input_geometry(cine_item):
    pipeline = cine_transforms(train=False, num_phases=None, roi_size=(64, 64), label_key=None)
    out = pipeline({"image": cine_item["image"]})
    assert out["image"].shape == (1, 64, 64, 18) and out["frame_mask"].sum() == 0
    out["pred"] = MetaTensor((out["image"] > 0.5).float().as_tensor())  # a fresh output: no operations of its own
    back = Invertd("pred", transform=pipeline, orig_keys="image", nearest_interp=True)(out)["pred"]
    assert back.shape == (1, 100, 120, 18)
    assert np.allclose(back.affine.numpy(), nib.load(cine_item["image"]).affine)
    rows, cols = np.nonzero(back[0].amax(-1).numpy())
    assert abs((rows.min() + rows.max() + 1) / 2 - 62) <= 2 and abs((cols.min() + cols.max() + 1) / 2 - 45) <= 2


@pytest.mark.realdata
def test_acdc_slice_through_the_pipelines(shared_data, tmp_path):
    patient = shared_data / "acdc_cine" / "patient001"
    cine = nib.load(patient / "patient001_4d.nii.gz")
    image = np.asarray(cine.dataobj)[:, :, 3].astype(np.float32)  # (H, W, T) of one slice
    label = np.zeros(image.shape, dtype=np.uint8)
    for frame in (1, 12):  # ED and ES, 1-based
        label[..., frame - 1] = np.asarray(nib.load(patient / f"patient001_frame{frame:02d}_gt.nii.gz").dataobj)[
            :, :, 3
        ]
    save_nifti(image, cine.affine, tmp_path / "img.nii.gz")
    save_nifti(label, cine.affine, tmp_path / "gt.nii.gz")
    item = {"image": str(tmp_path / "img.nii.gz"), "label": str(tmp_path / "gt.nii.gz"), "num_frames": image.shape[-1]}
    item |= {"ed_frame": 0, "es_frame": 11, "labelled_frames": [0, 11]}
    out = cine_transforms(train=True).set_random_state(0)(item)
    assert out["image"].shape == (1, 128, 128, 15)
    assert out["frame_mask"].sum() == 2 and set(out["label"].unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    ev = cine_transforms(train=False)(item)
    for value in (1, 2, 3):  # the whole heart is inside the crop
        assert (ev["label"] == value).sum() == (label == value).sum()
