"""Tests of samzoo.clinical: volumes and EF of stacks of known geometry, the cavity-from-ring rule, units, the
Bland-Altman statistics against a hand computation, and the read-out through files and the command line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from samzoo.cli import SamzooCLI
from samzoo.clinical import (
    PatientStack,
    Ring,
    Units,
    bland_altman,
    cavity_from_ring,
    clinical_folder,
    disc_volumes,
    frame_agreement,
    stack_areas,
    summarize_clinical,
)
from samzoo.clinical.report import PatientReadout
from samzoo.clinical.stacks import group_cases
from samzoo.clinical.volumes import frame_distance
from samzoo.data.datalist import CARDIAC_LABELS
from samzoo.data.errors import DataError
from samzoo.data.nifti import save_nifti
from samzoo.data.prepare.cardiac import slice_affine

H = W = 96
T = 10
ED, ES = 0, 5
WALL = 6  # myocardial wall thickness in pixels


def disc(radius: float, centre: tuple[float, float] = (48.0, 44.0)) -> np.ndarray:
    """Pixels whose centres lie within ``radius`` of ``centre`` (H x W)."""
    r, c = np.mgrid[:H, :W]
    return (r - centre[0]) ** 2 + (c - centre[1]) ** 2 <= radius**2


def cavity_radius(z: int, t: int) -> float:
    """LV cavity radius in pixels: narrowing from base (z = 0) to apex, largest at ED (t = 0), smallest at ES."""
    return (22.0 - 3.0 * z) * (1.0 - 0.3 * math.sin(math.pi * t / T) ** 2)


def heart(num_slices: int = 5, rv: bool = True) -> np.ndarray:
    """A label stack (H, W, Z, T): LV discs of known radius in a myocardial ring of WALL pixels, an RV disc."""
    labels = np.zeros((H, W, num_slices, T), dtype=np.uint8)
    for z in range(num_slices):
        for t in range(T):
            r = cavity_radius(z, t)
            labels[disc(r + WALL), z, t] = 2
            labels[disc(r), z, t] = 3
            if rv:
                labels[disc(10.0 - z - 0.3 * t, (48.0, 80.0)), z, t] = 1
    return labels


def stack(label: np.ndarray, pred: np.ndarray, spacing=(1.5, 1.25, 8.0), known=True, slices=None) -> PatientStack:
    slices = list(range(label.shape[2])) if slices is None else slices
    return PatientStack(
        patient_id="p1",
        case_id="p1",
        slice_indices=slices,
        num_slices=max(slices) + 1,
        label=label,
        pred=pred,
        ed_frame=ED,
        es_frame=ES,
        labelled_frames=[ED, ES],
        spacing=list(spacing),
        spacing_known=known,
    )


def labelled_at_ed_es(labels: np.ndarray) -> np.ndarray:
    out = np.zeros_like(labels)
    out[..., [ED, ES]] = labels[..., [ED, ES]]
    return out


# --- volumes and EF on stacks of known geometry ---------------------------------------------------------------------


def test_disc_volumes_and_ef_match_the_geometry():
    labels = heart()
    spacing = (1.5, 1.25, 8.0)
    areas = stack_areas(labels, range(T))
    volumes = disc_volumes(areas.lv, range(5), Units.from_spacing(spacing, True))
    # Summation of discs: sum over slices of pi r^2 (pixels) x pixel area x slice spacing, in ml.
    expected = [sum(math.pi * cavity_radius(z, t) ** 2 for z in range(5)) * 1.5 * 1.25 * 8.0 / 1000 for t in range(T)]
    np.testing.assert_allclose(volumes, expected, rtol=0.01)
    # Exactly the voxel count times the voxel volume (ACDC's own evaluation) on the digital discs.
    np.testing.assert_allclose(volumes, (labels == 3).sum(axis=(0, 1, 2)) * 1.5 * 1.25 * 8.0 / 1000)

    readout = PatientReadout(stack(labelled_at_ed_es(labels), labels, spacing), "label", True, "label")
    row = readout.row
    edv, esv = expected[ED], expected[ES]
    assert row["lv_edv_pred"] == pytest.approx(edv, rel=0.01)
    assert row["lv_esv_pred"] == pytest.approx(esv, rel=0.01)
    assert row["lv_ef_pred"] == pytest.approx(100 * (edv - esv) / edv, abs=0.5)
    # The prediction is the ground truth at every frame: the same indices, and the curve finds ED and ES.
    for index in ("lv_edv", "lv_esv", "lv_sv", "lv_ef", "myo_volume_ed", "myo_mass", "rv_edv", "rv_ef"):
        assert row[f"{index}_pred"] == pytest.approx(row[f"{index}_gt"])
    ring_volume = sum(math.pi * ((cavity_radius(z, ED) + WALL) ** 2 - cavity_radius(z, ED) ** 2) for z in range(5))
    assert row["myo_mass_gt"] == pytest.approx(1.05 * ring_volume * 1.5 * 1.25 * 8.0 / 1000, rel=0.02)
    assert (row["ed_frame_curve"], row["es_frame_curve"]) == (ED, ES)
    assert row["ed_frame_distance"] == row["es_frame_distance"] == 0
    assert row["lv_ef_curve"] == pytest.approx(row["lv_ef_gt"])
    assert row["volume_unit"] == "ml"


def test_a_missing_slice_is_interpolated_from_its_neighbours():
    areas = np.array([[100.0, 50.0], [80.0, 40.0], [40.0, 20.0]])  # slices 0, 1 and 3; slice 2 absent
    units = Units.from_spacing((1.0, 2.0, 10.0), True)
    # slice 2 = mean of slices 1 and 3: 60 and 30 pixels; 2 mm² per pixel, 10 mm per slice
    np.testing.assert_allclose(disc_volumes(areas, [0, 1, 3], units), [(100 + 80 + 60 + 40) * 0.02, 140 * 0.02])
    labels = heart(num_slices=4)[:, :, [0, 1, 3]]
    row = PatientReadout(stack(labelled_at_ed_es(labels), labels, slices=[0, 1, 3]), "label", True, "label").row
    assert row["missing_slices"] == "2" and row["slices"] == "0 1 3"


def test_only_ed_and_es_predicted_gives_indices_without_a_curve():
    labels = labelled_at_ed_es(heart())
    readout = PatientReadout(stack(labels, labels), "label", True, "label")
    assert readout.row["lv_ef_pred"] == pytest.approx(readout.row["lv_ef_gt"])
    assert readout.row["ed_frame_curve"] is None and readout.row["lv_ef_curve"] is None
    assert not readout.curve
    # The picture shows the predicted frames only, not zero volumes at the others.
    assert np.isfinite(readout.curves["LV"][[ED, ES]]).all() and np.isnan(readout.curves["LV"][1])


def test_frame_distance_wraps_around_the_cycle():
    assert frame_distance(0, 29, 30) == 1
    assert frame_distance(3, 10, 30) == 7
    assert frame_agreement([0, 1, 3]) == {"n": 3, "mean_abs": pytest.approx(4 / 3), "exact": 1, "within_1": 2}


# --- the cavity-from-ring rule --------------------------------------------------------------------------------------


def test_closed_ring_encloses_exactly_the_cavity():
    inner = disc(15.0)
    cavity, rule = cavity_from_ring(disc(21.0) & ~inner)
    assert rule is Ring.CLOSED
    np.testing.assert_array_equal(cavity, inner)


def test_open_ring_is_closed_by_its_convex_hull():
    r, c = np.mgrid[:H, :W]
    inner = disc(15.0)
    ring = disc(21.0) & ~inner
    gap = (c > 44) & (np.abs(r - 48) < 5)  # a slot through the wall on one side: the ring no longer encloses
    cavity, rule = cavity_from_ring(ring & ~gap)
    assert rule is Ring.OPEN
    # The hull takes the whole cavity plus the slot through the wall, and nothing outside the outer circle.
    assert cavity[inner].all()
    assert not cavity[~disc(21.0)].any()
    assert inner.sum() < cavity.sum() <= inner.sum() + (gap & ring).sum()


def test_apical_cap_and_missing_ring_have_no_cavity():
    cavity, rule = cavity_from_ring(disc(6.0))  # a solid apical cap
    assert rule is Ring.NO_CAVITY and not cavity.any()
    cavity, rule = cavity_from_ring(np.zeros((H, W), dtype=bool))
    assert rule is Ring.NO_RING and not cavity.any()


def test_ring_rule_reads_a_myocardium_only_stack_and_flags_the_slices():
    labels = heart(rv=False)
    myocardium_only = np.where(labels == 2, 2, 0).astype(np.uint8)
    myocardium_only[:, 50:, 0, :] = 0  # basal slice: the ring is open on one side at every frame
    myocardium_only[..., 4, :] = 2 * disc(5.0)[..., None]  # apical slice: a solid cap, no cavity
    readout = PatientReadout(stack(labelled_at_ed_es(labels), myocardium_only), "ring", False, "label")
    row = readout.row
    assert (row["ring_open"], row["ring_no_cavity"]) == (T, T)
    rings = {(a["slice_index"], a["ring"]) for a in readout.areas if a["source"] == "prediction"}
    assert rings == {(0, "open"), (1, "closed"), (2, "closed"), (3, "closed"), (4, "no_cavity")}
    # Closed rings give exactly the labelled cavity: only the basal and apical slices differ from the truth.
    areas = {(a["source"], a["slice_index"], a["frame"]): a["lv"] for a in readout.areas}
    for z in (1, 2, 3):
        assert areas[("prediction", z, ED)] == areas[("ground_truth", z, ED)]
    assert areas[("prediction", 4, ES)] == 0.0
    assert row["rv_edv_pred"] is None and row["rv_edv_gt"] is None


# --- units ----------------------------------------------------------------------------------------------------------


def test_unknown_spacing_reports_voxels_and_never_mixes_units():
    labels = heart()
    known = PatientReadout(stack(labelled_at_ed_es(labels), labels, (1.5, 1.25, 8.0), True), "label", True, "label")
    unknown = PatientReadout(stack(labelled_at_ed_es(labels), labels, (1.0, 1.0, 1.0), False), "label", True, "label")
    assert unknown.row["volume_unit"] == "voxel"
    assert unknown.row["lv_edv_pred"] == (labels[..., ED] == 3).sum()
    assert unknown.row["myo_mass_pred"] is None and unknown.row["myo_mass_gt"] is None
    assert {a["area_unit"] for a in unknown.areas} == {"px"}
    assert {a["area_unit"] for a in known.areas} == {"mm2"}
    assert unknown.row["lv_ef_pred"] == pytest.approx(known.row["lv_ef_pred"])
    unknown.row["patient_id"] = "p2"
    summary = summarize_clinical([known.row, unknown.row])
    assert summary["volume_units"] == {"ml": ["p1"], "voxel": ["p2"]}
    assert set(summary["agreement"]["lv_edv"]) == {"ml", "voxel"}
    assert summary["agreement"]["lv_edv"]["ml"]["n"] == summary["agreement"]["lv_edv"]["voxel"]["n"] == 1
    assert set(summary["agreement"]["myo_mass"]) == {"g"} and summary["agreement"]["myo_mass"]["g"]["n"] == 1
    assert summary["agreement"]["lv_ef"]["percent"]["n"] == 2  # EF has no unit: pooled
    with pytest.raises(ValueError, match="spacing"):
        Units.from_spacing((1.5, 0.0, 8.0), True)


# --- agreement ------------------------------------------------------------------------------------------------------


def test_bland_altman_against_a_hand_computation():
    # d = pred - gt = (1, -2, 0, 1): bias 0, sd = sqrt((1 + 4 + 0 + 1) / 3) = sqrt(2), MAE = 4 / 4 = 1.
    # Deviations from the means (12, 12): pred (-2, 0, 3, -1), gt (-3, 2, 3, -2): r = 17 / sqrt(14 x 26).
    stats = bland_altman([10, 12, 15, 11], [9, 14, 15, 10])
    assert stats["n"] == 4
    assert stats["mae"] == pytest.approx(1.0)
    assert stats["bias"] == pytest.approx(0.0)
    assert stats["sd"] == pytest.approx(math.sqrt(2))
    assert stats["loa_lower"] == pytest.approx(-1.96 * math.sqrt(2))
    assert stats["loa_upper"] == pytest.approx(1.96 * math.sqrt(2))
    assert stats["pearson_r"] == pytest.approx(17 / math.sqrt(14 * 26))
    # Every prediction 2 higher: d = (3, 0, 2, 3), bias = MAE = 2, the same spread.
    shifted = bland_altman([12, 14, 17, 13], [9, 14, 15, 10])
    assert shifted["bias"] == pytest.approx(2.0) and shifted["mae"] == pytest.approx(2.0)
    assert shifted["sd"] == pytest.approx(math.sqrt(2))
    single = bland_altman([3.0], [1.0])
    assert single["bias"] == 2.0 and single["sd"] is None and single["loa_upper"] is None
    assert single["pearson_r"] is None


# --- through files and the command line -----------------------------------------------------------------------------


def _write_dataset(root: Path, patients: dict[str, tuple[np.ndarray, np.ndarray, bool]]) -> Path:
    """Per-slice label files, a datalist, and per-slice predictions (p1) or one stack mask per case (others)."""
    affine = np.diag([1.5, 1.25, 8.0, 1.0])
    items = []
    for case, (label, pred, as_stack) in patients.items():
        for z in range(label.shape[2]):
            name = f"{case}_SAX_s{z:02d}.nii.gz"
            save_nifti(label[:, :, z], slice_affine(affine, z), root / "labels" / name)
            if not as_stack:
                save_nifti(pred[:, :, z], slice_affine(affine, z), root / "pred" / name)
            items.append(
                {
                    "image": f"images/{name}",
                    "label": f"labels/{name}",
                    "case_id": case,
                    "patient_id": case,
                    "view": "SAX",
                    "slice_index": z,
                    "num_slices": label.shape[2],
                    "num_frames": T,
                    "ed_frame": ED,
                    "es_frame": ES,
                    "labelled_frames": [ED, ES],
                    "spacing": [1.5, 1.25, 8.0],
                    "spacing_known": case != "p3",
                }
            )
        if as_stack:
            save_nifti(pred, affine, root / "pred" / f"{case}_4d_seg.nii.gz")
    datalist = {"labels": CARDIAC_LABELS, "training": [], "validation": [], "test": items}
    (root / "datalist.json").write_text(json.dumps(datalist))
    return root / "datalist.json"


def test_readout_of_files_through_the_command_line(tmp_path):
    labels = heart()
    eroded = labels.copy()
    eroded[
        (labels == 2)
        & ~np.stack([disc(cavity_radius(z, t) + WALL - 1) for z in range(5) for t in range(T)], -1).reshape(H, W, 5, T)
    ] = 0
    datalist = _write_dataset(
        tmp_path,
        {
            "p1": (labelled_at_ed_es(labels), labels, False),
            "p2": (labelled_at_ed_es(labels), eroded, True),
            "p3": (labelled_at_ed_es(labels), np.roll(labels, 2, axis=-1), True),
        },
    )
    out = tmp_path / "clinical"
    csv_path = SamzooCLI().clinical(str(tmp_path / "pred"), str(datalist), str(out))
    assert Path(csv_path) == out / "clinical.csv"
    with open(csv_path) as f:
        rows = {r["patient_id"]: r for r in csv.DictReader(f)}
    assert float(rows["p1"]["lv_ef_pred"]) == pytest.approx(float(rows["p1"]["lv_ef_gt"]))
    # One pixel less of outer wall: the myocardial volume drops, the cavity does not.
    assert float(rows["p2"]["myo_volume_ed_pred"]) < float(rows["p2"]["myo_volume_ed_gt"])
    assert float(rows["p2"]["lv_edv_pred"]) == pytest.approx(float(rows["p2"]["lv_edv_gt"]))
    # A prediction two frames late: the curve puts ED and ES two frames after the dataset's.
    assert (rows["p3"]["ed_frame_curve"], rows["p3"]["es_frame_curve"]) == (str(ED + 2), str(ES + 2))
    assert rows["p3"]["volume_unit"] == "voxel" and rows["p3"]["myo_mass_pred"] == ""
    summary = json.loads((out / "clinical_summary.json").read_text())
    assert summary["frames"]["ed"] == {"n": 3, "mean_abs": pytest.approx(2 / 3), "exact": 2, "within_1": 2}
    assert summary["agreement"]["lv_ef"]["percent"]["n"] == 3
    assert summary["volume_units"] == {"ml": ["p1", "p2"], "voxel": ["p3"]}
    for name in ("lv_ef_percent", "lv_edv_ml", "lv_edv_voxel", "myo_mass_g", "rv_ef_percent"):
        with Image.open(out / "bland_altman" / f"{name}.png") as picture:
            assert picture.size[0] > 300
    for case in ("p1", "p2", "p3"):
        assert (out / "volume_curves" / f"{case}.png").is_file()
    with open(out / "clinical_areas.csv") as f:
        areas = list(csv.DictReader(f))
    assert len(areas) == 3 * 5 * (T + 2)  # prediction at every frame, ground truth at ED and ES, per slice

    # A myocardium-only reading of the same predictions derives the cavity from the closed rings: the same EF.
    ring = tmp_path / "ring"
    SamzooCLI().clinical(str(tmp_path / "pred"), str(datalist), str(ring), classes=2)
    with open(ring / "clinical.csv") as f:
        ring_rows = {r["patient_id"]: r for r in csv.DictReader(f)}
    assert ring_rows["p1"]["cavity"] == "ring" and ring_rows["p1"]["rv_ef_pred"] == ""
    assert float(ring_rows["p1"]["lv_ef_pred"]) == pytest.approx(float(rows["p1"]["lv_ef_pred"]))


def test_missing_prediction_names_the_file(tmp_path):
    labels = heart(num_slices=2)
    datalist = _write_dataset(tmp_path, {"p1": (labelled_at_ed_es(labels), labels, False)})
    (tmp_path / "pred" / "p1_SAX_s01.nii.gz").unlink()
    with pytest.raises(DataError, match=r"p1_SAX_s01\.nii\.gz: prediction not found"):
        clinical_folder(tmp_path / "pred", datalist, tmp_path / "out")
    with pytest.raises(DataError, match="neither the LV"):
        clinical_folder(tmp_path / "pred", datalist, tmp_path / "out", classes=[1])
    ct_item = {"image": "ct.nii.gz", "label": "ct_label.nii.gz", "case_id": "ct", "spacing": [1, 1, 3]}
    with pytest.raises(DataError, match=r"ct_label\.nii\.gz: item without slice_index, ed_frame, es_frame"):
        group_cases([ct_item])


def test_heart_cut_by_the_crop_is_flagged():
    labels = np.zeros((H, W, 7, T), dtype=np.uint8)
    labels[..., 1:6, :] = heart()  # slices 1-5 hold the heart; slices 0 and 6 lie beyond it
    assert stack(labels, labels).heart_cut() == []
    # A crop that ends in the heart (slices 1-5 of the same stack kept as a stack of 5) and cuts the RV in-plane.
    cut = labels[:, :, 1:6].copy()
    cut[40:56, -1, ...] = 1
    assert stack(cut, cut).heart_cut() == ["in-plane: RV", "slice 0: myocardium, LV", "slice 4: myocardium, LV"]
