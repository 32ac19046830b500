"""The console script end to end: help, demo data through prepare, and evaluation of predictions."""

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np


def _samzoo(*args: str, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "samzoo.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def test_help_lists_every_command_with_arguments():
    out = _samzoo("--help")
    assert out.returncode == 0, out.stderr
    commands = ("prepare", "demo", "compact", "evaluate")
    for text in (*commands, "--src", "--dst", "--test_cases", "--cases", "--frames", "--pred", "--datalist"):
        assert text in out.stdout + out.stderr


def test_demo_prepare_and_evaluate_perfect_predictions(tmp_path):
    out = _samzoo("demo", "cine", "--dst", str(tmp_path / "demo"), "--cases", "3")
    assert out.returncode == 0, out.stderr
    datalist = tmp_path / "demo" / "prepared" / "datalist.json"
    data = json.loads(datalist.read_text())
    patients = {split: {i["patient_id"] for i in data[split]} for split in ("training", "validation", "test")}
    assert sum(len(p) for p in patients.values()) == 3
    assert not (patients["training"] & patients["test"]) and not (patients["training"] & patients["validation"])

    # The same raw layout prepared again through the public command gives the same items.
    again = _samzoo("prepare", "acdc", "--src", str(tmp_path / "demo" / "raw"), "--dst", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again" / "datalist.json").read_text())["training"] == data["training"]

    # Predictions equal to the labels score Dice 1 on the labelled frames.
    pred = tmp_path / "pred"
    pred.mkdir()
    split = "test" if data["test"] else "training"
    for item in data[split]:
        shutil.copy(datalist.parent / item["label"], pred / (datalist.parent / item["label"]).name)
    out = _samzoo(
        "evaluate", "--pred", str(pred), "--datalist", str(datalist), "--out", str(tmp_path / "eval"), "--split", split
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert (tmp_path / "eval" / "metrics.csv").is_file()
    label = nib.load(str(datalist.parent / data[split][0]["label"])).get_fdata()
    assert np.isin(label, [0, 1, 2, 3]).all()
    assert "myocardium" in json.dumps(summary)
