"""The one-command GPU check, run as CI can: its dry run (CPU, tiny sizes, synthetic demo) through the same script."""

from __future__ import annotations

import json
import subprocess

import pytest
from tiny_bundles import REPO, environment


@pytest.mark.slow
def test_dry_run_runs_every_check_and_writes_both_reports(tmp_path):
    out = tmp_path / "gpu_check"
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out), "--budget", "1500"],
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=1600,
    )
    report = json.loads((out / "gpu_report.json").read_text())
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert done.returncode == 0, f"{statuses}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert report["dry_run"] is True and report["machine"]["torch"]
    assert set(statuses.values()) == {"passed"}
    assert {"CUDA-only tests", "DDP step, 2 processes", "cmr2dt_sam evaluation"} <= statuses.keys()
    figures = {f["name"]: f for check in report["checks"] for f in check["figures"]}
    # every figure of the GPU report is there, measured at tiny size and not judged
    assert len(figures) == 6 and all(f["met"] is None and f["target"] for f in figures.values())
    speedup = figures["vit_tiny step, samzoo fp32 vs reference fp32 eager"]["value"]
    assert 0 < speedup < 100
    assert figures["sam_prompt epoch speed-up from the cache"]["value"] > 0
    assert 0 <= figures["cmr2dt_sam test mean Dice (short bf16 training)"]["value"] <= 1
    markdown = (out / "gpu_report.md").read_text()
    assert "dry run" in markdown and "| DDP step, 2 processes | passed |" in markdown
    assert (out / "logs" / "DDP_step_2_processes.log").is_file()
