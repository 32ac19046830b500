"""Tests of samzoo.metrics: hand-computed cases, an independent brute-force check, empty masks and the report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from samzoo.data.datalist import CARDIAC_LABELS, LIVER_LABELS, load_datalist
from samzoo.data.nifti import load_label, save_nifti
from samzoo.errors import DataError
from samzoo.metrics import (
    ROW_FIELDS,
    boundary_distances,
    dice_score,
    evaluate_folder,
    evaluate_items,
    results_table,
    summarize,
    worst_case_distance,
)
from scipy.ndimage import binary_erosion, gaussian_filter
from scipy.spatial.distance import cdist

H, W, T = 24, 20, 3
SAX_SPACING = (1.5, 1.5, 8.0)


def square(shape: tuple[int, ...], top: int, left: int, size: int) -> np.ndarray:
    """A (H, W) boolean mask holding one size x size square."""
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


# --- per-slice metrics ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize(
    ("k", "dice", "hd", "masd"),
    [
        # s x s squares shifted by k <= s/2. Dice = 2 s (s - k) / (2 s^2). Every boundary pixel is within k of the
        # other boundary and the leading edge is exactly k away: HD = HD95 = k. Boundary of 4s - 4 pixels; for k = 1
        # the s pixels of the leading edge and the s - 2 inner pixels of the trailing edge are 1 away, the rest 0:
        # MASD = (2s - 2) / (4s - 4) = 0.5. For k = 2: leading edge 2s, the two side pixels next to it 1 each, the
        # trailing edge's inner pixels 2, except the two next to the corners 1: (4s - 4) / (4s - 4) = 1.
        (1, 0.9, 1.0, 0.5),
        (2, 0.8, 2.0, 1.0),
    ],
)
def test_shifted_squares_hand_computed(axis, k, dice, hd, masd):
    gt = square((40, 40), 10, 10, 10)[None]
    pred = np.roll(gt, k, axis=axis + 1)
    dist = boundary_distances(pred, gt)
    assert dice_score(pred, gt) == pytest.approx([dice])
    assert dist["hd"] == pytest.approx([hd])
    assert dist["hd95"] == pytest.approx([hd])
    assert dist["masd"] == pytest.approx([masd])


@pytest.mark.parametrize(("axis", "spacing"), [(0, (0.7, 1.3)), (1, (1.3, 0.7))])
def test_anisotropic_spacing_scales_distances_along_the_shift(axis, spacing):
    # A 1-pixel shift along the axis of the smaller spacing: every non-zero distance is one step along that axis
    # (0.7 mm), so mm = px * 0.7 exactly; using the other axis' spacing would give 1.3.
    gt = square((30, 30), 8, 8, 10)[None]
    pred = np.roll(gt, 1, axis=axis + 1)
    px = boundary_distances(pred, gt)
    mm = boundary_distances(pred, gt, spacing)
    for name in ("hd", "hd95", "masd"):
        assert mm[name] == pytest.approx(px[name] * 0.7)
    assert mm["hd"] == pytest.approx([0.7])
    assert mm["masd"] == pytest.approx([0.35])


def _blobs(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    noise = gaussian_filter(rng.standard_normal((n, *shape)), sigma=(0, 3, 3))
    return noise > 0.05


def _brute_force(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float]) -> dict[str, float]:
    """Boundaries as pixels removed by a 4-connected erosion, all pairwise distances between them in mm."""
    scale = np.asarray(spacing)
    bp = np.argwhere(pred & ~binary_erosion(pred)) * scale
    bg = np.argwhere(gt & ~binary_erosion(gt)) * scale
    d = cdist(bp, bg)
    pred_to_gt, gt_to_pred = d.min(axis=1), d.min(axis=0)
    return {
        "dice": 2 * (pred & gt).sum() / (pred.sum() + gt.sum()),
        "hd": max(pred_to_gt.max(), gt_to_pred.max()),
        "hd95": max(np.percentile(pred_to_gt, 95), np.percentile(gt_to_pred, 95)),
        "masd": np.concatenate([pred_to_gt, gt_to_pred]).mean(),
    }


def test_matches_brute_force_point_set_distances_on_random_blobs():
    rng = np.random.default_rng(7)
    pred, gt = _blobs(rng, 6, (48, 40)), _blobs(rng, 6, (48, 40))
    assert pred.reshape(6, -1).any(1).all() and gt.reshape(6, -1).any(1).all()
    spacing = (1.25, 0.8)
    dist = boundary_distances(pred, gt, spacing)
    dice = dice_score(pred, gt)
    for i in range(6):
        expected = _brute_force(pred[i], gt[i], spacing)
        assert dice[i] == pytest.approx(expected["dice"], rel=1e-6)
        for name in ("hd", "hd95", "masd"):
            assert dist[name][i] == pytest.approx(expected[name], rel=1e-5)
    assert len(set(np.round(dist["hd"], 3))) > 1  # the blobs differ, so the check covers distinct values


def test_empty_masks_have_finite_conventional_values():
    gt = np.stack([np.zeros((30, 40), bool), square((30, 40), 5, 5, 6), np.zeros((30, 40), bool)])
    pred = np.stack([np.zeros((30, 40), bool), np.zeros((30, 40), bool), square((30, 40), 5, 5, 6)])
    assert dice_score(pred, gt) == pytest.approx([1.0, 0.0, 0.0])
    px = boundary_distances(pred, gt)
    mm = boundary_distances(pred, gt, (2.0, 0.75))
    assert worst_case_distance((30, 40)) == pytest.approx(50.0)
    for name in ("hd", "hd95", "masd"):
        assert px[name] == pytest.approx([0.0, 50.0, 50.0])
        assert mm[name] == pytest.approx([0.0, math.hypot(60.0, 30.0), math.hypot(60.0, 30.0)])
        assert np.isfinite(px[name]).all() and np.isfinite(mm[name]).all()


def test_worst_case_exceeds_any_distance_on_the_grid():
    # Opposite corner pixels are the farthest apart a real contour can be.
    gt = np.zeros((1, 12, 9), bool)
    pred = gt.copy()
    gt[0, 0, 0] = pred[0, -1, -1] = True
    assert boundary_distances(pred, gt)["hd"][0] == pytest.approx(math.hypot(11, 8))
    assert worst_case_distance((12, 9)) > math.hypot(11, 8)


# --- datalist evaluation --------------------------------------------------------------------------------------------


def _cine_item(name: str, **fields) -> dict:
    item = {
        "image": f"{name}.nii.gz",
        "label": f"{name}_gt.nii.gz",
        "case_id": "case1",
        "patient_id": "patient1",
        "dataset": "synthetic",
        "view": "SAX",
        "num_slices": 3,
        "num_frames": T,
        "ed_frame": 0,
        "es_frame": 2,
        "labelled_frames": [0, 2],
        "labelled": True,
        "spacing": list(SAX_SPACING),
        "spacing_known": True,
    }
    item.update(fields)
    return item


def _lv(frames: list[int], shift: int = 0) -> np.ndarray:
    """(H, W, T) label map with an 8 x 8 LV (value 3) on ``frames``, shifted by ``shift`` rows."""
    label = np.zeros((H, W, T), np.uint8)
    for f in frames:
        label[..., f][square((H, W), 6 + shift, 6, 8)] = 3
    return label


@pytest.fixture
def cine(tmp_path: Path) -> tuple[Path, Path]:
    """A datalist of three SAX slices (basal exact, mid LV shifted 2 rows, apical LV missed at ES) and one LAX slice
    (unknown spacing, frames ED, frame1, ES; an RV predicted where there is none on frame1), with predictions."""
    data, pred_dir = tmp_path / "data", tmp_path / "pred"
    cases = [
        (_cine_item("sax0", slice_index=0, slice_position="basal"), _lv([0, 2]), _lv([0, 2])),
        (_cine_item("sax1", slice_index=1, slice_position="mid"), _lv([0, 2]), _lv([0, 2], shift=2)),
        (_cine_item("sax2", slice_index=2, slice_position="apical"), _lv([0, 2]), _lv([0])),
    ]
    lax_pred = _lv([0, 1, 2])
    lax_pred[0:4, 0:4, 1] = 1
    lax = _cine_item(
        "lax",
        view="LAX",
        slice_index=0,
        slice_position=None,
        num_slices=1,
        labelled_frames=[0, 1, 2],
        spacing=[1.0, 1.0, 1.0],
        spacing_known=False,
    )
    cases.append((lax, _lv([0, 1, 2]), lax_pred))
    for item, label, pred in cases:
        save_nifti(label, np.eye(4), data / item["label"])
        save_nifti(pred, np.eye(4), pred_dir / item["label"])
    datalist = {
        "dataset": "synthetic",
        "labels": CARDIAC_LABELS,
        "training": [],
        "validation": [],
        "test": [item for item, _, _ in cases],
    }
    (data / "datalist.json").write_text(json.dumps(datalist))
    return data / "datalist.json", pred_dir


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cine_rows_phases_positions_and_flags(cine, tmp_path):
    datalist, pred_dir = cine
    out = tmp_path / "report"
    assert evaluate_folder(pred_dir, datalist, out) == out / "metrics.csv"
    with open(out / "metrics.csv", newline="") as f:
        assert next(csv.reader(f)) == list(ROW_FIELDS)
    rows = _read_csv(out / "metrics.csv")
    assert len(rows) == (3 * 2 + 3) * 3  # (SAX slices x 2 frames + LAX 3 frames) x 3 classes
    lv = {(r["slice_position"], r["phase"]): r for r in rows if r["class"] == "LV"}
    assert [(r["phase"], r["frame"]) for r in rows if r["class"] == "LV" and r["view"] == "LAX"] == [
        ("ED", "0"),
        ("frame1", "1"),
        ("ES", "2"),
    ]
    assert float(lv["basal", "ED"]["dice"]) == 1.0 and float(lv["basal", "ED"]["hd_px"]) == 0.0
    mid = lv["mid", "ES"]
    assert float(mid["dice"]) == pytest.approx(0.75)  # 8 x 8 squares 2 rows apart
    assert float(mid["hd_px"]) == pytest.approx(2.0) and float(mid["hd_mm"]) == pytest.approx(3.0)
    assert float(mid["masd_px"]) == pytest.approx(1.0) and float(mid["masd_mm"]) == pytest.approx(1.5)
    missed = lv["apical", "ES"]
    assert (missed["gt_empty"], missed["pred_empty"], float(missed["dice"])) == ("0", "1", 0.0)
    assert float(missed["hd95_px"]) == pytest.approx(math.hypot(H, W))
    assert float(missed["hd95_mm"]) == pytest.approx(math.hypot(H * 1.5, W * 1.5))
    lax_ed = lv["", "ED"]
    assert lax_ed["view"] == "LAX" and lax_ed["hd_mm"] == lax_ed["masd_mm"] == "" and lax_ed["hd_px"] == "0.0"
    rv_extra = [r for r in rows if r["class"] == "RV" and r["phase"] == "frame1"]
    assert [(r["gt_empty"], r["pred_empty"], r["dice"]) for r in rv_extra] == [("1", "0", "0.0")]
    both = [r for r in rows if r["class"] == "myocardium"]
    assert {(r["gt_empty"], r["pred_empty"], r["dice"], r["hd_px"]) for r in both} == {("1", "1", "1.0", "0.0")}
    assert all(r["dice_3d"] == "" for r in rows)


def test_cine_summary_breakdowns(cine, tmp_path):
    datalist, pred_dir = cine
    evaluate_folder(pred_dir, datalist, tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["num_rows"] == 27 and summary["num_cases"] == 1
    assert summary["units"] == {"px": 27, "mm": 18}  # the LAX slice's 9 rows have no mm
    lv = summary["classes"]["LV"]
    assert lv["counts"] == {"rows": 9, "evaluated": 9, "both_empty": 0, "gt_empty_only": 0, "pred_empty_only": 1}
    positions = lv["slice_position"]
    assert list(positions) == ["all", "basal", "mid", "apical"]
    assert positions["all"]["dice"]["mean"] == pytest.approx(7.5 / 9)
    assert positions["basal"]["dice"] == {"mean": 1.0, "std": 0.0, "count": 2}
    assert positions["mid"]["dice"]["mean"] == pytest.approx(0.75)
    assert positions["apical"]["dice"]["mean"] == pytest.approx(0.5)
    assert positions["apical"]["dice"]["std"] == pytest.approx(math.sqrt(0.5))  # sample std of {1, 0}
    assert lv["all"]["hd_mm"]["count"] == 6 and lv["all"]["hd_px"]["count"] == 9
    assert list(lv["phase"]) == ["ED", "ES", "other"]
    assert lv["phase"]["ED"]["dice"]["mean"] == pytest.approx(3.75 / 4)
    assert lv["phase"]["ES"]["dice"]["mean"] == pytest.approx(2.75 / 4)
    assert lv["phase"]["other"]["dice"]["count"] == 1
    assert {v: s["dice"]["count"] for v, s in lv["view"].items()} == {"SAX": 6, "LAX": 3}
    rv = summary["classes"]["RV"]
    assert rv["counts"] == {"rows": 9, "evaluated": 1, "both_empty": 8, "gt_empty_only": 1, "pred_empty_only": 0}
    assert rv["all"]["dice"] == {"mean": 0.0, "std": 0.0, "count": 1}
    assert summary["classes"]["myocardium"]["counts"]["evaluated"] == 0
    assert summary["classes"]["myocardium"]["all"] == {}


def test_results_table_has_the_paper_layout(cine, tmp_path):
    datalist, pred_dir = cine
    summary = summarize(evaluate_items(load_datalist(datalist, "test"), _predictions(datalist, pred_dir), {3: "LV"}))
    lines = results_table(summary).splitlines()
    assert lines[0] == "LV (9 slices evaluated)"
    assert lines[2] == "| Metric | All slices | Basal slices | Mid slices | Apical slices | SAX | LAX |"
    dice_row = next(line for line in lines if line.startswith("| Dice |"))
    assert (
        dice_row
        == "| Dice | 0.833 ± 0.331 | 1.000 ± 0.000 | 0.750 ± 0.000 | 0.500 ± 0.707 | 0.750 ± 0.387 | 1.000 ± 0.000 |"
    )
    assert [line.split(" |")[0] for line in lines[4:]] == [
        "| Dice",
        "| HD (pixel)",
        "| HD95 (pixel)",
        "| MASD (pixel)",
        "| HD (mm)",
        "| HD95 (mm)",
        "| MASD (mm)",
    ]


def _predictions(datalist: Path, pred_dir: Path) -> list[Path]:
    return [pred_dir / Path(item["label"]).name for item in load_datalist(datalist, "test")]


def test_in_memory_predictions_match_files(cine):
    datalist, pred_dir = cine
    items = load_datalist(datalist, "test")
    files = _predictions(datalist, pred_dir)
    arrays = (torch.as_tensor(load_label(p).array.astype(np.int64)) for p in files)
    assert evaluate_items(items, arrays, {3: "LV"}) == evaluate_items(items, files, {3: "LV"})


def test_classes_argument_restricts_the_rows(cine, tmp_path):
    datalist, pred_dir = cine
    evaluate_folder(pred_dir, datalist, tmp_path / "report", classes={2: "myocardium"})
    rows = _read_csv(tmp_path / "report" / "metrics.csv")
    assert len(rows) == 9 and {r["class"] for r in rows} == {"myocardium"}


def test_report_plot_is_written_next_to_the_csv(cine, tmp_path):
    datalist, pred_dir = cine
    evaluate_folder(pred_dir, datalist, tmp_path / "report")
    image = matplotlib.image.imread(tmp_path / "report" / "metrics.png")
    assert image.shape[:2] == (700, 1100)
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["metrics.csv", "metrics.png", "summary.json"]


def test_missing_predictions_are_named_and_counted(cine):
    datalist, pred_dir = cine
    (pred_dir / "sax1_gt.nii.gz").unlink()
    (pred_dir / "lax_gt.nii.gz").unlink()
    with pytest.raises(DataError, match=r"2 of 4 predictions are missing") as err:
        evaluate_folder(pred_dir, datalist, pred_dir.parent / "report")
    assert err.value.path == pred_dir / "sax1_gt.nii.gz"
    assert "lax_gt.nii.gz" in str(err.value)
    assert not (pred_dir.parent / "report").exists()


@pytest.mark.parametrize(
    ("relative", "postfix"),
    [
        ("{label}_pred.nii.gz", "_pred"),
        ("{label}/{label}_seg.nii.gz", ""),
        ("{label}_seg.nii.gz", ""),
        ("{image}/{image}_seg.nii.gz", ""),
        ("{label}.nii", ""),
    ],
)
def test_prediction_layouts_are_found(cine, tmp_path, relative, postfix):
    datalist, pred_dir = cine
    moved = tmp_path / "moved"
    for item in load_datalist(datalist, "test"):
        label = Path(item["label"]).name.removesuffix(".nii.gz")
        image = Path(item["image"]).name.removesuffix(".nii.gz")
        target = moved / relative.format(label=label, image=image)
        vol = load_label(pred_dir / f"{label}.nii.gz")
        save_nifti(vol.array, vol.affine, target)
    out = evaluate_folder(moved, datalist, tmp_path / "report", pred_postfix=postfix)
    assert len(_read_csv(out)) == 27


def test_shape_mismatch_names_the_prediction(cine):
    datalist, pred_dir = cine
    save_nifti(np.zeros((H, W, T + 1), np.uint8), np.eye(4), pred_dir / "sax2_gt.nii.gz")
    with pytest.raises(DataError, match=r"shape \(24, 20, 4\)") as err:
        evaluate_folder(pred_dir, datalist, pred_dir.parent / "report")
    assert err.value.path == pred_dir / "sax2_gt.nii.gz"


def test_unexpected_prediction_values_are_rejected(cine):
    datalist, pred_dir = cine
    save_nifti(_lv([0, 2]) * 2, np.eye(4), pred_dir / "sax0_gt.nii.gz")  # value 6 is no cardiac label
    with pytest.raises(DataError, match=r"unexpected label values \[6\]") as err:
        evaluate_folder(pred_dir, datalist, pred_dir.parent / "report")
    assert err.value.path == pred_dir / "sax0_gt.nii.gz"
    items = load_datalist(datalist, "test")[:1]
    with pytest.raises(DataError, match="non-integer"):
        evaluate_items(items, [_lv([0, 2]) * 0.5], {3: "LV"})


def test_ct_evaluates_slices_holding_the_class_and_volume_dice(tmp_path):
    label = np.zeros((16, 12, 6), np.uint8)
    label[2:8, 3:9, 2:4] = 1
    pred = label.copy()
    pred[2:8, 3:9, 4] = 1  # one slice too many: ground truth empty there
    item = {
        "image": "ct.nii.gz",
        "label": "ct_seg.nii.gz",
        "case_id": "ct1",
        "patient_id": "ct1",
        "dataset": "synthetic_ct",
        "spacing": [0.8, 0.8, 2.5],
        "spacing_known": True,
        "num_slices": 6,
        "liver_slices": [2, 3],
    }
    save_nifti(label, np.eye(4), tmp_path / "data" / "ct_seg.nii.gz")
    save_nifti(pred, np.eye(4), tmp_path / "pred" / "ct_seg.nii.gz")
    datalist = {"dataset": "synthetic_ct", "labels": LIVER_LABELS, "training": [], "validation": [], "test": [item]}
    (tmp_path / "data" / "datalist.json").write_text(json.dumps(datalist))
    out = evaluate_folder(tmp_path / "pred", tmp_path / "data" / "datalist.json", tmp_path / "report")
    rows = _read_csv(out)
    assert [r["slice_index"] for r in rows] == ["2", "3", "4"]  # slices 0, 1 and 5 are empty in both
    assert {(r["phase"], r["frame"], r["view"], r["slice_position"]) for r in rows} == {("", "", "", "")}
    assert [float(r["dice"]) for r in rows] == [1.0, 1.0, 0.0]
    assert float(rows[2]["hd_mm"]) == pytest.approx(math.hypot(16 * 0.8, 12 * 0.8))
    assert [float(r["dice_3d"]) for r in rows] == pytest.approx([2 * 72 / (72 + 108)] * 3)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    liver = summary["classes"]["liver"]
    assert liver["dice_3d"] == {"mean": pytest.approx(0.8), "std": 0.0, "count": 1}
    assert liver["counts"]["gt_empty_only"] == 1 and liver["phase"] == {}
    assert list(liver["slice_position"]) == ["all"]


@pytest.mark.realdata
def test_real_acdc_labels_match_brute_force(shared_data):
    gt_vol = load_label(shared_data / "acdc_cine" / "patient001" / "patient001_frame01_gt.nii.gz")
    spacing = gt_vol.zooms[:2]
    gt = np.moveaxis(gt_vol.array == 2, -1, 0)  # myocardium, slices first
    gt = gt[gt.reshape(len(gt), -1).any(1)]
    pred = binary_erosion(np.roll(gt, 1, axis=2), structure=np.ones((1, 3, 3)))
    pred[0] = False  # one missed slice
    dist = boundary_distances(pred, gt, spacing)
    for i in range(1, len(gt)):
        expected = _brute_force(pred[i], gt[i], spacing)
        for name in ("hd", "hd95", "masd"):
            assert dist[name][i] == pytest.approx(expected[name], rel=1e-5)
    assert dist["hd"][0] == pytest.approx(worst_case_distance(gt.shape[1:], spacing))
