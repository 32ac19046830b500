"""Repeated runs of SAM-Mix and SAM-PP (the sam_mix bundle and its ``variants/sam_pp.json``) and the mean ± std
table of Tables 1-2 of SAM-Mix.

Every (number of labelled slices N, seed) pair trains the method in its own folder ``out_dir/<method>-<N>/seed<k>``
(``--bundle_root`` of the run, so checkpoints and logs stay apart) through ``monai.bundle.run``, then evaluates it on
the test split of the training dataset (``in_domain``) and of each ``cross_domain`` dataset (e.g. TotalSegmentator,
Table 2). Training resumes from the newest checkpoint, so running the same command again only evaluates; the
``train_s`` of a run is then the training time stored when it was trained (``runs/train_seconds.txt``).

For each run the summary holds the mean over the evaluated slices of Dice and HD (pixels, and mm where the spacing
is known) and the slice presence accuracy; the table gives, per setting and evaluation set, the mean ± sample std of
these run means over the seeds, as the paper reports the average of five runs.

Outputs in ``out_dir``: ``runs.csv`` (one row per run and evaluation set), ``results.csv`` and ``results.md``.

Command line (from the repository root; further ``--id value`` pairs override bundle config ids)::

    python -m samzoo.studies.repeats sam_mix OUT_DIR --num_labelled "[5,50,100]" [--seeds "[0,1,2,3,4]"]
        [--cross_domain "{'totalseg': '/data/prepared/totalseg'}"] [--dataset_dir /data/prepared/lits] [...]
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import run

from ..engine.checkpoints import latest_checkpoint

__all__ = ["SEEDS", "run_once", "run_repeats", "summarize_runs", "write_tables"]

logger = logging.getLogger(__name__)

SEEDS = (0, 1, 2, 3, 4)
METRICS = ("dice", "hd_px", "hd_mm", "accuracy")
RUN_FIELDS = ("bundle", "num_labelled", "seed", "eval_set", "slices", *METRICS, "train_s")
RESULT_FIELDS = (
    "bundle",
    "num_labelled",
    "eval_set",
    "runs",
    *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
)
NAMES = {"sam_mix": "SAM-Mix", "sam_pp": "SAM-PP"}
METHODS = {"sam_mix": ("sam_mix", ()), "sam_pp": ("sam_mix", ("variants/sam_pp",))}
"""Method -> (bundle, variant files): SAM-PP is the sam_mix network trained in two stages."""


def _configs(bundles_dir: Path, method: str, evaluate: bool = False) -> list[str]:
    """The config files of ``method``'s training (``evaluate``: and evaluation): train.json, the method's variant
    files, then evaluate.json, which comes last so that its ``run`` replaces training's."""
    bundle, variants = METHODS.get(method, (method, ()))
    names = ["train", *variants, *(["evaluate"] if evaluate else [])]
    return [str(bundles_dir / bundle / "configs" / f"{name}.json") for name in names]


