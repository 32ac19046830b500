"""samzoo compare: tables of runs with hand-computed metrics, paired tests, and the refusals."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from samzoo.cli import SamzooCLI
from samzoo.data.datalist import CARDIAC_LABELS
from samzoo.data.nifti import save_nifti
from samzoo.metrics import evaluate_folder
from samzoo.metrics.comparison import ComparisonError, compare, parse_runs
from samzoo.metrics.provenance import METRICS_VERSION, split_fingerprint

H, W, T = 24, 20, 3
POSITIONS = ("basal", "mid", "apical")


def _lv(shift: int = 0) -> np.ndarray:
    """(H, W, T) label map with an 8 x 8 LV (value 3) at ED (frame 0) and ES (frame 2), ``shift`` rows down."""
    label = np.zeros((H, W, T), np.uint8)
    label[6 + shift : 14 + shift, 6:14, [0, 2]] = 3
    return label


def _item(k: int) -> dict:
    return {
        "image": f"sax{k}.nii.gz",
        "label": f"sax{k}_gt.nii.gz",
        "case_id": "case1",
        "patient_id": "case1",
        "dataset": "synthetic",
        "view": "SAX",
        "slice_index": k,
        "num_slices": 3,
        "slice_position": POSITIONS[k],
        "num_frames": T,
        "ed_frame": 0,
        "es_frame": 2,
        "labelled_frames": [0, 2],
        "spacing": [1.0, 1.0, 8.0],
        "spacing_known": False,
    }


def _study(root: Path):
    """A datalist of three SAX slices under ``root`` and a function that scores a run whose LV is shifted by the given
    rows per slice (0 rows: Dice 1, HD 0; 2 rows: Dice 0.75, HD 2; 4 rows: Dice 0.5, HD 4) into ``root/<name>/eval``
    (once per name)."""
    data = root / "data"
    items = [_item(k) for k in range(3)]
    for item in items:
        save_nifti(_lv(), np.eye(4), data / item["label"])
    datalist = data / "datalist.json"
    datalist.write_text(json.dumps({"labels": CARDIAC_LABELS, "training": [], "validation": [], "test": items}))
    reports: dict[str, Path] = {}

    def score(name: str, shifts: tuple[int, int, int], source: Path = datalist) -> Path:
        if name not in reports:
            pred_dir, reports[name] = root / name / "pred", root / name / "eval"
            for item, shift in zip(items, shifts, strict=True):
                save_nifti(_lv(shift), np.eye(4), pred_dir / item["label"])
            evaluate_folder(pred_dir, source, reports[name], classes={3: "LV"})
        return reports[name]

    return datalist, score


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study of :func:`_study`, shared by the tests that only read its reports."""
    return _study(tmp_path_factory.mktemp("study"))


def _runs(score) -> list[dict]:
    return [
        {"bundle": "cine_baselines", "variant": "unet2d", "report": str(score("unet2d", (4, 4, 4)))},
        {"bundle": "cine_baselines", "variant": "unet3d", "report": str(score("unet3d", (2, 2, 2)))},
        {"method": "SAM", "seed": 0, "report": str(score("sam0", (0, 0, 2)))},
        {"method": "SAM", "seed": 1, "report": str(score("sam1", (0, 0, 0)))},
    ]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _value(rows, table, method, group, metric, column="mean"):
    (row,) = [r for r in rows if (r["table"], r["method"], r["group"], r["metric"]) == (table, method, group, metric)]
    return float(row[column])


def test_report_records_split_and_metric_version(study):
    datalist, score = study
    summary = json.loads((score("run", (0, 0, 0)) / "summary.json").read_text())
    record = summary["evaluation"]
    assert record["metrics_version"] == METRICS_VERSION
    assert record["split"]["cases"] == ["case1"] and record["split"]["items"] == 3
    from samzoo.data.datalist import load_datalist

    assert record["split"]["sha256"] == split_fingerprint(load_datalist(datalist, "test"))["sha256"]


