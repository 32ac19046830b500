"""The sam_prompt bundle through monai.bundle on the synthetic demo: train, evaluate, zero-shot grid, inference."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import run
from samzoo.data.nifti import load_label

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "sam_prompt" / "configs"
SMALL = {"backbone": "vit_tiny", "pretrained": False, "num_volumes": 2, "batch_size": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A bundle root with one epoch of decoder fine-tuning on two demo volumes (one patient)."""
    root = tmp_path_factory.mktemp("sam_prompt")
    run(config_file=str(CONFIGS / "train.json"), bundle_root=str(root), max_epochs=1, **SMALL)
    return root


def _configs(*names: str) -> list[str]:
    return [str(CONFIGS / f"{name}.json") for name in names]


@pytest.mark.slow
def test_train_saves_decoder_and_resumes(trained: Path) -> None:
    models = trained / "models"
    assert (models / "checkpoint_epoch=1.pt").is_file() and (models / "model.pt").is_file()
    decoder = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert all(not key.startswith("image_encoder") for key in decoder) and "output_upscaling.0.weight" in decoder
    assert (trained / "runs" / "embeddings").is_dir()
    run(config_file=str(CONFIGS / "train.json"), bundle_root=str(trained), max_epochs=2, **SMALL)
    assert (models / "checkpoint_epoch=2.pt").is_file()


@pytest.mark.slow
def test_evaluate_writes_the_standard_report(trained: Path) -> None:
    run(config_file=_configs("train", "evaluate"), bundle_root=str(trained), **SMALL)
    report = trained / "runs" / "eval"
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["classes"]) == {"RV", "myocardium", "LV"}
    rows = list(csv.DictReader((report / "metrics.csv").read_text().splitlines()))
    assert rows and {r["phase"] for r in rows} <= {"ED", "ES"}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    slices = {(r["case_id"], r["view"], r["slice_index"]) for r in rows}
    assert len(list((report / "overlays").glob("*.png"))) == len(slices)  # one overlay per evaluated cine slice
    assert (report / "learning_curves.png").is_file()


@pytest.mark.slow
def test_zero_shot_grid_table(trained: Path) -> None:
    grid = "$samzoo.studies.prompting.prompt_grid((False, True), (2,), (0, 1), extra=((True, 0, 0),))"
    run(config_file=_configs("train", "zero_shot"), bundle_root=str(trained), repeats=2, grid=grid, **SMALL)
    out = trained / "runs" / "zero_shot"
    results = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert len(results) == 5 * 4  # 5 configurations x (3 classes + overall)
    overall = [r for r in results if r["class"] == "overall"]
    settings = [(r["boxes"], r["positives"], r["negatives"]) for r in overall]
    assert settings == [("0", "2", "0"), ("0", "2", "1"), ("1", "0", "0"), ("1", "2", "0"), ("1", "2", "1")]
    assert all(r["repeats"] == "2" and int(r["slices"]) > 0 for r in overall)
    assert "| Boxes | Pos. | Neg. | Dice |" in (out / "results.md").read_text()


@pytest.mark.slow
def test_inference_from_label_boxes_and_prompt_file(trained: Path) -> None:
    datalist = json.loads((trained / "runs" / "demo_cine" / "prepared" / "datalist.json").read_text())
    item = next(i for i in datalist["test"] if i["labelled"])
    folder = trained / "runs" / "demo_cine" / "prepared"
    image, label = folder / item["image"], folder / item["label"]
    common = {"bundle_root": str(trained), "backbone": "vit_tiny", "pretrained": False, "input_image": str(image)}
    run(config_file=str(CONFIGS / "inference.json"), frame=item["ed_frame"], prompt_label_file=str(label), **common)
    out = trained / "runs" / "inference" / (image.name.split(".nii")[0] + "_seg.nii.gz")
    pred = load_label(out).array
    assert pred.shape == load_label(label).array.shape
    others = [f for f in range(pred.shape[-1]) if f != item["ed_frame"]]
    assert not pred[..., others].any() and set(np.unique(pred)) <= {0, 1, 2, 3}
    prompts = trained / "prompts.json"
    prompts.write_text(json.dumps({"2": {"points": [[10, 12]], "labels": [1], "box": [2, 2, 40, 40]}}))
    run(config_file=str(CONFIGS / "inference.json"), frame=0, prompt_file=str(prompts), **common)
    assert set(np.unique(load_label(out).array)) <= {0, 2}
