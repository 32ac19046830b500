"""CT transforms: HU window, middle-slice selection, slice presence, the volume pipeline and the 2D slice dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRanged
from samzoo.data.datalist import load_datalist
from samzoo.data.demo.ct import write_ct_raw
from samzoo.data.nifti import save_nifti
from samzoo.data.prepare import lits, prepare
from samzoo.transforms.ct import (
    ABDOMINAL_WINDOW,
    CTSliceDataset,
    MiddleSlicesd,
    SlicePresenced,
    ct_volume_transforms,
    hu_window,
    middle_slice_range,
)
from torch.utils.data import DataLoader

RAS = np.diag([0.8, 0.8, 2.5, 1.0])


def test_hu_window_is_centre_and_width() -> None:
    assert hu_window() == (-160.0, 240.0) == ABDOMINAL_WINDOW
    assert hu_window(50.0, 350.0) == (-125.0, 225.0)
    with pytest.raises(ValueError, match="width"):
        hu_window(40.0, 0.0)


def test_window_maps_hand_computed_values() -> None:
    window = next(t for t in ct_volume_transforms().transforms if isinstance(t, ScaleIntensityRanged))
    hu = torch.tensor([[-1000.0, -160.0, -60.0, 40.0, 140.0, 240.0, 3000.0]])
    out = window({"image": hu})["image"]
    expected = torch.tensor([[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]])
    torch.testing.assert_close(torch.as_tensor(out), expected)


@pytest.mark.parametrize(
    ("depth", "fraction", "expected"),
    [(10, 0.3, range(3, 6)), (40, 0.3, range(14, 26)), (7, 0.3, range(2, 4)), (11, 0.3, range(4, 7)),
     (1, 0.3, range(0, 1)), (3, 0.1, range(1, 2)), (5, 1.0, range(0, 5))],
)  # fmt: skip
def test_middle_slice_range_by_hand(depth: int, fraction: float, expected: range) -> None:
    assert middle_slice_range(depth, fraction) == expected


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_middle_slice_range_rejects_bad_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        middle_slice_range(10, fraction)
    with pytest.raises(ValueError, match="fraction"):
        MiddleSlicesd("image", fraction=fraction)


def test_middle_slices_crop_keeps_geometry_and_inverts() -> None:
    values = torch.arange(10, dtype=torch.float32).expand(1, 3, 2, 10).clone()  # value = slice index
    affine = torch.tensor(RAS)
    data = {"image": MetaTensor(values, affine=affine), "label": MetaTensor(values.clone(), affine=affine)}
    crop = MiddleSlicesd(["image", "label"], fraction=0.3)
    out = crop(data)
    assert out["image"].shape == (1, 3, 2, 3)
    assert out["image"][0, 0, 0].tolist() == [3.0, 4.0, 5.0]
    assert out["slice_start"] == 3
    # the first kept slice sits 3 slices (3 x 2.5 mm) higher in the world
    assert out["image"].affine[2, 3].item() == pytest.approx(7.5)
    restored = crop.inverse(out)
    assert restored["label"].shape == (1, 3, 2, 10)
    assert restored["label"][0, 0, 0].tolist() == [0, 0, 0, 3, 4, 5, 0, 0, 0, 0]


def test_middle_slices_refuses_keys_of_different_depth() -> None:
    data = {"image": torch.zeros(1, 2, 2, 10), "label": torch.zeros(1, 2, 2, 20)}
    with pytest.raises(ValueError, match="number of slices"):
        MiddleSlicesd(["image", "label"])(data)


def test_slice_presence_from_hand_made_mask() -> None:
    label = torch.zeros(1, 4, 4, 5, dtype=torch.uint8)
    label[0, 1, 2, 1] = 1
    label[0, :, :, 3] = 1
    label[0, 3, 3, 4] = 2
    out = SlicePresenced("label", presence_key="liver_present")({"label": label})
    assert out["liver_present"].dtype == torch.float32
    assert out["liver_present"].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]


def _write_volume(folder: Path, affine: np.ndarray, shape: tuple[int, int, int]) -> dict[str, str]:
    """A CT whose HU encode (x, y) position in stored order, with a liver box in the upper half of the slices."""
    x, y, _ = np.indices(shape)
    hu = (-200 + 10 * x + 5 * y).astype(np.int16)
    label = np.zeros(shape, dtype=np.uint8)
    label[2:6, 1:4, shape[2] // 2 :] = 1
    image_path = save_nifti(hu, affine, folder / "ct.nii.gz")
    label_path = save_nifti(label, affine, folder / "liver.nii.gz")
    return {"image": str(image_path), "label": str(label_path), "case_id": "case"}


def test_volume_pipeline_windows_and_orients_without_resizing(tmp_path: Path) -> None:
    lps = np.diag([-0.8, -0.8, 2.5, 1.0])  # stored left/posterior first: the pipeline must flip x and y
    item = _write_volume(tmp_path, lps, (6, 6, 10))
    volume = ct_volume_transforms(spatial_size=6, slice_fraction=None)(item)
    assert volume["image"].shape == (1, 6, 6, 10)
    x, y = np.indices((6, 6))
    expected_hu = -200 + 10 * (5 - x) + 5 * (5 - y)  # stored order flipped back to RAS
    expected = np.clip((expected_hu + 160) / 400, 0, 1)
    np.testing.assert_allclose(volume["image"][0, :, :, 0].numpy(), expected, atol=1e-6)
    assert volume["presence"].tolist() == [0.0] * 5 + [1.0] * 5
    assert volume["label"].dtype == torch.uint8
    assert "slice_start" not in volume


def test_volume_pipeline_shapes_with_defaults(tmp_path: Path) -> None:
    item = _write_volume(tmp_path, RAS, (40, 30, 20))
    out = ct_volume_transforms()(item)
    assert out["image"].shape == (1, 256, 256, 6)  # 30 % of 20 slices
    assert out["label"].shape == (1, 256, 256, 6)
    assert out["presence"].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # slices 7..12, liver from slice 10
    assert out["slice_start"] == 7
    assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0
    assert set(out["label"].unique().tolist()) == {0, 1}


def test_demo_ct_through_preparation_and_slice_dataset(tmp_path: Path) -> None:
    write_ct_raw(tmp_path / "raw", cases=2, seed=1)
    items = lits.collect(tmp_path / "raw", tmp_path / "prepared")
    for item in items:
        item["image"], item["label"] = (str(tmp_path / "prepared" / item[k]) for k in ("image", "label"))
    drawn = []
    dataset = CTSliceDataset(items, slice_transform=lambda s: drawn.append(s["case_id"]) or s)
    assert len(dataset) == 2 * 12  # 30 % of 40 slices per volume
    liver_slices = {item["case_id"]: set(item["liver_slices"]) for item in items}
    presence = []
    for i in range(len(dataset)):
        s = dataset[i]
        assert s["image"].shape == s["label"].shape == (1, 256, 256)
        assert s["presence"].shape == (1,)
        assert 14 <= s["slice_index"] < 26
        # upsampling 128 -> 256 with nearest labels keeps every liver voxel: presence agrees with preparation
        assert s["presence"].item() == float(s["slice_index"] in liver_slices[s["case_id"]])
        assert s["presence"].item() == float(s["label"].any())
        presence.append(s["presence"].item())
    assert set(presence) == {0.0, 1.0}
    assert len(drawn) == len(dataset)  # the slice transform ran on every item
    assert dataset.presence().tolist() == presence and len(drawn) == len(dataset)  # read without building items
    batch = next(iter(DataLoader(dataset, batch_size=5, shuffle=True)))
    assert batch["image"].shape == (5, 1, 256, 256)
    assert batch["presence"].shape == (5, 1)
    assert len(batch["case_id"]) == 5 and batch["slice_index"].shape == (5,)


def test_prepared_datalist_feeds_the_slice_dataset(tmp_path: Path) -> None:
    write_ct_raw(tmp_path / "raw", cases=2, seed=0)
    datalist = prepare("lits", tmp_path / "raw", tmp_path / "prepared", seed=0)
    items = load_datalist(datalist, "training")  # two volumes: both in training
    dataset = CTSliceDataset(items, transform=ct_volume_transforms(spatial_size=64, slice_fraction=None))
    assert len(dataset) == 2 * 40
    assert dataset[0]["image"].shape == (1, 64, 64)
    assert [dataset[i]["slice_index"] for i in (0, 39, 40)] == [0, 39, 0]
