"""nnU-Net through samzoo: subset manifests, raw datasets with the ignore label, the loss under the ignore label,
and the nnunet bundle end to end through monai.bundle (train, evaluate, inference) on the synthetic demo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from causes import cause_of
from monai.bundle import run
from samzoo.data.datalist import load_datalist
from samzoo.data.demo import write_demo
from samzoo.data.nifti import load_label, load_nifti
from samzoo.errors import DataError
from samzoo.nnunet.dataset import MARKER, write_raw_dataset
from samzoo.nnunet.folders import use_run_folders
from samzoo.nnunet.manifest import draw_manifest, run_manifest, save_manifest, stack_volumes
from samzoo.nnunet.training import PolyLRScheduler

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "nnunet" / "configs"
TINY = {"max_epochs": 1, "epoch_length": 1, "val_iterations": 1, "batch_size": 2}


def _items(patients: int = 10, slices: int = 7) -> list[dict]:
    """Datalist items of short-axis stacks without files: enough for drawing manifests."""
    positions = ["basal"] * 3 + ["mid"] * 2 + ["apical"] * 2
    return [
        {
            "case_id": f"p{p:02d}",
            "patient_id": f"p{p:02d}",
            "view": "SAX",
            "slice_index": z,
            "slice_position": positions[z],
            "ed_frame": 0,
            "es_frame": 5,
            "labelled_frames": [0, 5],
        }
        for p in range(patients)
        for z in range(slices)
    ]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A prepared synthetic cine datalist of 6 patients (4 training, 1 validation, 1 test)."""
    return write_demo("cine", tmp_path_factory.mktemp("nnunet_demo"), cases=6)


def test_volumes_are_phases_of_short_axis_stacks() -> None:
    volumes = stack_volumes([*_items(patients=2), dict(_items(1)[0], view="LAX", slice_index=0)])
    assert [v["name"] for v in volumes] == ["p00_ED", "p00_ES", "p01_ED", "p01_ES"]
    assert [v["frame"] for v in volumes[:2]] == [0, 5] and len(volumes[0]["items"]) == 7


def test_manifests_are_nested_and_reproducible() -> None:
    volumes = stack_volumes(_items())
    small, large = draw_manifest(volumes, 8, seed=3), draw_manifest(volumes, 14, seed=3)
    assert len(small["volumes"]) == 8 and set(small["volumes"]) < set(large["volumes"])
    assert draw_manifest(volumes, 8, seed=3) == small and draw_manifest(volumes, 8, seed=4) != small
    two, four = draw_manifest(volumes, None, num_slices=2, seed=1), draw_manifest(volumes, None, num_slices=4, seed=1)
    for name, volume in two["volumes"].items():
        assert len(volume["annotated"]) == 2 and set(volume["annotated"]) < set(four["volumes"][name]["annotated"])
    # a volume's slices do not depend on which other volumes are drawn
    few = draw_manifest(volumes, 4, num_slices=2, seed=1)
    assert all(few["volumes"][n]["annotated"] == two["volumes"][n]["annotated"] for n in few["volumes"])
    assert two["annotated_slices"] == 2 * 20


def test_regions_are_the_thirds_of_the_stack() -> None:
    volumes = stack_volumes(_items(patients=2))
    assert all(v["annotated"] == [3, 4] for v in draw_manifest(volumes, regions="M")["volumes"].values())
    assert all(v["annotated"] == [0, 1, 2, 3, 4] for v in draw_manifest(volumes, regions="M+B")["volumes"].values())
    assert all(v["annotated"] == [5, 6] for v in draw_manifest(volumes, regions=["A"])["volumes"].values())
    with pytest.raises(DataError, match="unknown cardiac regions"):
        draw_manifest(volumes, regions="X")


def test_saved_manifest_is_never_replaced_by_another(tmp_path: Path) -> None:
    volumes = stack_volumes(_items())
    path = save_manifest(draw_manifest(volumes, 8, seed=0), tmp_path / "manifest.json")
    save_manifest(draw_manifest(volumes, 8, seed=0), path)  # the same subset: accepted
    with pytest.raises(DataError, match="another subset"):
        save_manifest(draw_manifest(volumes, 8, seed=1), path)


