"""The benchmark scripts run end to end at tiny sizes on the CPU and report consistent figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``benchmarks/<name>`` as users do (its folder first on ``sys.path``), on one thread."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )


def run_script(name: str, *args: str, cwd: Path) -> str:
    """Stdout of a benchmark run that must succeed."""
    result = run(name, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def cmr2dt_step(clips: int, out: Path) -> str:
    """``cmr2dt_step.py`` on the CPU with ``clips`` clips of 3 frames of 32^2 through ``vit_tiny``; its stdout."""
    args = ("--device", "cpu", "--clips", str(clips), "--frames", "3", "--size", "32", "--backbones", "vit_tiny")
    return run_script("cmr2dt_step.py", *args, "--out", str(out), cwd=out.parent)


def test_cmr2dt_step_reports_both_settings(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    stdout = cmr2dt_step(2, out)
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [r["setting"] for r in rows] == ["bf16+sdpa", "fp32+eager"]
    assert report["settings"]["clips"] == 2 and report["settings"]["frames"] == 3
    for row in rows:
        assert row["backbone"] == "vit_tiny" and row["peak_gib"] is None
        assert row["step_ms"] > 0 and row["frozen_params"] > 0 and row["trainable_params"] > 0
        assert row["frames_per_s"] == pytest.approx(2 * 3 / (row["step_ms"] / 1e3))
        assert row["tflop_per_s"] == pytest.approx(row["tflop_per_step"] / (row["step_ms"] / 1e3))
    # Both settings do the same work: one FLOP count, which scales with the clips.
    assert rows[0]["tflop_per_step"] == rows[1]["tflop_per_step"] > 0
    one_clip = tmp_path / "one.json"
    cmr2dt_step(1, one_clip)
    single = json.loads(one_clip.read_text())["results"][0]["tflop_per_step"]
    assert rows[0]["tflop_per_step"] == pytest.approx(2 * single)
    assert "vit_tiny" in stdout and f"wrote {out}" in stdout


def test_sam_mix_step_reports_both_settings(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    run_script(
        "sam_mix_step.py",
        *("--device", "cpu", "--batch", "3", "--labelled", "1", "--size", "64", "--classifier-width", "0.0625"),
        *("--backbones", "vit_tiny", "--out", str(out)),
        cwd=tmp_path,
    )
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [r["setting"] for r in rows] == ["fp32", "bf16"]
    assert report["batch"] == 3 and report["labelled"] == 1
    for row in rows:
        assert row["step_ms"] > 0 and row["peak_gib"] is None
        assert row["slices_per_s"] == pytest.approx(3 / (row["step_ms"] / 1e3))
        assert row["trainable_params"] > 0 and row["frozen_params"] > 0


def test_sam_mix_step_refuses_more_labelled_than_batch(tmp_path: Path) -> None:
    result = run("sam_mix_step.py", "--batch", "2", "--labelled", "3", cwd=tmp_path)
    assert result.returncode == 2 and "--labelled must lie in 1 .. --batch" in result.stderr


@pytest.mark.slow
def test_sam_prompt_cache_times_three_epochs_on_the_demo(tmp_path: Path) -> None:
    stdout = run_script(
        "sam_prompt_cache.py", "--backbone", "vit_tiny", "--pretrained", "False", "--batch_size", "8", cwd=tmp_path
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["backbone"] == "vit_tiny" and result["pretrained"] is False and result["samples"] > 0
    for key in ("epoch_s_filling_cache", "epoch_s_cached", "epoch_s_recomputed"):
        assert result[key] > 0
    assert result["speedup"] == pytest.approx(result["epoch_s_recomputed"] / result["epoch_s_cached"], abs=0.01)
    assert not any(tmp_path.iterdir()), "the benchmark must leave nothing in the working directory"
