"""The cmr2dt_sam bundle run through MONAI's bundle machinery: train, resume, evaluate, infer on synthetic cines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from causes import cause_of
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from PIL import Image
from samzoo.clinical import clinical_readout
from samzoo.data.demo import write_demo
from samzoo.errors import DataError

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "cmr2dt_sam"
CONFIGS = BUNDLE / "configs"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cmr2dt")
    datalist = write_demo("cine", root / "demo", cases=6, seed=3)
    return {
        "bundle_root": str(BUNDLE),
        "dataset_dir": str(datalist.parent),
        "ckpt_dir": str(root / "models"),
        "output_dir": str(root / "runs"),
        "roi_size": [32, 32],
        "num_phases": 6,
        "batch_size": 2,
        "num_workers": 0,
        "val_interval": 1,
    }


def _workflow(files: list[Path], workflow_type: str, **overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **overrides,
    )
    wf.initialize()
    return wf


def test_train_resume_evaluate_and_infer(workspace):
    wf = _workflow([CONFIGS / "train.json"], "train", max_epochs=2, **workspace)
    wf.run()
    ckpt_dir = Path(workspace["ckpt_dir"])
    assert (ckpt_dir / "model.pt").is_file()
    assert (ckpt_dir / "checkpoint_epoch=2.pt").is_file()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert np.isfinite(trainer.state.output[0]["loss"])
    first_items = len(wf.parser.get_parsed_content("train#items"))
    assert first_items > 0

    # Starting again with more epochs continues from the saved epoch 2 instead of from scratch.
    wf = _workflow([CONFIGS / "train.json"], "train", max_epochs=3, **workspace)
    trainer = wf.parser.get_parsed_content("train#trainer")
    started = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: started.append(engine.state.epoch))
    wf.run()
    assert started == [3]
    assert (ckpt_dir / "checkpoint_epoch=3.pt").is_file()

    # A run with another seed is refused before it changes any file in the checkpoint folder.
    files = {p: p.read_bytes() for p in ckpt_dir.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError) as error:
        _workflow([CONFIGS / "train.json"], "train", max_epochs=4, **{**workspace, "seed": 1}).run()
    assert isinstance(error.value.__cause__, DataError) and "seed: 0 -> 1" in str(error.value.__cause__)
    assert {p: p.read_bytes() for p in ckpt_dir.rglob("*") if p.is_file()} == files

    # Evaluation writes one prediction per test item in the label's geometry and the metrics report.
    wf = _workflow([CONFIGS / "train.json", CONFIGS / "evaluate.json"], "eval", max_animations=2, **workspace)
    wf.run()
    eval_dir = Path(workspace["output_dir"]) / "eval"
    items = wf.parser.get_parsed_content("validate#items")
    for item in items:
        pred = nib.load(str(eval_dir / "predictions" / Path(item["label"]).name))
        label = nib.load(item["label"])
        assert pred.shape == label.shape
        np.testing.assert_allclose(pred.affine, label.affine, atol=1e-4)
        assert set(np.unique(pred.get_fdata())) <= {0.0, 2.0}
    with open(eval_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["phase"] for r in rows} == {"ED", "ES"}
    assert {r["class"] for r in rows} == {"myocardium"}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["classes"]["myocardium"]["counts"]["rows"] == len(rows)
    # Pictures next to the report: an overlay per item, an animation of every frame for the first max_animations
    # items, and the learning curves read from the training log of the training above.
    assert len(items) > 2
    for number, item in enumerate(items):
        name = Path(item["label"]).name.removesuffix(".nii.gz")
        with Image.open(eval_dir / "overlays" / f"{name}.png") as overlay:
            assert overlay.size[0] > 300 and overlay.size[1] > 200
        assert (eval_dir / "animations" / f"{name}.gif").is_file() == (number < 2)
        if number < 2:
            with Image.open(eval_dir / "animations" / f"{name}.gif") as animation:
                assert animation.n_frames == nib.load(item["label"]).shape[-1]
    with Image.open(eval_dir / "learning_curves.png") as curves:
        assert curves.size == (1100, 400)
    # Clinical read-out of the same predictions: one row per short-axis stack, the cavity derived from the
    # myocardial ring, a volume-time curve over every frame (evaluation predicts all of them).
    with open(eval_dir / "clinical.csv") as f:
        clinical = {r["case_id"]: r for r in csv.DictReader(f)}
    assert set(clinical) == {i["case_id"] for i in items if i["view"] == "SAX"}
    for case, row in clinical.items():
        assert row["cavity"] == "ring" and row["rv_edv_pred"] == ""
        assert row["ed_frame_curve"] != "" and row["lv_edv_gt"] != ""
        assert (eval_dir / "volume_curves" / f"{case}.png").is_file()
    assert "lv_ef" in json.loads((eval_dir / "clinical_summary.json").read_text())["agreement"]

    # Inference on a whole short-axis stack (H, W, Z, T) returns a mask with the input's shape and affine.
    case = next(iter(clinical))
    stack = Path(workspace["dataset_dir"]).parent / "raw" / case / f"{case}_4d.nii.gz"
    out_dir = Path(workspace["output_dir"]) / "inference"
    wf = _workflow(
        [CONFIGS / "inference.json"],
        "infer",
        bundle_root=workspace["bundle_root"],
        ckpt_dir=workspace["ckpt_dir"],
        output_dir=str(out_dir),
        roi_size=workspace["roi_size"],
        num_phases=workspace["num_phases"],
        input_files=[str(stack)],
    )
    wf.run()
    assert [p.name for p in out_dir.iterdir()] == [stack.name.replace(".nii.gz", "_seg.nii.gz")]  # no slice files
    mask = nib.load(str(out_dir / stack.name.replace(".nii.gz", "_seg.nii.gz")))
    source = nib.load(str(stack))
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine)
    assert set(np.unique(mask.get_fdata())) <= {0.0, 2.0}
    # The stack mask read out against the datalist's slices gives the indices of the evaluation's slice masks.
    clinical_readout([i for i in items if i["case_id"] == case], out_dir, out_dir / "clinical", [2])
    with open(out_dir / "clinical" / "clinical.csv") as f:
        (from_stack,) = csv.DictReader(f)
    for key in ("lv_edv_pred", "lv_esv_pred", "lv_ef_pred", "myo_mass_pred", "ed_frame_curve", "es_frame_curve"):
        assert from_stack[key] == clinical[case][key]


def test_variant_files_select_views_and_prompts(workspace):
    from monai.bundle import ConfigParser

    variants = (("sax", {"SAX"}, False), ("lax", {"LAX"}, False), ("multi_no_prompt", {"SAX", "LAX"}, False))
    for variant, views, prompt in variants:
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "variants" / f"{variant}.json")])
        parser.update(workspace)
        parser.parse()
        assert {item["view"] for item in parser.get_parsed_content("train#items")} == views
        assert (parser.get_parsed_content("network_def").text_proj is not None) == prompt
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update(workspace)
    parser.parse()
    assert parser.get_parsed_content("network_def").text_proj is not None


def test_paper_setting_names_the_missing_sam_checkpoint(workspace):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "variants" / "paper.json")])
    parser.update(workspace)
    parser.parse()
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("network_def")
    cause = cause_of(info.value, FileNotFoundError)
    assert "sam_vit_h_4b8939.pth" in str(cause) and "pretrained=false" in str(cause)


def test_paper_setting_names_its_precision():
    """The paper variant asks for bf16 autocast itself instead of inheriting the CUDA-dependent default."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "variants" / "paper.json")])
    assert parser.get_parsed_content("amp") is True
    assert parser.get_parsed_content("train#trainer#amp_kwargs")["dtype"] == torch.bfloat16


def test_loading_the_inference_pipeline_writes_nothing(tmp_path, monkeypatch):
    """MONAI Label builds the pre/postprocessing, inferer and network of inference.json for every request (and drops
    SaveImaged): none of that may create folders, in the output or the temporary folder; only a run does."""
    import tempfile

    from monai.bundle import ConfigParser

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "output_dir": str(tmp_path / "out")})
    for key in ("preprocessing", "postprocessing", "inferer", "network_def", "displayable_configs"):
        parser.get_parsed_content(key)
    assert not list(tmp_path.iterdir())
    assert Path(parser.get_parsed_content("work_dir")).parent == tmp_path / "out"