def test_raw_dataset_marks_unannotated_slices_with_the_ignore_label(demo: Path, tmp_path: Path) -> None:
    volumes = stack_volumes(load_datalist(demo, "training"))
    manifest = draw_manifest(volumes, 2, num_slices=2, seed=0)
    folder = write_raw_dataset(demo, tmp_path, 7, "demo", "stack", manifest)
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "RV": 1, "myocardium": 2, "LV": 3, "ignore": 4}
    validation = {v["name"] for v in stack_volumes(load_datalist(demo, "validation"))}
    assert dataset["numTraining"] == 2 + len(validation)
    for name, volume in manifest["volumes"].items():
        label = load_label(folder / "labelsTr" / f"{name}.nii.gz").array  # (H, W, Z)
        image = load_nifti(folder / "imagesTr" / f"{name}_0000.nii.gz").array
        assert image.shape == label.shape
        annotated = [z for z in range(label.shape[-1]) if (label[..., z] != 4).all()]
        assert annotated == volume["annotated"]  # annotated slices keep their labels, the others are all ignore
        assert all((label[..., z] == 4).all() for z in range(label.shape[-1]) if z not in annotated)
    for name in validation:  # validation volumes stay fully annotated
        assert (load_label(folder / "labelsTr" / f"{name}.nii.gz").array < 4).all()
    zeroed = write_raw_dataset(demo, tmp_path / "zeroed", 7, "demo", "stack", manifest, unannotated="background")
    name = next(iter(manifest["volumes"]))
    assert load_label(zeroed / "labelsTr" / f"{name}.nii.gz").array.max() <= 3


def test_existing_dataset_is_never_overwritten(demo: Path, tmp_path: Path) -> None:
    volumes = stack_volumes(load_datalist(demo, "training"))
    manifest = draw_manifest(volumes, 2, seed=0)
    folder = write_raw_dataset(demo, tmp_path, 3, "demo", "stack", manifest)
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert write_raw_dataset(demo, tmp_path, 3, "demo", "stack", manifest) == folder  # same content: reused
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamp
    with pytest.raises(DataError, match="holds another dataset"):
        write_raw_dataset(demo, tmp_path, 3, "demo", "stack", draw_manifest(volumes, 4, seed=0))
    with pytest.raises(DataError, match="taken by another dataset"):
        write_raw_dataset(demo, tmp_path, 3, "other", "stack", manifest)
    foreign = tmp_path / "Dataset005_mine"
    (foreign / "imagesTr").mkdir(parents=True)
    with pytest.raises(DataError, match="not written by samzoo"):
        write_raw_dataset(demo, tmp_path, 5, "mine", "stack", manifest)
    assert list(foreign.iterdir()) == [foreign / "imagesTr"] and not (foreign / MARKER).exists()
    assert stamp == {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_run_folders_point_nnunet_below_the_run(tmp_path: Path) -> None:
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw, nnUNet_results

    folders = use_run_folders(tmp_path / "nnunet")
    assert str(nnUNet_raw) == folders["nnUNet_raw"] == str((tmp_path / "nnunet" / "raw").resolve())
    assert Path(str(nnUNet_preprocessed)).is_dir() and Path(str(nnUNet_results)).parent == tmp_path / "nnunet"


@pytest.fixture(scope="module")
def trained(demo: Path, tmp_path_factory) -> Path:
    """A bundle root with one tiny epoch of 2D nnU-Net on the demo, two random slices per volume."""
    root = tmp_path_factory.mktemp("nnunet_bundle")
    run(
        config_file=str(CONFIGS / "train.json"),
        bundle_root=str(root),
        dataset_dir=str(demo.parent),
        num_slices=2,
        **TINY,
    )
    return root


@pytest.mark.slow
def test_ignore_label_removes_unannotated_voxels_from_the_loss(trained: Path) -> None:
    """nnU-Net's own loss for the trained dataset: logits under the ignore label change nothing, and the
    cross-entropy term is the mean over the annotated pixels alone."""
    from nnunetv2.run.run_training import get_trainer_from_args

    assert json.loads((trained / "models" / "dataset.json").read_text())["labels"]["ignore"] == 4
    use_run_folders(trained / "runs" / "nnunet")
    trainer = get_trainer_from_args("1", "2d", 0, device=torch.device("cpu"))
    trainer.enable_deep_supervision = False
    loss = trainer._build_loss()  # what nnU-Net's initialize() builds for this dataset
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=gen)
    target = torch.randint(0, 4, (2, 1, 8, 8), generator=gen)
    target[:, :, 4:] = 4  # the lower half is unannotated
    changed = logits.clone()
    changed[:, :, 4:] = 10 * torch.randn(2, 4, 4, 8, generator=gen)
    assert torch.isclose(loss(logits, target), loss(changed, target))
    annotated = logits[:, :, :4].permute(0, 2, 3, 1).reshape(-1, 4)
    expected_ce = torch.nn.functional.cross_entropy(annotated, target[:, 0, :4].reshape(-1))
    assert torch.isclose(loss.ce(logits, target), expected_ce)
    zeroed = target.clone()
    zeroed[:, :, 4:] = 0  # the thesis's zeroing: the same pixels taught as background
    assert not torch.isclose(loss(logits, zeroed), loss(changed, zeroed))


