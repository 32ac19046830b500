"""The catalogue of bad inputs: each runs through a real command (``samzoo ...`` or ``python -m monai.bundle run``)
and must fail with a non-zero exit status, its cause on the last line printed, no input changed and no partial
output left behind.

The commands run in this process through the same entry points and the same failure report
(:func:`samzoo.errors.report`) the installed exception hook uses, so the whole catalogue costs one interpreter
start-up; :func:`test_the_real_commands_end_with_the_cause` checks the hook itself in fresh interpreters.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import fire
import monai.bundle.__main__ as monai_bundle_main
import nibabel as nib
import numpy as np
import pytest
import torch
from samzoo.cli import SamzooCLI
from samzoo.data.demo import write_demo
from samzoo.errors import report

REPO = Path(__file__).resolve().parents[1]
CMR = REPO / "bundles" / "cmr2dt_sam" / "configs"
TINY = ["--roi_size", "[32,32]", "--num_phases", "4", "--batch_size", "2", "--num_workers", "0"]


def run_command(command: list[str]) -> tuple[int, list[str]]:
    """Run ``samzoo ARGS`` or ``monai.bundle ARGS`` in this process; return its exit status and printed lines."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        try:
            if command[0] == "samzoo":
                fire.Fire(SamzooCLI(), command=command[1:], name="samzoo")
            else:
                fire.Fire(monai_bundle_main, command=command[1:], name="monai.bundle")
            status = 0
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except Exception as error:
            report(error, sys.stderr)
            status = 1
    return status, [line for line in out.getvalue().splitlines() if line.strip()]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file below ``folder``."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Workspace:
    root: Path
    raw: Path  # ACDC-layout demo cines
    prepared: Path  # their datalist folder
    models: Path  # a trained tiny cmr2dt_sam
    out: Path  # where each case writes; must stay empty after a failure

    def copy_patient(self, name: str = "patient001") -> Path:
        """A fresh source folder holding one demo patient, to break."""
        src = self.root / "broken" / name
        if src.parent.exists():
            shutil.rmtree(src.parent)
        shutil.copytree(self.raw / name, src)
        return src

    def datalist(self, edit: Callable[[dict], None]) -> Path:
        """A copy of the prepared datalist (same folder, so its relative paths hold) changed by ``edit``."""
        data = json.loads((self.prepared / "datalist.json").read_text())
        edit(data)
        path = self.prepared / "edited.json"
        path.write_text(json.dumps(data))
        return path

    def file(self, name: str, content: bytes) -> Path:
        path = self.root / "files" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        return path


def train(*args: str) -> list[str]:
    return [
        "monai.bundle",
        "run",
        "--config_file",
        str(CMR / "train.json"),
        "--bundle_root",
        str(CMR.parent),
        *TINY,
        *args,
    ]


