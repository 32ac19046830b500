"""The benchmark scripts run end to end at tiny sizes on the CPU and report consistent figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def cmr2dt_step(clips: int, out: Path, *extra: str) -> str:
    """``cmr2dt_step.py`` on the CPU with ``clips`` clips of 3 frames of 32^2 through ``vit_tiny``; its stdout."""
    args = ("--device", "cpu", "--clips", str(clips), "--frames", "3", "--size", "32", "--backbones", "vit_tiny")
    return run_script("cmr2dt_step.py", *args, *extra, "--out", str(out), cwd=out.parent)


@pytest.mark.slow
def test_cmr2dt_step_reports_samzoo_against_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    stdout = cmr2dt_step(2, out)
    report = json.loads(out.read_text())
    assert report["settings"]["clips"] == 2 and report["settings"]["precision"] == "fp32"
    (result,) = report["results"]
    rows = result["rows"]
    assert [r["implementation"] for r in rows] == ["samzoo", "reference"]
    for row in rows:
        assert row["backbone"] == "vit_tiny" and row["peak_cuda_gib"] is None
        assert row["step_ms"] > 0 and row["frozen_params"] > 0 and row["trainable_params"] > 0
        assert 0.2 < row["peak_rss_gib"] < 8  # measured in the setting's own process: this interpreter's size
        assert row["frames_per_s"] == pytest.approx(2 * 3 / (row["step_ms"] / 1e3))
        assert row["tflop_per_s"] == pytest.approx(row["tflop_per_step"] / (row["step_ms"] / 1e3))
    samzoo, reference = rows
    assert result["comparison"]["speedup"] == pytest.approx(reference["step_ms"] / samzoo["step_ms"])
    assert result["comparison"]["rss_ratio"] == pytest.approx(samzoo["peak_rss_gib"] / reference["peak_rss_gib"])
    # Same function: the work differs only by the relative-position columns samzoo folds into its attention.
    assert samzoo["tflop_per_step"] == pytest.approx(reference["tflop_per_step"], rel=0.05)
    one_clip = tmp_path / "one.json"
    cmr2dt_step(1, one_clip, "--implementations", "samzoo")
    single = json.loads(one_clip.read_text())["results"][0]["rows"][0]["tflop_per_step"]
    assert samzoo["tflop_per_step"] == pytest.approx(2 * single, rel=1e-4)  # but SAM's grid encoding, once a batch
    assert "vit_tiny" in stdout and "the reference's speed" in stdout and f"wrote {out}" in stdout


def test_reference_forward_computes_the_network_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's straightforward forward and samzoo's give the same logits and the same gradients."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from cmr2dt_reference import reference_forward
    from samzoo.networks import CMR2DTSAM

    torch.manual_seed(0)
    net = CMR2DTSAM("vit_tiny", image_size=32, unet_channels=(8, 16, 32)).train()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the zero-initialised projections, as training would move them
        for param in net.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    image = torch.randn(2, 1, 32, 32, 3, generator=generator)
    results = []
    for forward in (net, lambda x: reference_forward(net, x)):
        net.zero_grad(set_to_none=True)
        logits = forward(image)
        logits.square().mean().backward()
        results.append(
            (logits.detach(), net.encoder.blocks[0].temporal.qkv.weight.grad, net.up.gates[0].qk.weight.grad)
        )
    for ours, reference in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    assert results[0][0].abs().max() > 0.1


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