def test_tables_hold_the_hand_computed_metrics(study, tmp_path):
    datalist, score = study
    md = compare(datalist, _runs(score), tmp_path / "cmp")
    rows = _csv(tmp_path / "cmp" / "comparison.csv")
    # slice-position layout, seeds pooled: SAM's apical slice is shifted in one seed of two
    assert _value(rows, "slice_position", "cine_baselines/unet2d", "all", "dice") == pytest.approx(0.5)
    assert _value(rows, "slice_position", "cine_baselines/unet3d", "mid", "hd_px") == pytest.approx(2.0)
    assert _value(rows, "slice_position", "SAM", "basal", "dice") == pytest.approx(1.0)
    assert _value(rows, "slice_position", "SAM", "apical", "dice") == pytest.approx(0.875)
    assert _value(rows, "slice_position", "SAM", "apical", "dice", "n") == 4
    # seeds layout: run means 11/12 and 1 -> mean and sample std over the two seeds
    assert _value(rows, "seeds", "SAM", "all", "dice") == pytest.approx((11 / 12 + 1) / 2, abs=1e-6)
    assert _value(rows, "seeds", "SAM", "all", "dice", "std") == pytest.approx(np.std([11 / 12, 1.0], ddof=1), abs=1e-6)
    # a single run has no spread over seeds: no std in the CSV, the mean alone in the table
    key = ("seeds", "cine_baselines/unet2d", "dice")
    (single,) = [r for r in rows if (r["table"], r["method"], r["metric"]) == key]
    assert single["std"] == "" and single["n"] == "1"
    # paired against the best baseline (unet3d): SAM's seed-averaged Dice is +0.25 on 4 planes, +0.125 on 2
    paired = [r for r in rows if r["table"] == "paired"]
    assert {r["reference"] for r in paired} == {"cine_baselines/unet3d"}
    assert _value(rows, "paired", "SAM", "all", "dice") == pytest.approx((4 * 0.25 + 2 * 0.125) / 6, abs=1e-6)
    assert _value(rows, "paired", "SAM", "all", "dice", "p_value") == pytest.approx(2 / 2**6)  # exact, all positive
    assert _value(rows, "paired", "cine_baselines/unet2d", "all", "dice") == pytest.approx(-0.25)
    text = md.read_text()
    assert "| Dice | cine_baselines/unet2d | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.000 |" in text
    assert "| SAM | all | 2 |" in text and "| cine_baselines/unet2d | all | 1 | 0.500 | 4.000 |" in text
    assert "HD (mm)" not in text  # spacing unknown in every run
    figures = sorted(p.name for p in (tmp_path / "cmp" / "figures").iterdir())
    assert figures == ["box_LV_dice.png", "box_LV_hd_px.png"]


def test_run_lists_from_files_and_cli(study, tmp_path):
    datalist, score = study
    runs = _runs(score)[:2]
    root = Path(runs[0]["report"]).parents[1]
    for run in runs:
        run["report"] = os.path.relpath(run["report"], tmp_path)
    (tmp_path / "runs.yaml").write_text(json.dumps({"runs": runs}))  # JSON is YAML
    parsed = parse_runs(tmp_path / "runs.yaml")
    assert parsed[0].bundle == "cine_baselines" and parsed[0].variant == "unet2d"
    assert parsed[0].report.resolve() == root / "unet2d" / "eval"
    out = SamzooCLI().compare(str(datalist), str(tmp_path / "runs.yaml"), str(tmp_path / "a"))
    assert Path(out).is_file()
    # the shorthand points at the output folder; the report is found in its eval/
    specs = f"cine_baselines/unet2d={root / 'unet2d'},cine_baselines/unet3d={root / 'unet3d'}"
    SamzooCLI().compare(str(datalist), specs, str(tmp_path / "b"))
    assert (tmp_path / "a" / "comparison.csv").read_text() == (tmp_path / "b" / "comparison.csv").read_text()