@pytest.mark.slow
def test_train_evaluate_inference_end_to_end(trained: Path, demo: Path, tmp_path: Path) -> None:
    models = trained / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_epoch=1.pt").is_file()
    manifest = json.loads((trained / "runs" / "manifest.json").read_text())
    assert all(len(v["annotated"]) == 2 for v in manifest["volumes"].values())
    plans = json.loads((models / "plans.json").read_text())
    assert plans["configurations"]["2d"]["batch_size"] == 2

    run(config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")], bundle_root=str(trained),
        dataset_dir=str(demo.parent), num_slices=2, **TINY)  # fmt: skip
    report = trained / "runs" / "eval"
    summary = json.loads((report / "summary.json").read_text())
    assert set(summary["classes"]) == {"RV", "myocardium", "LV"}
    rows = list(csv.DictReader((report / "metrics.csv").read_text().splitlines()))
    test_items = [i for i in load_datalist(demo, "test") if i["view"] == "SAX"]
    assert len(rows) == 3 * 2 * len(test_items)  # classes x ED/ES x short-axis test slices
    assert {r["slice_position"] for r in rows} >= {"basal", "mid", "apical"}
    prediction = load_label(report / "predictions" / Path(test_items[0]["label"]).name).array
    assert prediction.shape == load_label(test_items[0]["label"]).array.shape and prediction.max() <= 3

    raw = trained / "runs" / "nnunet" / "raw" / "Dataset001_samzoo"
    image = next((raw / "imagesTr").glob("*_0000.nii.gz"))  # a stack (H, W, Z) as a user would give one
    out = tmp_path / "inference"
    run(config_file=str(CONFIGS / "inference.json"), bundle_root=str(trained), output_dir=str(out),
        input_files=[str(image)])  # fmt: skip
    segmentation = load_label(out / image.name.replace(".nii.gz", "_seg.nii.gz")).array
    assert segmentation.shape == load_nifti(image).array.shape and set(np.unique(segmentation)) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_training_resumes_and_refuses_another_subset(trained: Path, demo: Path) -> None:
    run(config_file=str(CONFIGS / "train.json"), bundle_root=str(trained), dataset_dir=str(demo.parent),
        num_slices=2, **{**TINY, "max_epochs": 2})  # fmt: skip
    assert (trained / "models" / "checkpoint_epoch=2.pt").is_file()
    with pytest.raises(Exception) as raised:
        run(config_file=str(CONFIGS / "train.json"), bundle_root=str(trained), dataset_dir=str(demo.parent),
            num_slices=3, **TINY)  # fmt: skip
    assert "another subset" in str(cause_of(raised.value, DataError))


