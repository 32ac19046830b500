"""Repeat runner of the SAM-Mix bundles: the mean ± std table and one tiny end-to-end sweep."""

import csv
import math
from pathlib import Path

import pytest
from samzoo.data.demo import write_demo
from samzoo.studies.repeats import _training_time, run_repeats, summarize_runs, write_tables

REPO = Path(__file__).resolve().parents[1]


def _row(n: int, seed: int, eval_set: str, dice: float, hd_mm: float | None) -> dict:
    return {
        "bundle": "sam_mix",
        "variant": None,
        "num_labelled": n,
        "seed": seed,
        "eval_set": eval_set,
        "slices": 10,
        "dice": dice,
        "hd_px": 10.0 * dice,
        "hd_mm": hd_mm,
        "accuracy": 0.5,
        "train_s": 1.0,
    }


def test_summary_is_mean_and_sample_std_over_seeds(tmp_path):
    rows = [_row(5, 0, "in_domain", 0.6, 3.0), _row(5, 1, "in_domain", 0.8, None), _row(5, 2, "in_domain", 0.7, 5.0)]
    rows.append(_row(50, 0, "totalseg", 0.9, None))
    first, second = summarize_runs(rows)
    assert (first["num_labelled"], first["eval_set"], first["runs"]) == (5, "in_domain", 3)
    assert math.isclose(first["dice_mean"], 0.7) and math.isclose(first["dice_std"], 0.1)
    assert math.isclose(first["hd_px_mean"], 7.0) and math.isclose(first["hd_px_std"], 1.0)
    assert math.isclose(first["hd_mm_mean"], 4.0) and math.isclose(first["hd_mm_std"], math.sqrt(2.0))
    assert second["runs"] == 1 and second["dice_std"] is None and second["hd_mm_mean"] is None
    table = write_tables(rows, tmp_path)
    assert "| SAM-Mix-5 | 5 labelled slices | in_domain | 3 | 0.700 ± 0.100 | 7.000 ± 1.000 | 4.000 ± 1.414 |" in table
    assert "| SAM-Mix-50 | 50 labelled slices | totalseg | 1 | 0.900 | 9.000 | - |" in table
    with open(tmp_path / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (tmp_path / "results.md").read_text() == table


def test_rerunning_a_finished_run_keeps_its_training_time(tmp_path):
    assert _training_time(tmp_path, 12.34, trained=True) == 12.34
    assert _training_time(tmp_path, 0.5, trained=False) == 12.3  # nothing trained: the stored time, rounded
    assert _training_time(tmp_path, 3.0, trained=True) == 3.0  # a resumed run that trained records its session
    assert (tmp_path / "runs" / "train_seconds.txt").read_text() == "3.0\n"
    assert _training_time(tmp_path / "new", 0.7, trained=False) == 0.7  # no stored time yet


@pytest.mark.slow
def test_run_repeats_trains_each_seed_and_writes_the_table(tmp_path):
    overrides = {"image_size": 64, "batch_size": 8, "classifier_width": 1 / 32, "max_boxes": 1, "max_epochs": 1}
    data = str(write_demo("ct", tmp_path / "data").parent)
    overrides |= {"val_interval": 1, "classifier_epochs": 1, "dataset_dir": data}
    runs = run_repeats("sam_pp", tmp_path, [2], [0, 1], {"again": data}, REPO / "bundles", overrides)
    assert [(r["seed"], r["eval_set"]) for r in runs] == [(s, e) for s in (0, 1) for e in ("in_domain", "again")]
    assert all(math.isclose(runs[i]["dice"], runs[i + 1]["dice"]) for i in (0, 2))  # same test split twice
    rows = runs[::2]
    assert all((tmp_path / "sam_pp-2" / f"seed{s}" / "models" / "model.pt").is_file() for s in (0, 1))
    assert all(0.0 <= r["dice"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0 for r in rows)
    result = summarize_runs(rows)[0]
    assert result["runs"] == 2 and math.isclose(result["dice_mean"], (rows[0]["dice"] + rows[1]["dice"]) / 2)
    assert (tmp_path / "results.md").read_text().count("| SAM-PP-2 | 2 labelled slices |") == 2  # two eval sets