def run_once(
    bundle: str,
    run_dir: str | Path,
    num_labelled: int,
    seed: int,
    eval_sets: Mapping[str, str],
    bundles_dir: str | Path = "bundles",
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``bundle`` (a bundle, or a method of :data:`METHODS`) once with ``num_labelled`` and ``seed``, evaluate
    on each of ``eval_sets`` (name -> dataset folder, "" for the training data), and return one row per evaluation
    set (fields :data:`RUN_FIELDS`)."""
    run_dir, bundles_dir = Path(run_dir), Path(bundles_dir)
    common = {"bundle_root": str(run_dir), **(overrides or {})}
    before = latest_checkpoint(run_dir / "models")
    start = time.perf_counter()
    run(config_file=_configs(bundles_dir, bundle), num_labelled=num_labelled, seed=seed, **common)
    train_s = _training_time(run_dir, time.perf_counter() - start, latest_checkpoint(run_dir / "models") != before)
    rows = []
    for name, dataset_dir in eval_sets.items():
        eval_dir = run_dir / "runs" / f"eval_{name}"
        data = {"dataset_dir": dataset_dir} if dataset_dir else {}
        configs = _configs(bundles_dir, bundle, evaluate=True)
        run(config_file=configs, **{**common, **data, "eval_dir": str(eval_dir)})
        liver = json.loads((eval_dir / "summary.json").read_text())["classes"]["liver"]
        accuracy = json.loads((eval_dir / "classification.json").read_text())["accuracy"]
        means = {m: liver["all"][m]["mean"] if m in liver["all"] else None for m in METRICS[:-1]}
        rows.append(
            {
                "bundle": bundle,
                "num_labelled": num_labelled,
                "seed": seed,
                "eval_set": name,
                "slices": liver["counts"]["evaluated"],
                **means,
                "accuracy": accuracy,
                "train_s": round(train_s, 1),
            }
        )
    return rows


def _training_time(run_dir: Path, seconds: float, trained: bool) -> float:
    """The training time of the run in ``run_dir``: ``seconds`` when this session trained (or no time is stored
    yet), kept in ``runs/train_seconds.txt``; otherwise the stored time, so rerunning a finished run does not
    report the time it took to find nothing left to train."""
    stored = run_dir / "runs" / "train_seconds.txt"
    if trained or not stored.is_file():
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(f"{seconds:.1f}\n")
        return seconds
    return float(stored.read_text())


def summarize_runs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group run rows by (bundle, N, evaluation set) in first-seen order: mean and sample std of each metric over
    the runs that have it (fields :data:`RESULT_FIELDS`). The mean is None where no run has the metric, the std
    also where only one has it: one run says nothing about the spread, and a std of 0 would claim it does."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["bundle"], row["num_labelled"], row["eval_set"]), []).append(row)
    results = []
    for (bundle, n, eval_set), runs in groups.items():
        result: dict[str, Any] = {"bundle": bundle, "num_labelled": n, "eval_set": eval_set, "runs": len(runs)}
        for metric in METRICS:
            values = [r[metric] for r in runs if r[metric] is not None]
            result[f"{metric}_mean"] = statistics.fmean(values) if values else None
            result[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        results.append(result)
    return results


def _cell(result: Mapping[str, Any], metric: str) -> str:
    mean, std = result[f"{metric}_mean"], result[f"{metric}_std"]
    if mean is None:
        return "-"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _write_csv(rows: Sequence[Mapping[str, Any]], path: Path, fields: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows({k: "" if row[k] is None else row[k] for k in fields} for row in rows)


def write_tables(rows: Sequence[Mapping[str, Any]], out_dir: str | Path) -> str:
    """Write ``runs.csv``, ``results.csv`` and ``results.md`` into ``out_dir``; return the Markdown table, one
    line per setting and evaluation set, cells mean ± std over the runs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = summarize_runs(rows)
    _write_csv(rows, out_dir / "runs.csv", RUN_FIELDS)
    _write_csv(results, out_dir / "results.csv", RESULT_FIELDS)
    lines = [
        "| Model | Supervision | Evaluated on | Runs | Dice | HD (pixel) | HD (mm) | Presence accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        model = f"{NAMES.get(r['bundle'], r['bundle'])}-{r['num_labelled']}"
        cells = [model, f"{r['num_labelled']} labelled slices", r["eval_set"], str(r["runs"])]
        lines.append("| " + " | ".join(cells + [_cell(r, m) for m in METRICS]) + " |")
    table = "\n".join(lines) + "\n"
    (out_dir / "results.md").write_text(table)
    return table


def run_repeats(
    bundle: str,
    out_dir: str | Path,
    num_labelled: Sequence[int] = (5,),
    seeds: Sequence[int] = SEEDS,
    cross_domain: Mapping[str, str] | None = None,
    bundles_dir: str | Path = "bundles",
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every (N, seed) run of ``bundle`` (:func:`run_once`), then the tables (:func:`write_tables`); returns the
    run rows. Without ``dataset_dir`` in ``overrides`` all runs share one synthetic demo in ``out_dir/demo_ct``."""
    out_dir = Path(out_dir)
    overrides = {"demo_dir": str(out_dir / "demo_ct"), **(overrides or {})}
    eval_sets = {"in_domain": "", **(cross_domain or {})}
    rows = []
    for n in num_labelled:
        for seed in seeds:
            logger.info("%s with %d labelled slices, seed %d", bundle, n, seed)
            rows += run_once(
                bundle, out_dir / f"{bundle}-{n}" / f"seed{seed}", n, seed, eval_sets, bundles_dir, overrides
            )
            write_tables(rows, out_dir)
    logger.info("results in %s\n%s", out_dir, write_tables(rows, out_dir))
    return rows


def main(
    bundle: str,
    out_dir: str,
    num_labelled: Sequence[int] = (5,),
    seeds: Sequence[int] = SEEDS,
    cross_domain: Mapping[str, str] | None = None,
    bundles_dir: str = "bundles",
    **overrides: Any,
) -> str:
    """Command line of :func:`run_repeats`; returns the path of ``results.md``."""
    num_labelled = [num_labelled] if isinstance(num_labelled, int) else list(num_labelled)
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    run_repeats(bundle, out_dir, num_labelled, seeds, cross_domain, bundles_dir, overrides)
    return str(Path(out_dir) / "results.md")


if __name__ == "__main__":
    import fire

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fire.Fire(main)