def _nifti(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("reliability")
    datalist = write_demo("cine", root / "demo", cases=6, seed=3)
    w = Workspace(root, root / "demo" / "raw", datalist.parent, root / "models", root / "out")
    status, lines = run_command(
        train(
            "--dataset_dir",
            str(w.prepared),
            "--ckpt_dir",
            str(w.models),
            "--output_dir",
            str(root / "runs"),
            "--max_epochs",
            "1",
            "--val_interval",
            "1",
        )
    )
    assert status == 0, "\n".join(lines[-20:])
    return w


def _w(ws: Workspace) -> dict[str, str]:
    return {"raw": str(ws.raw), "prepared": str(ws.prepared), "models": str(ws.models), "out": str(ws.out)}


# Each case: (command, category, expected cause) where the command is built from the workspace and may first
# break a copy of an input. The expected text is a regular expression the last printed line must match.
Case = tuple[Callable[[Workspace], list[str]], str, str]


def _info(ws: Workspace, text: str) -> Path:
    src = ws.copy_patient()
    (src / "Info.cfg").write_text(text)
    return src.parent


def _replace_cine(ws: Workspace, array: np.ndarray) -> Path:
    src = ws.copy_patient()
    _nifti(src / "patient001_4d.nii.gz", array)
    return src.parent


def _without_info(ws: Workspace) -> Path:
    src = ws.copy_patient()
    (src / "Info.cfg").unlink()
    return src.parent


def _bad_label(ws: Workspace, value: int) -> Path:
    src = ws.copy_patient()
    gt = sorted(src.glob("patient001_frame*_gt.nii.gz"))[0]
    image = nib.load(str(gt))
    data = np.asarray(image.dataobj).copy()
    data[0, 0, 0] = value
    nib.save(nib.Nifti1Image(data, image.affine, image.header), str(gt))
    return src.parent


def _prepare(src: Callable[[Workspace], Path | str], *args: str) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["samzoo", "prepare", "acdc", "--src", str(src(ws)), "--dst", str(ws.out / "prepared"), *args]


def _datalist_edit(edit: Callable[[dict], None]) -> Callable[[Workspace], Path]:
    return lambda ws: ws.datalist(edit)


def _drop(key: str, split: str = "training") -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data[split][0].pop(key)

    return edit


def _set(key: str, value: object, split: str = "training") -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data[split][0][key] = value

    return edit


def _evaluate(datalist: Callable[[Workspace], Path | str], pred: Callable[[Workspace], Path | str], *args: str):
    return lambda ws: [
        "samzoo",
        "evaluate",
        "--pred",
        str(pred(ws)),
        "--datalist",
        str(datalist(ws)),
        "--out",
        str(ws.out / "e"),
        *args,
    ]


def _predictions(ws: Workspace, make: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    """A prediction folder for the validation split: each label (changed by ``make``) as the predicted mask."""
    folder = ws.root / "pred"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    items = json.loads((ws.prepared / "datalist.json").read_text())["validation"]
    for item in items:
        label = nib.load(str(ws.prepared / item["label"]))
        data = np.asarray(label.dataobj).astype(np.float32)
        nib.save(
            nib.Nifti1Image(data if make is None else make(data), label.affine), str(folder / Path(item["label"]).name)
        )
    return folder


def _checkpoint_dir(ws: Workspace, make: Callable[[Path], None]) -> Path:
    """A copy of the trained model folder changed by ``make``."""
    folder = ws.root / "ckpt_copy"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(ws.models, folder)
    make(folder)
    return folder


def _damage(name: str, content: bytes | None = None) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        path = folder / name
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] if content is None else content)

    return make


def _other_seed(folder: Path) -> None:
    path = next(folder.glob("checkpoint_epoch=*.pt"))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["run_record"]["seed"] = 7
    torch.save(checkpoint, path)


def _bundle(configs: list[str], *args: str) -> list[str]:
    files = "[" + ",".join(f"'{CMR / c}'" for c in configs) + "]"
    return ["monai.bundle", "run", "--config_file", files, "--bundle_root", str(CMR.parent), *TINY, *args]


def _evaluation(ckpt: Callable[[Workspace], Path], *args: str):
    return lambda ws: _bundle(
        ["train.json", "evaluate.json"],
        "--dataset_dir",
        str(ws.prepared),
        "--ckpt_dir",
        str(ckpt(ws)),
        "--output_dir",
        str(ws.out / "run"),
        *args,
    )


def _inference(
    inputs: Callable[[Workspace], list[str]], ckpt: Callable[[Workspace], Path] = lambda ws: ws.models, *args: str
):
    return lambda ws: _bundle(
        ["inference.json"],
        "--ckpt_dir",
        str(ckpt(ws)),
        "--output_dir",
        str(ws.out / "inference"),
        "--input_files",
        json.dumps([str(i) for i in inputs(ws)]),
        *args,
    )


def _training(dataset: Callable[[Workspace], Path | str] = lambda ws: ws.prepared, *args: str, ckpt=None):
    def command(ws: Workspace) -> list[str]:
        ckpt_dir = ws.out / "models" if ckpt is None else ckpt(ws)
        datalist = Path(dataset(ws))
        extra = ["--datalist", str(datalist)] if datalist.suffix == ".json" else ["--dataset_dir", str(datalist)]
        return train(
            *extra,
            "--ckpt_dir",
            str(ckpt_dir),
            "--output_dir",
            str(ws.out / "run"),
            "--max_epochs",
            "2",
            "--val_interval",
            "1",
            *args,
        )

    return command