def test_runs_of_one_view_compare_on_a_split_that_holds_other_views_too(study, tmp_path):
    """Cine bundles evaluate the views they were trained on (SAX) of a split that may also hold LAX slices: the
    comparison takes the views every run evaluated, and refuses runs that evaluated different views."""
    datalist, score = study
    data = json.loads(datalist.read_text())
    lax = {**_item(0), "image": "lax.nii.gz", "label": "lax_gt.nii.gz", "view": "LAX", "slice_index": 0}
    save_nifti(_lv(), np.eye(4), datalist.parent / lax["label"])
    data["test"].append(lax)
    both = datalist.with_name("sax_and_lax.json")
    both.write_text(json.dumps(data))
    md = compare(both, _runs(score), tmp_path / "cmp")
    assert "| SAM | all | 2 |" in md.read_text()
    save_nifti(_lv(), np.eye(4), datalist.parents[1] / "both" / "pred" / lax["label"])  # and a LAX prediction
    runs = [*_runs(score)[:1], {"method": "both views", "report": str(score("both", (0, 0, 0), both))}]
    with pytest.raises(ComparisonError, match=r"unet2d: evaluated on another split \(views \['SAX'\] vs \['LAX', 'S"):
        compare(both, runs, tmp_path / "refused")


def test_refuses_a_run_scored_on_another_split(study, tmp_path):
    datalist, score = study
    data = json.loads(datalist.read_text())
    data["test"] = data["test"][:2]
    other = datalist.with_name("two_slices.json")
    other.write_text(json.dumps(data))
    runs = [*_runs(score)[:1], {"method": "partial", "report": str(score("partial", (0, 0, 0), other))}]
    with pytest.raises(ComparisonError, match=r"partial: evaluated on another split \(same cases, different labels"):
        compare(datalist, runs, tmp_path / "cmp")
    assert not (tmp_path / "cmp" / "comparison.md").exists()


def test_refuses_different_labels_and_names_missing_cases(tmp_path):
    datalist, score = _study(tmp_path)
    report = score("run", (0, 0, 0))
    # same items, but the ground truth of one slice changed after the run was scored
    save_nifti(_lv(1), np.eye(4), datalist.parent / "sax1_gt.nii.gz")
    with pytest.raises(ComparisonError, match="run: evaluated on another split"):
        compare(datalist, [{"method": "run", "report": str(report)}], tmp_path / "cmp")
    summary = json.loads((report / "summary.json").read_text())
    summary["evaluation"]["split"]["cases"] = ["case1", "case9"]
    (report / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ComparisonError, match=r"cases not in the split \['case9'\]"):
        compare(datalist, [{"method": "run", "report": str(report)}], tmp_path / "cmp")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.update(metrics_version=METRICS_VERSION - 1), "metric version"),
        (lambda e: e.clear(), "does not record the split and metric version"),
    ],
)
def test_refuses_other_metric_code_and_unrecorded_reports(study, tmp_path, edit, message):
    datalist, score = study
    runs = _runs(score)[:2]
    runs[1]["report"] = str(shutil.copytree(runs[1]["report"], tmp_path / "unet3d"))
    summary_path = Path(runs[1]["report"]) / "summary.json"
    summary = json.loads(summary_path.read_text())
    edit(summary["evaluation"])
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(ComparisonError, match=f"cine_baselines/unet3d: .*{message}"):
        compare(datalist, runs, tmp_path / "cmp")


def test_refuses_bad_run_specs(study, tmp_path):
    datalist, score = study
    with pytest.raises(ComparisonError, match="bundle/variant=FOLDER"):
        parse_runs(["unet2d"])
    with pytest.raises(ComparisonError, match=r"unknown fields \['sed'\]"):
        parse_runs([{"report": "x", "sed": 1}])
    with pytest.raises(ComparisonError, match=r"no summary\.json and metrics\.csv"):
        compare(datalist, [f"a/b={tmp_path}"], tmp_path / "cmp")
    runs = _runs(score)
    runs[3]["seed"] = 0
    with pytest.raises(ComparisonError, match="share method, number of labels and seed"):
        compare(datalist, runs, tmp_path / "cmp")


def test_mlflow_run_holds_the_tables(study, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    datalist, score = study
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    runs = [*_runs(score)[:1], {"method": "SAM (LiteMedSAM+)", "report": _runs(score)[1]["report"]}]
    compare(datalist, runs, tmp_path / "cmp", tracking="mlflow", tracking_uri=uri)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("samzoo_compare").experiment_id])
    assert math.isclose(run.data.metrics["seeds/LV/cine_baselines/unet2d/all/dice"], 0.5)
    assert math.isclose(run.data.metrics["seeds/LV/SAM _LiteMedSAM__/all/dice"], 0.75)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"comparison.md", "comparison.csv", "figures"}
