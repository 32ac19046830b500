"""Cardiac dataset preparation: ACDC, M&Ms, M&Ms-2 and STACOM readers, the common writer and the registry.

Synthetic datasets are written in each official layout in tmp_path: a ring-shaped LV myocardium around an LV blood
pool with an RV beside it, whose radius shrinks from base to apex and from ED to ES.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from samzoo.data.nifti import load_nifti, save_nifti
from samzoo.data.prepare import DATASETS, prepare
from samzoo.data.prepare.cardiac import (
    CineStack,
    image_array,
    lv_area,
    slice_affine,
    slice_positions,
    write_cine_stack,
)
from samzoo.data.prepare.mnms2 import match_frame
from samzoo.data.prepare.stacom import cavity_areas
from samzoo.errors import DataError
from scipy.ndimage import binary_dilation

SIZE = 32
AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, 1.5, 0, -20.0], [0, 0, 8.0, 5.0], [0, 0, 0, 1]])
LV_RADII = (7, 6, 5, 4, 0)  # base -> apex; the last slice lies below the apex and carries no label
SHRINK = (0.0, 0.7, 1.4, 2.1, 1.75, 1.05, 0.35, 0.5)  # LV radius change per frame: distinct frames
ACDC_TO_MNMS = np.array([0, 3, 2, 1], dtype=np.uint8)  # lookup table: ACDC value -> M&Ms value


def disk(radius: float, cx: float = SIZE / 2, cy: float = SIZE / 2) -> np.ndarray:
    x, y = np.ogrid[:SIZE, :SIZE]
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2


def heart(radius: float) -> np.ndarray:
    """(X, Y) ACDC labels: LV blood pool of ``radius`` (3), a 2-pixel myocardium (2) and an RV disk (1)."""
    label = np.zeros((SIZE, SIZE), dtype=np.uint8)
    if radius <= 0:
        return label
    label[disk(radius + 2)] = 2
    label[disk(radius)] = 3
    label[disk(3, cx=SIZE / 2 + radius + 6) & (label == 0)] = 1
    return label


def heart_stack(radii: tuple[float, ...], shrink: float = 0.0) -> np.ndarray:
    """(X, Y, Z) labels with the LV radius of each slice reduced by ``shrink`` (0 at ED)."""
    return np.stack([heart(r - shrink if r > 0 else 0) for r in radii], axis=-1)


def cine_from(labels: np.ndarray) -> np.ndarray:
    """(X, Y, Z, T) int16 image from (X, Y, Z, T) labels plus a stripe pattern whose contrast grows with t."""
    stripes = (np.arange(SIZE) % 5)[:, None, None, None] * np.arange(labels.shape[-1])
    return (labels.astype(np.int16) * 60 + 20 + stripes).astype(np.int16)


def acdc_labels(num_frames: int, radii=LV_RADII) -> np.ndarray:
    """(X, Y, Z, T) labels whose LV radius changes by SHRINK[t] in frame t."""
    return np.stack([heart_stack(radii, SHRINK[t]) for t in range(num_frames)], axis=-1)


def write_acdc_patient(
    root: Path,
    name: str = "patient001",
    num_frames: int = 6,
    ed: int = 1,
    es: int = 4,
    radii=LV_RADII,
    affine=AFFINE,
    info: str | None = None,
) -> Path:
    """One ACDC patient folder (official layout); ED/ES are 1-based as in Info.cfg."""
    folder = root / name
    folder.mkdir(parents=True)
    labels = acdc_labels(num_frames, radii)
    cine = cine_from(labels)
    save_nifti(cine, affine, folder / f"{name}_4d.nii.gz")
    for frame in (ed, es):
        save_nifti(cine[..., frame - 1], affine, folder / f"{name}_frame{frame:02d}.nii.gz")
        save_nifti(labels[..., frame - 1], affine, folder / f"{name}_frame{frame:02d}_gt.nii.gz")
    text = f"ED: {ed}\nES: {es}\nGroup: DCM\nNbFrame: {num_frames}\n" if info is None else info
    (folder / "Info.cfg").write_text(text)
    return folder


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine


def run(dataset: str, src: Path, dst: Path, **kwargs) -> dict:
    return json.loads(prepare(dataset, src, dst, **kwargs).read_text())


def all_items(datalist: dict) -> list[dict]:
    return [item for split in ("training", "validation", "test") for item in datalist[split]]


def tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


# ---------------------------------------------------------------- the common writer's geometry and positions


def test_slice_positions_are_thirds_of_the_labelled_slices_from_the_base():
    stack = heart_stack((7, 6, 5, 4, 3, 2, 0))
    assert slice_positions(stack) == ["basal", "basal", "mid", "mid", "apical", "apical", None]
    reversed_stack = stack[:, :, ::-1]
    assert slice_positions(reversed_stack) == [None, "apical", "apical", "mid", "mid", "basal", "basal"]


def test_lv_area_counts_myocardium_blood_pool_and_enclosed_pixels():
    ring = np.zeros((9, 9), dtype=np.uint8)
    ring[2:7, 2:7] = 2
    ring[3:6, 3:6] = 0  # a 3 x 3 hole enclosed by the myocardium counts too
    assert lv_area(ring) == 25
    ring[4, 4] = 1  # RV label inside the ring: still enclosed by the LV
    assert lv_area(ring) == 25
    assert lv_area(heart(0)) == 0


def test_slice_affine_moves_the_origin_and_puts_time_on_the_third_axis():
    affine = np.array([[0, -2.0, 0, 10], [1.0, 0, 0, 20], [0, 0, -10.0, 30], [0, 0, 0, 1]])
    out = slice_affine(affine, 3, time_zoom=40.0)
    np.testing.assert_allclose(out[:3, 3], [10, 20, 0])  # origin of slice 3: 30 - 3 * 10
    np.testing.assert_allclose(out[:3, :2], affine[:3, :2])
    np.testing.assert_allclose(out[:3, 2], [0, 0, -40.0])
    np.testing.assert_allclose(slice_affine(affine, 0)[:3, 2], [0, 0, -1.0])


def _stack(**changes) -> CineStack:
    labels = acdc_labels(4)
    fields = {
        "case_id": "c1",
        "patient_id": "p1",
        "view": "SAX",
        "image": cine_from(labels),
        "label": labels,
        "affine": AFFINE,
        "spacing": (1.5, 1.5, 8.0),
        "ed_frame": 0,
        "es_frame": 3,
        "labelled_frames": [0, 3],
        "spacing_known": True,
        "image_path": Path("c1_cine.nii.gz"),
        "label_path": Path("c1_gt.nii.gz"),
        "timing_path": Path("c1_info.cfg"),
    }
    return CineStack(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        ({"es_frame": 4}, "c1_info.cfg", r"ES frame 4 \(0-based\) lies outside the 4 frames of c1_cine.nii.gz"),
        ({"labelled_frames": [0, -1]}, "c1_info.cfg", "labelled frame -1"),
        ({"label": np.full((SIZE, SIZE, 5, 4), 4, np.uint8)}, "c1_gt.nii.gz", r"label values \[4\] outside"),
        ({"label": np.zeros((SIZE, SIZE, 5, 3), np.uint8)}, "c1_gt.nii.gz", "do not match the cine"),
        ({"image": np.full((SIZE, SIZE, 5, 4), np.nan, np.float32)}, "c1_cine.nii.gz", "NaN"),
    ],
)
def test_writer_refuses_inconsistent_stacks_naming_the_responsible_file(tmp_path, changes, path, message):
    with pytest.raises(DataError, match=message) as err:
        write_cine_stack(_stack(**changes), tmp_path, "demo")
    assert err.value.path == Path(path)
    assert not any(tmp_path.iterdir())


def test_writer_keeps_extra_fields_and_slice_numbering_of_a_larger_set(tmp_path):
    labels = acdc_labels(4)[:, :, :1]
    extra = {"vendor": "X"}
    stack = _stack(view="LAX", image=cine_from(labels), label=labels, first_slice=2, total_slices=3, extra=extra)
    (item,) = write_cine_stack(stack, tmp_path, "demo")
    assert item["image"] == "images/c1_LAX_s02.nii.gz"
    assert (item["slice_index"], item["num_slices"], item["slice_position"], item["vendor"]) == (2, 3, None, "X")
    assert (tmp_path / item["label"]).is_file()


def test_image_dtype_is_int16_when_values_fit_else_float32(tmp_path):
    for array, dtype in (
        (np.arange(8, dtype=np.int32).reshape(2, 2, 2), np.int16),
        (np.array([0, 40000], dtype=np.int32).reshape(1, 1, 2), np.float32),
        (np.arange(8, dtype=np.float64).reshape(2, 2, 2) / 3, np.float32),
    ):
        path = save_nifti(array, np.eye(4), tmp_path / "v.nii.gz")
        out = image_array(load_nifti(path, dtype=None))
        assert out.dtype == dtype
        np.testing.assert_allclose(out, array, rtol=1e-6)


# ---------------------------------------------------------------- ACDC


def test_acdc_items_files_and_frames(tmp_path):
    src = tmp_path / "ACDC" / "training"
    write_acdc_patient(src)
    dst = tmp_path / "prepared"
    datalist = run("acdc", tmp_path / "ACDC", dst)
    items = sorted(all_items(datalist), key=lambda i: i["slice_index"])
    assert datalist["dataset"] == "acdc" and datalist["labels"]["3"] == "LV"
    assert [i["image"] for i in items] == [f"images/patient001_SAX_s{k:02d}.nii.gz" for k in range(5)]
    assert [i["slice_position"] for i in items] == ["basal", "basal", "mid", "apical", None]
    assert [i["labelled"] for i in items] == [True] * 4 + [False]
    first = items[0]
    assert first["ed_frame"] == 0 and first["es_frame"] == 3 and first["labelled_frames"] == [0, 3]
    assert first["num_frames"] == 6 and first["num_slices"] == 5 and first["view"] == "SAX"
    assert first["spacing"] == [1.5, 1.5, 8.0] and first["spacing_known"] is True
    assert first["pathology"] == "DCM" and first["cine"] is True

    source = acdc_labels(6)
    for item in items:
        k = item["slice_index"]
        image, affine = read(dst / item["image"])
        label, label_affine = read(dst / item["label"])
        assert image.shape == label.shape == (SIZE, SIZE, 6)
        assert image.dtype == np.int16 and label.dtype == np.uint8
        np.testing.assert_array_equal(image, cine_from(source)[:, :, k, :])
        np.testing.assert_array_equal(label[..., [0, 3]], source[:, :, k, [0, 3]])
        assert not label[..., [1, 2, 4, 5]].any()  # unlabelled frames are 0
        np.testing.assert_allclose(affine, label_affine)
        np.testing.assert_allclose(affine[:3, 3], (AFFINE @ [0, 0, k, 1])[:3])
        np.testing.assert_allclose(affine[:3, :3], np.diag([-1.5, 1.5, 1.0]))


def test_acdc_reversed_stack_is_ordered_base_first(tmp_path):
    write_acdc_patient(tmp_path / "src", radii=LV_RADII[::-1])
    items = all_items(run("acdc", tmp_path / "src", tmp_path / "dst"))
    positions = {i["slice_index"]: i["slice_position"] for i in items}
    assert positions == {0: None, 1: "apical", 2: "mid", 3: "basal", 4: "basal"}


def test_acdc_spacing_known_from_meta_json_else_header(tmp_path):
    unit = np.diag([1.0, 1.0, 1.0, 1.0])
    write_acdc_patient(tmp_path / "src", "patient001", affine=unit)
    write_acdc_patient(tmp_path / "src", "patient002", affine=unit)
    write_acdc_patient(tmp_path / "src", "patient003")
    (tmp_path / "src/patient002/patient002_meta.json").write_text(json.dumps({"spacing_known": True}))
    (tmp_path / "src/patient003/patient003_meta.json").write_text(json.dumps({"spacing_known": False}))
    items = all_items(run("acdc", tmp_path / "src", tmp_path / "dst"))
    known = {i["patient_id"]: i["spacing_known"] for i in items}
    assert known == {"patient001": False, "patient002": True, "patient003": False}


def test_acdc_long_axis_extension(tmp_path):
    folder = write_acdc_patient(tmp_path / "src")
    lax_labels = acdc_labels(6, (6,))  # (X, Y, 1, T)
    lax_affine = np.array([[0, 1.2, 0, 0], [0, 0, 6.0, 0], [1.2, 0, 0, 0], [0, 0, 0, 1]])
    save_nifti(cine_from(lax_labels), lax_affine, folder / "patient001_lax_4d.nii.gz")
    for frame in (1, 4):
        save_nifti(lax_labels[..., frame - 1], lax_affine, folder / f"patient001_lax_frame{frame:02d}_gt.nii.gz")
    dst = tmp_path / "dst"
    items = [i for i in all_items(run("acdc", tmp_path / "src", dst)) if i["view"] == "LAX"]
    assert len(items) == 1
    lax = items[0]
    assert lax["image"] == "images/patient001_LAX_s00.nii.gz"
    assert (lax["slice_index"], lax["num_slices"], lax["slice_position"]) == (0, 1, None)
    assert lax["labelled_frames"] == [0, 3] and lax["spacing"] == [1.2, 1.2, 6.0]
    label, affine = read(dst / lax["label"])
    np.testing.assert_array_equal(label[..., 3], lax_labels[:, :, 0, 3])
    np.testing.assert_allclose(affine[:3, 2], [0, 1.0, 0])


def test_acdc_frame_image_that_is_not_the_cine_frame_warns(tmp_path, caplog):
    folder = write_acdc_patient(tmp_path / "src")
    save_nifti(np.zeros((SIZE, SIZE, 5), np.int16), AFFINE, folder / "patient001_frame04.nii.gz")
    with caplog.at_level(logging.WARNING):
        run("acdc", tmp_path / "src", tmp_path / "dst")
    assert "patient001_frame04.nii.gz differs from frame 4" in caplog.text


def test_frame_time_from_the_header_sets_the_time_axis_length(tmp_path):
    folder = write_acdc_patient(tmp_path / "src")
    path = folder / "patient001_4d.nii.gz"
    cine, _ = read(path)
    save_nifti(cine, AFFINE, path, zooms=(1.5, 1.5, 8.0, 0.035))  # seconds per frame
    dst = tmp_path / "dst"
    run("acdc", tmp_path / "src", dst)
    _, affine = read(dst / "images/patient001_SAX_s00.nii.gz")
    assert affine[2, 2] == pytest.approx(35.0)


def _break(folder: Path, case: str) -> Path:
    """Damage one file of a synthetic ACDC patient; return the file the error must name."""
    name = folder.name
    gt = folder / f"{name}_frame04_gt.nii.gz"
    if case == "missing cine":
        (folder / f"{name}_4d.nii.gz").unlink()
        return folder / f"{name}_4d.nii.gz"
    if case == "label shape":
        save_nifti(np.zeros((SIZE, SIZE - 1, 5), np.uint8), AFFINE, gt)
    elif case == "label affine":
        save_nifti(np.zeros((SIZE, SIZE, 5), np.uint8), AFFINE @ np.diag([1, 1, 1.5, 1]), gt)
    elif case == "label value":
        save_nifti(np.full((SIZE, SIZE, 5), 7, np.uint8), AFFINE, gt)
    elif case == "nan":
        cine = np.zeros((SIZE, SIZE, 5, 6), np.float32)
        cine[1, 2, 3, 4] = np.nan
        save_nifti(cine, AFFINE, folder / f"{name}_4d.nii.gz")
        return folder / f"{name}_4d.nii.gz"
    elif case in ("no ES", "ED outside"):
        text = "ED: 1\nGroup: NOR\n" if case == "no ES" else "ED: 40\nES: 4\n"
        (folder / "Info.cfg").write_text(text)
        return folder / "Info.cfg"
    return gt


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing cine", "file not found"),
        ("label shape", "does not match image"),
        ("label affine", "geometry"),
        ("label value", r"unexpected label values \[7\]"),
        ("nan", "NaN"),
        ("no ES", "no valid ES"),
        ("ED outside", "ED frame 39 .* outside the 6 frames"),
    ],
)
def test_acdc_bad_input_names_the_file(tmp_path, case, message):
    bad = _break(write_acdc_patient(tmp_path / "src"), case)
    with pytest.raises(DataError, match=message) as err:
        prepare("acdc", tmp_path / "src", tmp_path / "dst")
    assert err.value.path == bad
    assert not (tmp_path / "dst" / "datalist.json").exists()


# ---------------------------------------------------------------- prepare(): splits, registry, safety


def test_splits_are_by_patient_deterministic_and_honour_explicit_cases(tmp_path):
    src = tmp_path / "src"
    for p in range(1, 11):
        write_acdc_patient(src, f"patient{p:03d}", num_frames=4, ed=1, es=3, radii=(6, 4))
    first = run("acdc", src, tmp_path / "a", seed=5, val_fraction=0.2, test_fraction=0.3)
    again = run("acdc", src, tmp_path / "b", seed=5, val_fraction=0.2, test_fraction=0.3)
    sides = {s: {i["patient_id"] for i in first[s]} for s in ("training", "validation", "test")}
    assert [len(sides[s]) for s in ("training", "validation", "test")] == [5, 2, 3]
    assert not (sides["training"] & sides["validation"] or sides["training"] & sides["test"])
    assert all(len([i for i in first[s] if i["patient_id"] == p]) == 2 for s in sides for p in sides[s])
    assert first == again
    assert first["seed"] == 5 and first["samzoo_version"]

    fixed = run("acdc", src, tmp_path / "c", test_cases=["patient004", "patient009"])
    assert {i["patient_id"] for i in fixed["test"]} == {"patient004", "patient009"}
    with pytest.raises(DataError, match="test_fraction"):
        prepare("acdc", src, tmp_path / "d", test_fraction=1.2)


def test_unknown_dataset_and_option_are_refused(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown dataset 'kaggle'; choose one of acdc, mnms, mnms2, stacom"):
        prepare("kaggle", tmp_path, tmp_path / "dst")
    with pytest.raises(DataError, match=r"unknown option\(s\) --info_cvs for acdc; it takes no options"):
        prepare("acdc", tmp_path, tmp_path / "dst", info_cvs="x.csv")
    with pytest.raises(DataError, match="--info_cvs for mnms; it takes --info_csv"):
        prepare("mnms", tmp_path, tmp_path / "dst", info_cvs="x.csv")
    monkeypatch.setitem(DATASETS, "ghost", "samzoo.data.prepare.ghost")
    with pytest.raises(DataError, match="'ghost' is not available"):
        prepare("ghost", tmp_path, tmp_path / "dst")


def test_nothing_is_written_into_the_source_and_reruns_overwrite_only_prepared_files(tmp_path):
    src = tmp_path / "src"
    write_acdc_patient(src)
    before = tree(src)
    with pytest.raises(DataError, match="inside the source"):
        prepare("acdc", src, src / "prepared")
    assert tree(src) == before

    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    first = run("acdc", src, dst)
    stale = dst / "images" / "patient001_SAX_s00.nii.gz"
    stale.write_bytes(b"stale")
    assert run("acdc", src, dst) == first
    assert read(stale)[0].shape == (SIZE, SIZE, 6)
    assert (dst / "notes.txt").read_text() == "mine"
    assert tree(src) == before


# ---------------------------------------------------------------- M&Ms


def write_mnms(root: Path, cases: dict[str, tuple[str, int, int]], csv_name: str) -> None:
    """M&Ms open-dataset layout; ``cases`` maps code -> (folder, ED, ES) with 0-based frames."""
    rows = [",External code,VendorName,Vendor,Centre,ED,ES,Age,Pathology,Sex,Height,Weight"]
    for n, (code, (folder, ed, es)) in enumerate(cases.items()):
        case = root / folder / code
        case.mkdir(parents=True)
        labels = acdc_labels(8)
        labels[..., [t for t in range(8) if t not in (ed, es)]] = 0
        save_nifti(cine_from(acdc_labels(8)), AFFINE, case / f"{code}_sa.nii.gz")
        if folder != "Training/Unlabeled":
            mnms_labels = ACDC_TO_MNMS[labels]
            save_nifti(mnms_labels, AFFINE, case / f"{code}_sa_gt.nii.gz")
        rows.append(f"{n},{code},Siemens,A,1,{ed},{es},50,HCM,M,,")
    (root / csv_name).write_text("\n".join(rows) + "\n")


MNMS_CSV = "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv"


def test_mnms_remaps_labels_and_takes_ed_es_from_the_csv(tmp_path):
    src = tmp_path / "OpenDataset"
    cases = {
        "A0S9V9": ("Training/Labeled", 0, 3),
        "B1C2D3": ("Validation", 1, 5),
        "C5E6F7": ("Testing", 0, 3),
        "Z9Z9Z9": ("Training/Unlabeled", 0, 3),
    }
    write_mnms(src, cases, MNMS_CSV)
    dst = tmp_path / "dst"
    items = all_items(run("mnms", src, dst))
    assert {i["case_id"] for i in items} == {"A0S9V9", "B1C2D3", "C5E6F7"}
    b = sorted((i for i in items if i["case_id"] == "B1C2D3"), key=lambda i: i["slice_index"])
    assert (b[0]["ed_frame"], b[0]["es_frame"], b[0]["labelled_frames"]) == (1, 5, [1, 5])
    assert b[0]["vendor"] == "Siemens" and b[0]["centre"] == "1" and b[0]["pathology"] == "HCM"
    assert [i["slice_position"] for i in b] == ["basal", "basal", "mid", "apical", None]
    label, _ = read(dst / b[0]["label"])
    expected = acdc_labels(8)[:, :, 0, 1]
    np.testing.assert_array_equal(label[..., 1], expected)  # back in ACDC values: 3 LV, 1 RV
    assert label[SIZE // 2, SIZE // 2, 1] == 3
    assert set(np.unique(label)) == {0, 1, 2, 3}


def test_mnms_csv_option_and_csv_errors(tmp_path):
    src = tmp_path / "OpenDataset"
    write_mnms(src, {"A0S9V9": ("Training/Labeled", 0, 3)}, MNMS_CSV)
    moved = tmp_path / "info.csv"
    (src / MNMS_CSV).rename(moved)
    with pytest.raises(DataError, match="pass --info_csv"):
        prepare("mnms", src, tmp_path / "dst")
    assert len(all_items(run("mnms", src, tmp_path / "dst", info_csv=str(moved)))) == 5

    moved.write_text(",External code,VendorName,ED,ES\n0,OTHER1,GE,0,3\n")
    with pytest.raises(DataError, match="no row for case A0S9V9") as err:
        prepare("mnms", src, tmp_path / "dst2", info_csv=moved)
    assert err.value.path == moved
    moved.write_text("External code,ED\nA0S9V9,0\n")
    with pytest.raises(DataError, match="lacks the column"):
        prepare("mnms", src, tmp_path / "dst3", info_csv=moved)


# ---------------------------------------------------------------- M&Ms-2


def write_mnms2_subject(root: Path, name: str, with_sa_cine: bool = True, noisy_la_ed: bool = False) -> None:
    """M&Ms-2 subject folder: float64 ED/ES volumes and labels (M&Ms values), int16 cines; ED/ES = frames 5, 2."""
    folder = root / name
    folder.mkdir(parents=True)
    oblique = np.array([[0.9, -0.8, 2.0, -100], [0.8, 0.9, 1.0, 20], [0.3, 0.0, -9.0, 50], [0, 0, 0, 1]])
    for prefix, radii in (("SA", LV_RADII), ("LA", (6,))):
        labels = acdc_labels(7, radii)
        cine = cine_from(labels)
        if prefix == "LA" or with_sa_cine:
            save_nifti(cine, oblique, folder / f"{name}_{prefix}_CINE.nii.gz")
        for phase, frame in (("ED", 5), ("ES", 2)):
            image = cine[..., frame].astype(np.float64)
            if prefix == "LA" and noisy_la_ed and phase == "ED":
                image += np.random.default_rng(0).normal(0, 2, image.shape)
            save_nifti(image, oblique, folder / f"{name}_{prefix}_{phase}.nii.gz")
            gt = ACDC_TO_MNMS[labels[..., frame]].astype(np.float64)
            save_nifti(gt, oblique, folder / f"{name}_{prefix}_{phase}_gt.nii.gz")


def test_mnms2_matches_ed_es_to_cine_frames_and_remaps_labels(tmp_path, caplog):
    src = tmp_path / "MnM2"
    write_mnms2_subject(src / "dataset", "001")
    write_mnms2_subject(src / "dataset", "002", with_sa_cine=False, noisy_la_ed=True)
    (src / "dataset_information.csv").write_text("SUBJECT_CODE,DISEASE,VENDOR\n1,NOR,SIEMENS\n2,DLV,GE\n")
    dst = tmp_path / "dst"
    with caplog.at_level(logging.WARNING):
        items = all_items(run("mnms2", src, dst))
    by = {(i["case_id"], i["view"], i["slice_index"]): i for i in items}
    assert len(items) == 2 * (5 + 1)

    sax = by[("001", "SAX", 0)]
    assert (sax["ed_frame"], sax["es_frame"], sax["labelled_frames"], sax["num_frames"]) == (5, 2, [2, 5], 7)
    assert sax["frame_match"] == "exact" and sax["cine"] is True
    assert (sax["pathology"], sax["vendor"]) == ("NOR", "SIEMENS")
    label, _ = read(dst / sax["label"])
    np.testing.assert_array_equal(label[..., 5], acdc_labels(7)[:, :, 0, 5])
    image, _ = read(dst / sax["image"])
    assert image.dtype == np.int16

    clip = by[("002", "SAX", 1)]
    assert (clip["cine"], clip["num_frames"], clip["ed_frame"], clip["es_frame"]) == (False, 2, 0, 1)
    assert clip["labelled_frames"] == [0, 1] and clip["frame_match"] is None
    image, _ = read(dst / clip["image"])
    assert image.dtype == np.float32 and image.shape == (SIZE, SIZE, 2)
    np.testing.assert_array_equal(image[..., 1], cine_from(acdc_labels(7))[:, :, 1, 2])
    assert "002_SA_CINE.nii.gz is missing" in caplog.text

    lax = by[("002", "LAX", 0)]
    assert (lax["ed_frame"], lax["es_frame"], lax["frame_match"], lax["cine"]) == (5, 2, "correlation", True)


def test_match_frame_prefers_exact_then_correlation():
    rng = np.random.default_rng(1)
    cine = rng.normal(size=(6, 5, 2, 4))
    frame, method, corr = match_frame(cine[..., 2].copy(), cine)
    assert (frame, method) == (2, "exact") and corr == pytest.approx(1.0)
    frame, method, corr = match_frame(cine[..., 3] * 2 + 0.01 * rng.normal(size=(6, 5, 2)), cine)
    assert (frame, method) == (3, "correlation") and 0.99 < corr < 1.0


def test_mnms2_volume_matching_the_same_frame_twice_is_an_error(tmp_path):
    write_mnms2_subject(tmp_path / "src", "001")
    folder = tmp_path / "src" / "001"
    (folder / "001_LA_ES.nii.gz").write_bytes((folder / "001_LA_ED.nii.gz").read_bytes())
    with pytest.raises(DataError, match="the frame the other phase matches") as err:
        prepare("mnms2", tmp_path / "src", tmp_path / "dst")
    assert err.value.path == folder / "001_LA_ES.nii.gz"


# ---------------------------------------------------------------- STACOM (NIfTI form)


def myocardium_cine(radii: tuple[float, ...], cavity: list[float]) -> np.ndarray:
    """(X, Y, Z, T) 0/1 myocardium rings whose cavity radius is ``slice radius + cavity[t]``."""
    frames = []
    for change in cavity:
        slices = [(heart(r + change) == 2) if r > 0 else np.zeros((SIZE, SIZE), bool) for r in radii]
        frames.append(np.stack(slices, axis=-1))
    return np.stack(frames, axis=-1).astype(np.uint8)


CAVITY = [0.0, 0.5, 1.0, -0.5, -1.5, -1.0]  # largest at frame 2 (ED), smallest at frame 4 (ES)


def write_stacom_patient(root: Path, name: str, lax_frames: int = 6) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    myo = myocardium_cine((3, 4, 5, 6), CAVITY)  # stored apex first
    save_nifti(myo.astype(np.int16) * 100 + 10, AFFINE, folder / f"{name}_SA.nii.gz")
    save_nifti(myo, AFFINE, folder / f"{name}_SA_gt.nii.gz")
    for k in (2, 1):
        lax = myocardium_cine((5,), [0.0] * lax_frames)
        save_nifti(lax.astype(np.int16) * 100, AFFINE, folder / f"{name}_LA{k}.nii.gz")
        save_nifti(lax, AFFINE, folder / f"{name}_LA{k}_gt.nii.gz")


def test_stacom_items_label_every_frame_and_find_ed_es_from_the_cavity(tmp_path, caplog):
    src = tmp_path / "src"
    write_stacom_patient(src, "DET0000101")
    write_stacom_patient(src, "DET0000201", lax_frames=12)
    unlabelled = src / "DET0100101"
    unlabelled.mkdir()
    save_nifti(np.zeros((SIZE, SIZE, 2, 3), np.int16), AFFINE, unlabelled / "DET0100101_SA.nii.gz")
    dst = tmp_path / "dst"
    with caplog.at_level(logging.WARNING):
        datalist = run("stacom", src, dst)
    assert datalist["labels"] == {"0": "background", "2": "myocardium"}
    assert "DET0100101_SA_gt.nii.gz), skipped" in caplog.text
    items = all_items(datalist)
    assert {i["patient_id"] for i in items} == {"DET0000101", "DET0000201"}
    sax = sorted(
        (i for i in items if i["case_id"] == "DET0000101" and i["view"] == "SAX"), key=lambda i: i["slice_index"]
    )
    assert [i["slice_position"] for i in sax] == ["apical", "mid", "basal", "basal"]
    assert (sax[0]["ed_frame"], sax[0]["es_frame"]) == (2, 4)
    assert sax[0]["labelled_frames"] == list(range(6))
    label, _ = read(dst / sax[2]["label"])
    assert set(np.unique(label)) == {0, 2}
    assert all(label[..., t].any() for t in range(6))

    lax = sorted(
        (i for i in items if i["case_id"] == "DET0000201" and i["view"] == "LAX"), key=lambda i: i["slice_index"]
    )
    assert [(i["image"], i["slice_index"], i["num_slices"]) for i in lax] == [
        ("images/DET0000201_LAX_s00.nii.gz", 0, 2),
        ("images/DET0000201_LAX_s01.nii.gz", 1, 2),
    ]
    assert (lax[0]["ed_frame"], lax[0]["es_frame"], lax[0]["num_frames"]) == (4, 8, 12)  # SAX phases x 12 / 6


def test_cavity_areas_count_enclosed_pixels_per_frame():
    ring = np.zeros((7, 7, 1, 2), dtype=np.uint8)
    ring[1:6, 1:6, 0, 0] = 1
    ring[2:5, 2:5, 0, 0] = 0
    ring[1:6, 1:6, 0, 1] = 1  # a solid disk encloses nothing
    np.testing.assert_array_equal(cavity_areas(ring), [9, 0])


def test_stacom_dicom_distribution_and_unknown_layouts_explain_the_accepted_one(tmp_path):
    study = tmp_path / "CAP" / "DET0000101"
    study.mkdir(parents=True)
    (study / "DET0000101_SA1_ph0.dcm").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"DICOM distribution \(DET0000101_SA1_ph0\.dcm\).*<patient>_SA_gt\.nii\.gz"
    ) as err:
        prepare("stacom", tmp_path / "CAP", tmp_path / "dst")
    assert err.value.path == tmp_path / "CAP"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no patient folder with <patient>_SA\.nii\.gz"):
        prepare("stacom", tmp_path / "empty", tmp_path / "dst")


# ---------------------------------------------------------------- real data (skipped without ../shared/data)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_acdc_cine(shared_data, tmp_path):
    src = shared_data / "acdc_cine"
    before = tree(src)
    datalist = run("acdc", src, tmp_path / "acdc", seed=0)
    assert tree(src) == before
    items = all_items(datalist)
    patients = {s: {i["patient_id"] for i in datalist[s]} for s in ("training", "validation", "test")}
    assert sum(map(len, patients.values())) == 59
    assert not (patients["training"] & patients["test"] or patients["training"] & patients["validation"])
    for item in items[::25]:
        info = dict(
            line.split(": ")
            for line in (src / item["patient_id"] / "Info.cfg").read_text().splitlines()
            if ": " in line
        )
        assert (item["ed_frame"], item["es_frame"]) == (int(info["ED"]) - 1, int(info["ES"]) - 1)
        image, _ = read(tmp_path / "acdc" / item["image"])
        label, _ = read(tmp_path / "acdc" / item["label"])
        assert image.shape == label.shape == (100, 95, int(info["NbFrame"]))
        assert set(np.unique(label)) <= {0, 1, 2, 3}
    assert set().union(*(np.unique(read(tmp_path / "acdc" / i["label"])[0]) for i in items[:7])) == {0, 1, 2, 3}
    known = {i["patient_id"]: i["spacing_known"] for i in items}
    assert known["patient001"] and not known["patient040"]


@pytest.mark.realdata
def test_real_mnms2_subject(shared_data, tmp_path):
    dst = tmp_path / "mnms2"
    items = all_items(run("mnms2", shared_data / "mnms2", dst))
    views = {i["view"] for i in items}
    assert views == {"SAX", "LAX"}
    lax = next(i for i in items if i["view"] == "LAX")
    assert (lax["ed_frame"], lax["es_frame"], lax["frame_match"], lax["num_frames"]) == (23, 8, "exact", 25)
    sax = [i for i in items if i["view"] == "SAX"]
    assert len(sax) == 12 and not any(i["cine"] for i in sax)
    # After the remap the LV (3) is wrapped in myocardium (2); the RV (1) is not.
    lv_ring, rv_ring = [], []
    for item in sax:
        label, _ = read(dst / item["label"])
        for values, ring in ((3, lv_ring), (1, rv_ring)):
            mask = label[..., 0] == values
            ring.append(label[..., 0][binary_dilation(mask) & ~mask])
    lv, rv = np.concatenate(lv_ring), np.concatenate(rv_ring)
    assert (lv == 2).mean() > 0.9
    assert (rv == 2).mean() < 0.5
