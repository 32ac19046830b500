"""CT preparation: LiTS and TotalSegmentator layouts, reorientation, liver labels, bad inputs and the real example."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from samzoo.data.datalist import load_datalist
from samzoo.data.nifti import load_nifti, save_nifti
from samzoo.data.prepare import lits, prepare, totalseg
from samzoo.errors import DataError
from samzoo.transforms.ct import ct_volume_transforms

SHAPE = (12, 10, 8)
RAS = np.array([[0.8, 0, 0, -5.0], [0, 0.8, 0, 3.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
LPS = np.array([[-0.7, 0, 0, 5.0], [0, -0.7, 0, 3.0], [0, 0, 5.0, -40.0], [0, 0, 0, 1]])


def ct_and_labels(liver_value: int = 1, tumour_value: int | None = 2) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) HU and a label map: liver in slices 3..6, a tumour inside it on slice 5, nothing below."""
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 20, SHAPE).round().astype(np.int16)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[2:8, 3:7, 3:7] = liver_value
    if tumour_value is not None:
        labels[4:6, 4:6, 5] = tumour_value
    return hu, labels


def digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def lits_source(root: Path) -> Path:
    """Two LiTS cases as shipped: case 0 (RAS, .nii) in batch 1, case 3 (LPS-stored, .nii.gz) in batch 2."""
    hu, labels = ct_and_labels()
    save_nifti(hu, RAS, root / "Training Batch 1" / "volume-0.nii")
    save_nifti(labels, RAS, root / "Training Batch 1" / "segmentation-0.nii")
    save_nifti(hu, LPS, root / "Training Batch 2" / "volume-3.nii.gz")
    save_nifti(labels.astype(np.float64), LPS, root / "Training Batch 2" / "segmentation-3.nii.gz")
    return root


def test_lits_items_labels_and_orientation(tmp_path: Path) -> None:
    src, dst = lits_source(tmp_path / "lits"), tmp_path / "prepared"
    before = digest(src)
    items = lits.collect(src, dst)
    assert digest(src) == before  # sources untouched
    assert [item["case_id"] for item in items] == ["lits_000", "lits_003"]
    ras, lps = items
    hu, labels = ct_and_labels()
    assert ras["image"] == str((src / "Training Batch 1" / "volume-0.nii").resolve())  # referenced in place
    assert ras["spacing"] == [0.8, 0.8, 2.5] and lps["spacing"] == [0.7, 0.7, 5.0]
    for item in items:
        assert item["label"] == f"labels/{item['case_id']}.nii.gz"
        assert item["patient_id"] == item["case_id"] and item["dataset"] == "lits"
        assert item["num_slices"] == 8 and item["liver_slices"] == [3, 4, 5, 6]
        assert item["spacing_known"] is True
    label = load_nifti(dst / ras["label"], dtype=None)
    assert label.array.dtype == np.uint8
    np.testing.assert_array_equal(label.array, labels > 0)  # liver = liver + tumour
    np.testing.assert_allclose(label.affine, RAS)
    # the LPS-stored case is written reoriented: x and y flipped, world positions unchanged
    assert lps["image"] == "images/lits_003.nii.gz"
    image = load_nifti(dst / lps["image"], dtype=None)
    label = load_nifti(dst / lps["label"], dtype=None)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert image.array.dtype == np.int16
    np.testing.assert_array_equal(image.array, hu[::-1, ::-1])
    np.testing.assert_array_equal(label.array, (labels > 0)[::-1, ::-1])
    np.testing.assert_allclose(image.affine @ [0, 0, 0, 1], LPS @ [SHAPE[0] - 1, SHAPE[1] - 1, 0, 1])
    np.testing.assert_allclose(label.affine, image.affine)


def test_lits_through_the_registry(tmp_path: Path) -> None:
    datalist = prepare("lits", lits_source(tmp_path / "lits"), tmp_path / "out", test_fraction=0.5, val_fraction=0.0)
    items = load_datalist(datalist, "training") + load_datalist(datalist, "test")
    assert sorted(item["case_id"] for item in items) == ["lits_000", "lits_003"]
    assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)


