"""ct_baselines: U-Net, TransUNet and MultiMix on the sam_mix data path, through monai.bundle on the synthetic CT."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest
import torch
from monai.bundle import ConfigParser, run
from monai.losses import DiceLoss
from samzoo.data.datalist import load_datalist
from samzoo.data.semi_supervised import LabelledBatchSampler, select_labelled
from samzoo.engine.checkpoints import RUN_RECORD
from samzoo.engine.ct_slices import SliceBatchInferer
from samzoo.losses import SamMixLoss
from samzoo.studies.repeats import run_repeats

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "ct_baselines" / "configs"
VARIANTS = ("unet", "transunet", "multimix")
TINY = {
    "image_size": 64,
    "batch_size": 8,
    "val_interval": 1,
    "unet_features": [4, 8, 16, 32, 64, 4],
    "transunet_hidden_size": 32,
    "transunet_num_layers": 1,
    "transunet_num_heads": 2,
    "transunet_mlp_dim": 64,
    "multimix_features": [4, 8, 16, 32, 64],
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from samzoo.data.demo import write_demo

    root = tmp_path_factory.mktemp("ct_baselines")
    write_demo("ct", root / "demo_ct")
    return root / "demo_ct" / "prepared"


def _configs(variant: str, *names: str) -> list[str]:
    return [str(CONFIGS / "train.json"), str(CONFIGS / "variants" / f"{variant}.json")] + [
        str(CONFIGS / f"{name}.json") for name in names
    ]


def _parser(variant: str, demo: Path, tmp: Path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(_configs(variant))
    parser.update({"bundle_root": str(tmp), "dataset_dir": str(demo), **TINY, **overrides})
    return parser


def test_loss_is_cross_entropy_plus_weighted_dice_and_drops_the_classifier_without_one():
    torch.manual_seed(0)
    pred = {"mask": torch.randn(4, 1, 8, 8), "score": torch.randn(4, 1)}
    target = {
        "seg": (torch.rand(4, 1, 8, 8) > 0.5).float(),
        "presence": torch.tensor([[1.0], [0.0], [1.0], [1.0]]),
        "labelled": torch.tensor([[1.0], [0.0], [1.0], [0.0]]),
    }
    multimix = SamMixLoss(alpha=None, gamma=0.0, lambda_cls=1.0, lambda_seg=5.0)(pred, target)
    dice = DiceLoss(sigmoid=True, reduction="none")(pred["mask"], target["seg"]).flatten()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(pred["score"], target["presence"])
    assert torch.allclose(multimix, bce + 5.0 * (dice[0] + dice[2]) / 2)
    # segmentation-only networks: no score, the Dice term alone
    only_mask = SamMixLoss(alpha=None, gamma=0.0, lambda_cls=0.0)({"mask": pred["mask"]}, target)
    assert torch.allclose(only_mask, (dice[0] + dice[2]) / 2)


def test_full_supervision_labels_every_slice_and_batches_each_once():
    presence = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert select_labelled(presence, None, seed=3) == list(range(7))  # slices without liver keep their empty masks
    sampler = LabelledBatchSampler(7, list(range(7)), batch_size=3, labelled_per_batch=1, seed=0)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 3 and sorted(i for b in batches for i in b) == list(range(7))


def test_slice_inferer_takes_segmentation_only_networks():
    volumes = torch.rand(2, 1, 8, 8, 5)
    out = SliceBatchInferer(batch_size=3)(volumes, lambda x: 2 * x)
    assert set(out) == {"mask"} and torch.equal(out["mask"], 2 * volumes)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trainer_sees_the_labelled_slices_only_and_multimix_every_presence(demo, variant, tmp_path):
    """U-Net and TransUNet train on the N labelled slices alone; MultiMix's classifier sees every training slice's
    presence, its Dice loss only the N masks; with num_labelled null every slice keeps its mask."""
    for n in (3, None):
        parser = _parser(variant, demo, tmp_path, num_labelled=n)
        trainer = parser.get_parsed_content("train#trainer")
        slices = len(parser.get_parsed_content("train#slices"))
        seen: dict[tuple[str, int], bool] = {}
        for batch in trainer.data_loader:
            _, targets, _, kwargs = trainer.prepare_batch(batch, torch.device("cpu"))
            assert kwargs == {}
            for case, z, flag in zip(batch["case_id"], batch["slice_index"].tolist(), targets["labelled"], strict=True):
                seen[(case, z)] = bool(flag)
        expected = slices if variant == "multimix" or n is None else n
        assert len(seen) == expected and sum(seen.values()) == (slices if n is None else n)
    scheduler = parser.get_parsed_content("lr_scheduler")
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts) and scheduler.T_0 == 10


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_evaluates_and_infers(demo, variant, tmp_path):
    common = {"bundle_root": str(tmp_path), "dataset_dir": str(demo), **TINY}
    run(config_file=_configs(variant), max_epochs=2, num_labelled=3, **common)
    assert (tmp_path / "models" / "model.pt").is_file()
    record = torch.load(next((tmp_path / "models").glob("checkpoint_epoch=2*.pt")), weights_only=True)
    assert "lr_scheduler" in record
    run(config_file=_configs(variant, "evaluate"), eval_slice_fraction=0.3, **common)
    eval_dir = tmp_path / "runs" / "eval"
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["num_cases"] == 2 and "dice" in summary["classes"]["liver"]["all"]
    assert (eval_dir / "metrics.csv").is_file() and (eval_dir / "learning_curves.png").is_file()
    classification = eval_dir / "classification.json"
    assert classification.is_file() == (variant == "multimix")  # only MultiMix classifies slices
    test = load_datalist(demo / "datalist.json", "test")
    # inference.json stands alone (the architecture by % references to train.json); the variant file follows it
    inference = [str(CONFIGS / "inference.json"), str(CONFIGS / "variants" / f"{variant}.json")]
    run(config_file=inference, input_files=[item["image"] for item in test], **common)
    out = tmp_path / "runs" / "inference"
    for item in test:
        name = Path(item["image"]).name.split(".")[0]
        mask, source = nib.load(out / f"{name}_liver.nii.gz"), nib.load(item["image"])
        assert mask.shape == source.shape and abs(mask.affine - source.affine).max() < 1e-4
        assert (out / f"{name}_presence.csv").is_file() == (variant == "multimix")


@pytest.mark.slow
def test_repeats_run_a_baseline_with_full_supervision(demo, tmp_path):
    overrides = {"dataset_dir": str(demo), "max_epochs": 1, **TINY}
    (row,) = run_repeats("unet", tmp_path, [None], [0], bundles_dir=REPO / "bundles", overrides=overrides)
    assert row["bundle"] == "unet" and row["num_labelled"] is None and row["accuracy"] is None
    models = tmp_path / "unet-full" / "seed0" / "models"
    checkpoint = torch.load(next(models.glob("checkpoint_epoch=1*.pt")), weights_only=True)
    assert checkpoint[RUN_RECORD]["num_labelled"] is None  # trained on every slice, not on the default N
    assert checkpoint["trainer"]["iteration"] == 60 // TINY["batch_size"] + 1  # the demo's 60 training slices
    assert "| U-Net-full | full | in_domain | 1 |" in (tmp_path / "results.md").read_text()
