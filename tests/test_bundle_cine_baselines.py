"""The cine_baselines bundle through MONAI's bundle machinery: every variant trains, evaluates and infers on
synthetic cines with cmr2dt_sam's data path; the packaged archive runs on its own."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.networks.nets import DynUNet
from samzoo.bundle.package import config_stack, package_bundle
from samzoo.data.demo import write_demo
from samzoo.networks.cine_unets import Framewise, RecurrentUNet

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
BUNDLE = BUNDLES / "cine_baselines"
CONFIGS = BUNDLE / "configs"
VARIANTS = {"unet2d": Framewise, "unet3d": DynUNet, "recurrent_unet": RecurrentUNet}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return write_demo("cine", tmp_path_factory.mktemp("cine_baselines") / "demo", cases=6, seed=3).parent


def _files(stage: str, variant: str) -> list[str]:
    files = [str(f) for f in config_stack(BUNDLE, "inference" if stage == "infer" else "train")]
    if variant != "unet2d":
        files.append(str(CONFIGS / "variants" / f"{variant}.json"))
    if stage == "eval":
        files += [str(f) for f in config_stack(BUNDLE, "evaluate")]
    return files


def _workflow(stage: str, variant: str, **overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=_files(stage, variant),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type={"train": "train", "eval": "eval", "infer": "infer"}[stage],
        **overrides,
    )
    wf.initialize()
    return wf


def test_config_stack_puts_cmr2dt_sam_first():
    assert config_stack(BUNDLE, "train") == [BUNDLES / "cmr2dt_sam" / "configs" / "train.json", CONFIGS / "train.json"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_trains_evaluates_and_infers(demo, tmp_path, variant):
    common = {
        "bundle_root": str(BUNDLE),
        "ckpt_dir": str(tmp_path / "models"),
        "roi_size": [32, 32],
        "num_phases": 4,
    }
    work = {**common, "dataset_dir": str(demo), "output_dir": str(tmp_path / "runs"), "num_workers": 0}
    wf = _workflow("train", variant, batch_size=2, max_epochs=1, val_interval=1, **work)
    assert isinstance(wf.parser.get_parsed_content("network_def"), VARIANTS[variant])
    items = wf.parser.get_parsed_content("train#items")
    assert {item["view"] for item in items} == {"SAX"}
    wf.run()
    assert np.isfinite(wf.parser.get_parsed_content("train#trainer").state.output[0]["loss"])
    assert (tmp_path / "models" / "model.pt").is_file()

    _workflow("eval", variant, max_animations=0, **work).run()
    eval_dir = tmp_path / "runs" / "eval"
    with open(eval_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["class"] for r in rows} == {"myocardium"} and {r["phase"] for r in rows} == {"ED", "ES"}
    record = json.loads((eval_dir / "summary.json").read_text())["evaluation"]
    assert record["split"]["items"] == len({(r["case_id"], r["slice_index"]) for r in rows})

    image = next((demo / "images").glob("*SAX*.nii.gz"))
    wf = _workflow("infer", variant, output_dir=str(tmp_path / "inference"), input_files=[str(image)], **common)
    wf.run()
    mask = nib.load(str(tmp_path / "inference" / image.name.replace(".nii.gz", "_seg.nii.gz")))
    assert mask.shape == nib.load(str(image)).shape
    assert set(np.unique(mask.get_fdata())) <= {0.0, 2.0}


def test_recurrent_variant_can_run_one_way():
    parser = ConfigParser()
    parser.read_config(_files("train", "recurrent_unet"))
    parser["bidirectional"] = "false"
    assert parser.get_parsed_content("network_def").recurrent.backward_cell is None


def test_archive_holds_merged_configs_that_run_alone(tmp_path):
    archive = package_bundle(BUNDLE, tmp_path, with_model=False)
    with zipfile.ZipFile(archive) as zf:
        train = json.loads(zf.read("cine_baselines/configs/train.json"))
        evaluate = json.loads(zf.read("cine_baselines/configs/evaluate.json"))
        inference = json.loads(zf.read("cine_baselines/configs/inference.json"))
    # the base's data path and trainer, the bundle's network and name
    assert train["train"]["trainer"]["_target_"] == "SupervisedTrainer"
    assert train["network_def"]["_target_"] == "scripts.samzoo.networks.cine_unets.Framewise"
    assert train["bundle_root"] == "." and train["experiment_name"] == "cine_baselines"
    assert evaluate["run_name"] == "$@variant + '/evaluate'" and "validate#handlers" in evaluate
    # inference.json declares no network of its own: the archive holds train.json's, resolved from the % references
    raw = json.loads((CONFIGS / "inference.json").read_text())
    assert raw["network_def"] == "%bundles/cine_baselines/configs/train.json#network_def"
    assert inference["network_def"] == train["network_def"] and inference["unet_features"] == train["unet_features"]
    assert inference["use_text_prompt"] is False and inference["inferer"]["_target_"].startswith("scripts.samzoo.")
    assert not [k for k, v in inference.items() if isinstance(v, str) and v.startswith("%")]
