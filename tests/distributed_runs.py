"""Running a bundle under ``torchrun`` from the tests: CPU processes on gloo, settings in an override file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


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


__all__ = ["environment", "small_datalist", "torchrun", "torchrun_command"]