def _setting(*args: str, ckpt=None):
    """Training on the prepared demo with the given command-line settings (and checkpoint folder)."""
    return _training(lambda ws: ws.prepared, *args, ckpt=ckpt)


def _stack(ws: Workspace) -> Path:
    return ws.raw / "patient001" / "patient001_4d.nii.gz"


CASES: dict[str, Case] = {
    # samzoo prepare
    "prepare/missing source": (
        _prepare(lambda ws: ws.root / "nowhere"),
        "missing file",
        "nowhere: source dataset folder not found",
    ),
    "prepare/empty source": (
        _prepare(lambda ws: ws.file("x", b"") and ws.root / "files"),
        "wrong content",
        "no acdc cases found|no ACDC patient folders",
    ),
    "prepare/unknown dataset": (
        lambda ws: ["samzoo", "prepare", "acdcx", "--src", str(ws.raw), "--dst", str(ws.out)],
        "bad setting",
        "unknown dataset 'acdcx'",
    ),
    "prepare/no Info.cfg": (_prepare(_without_info), "missing file", r"Info.cfg: file not found"),
    "prepare/Info.cfg without ES": (
        _prepare(lambda ws: _info(ws, "ED: 1\nGroup: NOR\n")),
        "wrong content",
        r"Info.cfg: has no valid ES frame",
    ),
    "prepare/ED equals ES": (
        _prepare(lambda ws: _info(ws, "ED: 1\nES: 1\n")),
        "silently wrong",
        r"Info.cfg: ED and ES are the same frame",
    ),
    "prepare/ES beyond the cine": (
        _prepare(lambda ws: _info(ws, "ED: 1\nES: 99\n")),
        "wrong content",
        r"es_frame 98 lies outside|ES.*99|outside",
    ),
    "prepare/3D cine": (
        _prepare(lambda ws: _replace_cine(ws, np.zeros((8, 8, 4), np.float32))),
        "wrong shape",
        r"patient001_4d.nii.gz: is 3D",
    ),
    "prepare/cine not NIfTI": (
        _prepare(
            lambda ws: (ws.copy_patient() / "patient001_4d.nii.gz").write_bytes(b"noise" * 50) and ws.root / "broken"
        ),
        "unreadable file",
        r"patient001_4d.nii.gz",
    ),
    "prepare/label value 7": (_prepare(lambda ws: _bad_label(ws, 7)), "wrong labels", r"_gt.nii.gz.*7"),
    "prepare/label frame out of range": (
        _prepare(
            lambda ws: (
                shutil.copy(
                    next((ws.copy_patient()).glob("*frame*_gt.nii.gz")),
                    ws.root / "broken" / "patient001" / "patient001_frame99_gt.nii.gz",
                )
                and ws.root / "broken"
            )
        ),
        "wrong content",
        r"frame99_gt.nii.gz: frame number 99 lies outside",
    ),
    "prepare/meta.json not JSON": (
        _prepare(lambda ws: (ws.copy_patient() / "patient001_meta.json").write_text("{") and ws.root / "broken"),
        "unreadable file",
        r"patient001_meta.json: is not valid JSON",
    ),
    "prepare/unknown test case": (
        _prepare(lambda ws: ws.raw, "--test_cases", "patient999"),
        "bad setting",
        r"test case 'patient999' is not among",
    ),
    "prepare/test case twice": (
        _prepare(lambda ws: ws.raw, "--test_cases", "patient001,patient001"),
        "silently wrong",
        r"named more than once",
    ),
    "prepare/test and validation overlap": (
        _prepare(lambda ws: ws.raw, "--test_cases", "patient001", "--val_cases", "patient001"),
        "bad setting",
        r"both test and validation",
    ),
    "prepare/val_fraction 1.5": (
        _prepare(lambda ws: ws.raw, "--val_fraction", "1.5"),
        "bad setting",
        r"val_fraction must lie in",
    ),
    "prepare/fractions leave no training": (
        _prepare(lambda ws: ws.raw, "--val_fraction", "0.5", "--test_fraction", "0.5"),
        "bad setting",
        r"val_fraction \+ test_fraction",
    ),
    "prepare/destination inside source": (
        lambda ws: ["samzoo", "prepare", "acdc", "--src", str(ws.raw), "--dst", str(ws.raw / "out")],
        "bad output path",
        r"destination lies inside the source",
    ),
    "prepare/unknown option": (_prepare(lambda ws: ws.raw, "--liver_label", "2"), "bad setting", r"liver_label"),
    # samzoo demo
    "demo/unknown kind": (
        lambda ws: ["samzoo", "demo", "mri", "--dst", str(ws.out)],
        "bad setting",
        r"unknown demo kind 'mri'",
    ),
    "demo/zero cases": (
        lambda ws: ["samzoo", "demo", "cine", "--dst", str(ws.out), "--cases", "0"],
        "bad setting",
        r"cases must be at least 1",
    ),
    # samzoo evaluate
    "evaluate/missing datalist": (
        _evaluate(lambda ws: ws.root / "none.json", _predictions),
        "missing file",
        r"none.json: datalist not found",
    ),
    "evaluate/datalist not JSON": (
        _evaluate(lambda ws: ws.file("bad.json", b"{oops"), _predictions),
        "unreadable file",
        r"bad.json: is not valid JSON",
    ),
    "evaluate/datalist a list": (
        _evaluate(lambda ws: ws.file("list.json", b"[1, 2]"), _predictions),
        "wrong content",
        r"list.json: is not a datalist",
    ),
    "evaluate/unknown split": (
        _evaluate(lambda ws: ws.prepared / "datalist.json", _predictions, "--split", "tests"),
        "bad setting",
        r"has no split 'tests'",
    ),
    "evaluate/item without label": (
        _evaluate(_datalist_edit(_drop("label", "validation")), _predictions, "--split", "validation"),
        "wrong content",
        r"validation item 0 .* has no 'label' field",
    ),
    "evaluate/item without image": (
        _evaluate(_datalist_edit(_drop("image", "validation")), _predictions, "--split", "validation"),
        "wrong content",
        r"validation item 0 has no 'image' field",
    ),
    "evaluate/spacing not numeric": (
        _evaluate(_datalist_edit(_set("spacing", ["a", 1, 1], "validation")), _predictions, "--split", "validation"),
        "wrong content",
        r"has spacing \['a', 1, 1\]",
    ),
    "evaluate/missing prediction folder": (
        _evaluate(lambda ws: ws.prepared / "datalist.json", lambda ws: ws.root / "nopred", "--split", "validation"),
        "missing file",
        r"nopred",
    ),
    "evaluate/empty prediction folder": (
        _evaluate(
            lambda ws: ws.prepared / "datalist.json",
            lambda ws: (ws.root / "emptypred").mkdir(exist_ok=True) or ws.root / "emptypred",
            "--split",
            "validation",
        ),
        "missing file",
        r"emptypred|no prediction|not found",
    ),
    "evaluate/prediction with NaN": (
        _evaluate(
            lambda ws: ws.prepared / "datalist.json",
            lambda ws: _predictions(ws, lambda a: a * np.nan),
            "--split",
            "validation",
        ),
        "NaN",
        r"NaN|not finite",
    ),
    "evaluate/prediction of another shape": (
        _evaluate(
            lambda ws: ws.prepared / "datalist.json",
            lambda ws: _predictions(ws, lambda a: a[:-2]),
            "--split",
            "validation",
        ),
        "wrong shape",
        r"shape",
    ),
    "evaluate/prediction value 9": (
        _evaluate(
            lambda ws: ws.prepared / "datalist.json",
            lambda ws: _predictions(ws, lambda a: a + 9 * (a == 0)),
            "--split",
            "validation",
        ),
        "wrong labels",
        r"9",
    ),
    # samzoo clinical
    "clinical/missing datalist": (
        lambda ws: [
            "samzoo",
            "clinical",
            "--pred",
            str(ws.root),
            "--datalist",
            str(ws.root / "none.json"),
            "--out",
            str(ws.out / "c"),
        ],
        "missing file",
        r"none.json: datalist not found",
    ),
    "clinical/unknown split": (
        lambda ws: [
            "samzoo",
            "clinical",
            "--pred",
            str(ws.root),
            "--datalist",
            str(ws.prepared / "datalist.json"),
            "--out",
            str(ws.out / "c"),
            "--split",
            "x",
        ],
        "bad setting",
        r"has no split 'x'",
    ),
    # samzoo compact
    "compact/frames 1000": (
        lambda ws: [
            "samzoo",
            "compact",
            "--datalist",
            str(ws.prepared / "datalist.json"),
            "--dst",
            str(ws.out / "c"),
            "--frames",
            "1000",
        ],
        "silently wrong",
        r"--frames 1000 exceeds the longest cine",
    ),
    "compact/frames 1": (
        lambda ws: [
            "samzoo",
            "compact",
            "--datalist",
            str(ws.prepared / "datalist.json"),
            "--dst",
            str(ws.out / "c"),
            "--frames",
            "1",
        ],
        "bad setting",
        r"frames must be 'all', 'labelled' or a number",
    ),
    "compact/frames word": (
        lambda ws: [
            "samzoo",
            "compact",
            "--datalist",
            str(ws.prepared / "datalist.json"),
            "--dst",
            str(ws.out / "c"),
            "--frames",
            "some",
        ],
        "bad setting",
        r"frames must be 'all', 'labelled' or a number",
    ),
    "compact/missing datalist": (
        lambda ws: ["samzoo", "compact", "--datalist", str(ws.root / "none.json"), "--dst", str(ws.out / "c")],
        "missing file",
        r"none.json: datalist not found",
    ),
    "compact/destination holds a datalist": (
        lambda ws: ["samzoo", "compact", "--datalist", str(ws.prepared / "datalist.json"), "--dst", str(ws.prepared)],
        "bad output path",
        r"datalist.json: already exists",
    ),
    # samzoo package / verify
    "package/unknown bundle": (
        lambda ws: ["samzoo", "package", "no_such_bundle", "--out", str(ws.out / "p")],
        "missing file",
        r"no_such_bundle",
    ),
    "package/no trained model": (
        lambda ws: ["samzoo", "package", str(ws.copy_patient("patient002")), "--out", str(ws.out / "p")],
        "wrong content",
        r"patient002: not a bundle folder",
    ),
    "verify/unknown bundle": (lambda ws: ["samzoo", "verify", "no_such_bundle"], "missing file", r"no_such_bundle"),
    # bundle train
    "train/missing dataset": (
        _training(lambda ws: ws.root / "nowhere"),
        "missing file",
        r"nowhere: no prepared datalist here",
    ),
    "train/missing datalist file": (
        _training(lambda ws: ws.root / "none.json"),
        "missing file",
        r"none.json: datalist not found",
    ),
    "train/item without label": (
        _training(_datalist_edit(_drop("label"))),
        "wrong content",
        r"training item 0 .* has no 'label' field",
    ),
    "train/empty training split": (
        _training(_datalist_edit(lambda d: d.update(training=[]))),
        "wrong content",
        r"split 'training' is empty",
    ),
    "train/image listed but missing": (
        _training(_datalist_edit(_set("image", "images/absent.nii.gz"))),
        "missing file",
        r"absent.nii.gz",
    ),
    "train/spacing not numeric": (
        _training(_datalist_edit(_set("spacing", "1mm"))),
        "wrong content",
        r"has spacing '1mm'",
    ),
    "train/val_interval 0": (
        _setting("--val_interval", "0"),
        "bad setting",
        r"val_interval must be a whole number of epochs >= 1",
    ),
    "train/val_interval beyond max_epochs": (
        _setting("--val_interval", "9"),
        "bad setting",
        r"val_interval=9 exceeds max_epochs=2",
    ),
    "train/batch_size 0": (_setting("--batch_size", "0"), "bad setting", r"batch_size"),
    "train/resume maybe": (
        _setting("--resume", "maybe"),
        "bad setting",
        r"option 'resume' must be true or false",
    ),
    "train/num_phases 0": (
        _setting("--num_phases", "0"),
        "bad setting",
        r"num_phases must be a positive number",
    ),
    "train/unknown backbone": (_setting("--backbone", "vit_q"), "bad setting", r"vit_q"),
    "train/pretrained without checkpoint file": (
        _setting("--pretrained", "true", "--backbone_checkpoint", "/nowhere/sam.pth"),
        "missing file",
        r"/nowhere/sam.pth",
    ),
    "train/pretrained random bytes": (
        lambda ws: _setting(
            "--pretrained",
            "true",
            "--backbone_checkpoint",
            str(ws.file("random.pth", os.urandom(4096))),
        )(ws),
        "unreadable file",
        r"random.pth: torch.load\(weights_only=True\) cannot read it",
    ),
    "train/pretrained another model": (
        lambda ws: _setting("--pretrained", "true", "--backbone_checkpoint", str(ws.models / "model.pt"))(ws),
        "silently wrong",
        r"model.pt: only 0 of the \d+ image-encoder tensors",
    ),
    "train/checkpoint folder under a file": (
        _setting(ckpt=lambda ws: ws.file("plain", b"x") / "models"),
        "bad output path",
        r"plain/models: cannot write the checkpoints here",
    ),
    "train/only checkpoint damaged": (
        _setting(ckpt=lambda ws: _checkpoint_dir(ws, _damage("checkpoint_epoch=1.pt"))),
        "unreadable file",
        r"no intact checkpoint to resume from",
    ),
    "train/checkpoint of another run": (
        _setting(ckpt=lambda ws: _checkpoint_dir(ws, _other_seed)),
        "bad setting",
        r"this checkpoint is of another run .*seed: 7 -> 0",
    ),
    "train/config typo": (
        _setting("--train#dataloader#batch_sise", "2"),
        "bad setting",
        r"batch_sise",
    ),
    # bundle evaluate
    "evaluate bundle/no model.pt": (
        _evaluation(lambda ws: ws.root / "empty_models"),
        "missing file",
        r"empty_models/model.pt: checkpoint not found",
    ),
    "evaluate bundle/model.pt truncated": (
        _evaluation(lambda ws: _checkpoint_dir(ws, _damage("model.pt"))),
        "unreadable file",
        r"model.pt: is not a readable checkpoint",
    ),
    "evaluate bundle/model.pt random bytes": (
        _evaluation(lambda ws: _checkpoint_dir(ws, _damage("model.pt", os.urandom(2048)))),
        "unreadable file",
        r"model.pt: is not a readable checkpoint",
    ),
    "evaluate bundle/unet_channels differ": (
        _evaluation(lambda ws: ws.models, "--unet_channels", "[8,16,32,64]"),
        "wrong checkpoint",
        r"model.pt: does not fit the network .* of another shape",
    ),
    # bundle inference
    "inference/missing input": (
        _inference(lambda ws: [ws.root / "absent_4d.nii.gz"]),
        "missing file",
        r"absent_4d.nii.gz",
    ),
    "inference/input not NIfTI": (
        _inference(lambda ws: [ws.file("noise.nii.gz", b"noise" * 99)]),
        "unreadable file",
        r"noise.nii.gz",
    ),
    "inference/2D input": (
        _inference(lambda ws: [_nifti(ws.root / "files" / "flat.nii.gz", np.zeros((16, 16), np.float32))]),
        "wrong shape",
        r"flat.nii.gz",
    ),
    "inference/NaN input": (
        _inference(
            lambda ws: [_nifti(ws.root / "files" / "nan_cine.nii.gz", np.full((16, 16, 4), np.nan, np.float32))]
        ),
        "NaN",
        r"nan_cine.nii.gz: contains \d+ NaN or infinite voxel",
    ),
    "inference/model.pt random bytes": (
        _inference(lambda ws: [_stack(ws)], lambda ws: _checkpoint_dir(ws, _damage("model.pt", os.urandom(2048)))),
        "unreadable file",
        r"model.pt: is not a readable checkpoint",
    ),
    "inference/unet_channels differ": (
        _inference(lambda ws: [_stack(ws)], lambda ws: ws.models, "--unet_channels", "[8,16,32,64]"),
        "wrong checkpoint",
        r"model.pt: does not fit the network",
    ),
    "inference/output folder is a file": (
        lambda ws: _bundle(
            ["inference.json"],
            "--ckpt_dir",
            str(ws.models),
            "--output_dir",
            str(ws.file("out_file", b"x")),
            "--input_files",
            json.dumps([str(_stack(ws))]),
        ),
        "bad output path",
        r"out_file",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_with_its_cause_last(ws: Workspace, name: str):
    build, _, expected = CASES[name]
    if ws.out.exists():
        shutil.rmtree(ws.out)
    command = build(ws)
    inputs = snapshot(ws.raw), snapshot(ws.prepared), snapshot(ws.models)
    status, lines = run_command(command)
    assert status != 0, "\n".join(lines[-10:])
    assert lines, "nothing printed"
    import re

    assert re.search(expected, lines[-1]), f"last line: {lines[-1]!r}\n" + "\n".join(lines[-15:])
    assert (snapshot(ws.raw), snapshot(ws.prepared), snapshot(ws.models)) == inputs
    left = [p for p in ws.out.rglob("*") if p.is_file()] if ws.out.exists() else []
    assert not left, f"partial output left: {left}"


def test_the_catalogue_is_large():
    by_category: dict[str, int] = {}
    for _, category, _ in CASES.values():
        by_category[category] = by_category.get(category, 0) + 1
    assert len(CASES) >= 60 and len(by_category) >= 8


@pytest.mark.slow
def test_the_real_commands_end_with_the_cause(tmp_path):
    """The installed hook in fresh interpreters: the cause last, the traceback only in the log or with debug."""
    env = {**os.environ, "SAMZOO_ERROR_LOG": str(tmp_path / "error.log")}
    command = [
        sys.executable,
        "-m",
        "samzoo.cli",
        "compact",
        "--datalist",
        str(tmp_path / "none.json"),
        "--dst",
        str(tmp_path / "c"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1
    assert (
        lines[-1]
        == f"error: {tmp_path / 'none.json'}: datalist not found (run `samzoo prepare ...` or `samzoo demo ...` first)"
    )
    assert "Traceback" not in done.stderr and "Traceback" in (tmp_path / "error.log").read_text()
    debug = subprocess.run(command, env={**env, "SAMZOO_DEBUG": "1"}, capture_output=True, text=True, timeout=300)
    assert "Traceback" in debug.stderr and debug.stderr.strip().splitlines()[-1] == lines[-1]

    bundle = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(CMR / "train.json"),
        "--bundle_root",
        str(CMR.parent),
        "--dataset_dir",
        str(tmp_path / "nowhere"),
        "--output_dir",
        str(tmp_path / "o"),
        "--ckpt_dir",
        str(tmp_path / "m"),
    ]
    done = subprocess.run(bundle, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1
    assert lines[-1].startswith(f"error: {tmp_path / 'nowhere'}: no prepared datalist here")
    assert "Failed to evaluate" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "array", "warning"),
    [
        ("zeros", np.zeros((32, 32, 4), np.float32), "is constant (0 everywhere): it carries no signal"),
        ("pixel", np.random.default_rng(0).random((1, 1, 4), np.float32), "is 1 x 1 pixels: too small"),
    ],
)
def test_degenerate_inputs_are_segmented_with_a_warning(ws: Workspace, name: str, array: np.ndarray, warning: str):
    """An input without signal is not an error (a blank slice can be part of a study) but its mask says nothing:
    the run's log says so next to the path."""
    path = _nifti(ws.root / "files" / f"{name}.nii.gz", array)
    out = ws.root / f"degenerate_{name}"
    command = _bundle(
        ["inference.json"],
        "--ckpt_dir",
        str(ws.models),
        "--output_dir",
        str(out),
        "--input_files",
        json.dumps([str(path)]),
    )
    status, lines = run_command(command)
    assert status == 0, "\n".join(lines[-10:])
    assert any(f"{path} {warning}" in line and "WARNING" in line for line in lines), "\n".join(lines)
    assert nib.load(str(out / f"{name}_seg.nii.gz")).shape == array.shape
    assert sorted(p.name for p in out.iterdir()) == [f"{name}_seg.nii.gz"]