def _break_lits(src: Path, problem: str) -> Path:
    """Damage the LiTS source in one way; return the file the error must name."""
    batch = src / "Training Batch 1"
    hu, labels = ct_and_labels()
    if problem == "missing segmentation":
        (batch / "segmentation-0.nii").unlink()
        return batch / "volume-0.nii"
    if problem == "orphan segmentation":
        save_nifti(labels, RAS, batch / "segmentation-7.nii")
        return batch / "segmentation-7.nii"
    if problem == "duplicate":
        save_nifti(hu, RAS, src / "copy" / "volume-0.nii.gz")
        return src / "copy" / "volume-0.nii.gz"
    if problem == "shape":
        save_nifti(labels[:, :, :6], RAS, batch / "segmentation-0.nii")
        return batch / "segmentation-0.nii"
    if problem == "geometry":
        save_nifti(labels, LPS, batch / "segmentation-0.nii")
        return batch / "segmentation-0.nii"
    if problem == "label values":
        labels[0, 0, 0] = 3
        save_nifti(labels, RAS, batch / "segmentation-0.nii")
        return batch / "segmentation-0.nii"
    if problem == "NaN":
        broken = hu.astype(np.float32)
        broken[1, 1, 1] = np.nan
        save_nifti(broken, RAS, batch / "volume-0.nii")
        return batch / "volume-0.nii"
    if problem == "4D":
        save_nifti(hu[..., None], RAS, batch / "volume-0.nii")
        return batch / "volume-0.nii"
    raise AssertionError(problem)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing segmentation", "no matching segmentation-0"),
        ("orphan segmentation", "no matching volume-7"),
        ("duplicate", "duplicates"),
        ("shape", "does not match image"),
        ("geometry", "geometry"),
        ("label values", r"unexpected label values \[3\]"),
        ("NaN", "NaN"),
        ("4D", "3D CT volume"),
    ],
)
def test_lits_bad_input_names_the_file(tmp_path: Path, problem: str, message: str) -> None:
    src = lits_source(tmp_path / "lits")
    culprit = _break_lits(src, problem)
    with pytest.raises(DataError, match=message) as err:
        lits.collect(src, tmp_path / "prepared")
    assert err.value.path == culprit
    assert str(culprit) in str(err.value)


def test_lits_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no LiTS volume"):
        lits.collect(tmp_path, tmp_path / "out")


def totalseg_source(root: Path) -> Path:
    """The three TotalSegmentator layouts, liver value 5 among other organs in the multi-label files."""
    hu, labels = ct_and_labels(liver_value=5, tumour_value=None)
    labels[0:2, 0:3, :] = 1  # spleen
    labels[9:11, 0:3, 0:4] = 2  # a kidney
    save_nifti(hu, RAS, root / "s0001" / "ct.nii.gz")
    save_nifti((labels == 5).astype(np.uint8), RAS, root / "s0001" / "segmentations" / "liver.nii.gz")
    save_nifti(labels, LPS, root / "s0001" / "segmentations" / "spleen.nii.gz")  # other structures are ignored
    save_nifti(hu, LPS, root / "runs" / "s0002" / "ct.nii.gz")
    save_nifti(labels, LPS, root / "runs" / "s0002" / "segmentations.nii.gz")
    save_nifti(hu, RAS, root / "example_ct.nii.gz")
    save_nifti(labels, RAS, root / "example_seg.nii.gz")
    return root


def test_totalseg_layouts(tmp_path: Path) -> None:
    src, dst = totalseg_source(tmp_path / "ts"), tmp_path / "prepared"
    before = digest(src)
    items = {item["case_id"]: item for item in totalseg.collect(src, dst)}
    assert digest(src) == before
    assert sorted(items) == ["example", "s0001", "s0002"]
    _, labels = ct_and_labels(liver_value=5, tumour_value=None)
    for case_id, item in items.items():
        assert item["dataset"] == "totalseg" and item["patient_id"] == case_id
        assert item["liver_slices"] == [3, 4, 5, 6] and item["num_slices"] == 8
        liver = load_nifti(dst / item["label"], dtype=None).array
        expected = (labels == 5)[::-1, ::-1] if case_id == "s0002" else labels == 5
        np.testing.assert_array_equal(liver, expected)
    assert items["s0001"]["image"] == str((src / "s0001" / "ct.nii.gz").resolve())
    assert items["s0002"]["image"] == "images/s0002.nii.gz"


def test_totalseg_liver_label_option_through_the_registry(tmp_path: Path) -> None:
    hu, labels = ct_and_labels(liver_value=7, tumour_value=None)
    save_nifti(hu, RAS, tmp_path / "src" / "a_ct.nii.gz")
    save_nifti(labels, RAS, tmp_path / "src" / "a_seg.nii.gz")
    datalist = prepare(
        "totalseg", tmp_path / "src", tmp_path / "out", test_fraction=0.0, val_fraction=0.0, liver_label=7
    )
    (item,) = load_datalist(datalist)
    assert item["liver_slices"] == [3, 4, 5, 6]
    with pytest.raises(DataError, match="liver label 5 occurs in none"):
        totalseg.collect(tmp_path / "src", tmp_path / "out5")


