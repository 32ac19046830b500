"""Every bundle at a tiny size on the demo data, and running one under ``torchrun`` (gloo CPU processes) from the
tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"

# Each bundle: its train config files (base bundle first), the bundle whose multi-GPU overlay it uses, its demo
# data and tiny settings (nnunet, which trains through nnU-Net's own trainer, is not among them).
CINE = {"roi_size": [32, 32], "num_phases": 6, "batch_size": 2, "num_workers": 0, "val_interval": 1}
CT = {"image_size": 64, "batch_size": 4, "num_workers": 0, "val_interval": 1}
CASES = {
    "cmr2dt_sam": (["cmr2dt_sam/configs/train.json"], "cmr2dt_sam", "cine", CINE),
    "cine_baselines": (
        ["cmr2dt_sam/configs/train.json", "cine_baselines/configs/train.json"],
        "cmr2dt_sam",
        "cine",
        {**CINE, "unet_features": [4, 8, 16, 32, 64, 4]},
    ),
    "sam_mix": (
        ["sam_mix/configs/train.json"],
        "sam_mix",
        "ct",
        {**CT, "classifier_width": 1 / 32, "max_boxes": 1, "num_labelled": 3},
    ),
    "ct_baselines": (
        ["sam_mix/configs/train.json", "ct_baselines/configs/train.json"],
        "sam_mix",
        "ct",
        {**CT, "unet_features": [4, 8, 16, 32, 64, 4]},
    ),
    "sam_prompt": (
        ["sam_prompt/configs/train.json"],
        "sam_prompt",
        "cine",
        {"backbone": "vit_tiny", "pretrained": False, "num_volumes": 2, "batch_size": 4, "num_workers": 0},
    ),
}


def tiny_settings(bundle: str, demos: dict[str, Path], root: Path) -> tuple[list[str], str, dict]:
    """(train config files, the bundle of its multi-GPU overlay, tiny overrides writing below ``root``)."""
    files, overlay_bundle, data, tiny = CASES[bundle]
    overrides = {**tiny, "output_dir": str(root / "runs"), "ckpt_dir": str(root / "models")}
    overrides["datalist"] = str(demos[data])
    return [str(BUNDLES / f) for f in files], overlay_bundle, overrides


def torchrun_command(
    config_files: Sequence[str | Path], overrides: Mapping[str, Any], workdir: Path, launch: Sequence[str]
) -> list[str]:
    """``python -m torch.distributed.run LAUNCH -m monai.bundle run`` on ``config_files`` then ``overrides``
    (written to ``workdir/overrides.json``, so no value needs shell quoting)."""
    override_file = workdir / "overrides.json"
    override_file.write_text(json.dumps(dict(overrides)))
    files = [str(f) for f in config_files] + [str(override_file)]
    meta = Path(config_files[0]).parent / "metadata.json"
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launch,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        repr(files),
        "--meta_file",
        str(meta),
    ]


def environment() -> dict[str, str]:
    """The test process's environment with this checkout's samzoo first and one thread per process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "shared"), env.get("PYTHONPATH")) if p)
    return env


def torchrun(
    config_files: Sequence[str | Path],
    overrides: Mapping[str, Any],
    workdir: Path,
    nproc: int = 2,
    timeout: float = 240,
) -> str:
    """Run a bundle on ``nproc`` local processes (``torchrun --standalone``); return its output, or fail with it."""
    workdir.mkdir(parents=True, exist_ok=True)
    launch = ["--standalone", f"--nproc_per_node={nproc}"]
    command = torchrun_command(config_files, overrides, workdir, launch)
    done = subprocess.run(
        command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        errors = "\n".join(line for line in output.splitlines() if "Error" in line)
        raise AssertionError(f"torchrun exited with {done.returncode}:\n{output[-8000:]}\nerrors:\n{errors}")
    return output


def small_datalist(datalist: Path, counts: Mapping[str, int]) -> Path:
    """A copy of ``datalist`` next to it keeping the first ``counts[split]`` items of each split named."""
    data = json.loads(datalist.read_text())
    for split, count in counts.items():
        data[split] = data[split][:count]
    small = datalist.with_name(f"datalist_{'_'.join(f'{k}{v}' for k, v in counts.items())}.json")
    small.write_text(json.dumps(data))
    return small


__all__ = ["BUNDLES", "CASES", "environment", "small_datalist", "tiny_settings", "torchrun", "torchrun_command"]