def _poly_rates(max_epochs: int, epochs: int, state: dict | None = None) -> tuple[list[float], dict]:
    """The rate each of ``epochs`` epochs trains with (one scheduler step per epoch, as LrScheduleHandler does),
    starting from a saved scheduler ``state`` when given, and the scheduler's state at the end."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01, momentum=0.99, nesterov=True)
    scheduler = PolyLRScheduler(optimizer, 0.01, max_epochs)
    if state is not None:
        scheduler.load_state_dict(state)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates, scheduler.state_dict()


def test_poly_schedule_resumes_exactly_and_stretches_to_a_larger_max_epochs() -> None:
    rates, _ = _poly_rates(4, 6)
    assert rates == pytest.approx([0.01 * (1 - e / 4) ** 0.9 for e in range(4)] + [0.0, 0.0])  # 0 past the end
    first, state = _poly_rates(4, 2)
    rest, _ = _poly_rates(4, 2, state)
    assert first + rest == rates[:4]  # the same max_epochs: the uninterrupted schedule, exactly
    _, finished = _poly_rates(2, 2)  # nnU-Net's own scheduler would keep max_steps 2 and go complex at epoch 4
    extended, _ = _poly_rates(4, 2, finished)
    assert extended == pytest.approx([0.01 * (1 - e / 4) ** 0.9 for e in (2, 3)])
    assert all(isinstance(rate, float) for rate in extended)


def test_study_tables_follow_the_thesis_layout(tmp_path: Path) -> None:
    from samzoo.studies.sparse_annotation import GRIDS, cell_name, write_tables

    assert [cell_name(c) for c in GRIDS["regions"]] == ["A", "M", "B", "A+M", "M+B", "A+B", "A+M+B"]
    assert cell_name({"num_volumes": 100, "num_slices": 14}) == "100v-14s" and cell_name({}) == "all"
    assert cell_name({"regions": "M", "unannotated": "background"}) == "M-zeroed"
    rows = [
        {"cell": "M", "seed": s, "volumes": 8, "annotated_slices": 16, "dice": d, "hd_px": 10.0, "masd_px": 2.0}
        | {"hd_mm": None, "train_s": 1.0}
        for s, d in ((0, 0.5), (1, 0.7))
    ]
    table = write_tables(rows, ["A", "M"], tmp_path)
    lines = table.splitlines()
    assert lines[0] == "| Metric | A | M |"
    assert lines[2] == "| Dice | - | 0.600 ± 0.141 |"  # mean ± sample std over the two seeds
    assert "| HD (mm) | - | - |" in lines and (tmp_path / "results.png").is_file()
    assert len(list(csv.DictReader((tmp_path / "runs.csv").read_text().splitlines()))) == 2


def test_cine_layout_ignores_every_frame_but_ed_and_es(demo: Path, tmp_path: Path) -> None:
    manifest = run_manifest(demo, tmp_path / "manifest.json", "cine", num_volumes=2, seed=0)
    folder = write_raw_dataset(demo, tmp_path / "raw", 2, "cine", "cine", manifest)
    items = {f"{i['case_id']}_{i['view']}_s{i['slice_index']:02d}": i for i in load_datalist(demo, "training")}
    assert set(manifest["volumes"]) <= set(items) and manifest["volumes"]
    for name in manifest["volumes"]:
        label = load_label(folder / "labelsTr" / f"{name}.nii.gz").array  # (H, W, T)
        frames = items[name]["labelled_frames"]
        assert label.shape == load_label(items[name]["label"]).array.shape
        assert all((label[..., t] == 4).all() == (t not in frames) for t in range(label.shape[-1]))
    with pytest.raises(DataError, match="layout 'stack'"):
        run_manifest(demo, tmp_path / "other.json", "cine", regions="M")


@pytest.mark.slow
def test_ct_layout_trains_and_evaluates_on_sam_mix_grid(tmp_path: Path) -> None:
    """The CT variant through monai.bundle on the synthetic CT demo: volumes windowed, resized and cut to their
    middle slices as the sam_mix bundle prepares them, a CT-normalised nnU-Net dataset of the manifest's volumes,
    and the report on whole test volumes of the network's grid (64 x 64 here to keep the test short)."""
    from samzoo.nnunet.ct import network_grid_datalist
    from samzoo.transforms.ct import middle_slice_range

    data = write_demo("ct", tmp_path / "demo")
    root = tmp_path / "bundle"
    settings = {"bundle_root": str(root), "dataset_dir": str(data.parent), "image_size": 64, "num_volumes": 4}
    configs = [str(CONFIGS / "train.json"), str(CONFIGS / "variants" / "ct.json")]
    run(config_file=configs, **settings, **TINY)
    run(config_file=[*configs, str(CONFIGS / "evaluate.json")], **settings, **TINY)

    grid = root / "runs" / "network_grid" / "datalist.json"
    depths = {i["case_id"]: i["num_slices"] for s in ("training", "test") for i in load_datalist(data, s)}
    for split in ("training", "test"):
        for item in load_datalist(grid, split):
            depth = depths[item["case_id"]]
            kept = len(middle_slice_range(depth, 0.3)) if split == "training" else depth  # test volumes stay whole
            image = load_nifti(item["image"]).array
            assert image.shape == (64, 64, kept) and item["num_slices"] == kept
            assert image.min() >= 0.0 and image.max() <= 1.0  # the abdominal window scaled to [0, 1]
            assert set(np.unique(load_label(item["label"]).array)) <= {0, 1}
    assert network_grid_datalist(data, grid.parent, 64) == str(grid)  # the same grid is reused
    with pytest.raises(DataError, match="another grid"):
        network_grid_datalist(data, grid.parent, 64, slice_fraction=0.5)
    volumes = json.loads((root / "runs" / "manifest.json").read_text())["volumes"]
    assert len(volumes) == 4 and all(v["annotated"] == list(range(v["slices"])) for v in volumes.values())
    raw = json.loads((root / "runs" / "nnunet" / "raw" / "Dataset001_samzoo" / "dataset.json").read_text())
    assert raw["channel_names"] == {"0": "CT"} and raw["numTraining"] == 4 + 1  # the manifest's volumes + validation
    with pytest.raises(DataError, match="layout 'stack'"):
        run_manifest(grid, tmp_path / "other.json", "ct", num_slices=2)

    report = root / "runs" / "eval"
    assert set(json.loads((report / "summary.json").read_text())["classes"]) == {"liver"}
    rows = list(csv.DictReader((report / "metrics.csv").read_text().splitlines()))
    test_items = load_datalist(grid, "test")
    assert len(rows) == sum(i["num_slices"] for i in test_items)  # every slice of the whole test volumes
    prediction = load_label(report / "predictions" / Path(test_items[0]["label"]).name).array
    assert prediction.shape == load_label(test_items[0]["label"]).array.shape