def test_totalseg_case_without_liver_keeps_an_empty_label(tmp_path: Path) -> None:
    src = totalseg_source(tmp_path / "ts")
    hu, labels = ct_and_labels(liver_value=3, tumour_value=None)  # a scan whose view misses the liver
    save_nifti(hu, RAS, src / "legs_ct.nii.gz")
    save_nifti(labels, RAS, src / "legs_seg.nii.gz")
    items = {item["case_id"]: item for item in totalseg.collect(src, tmp_path / "out")}
    assert items["legs"]["liver_slices"] == []
    assert not load_nifti(tmp_path / "out" / items["legs"]["label"]).array.any()


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("both layouts", "holds both segmentations/liver.nii.gz and segmentations.nii.gz"),
        ("no segmentation", "neither segmentations/liver.nii.gz nor segmentations.nii.gz"),
        ("no flat segmentation", "has no example_seg.nii.gz"),
        ("binary multi-label", "pass liver_label=1"),
        ("non-binary mask", r"unexpected label values \[5\]"),
        ("shape", "does not match image"),
        ("NaN", "NaN"),
        ("duplicate case", "case names must be unique"),
    ],
)
def test_totalseg_bad_input_names_the_file(tmp_path: Path, problem: str, message: str) -> None:
    src = totalseg_source(tmp_path / "ts")
    hu, labels = ct_and_labels(liver_value=5, tumour_value=None)
    culprit = {
        "both layouts": src / "s0001",
        "no segmentation": src / "runs" / "s0002" / "ct.nii.gz",
        "no flat segmentation": src / "example_ct.nii.gz",
        "binary multi-label": src / "example_seg.nii.gz",
        "non-binary mask": src / "s0001" / "segmentations" / "liver.nii.gz",
        "shape": src / "example_seg.nii.gz",
        "NaN": src / "example_ct.nii.gz",
        "duplicate case": src / "s0001" / "ct.nii.gz",  # found after more/s0001/ct.nii.gz
    }[problem]
    if problem == "both layouts":
        save_nifti(labels, RAS, src / "s0001" / "segmentations.nii.gz")
    elif problem == "no segmentation":
        (src / "runs" / "s0002" / "segmentations.nii.gz").unlink()
    elif problem == "no flat segmentation":
        (src / "example_seg.nii.gz").unlink()
    elif problem == "binary multi-label":
        save_nifti((labels == 5).astype(np.uint8), RAS, culprit)
    elif problem == "non-binary mask":
        save_nifti(labels, RAS, culprit)
    elif problem == "shape":
        save_nifti(labels[:, :, :5], RAS, culprit)
    elif problem == "NaN":
        broken = hu.astype(np.float32)
        broken[0, 0, 0] = np.nan
        save_nifti(broken, RAS, culprit)
    else:
        save_nifti(hu, RAS, src / "more" / "s0001" / "ct.nii.gz")
        save_nifti(labels, RAS, src / "more" / "s0001" / "segmentations.nii.gz")
    with pytest.raises(DataError, match=message) as err:
        totalseg.collect(src, tmp_path / "prepared")
    assert err.value.path == culprit
    assert str(culprit) in str(err.value)


@pytest.mark.parametrize("value", [0, 256, "5", 5.0, True])
def test_totalseg_rejects_invalid_liver_label(tmp_path: Path, value: object) -> None:
    with pytest.raises(DataError, match="liver_label must be an integer"):
        totalseg.collect(totalseg_source(tmp_path / "ts"), tmp_path / "out", liver_label=value)  # type: ignore[arg-type]


@pytest.mark.realdata
def test_real_totalsegmentator_example(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "totalsegmentator_ct"
    # The example segmentation covers only 30 of the CT's 112 slices (it was made from TotalSegmentator's smaller
    # example_ct_sm crop) yet carries the CT's header: preparation must refuse the pair, naming the label file.
    with pytest.raises(DataError, match=r"does not match image example_ct\.nii\.gz") as err:
        totalseg.collect(folder, tmp_path / "refused")
    assert err.value.path == folder / "example_seg.nii.gz"

    ct = load_nifti(folder / "example_ct.nii.gz", dtype=None)
    seg = load_nifti(folder / "example_seg.nii.gz", dtype=None)
    liver = seg.array == 5
    top = ct.array[:, :, -seg.array.shape[2] :]
    assert 20 < top[liver].mean() < 80  # liver density: the labels fit the CT's top slices
    assert not 20 < ct.array[:, :, : seg.array.shape[2]][liver].mean() < 80  # and not its bottom slices
    save_nifti(top, ct.affine, tmp_path / "src" / "example_ct.nii.gz", zooms=ct.zooms)
    (tmp_path / "src" / "example_seg.nii.gz").symlink_to(folder / "example_seg.nii.gz")

    (item,) = totalseg.collect(tmp_path / "src", tmp_path / "prepared", liver_label=5)
    assert item["case_id"] == "example" and item["spacing"] == [3.0, 3.0, 3.0]
    assert item["num_slices"] == 30
    assert item["liver_slices"] == [k for k in range(30) if liver[:, :, k].any()]
    assert item["image"] == str((tmp_path / "src" / "example_ct.nii.gz").resolve())
    np.testing.assert_array_equal(load_nifti(tmp_path / "prepared" / item["label"], dtype=None).array, liver)

    volume = ct_volume_transforms(slice_fraction=None)(
        {"image": item["image"], "label": str(tmp_path / "prepared" / item["label"])}
    )
    windowed_liver = volume["image"][volume["label"] > 0]
    assert 0.4 < float(windowed_liver.mean()) < 0.65  # liver at about 40-100 HU in the (-160, 240) window
    assert volume["presence"].tolist() == [float(k in item["liver_slices"]) for k in range(30)]
