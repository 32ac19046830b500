"""Synthetic demo data: ACDC-valid cine layout, consistent cardiac anatomy, LiTS-valid CT, determinism, write_demo."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from samzoo.data.datalist import load_datalist
from samzoo.data.demo import ellipse_coords, lobulation, write_demo
from samzoo.data.demo.cine import GROUPS, CineCase, cardiac_cycle, synthesize_cine, write_cine_raw
from samzoo.data.demo.ct import synthesize_ct, write_ct_raw
from samzoo.data.nifti import load_label, load_nifti
from samzoo.errors import DataError
from scipy.ndimage import binary_dilation

INFO_FIELDS = {"ED", "ES", "Group", "Height", "NbFrame", "Weight"}
BG, RV, MYO, LV = 0, 1, 2, 3
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


@pytest.fixture(scope="module")
def cine_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cine") / "raw"
    write_cine_raw(root, cases=2, seed=3)
    return root


@pytest.fixture(scope="module")
def cine_cases() -> list[CineCase]:
    return [synthesize_cine(np.random.default_rng([3, i])) for i in range(3)]


def read_info(path: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in path.read_text().splitlines())


def test_ellipse_helpers_by_hand() -> None:
    points = np.array([[3.0, 0.0], [0.0, 2.0], [0.0, 1.0], [-3.0, 0.0]])
    radius, phi = ellipse_coords(points + 1.0, (1.0, 1.0), (3.0, 2.0))
    np.testing.assert_allclose(radius, [1.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(phi, [0.0, np.pi / 2, np.pi / 2, np.pi])
    radius, _ = ellipse_coords(np.array([[0.0, 3.0]]), (0.0, 0.0), (3.0, 2.0), angle=np.pi / 2)  # major axis along y
    np.testing.assert_allclose(radius, [1.0])
    np.testing.assert_allclose(lobulation(np.array([0.0, np.pi / 2]), np.array([[0.1, 0.0]])), [1.1, 0.9])


def test_cardiac_cycle_peaks_at_ed_and_es() -> None:
    fill = cardiac_cycle(20, ed=1, es=8, ejection=0.6)
    assert fill[1] == pytest.approx(1.0) and fill[8] == pytest.approx(0.4)
    assert int(np.argmax(fill)) == 1 and int(np.argmin(fill)) == 8
    assert np.all(np.diff(fill[1:9]) < 0)  # contraction, then relaxation
    assert np.all(np.diff(fill[8:]) > 0)


def test_cine_raw_layout_is_acdc(cine_raw: Path) -> None:
    patients = sorted(p.name for p in cine_raw.iterdir())
    assert patients == ["patient001", "patient002"]
    for name in patients:
        folder = cine_raw / name
        info = read_info(folder / "Info.cfg")
        assert set(info) == INFO_FIELDS
        assert info["Group"] in GROUPS
        ed, es, frames = int(info["ED"]), int(info["ES"]), int(info["NbFrame"])
        assert 1 <= ed < es <= frames and 0.3 < (es - ed) / frames < 0.45
        assert 150 < float(info["Height"]) < 200 and 40 < float(info["Weight"]) < 120
        for view, depth in (("", 6), ("_lax", 1)):
            cine = load_nifti(folder / f"{name}{view}_4d.nii.gz", dtype=None)
            assert cine.array.dtype == np.int16 and cine.array.shape == (144, 144, depth, frames)
            assert cine.zooms[:2] == (1.5, 1.5)
            for frame in (ed, es):
                image = load_nifti(folder / f"{name}{view}_frame{frame:02d}.nii.gz", dtype=None)
                label = load_label(folder / f"{name}{view}_frame{frame:02d}_gt.nii.gz", allowed={0, 1, 2, 3})
                np.testing.assert_array_equal(image.array, cine.array[..., frame - 1])
                np.testing.assert_allclose(image.affine, cine.affine)
                np.testing.assert_allclose(label.affine, cine.affine)
                assert label.array.shape == cine.array.shape[:3]
                assert {RV, MYO, LV} <= set(np.unique(label.array).tolist())
        assert len(list(folder.iterdir())) == 11  # Info.cfg, 2 cines, 2 x 2 frames x (image, labels)


def test_cine_labels_match_the_image(cine_cases: list[CineCase]) -> None:
    for case in cine_cases:
        for image, labels in ((case.sax, case.sax_labels), (case.lax, case.lax_labels)):
            mean = {v: image[labels == v].mean() for v in (BG, RV, MYO, LV)}
            assert mean[LV] > 2 * mean[MYO] and mean[RV] > 2 * mean[MYO]  # bright blood, dark muscle
            assert mean[LV] > mean[BG]


def test_sax_lv_is_enclosed_by_myocardium_at_mid_slices(cine_cases: list[CineCase]) -> None:
    for case in cine_cases:
        for k in (2, 3):
            for t in range(case.sax.shape[-1]):
                labels = case.sax_labels[:, :, k, t]
                lv = labels == LV
                ring = binary_dilation(lv, CROSS) & ~lv
                assert lv.sum() > 50
                assert np.all(labels[ring] == MYO), f"slice {k} frame {t}: LV touches something other than myocardium"


def test_sax_motion_myocardium_constant_lv_beats(cine_cases: list[CineCase]) -> None:
    for case in cine_cases:
        lv = (case.sax_labels == LV).sum(axis=(0, 1, 2))  # (T,) LV volume in voxels
        myo = (case.sax_labels == MYO).sum(axis=(0, 1, 2))
        assert int(np.argmax(lv)) == case.ed and int(np.argmin(lv)) == case.es
        assert lv[case.es] < 0.85 * lv[case.ed]
        assert myo.max() < 1.12 * myo.min()  # roughly constant, so the wall thickens as the cavity shrinks:
        mid = case.sax_labels[:, :, 3]
        endo, epi = (mid == LV).sum(axis=(0, 1)), (mid >= MYO).sum(axis=(0, 1))
        thickness = np.sqrt(epi / np.pi) - np.sqrt(endo / np.pi)  # equivalent-circle wall thickness (pixels)
        assert thickness[case.es] > 1.05 * thickness[case.ed]  # (least in DCM, whose ejection is smallest)


def test_sax_base_to_apex(cine_cases: list[CineCase]) -> None:
    for case in cine_cases:
        ed = case.sax_labels[..., case.ed]
        lv = (ed == LV).sum(axis=(0, 1))
        assert np.all(np.diff(lv) < 0)  # the cavity narrows towards the apex
        assert (ed[:, :, 0] == RV).sum() > 100  # RV at the base ...
        assert not (case.sax_labels[:, :, -1] == RV).any()  # ... and absent at the apex, in every frame


def test_lax_horseshoe_beats(cine_cases: list[CineCase]) -> None:
    for case in cine_cases:
        labels = case.lax_labels[:, :, 0]
        lv = (labels == LV).sum(axis=(0, 1))
        myo = (labels == MYO).sum(axis=(0, 1))
        assert int(np.argmax(lv)) == case.ed and int(np.argmin(lv)) == case.es
        assert myo.max() < 1.15 * myo.min()
        for t in (case.ed, case.es):
            cavity = labels[..., t] == LV
            neighbours = labels[..., t][binary_dilation(cavity, CROSS) & ~cavity]
            assert (neighbours == MYO).mean() > 0.7  # walled by myocardium ...
            assert (neighbours == BG).sum() > 5  # ... but open at the valve plane
            assert (labels[..., t] == RV).sum() > 50


def test_cine_is_deterministic_for_a_seed(cine_raw: Path, tmp_path: Path) -> None:
    again = write_cine_raw(tmp_path / "again", cases=1, seed=3)[0]
    for name in ("patient001_4d.nii.gz", "patient001_lax_4d.nii.gz"):
        first = load_nifti(cine_raw / "patient001" / name, dtype=None).array
        np.testing.assert_array_equal(load_nifti(again / name, dtype=None).array, first)
    assert (again / "Info.cfg").read_text() == (cine_raw / "patient001" / "Info.cfg").read_text()
    same = synthesize_cine(np.random.default_rng([3, 0]))
    np.testing.assert_array_equal(same.lax, first)
    assert not np.array_equal(synthesize_cine(np.random.default_rng([4, 0])).lax, same.lax)


@pytest.fixture(scope="module")
def ct_raw(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_ct_raw(tmp_path_factory.mktemp("ct") / "raw", cases=3, seed=5)


def test_ct_volume_anatomy_and_hu(ct_raw: list[Path]) -> None:
    assert [p.name for p in ct_raw] == ["volume-0.nii", "volume-1.nii", "volume-2.nii"]
    for path in ct_raw:
        volume = load_nifti(path, dtype=None)
        label = load_label(path.with_name(path.name.replace("volume", "segmentation")), allowed={0, 1, 2})
        assert volume.array.dtype == np.int16 and volume.array.shape == (128, 128, 40)
        np.testing.assert_allclose(label.affine, volume.affine)
        assert nib.aff2axcodes(volume.affine) == ("L", "P", "S")
        assert volume.zooms[2] == pytest.approx(5.0) and 2.5 < volume.zooms[0] < 3.1
        hu, seg = volume.array.astype(float), label.array
        assert abs(hu[:5, :5].mean() + 1000) < 10  # air around the body
        assert 40 < hu[seg == 1].mean() < 85  # liver, about 60 HU, with its brighter vessels
        if (seg == 2).any():
            assert hu[seg == 2].mean() < hu[seg == 1].mean() - 15  # hypodense tumour ...
            assert binary_dilation(seg == 2)[seg == 0].sum() < (seg == 2).sum()  # ... mostly surrounded by liver
        assert (hu > 500).sum() > 1000  # bone
        soft = (hu > 20) & (hu < 100) & (seg == 0)
        assert soft.sum() > (seg == 1).sum()  # liver-like densities elsewhere too: spleen, bowel, muscle
        presence = seg.any(axis=(0, 1))
        assert not presence[:10].any() and presence[24:35].all()  # liver in the upper slices only
        liver_x = (np.argwhere(seg > 0) @ volume.affine[:3, :3].T + volume.affine[:3, 3])[:, 0]
        assert liver_x.mean() > 0  # on the patient's right (RAS+ x)
    assert any((load_nifti(p.with_name(p.name.replace("volume", "segmentation"))).array == 2).any() for p in ct_raw)


def test_ct_is_deterministic_for_a_seed(ct_raw: list[Path]) -> None:
    same = synthesize_ct(np.random.default_rng([5, 1]))
    np.testing.assert_array_equal(load_nifti(ct_raw[1], dtype=None).array, same.volume)
    assert not np.array_equal(synthesize_ct(np.random.default_rng([6, 1])).volume, same.volume)


@pytest.mark.parametrize(("kind", "views"), [("cine", {"SAX", "LAX"}), ("ct", None)])
def test_write_demo_prepares_a_loadable_datalist(tmp_path: Path, kind: str, views: set[str] | None) -> None:
    datalist = write_demo(kind, tmp_path / "demo", cases=2, seed=0)
    assert datalist == tmp_path / "demo" / "prepared" / "datalist.json"
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["cases"] == 2
    items = load_datalist(datalist, "training")  # 2 cases: both go to training
    assert len({item["patient_id"] for item in items}) == 2
    for item in items:
        image = load_nifti(item["image"])
        label = load_label(item["label"], allowed={0, 1, 2, 3} if kind == "cine" else {0, 1})
        assert image.array.shape[:2] == label.array.shape[:2]
    if views is not None:
        assert {item["view"] for item in items} == views


def test_write_demo_refuses_foreign_folders_and_replaces_its_own(tmp_path: Path) -> None:
    (tmp_path / "mine" / "raw").mkdir(parents=True)
    (tmp_path / "mine" / "raw" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not written by `samzoo demo`"):
        write_demo("ct", tmp_path / "mine", cases=1)
    assert (tmp_path / "mine" / "raw" / "notes.txt").is_file()
    write_demo("ct", tmp_path / "demo", cases=2)
    datalist = write_demo("ct", tmp_path / "demo", cases=1)  # a smaller demo replaces the earlier one entirely
    assert sorted(p.name for p in (tmp_path / "demo" / "raw").rglob("volume-*")) == ["volume-0.nii"]
    assert len(load_datalist(datalist, "training")) == 1
    with pytest.raises(DataError, match="unknown demo kind"):
        write_demo("mri", tmp_path / "x")
    with pytest.raises(DataError, match="at least 1"):
        write_demo("ct", tmp_path / "x", cases=0)
