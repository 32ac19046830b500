"""Side-by-side comparison of finished runs: the papers' tables, box plots and paired tests against the best baseline.

A run is one evaluation report (``metrics.csv`` + ``summary.json``, :func:`~samzoo.metrics.report.write_report`) of
any bundle. Runs are compared only when every report records the same metric version and the same split
fingerprint as the datalist split given (:mod:`~samzoo.metrics.provenance`); otherwise the comparison stops and
says which run differs and how. Runs of one method with the same number of labels are its seeds.

Outputs (``samzoo compare``, see docs/metrics.md): ``comparison.md`` with

- per class, the CMR2D+T-SAM Table 1 layout: Dice and HD (pixel) per slice position (all, basal, mid, apical) per
  method, mean ± std over the evaluated slices (seeds pooled);
- per class, the SAM-Mix Tables 1-2 layout: Dice and HD per method and number of labels, mean ± std over the seeds
  of each run's mean over slices (the mean alone for a single run);
- per class, paired per-slice differences of every method against the best baseline (highest mean Dice) with the
  Wilcoxon signed-rank p-value;

``comparison.csv`` with every number of these tables, and ``figures/box_<class>_<metric>.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import wilcoxon

from ..atomic import atomic_path
from ..data.datalist import load_datalist
from ..errors import DataError
from .provenance import METRICS_VERSION, split_fingerprint
from .report import describe, write_csv
from .rows import POSITIONS, counted

logger = logging.getLogger(__name__)

TABLE_METRICS = (("dice", "Dice"), ("hd_px", "HD (pixel)"), ("hd_mm", "HD (mm)"))
"""Metrics of the tables, in order; HD (mm) only where every run has it."""

PLANE_KEY = ("dataset", "case_id", "view", "slice_index", "phase", "frame")
"""Columns that identify one scored 2D plane across runs (with the class)."""

CSV_FIELDS = ("table", "class", "method", "num_labels", "group", "metric", "mean", "std", "n", "reference", "p_value")

BASELINE_BUNDLES = ("cine_baselines", "ct_baselines", "nnunet")
"""Bundles whose runs count as baselines unless a run says otherwise."""


class ComparisonError(DataError):
    """Runs that cannot be compared (different split or metric code, missing report)."""


@dataclass(frozen=True)
class Run:
    """One finished run: where its report lies and how it is named in the tables.

    ``report`` is the folder holding ``summary.json`` and ``metrics.csv``, or a bundle output folder whose
    ``eval/`` holds them. ``method`` defaults to ``bundle/variant``.
    """

    report: Path
    bundle: str = ""
    variant: str = ""
    method: str = ""
    seed: int | None = None
    num_labels: int | None = None
    baseline: bool | None = None

    @property
    def name(self) -> str:
        return self.method or "/".join(p for p in (self.bundle, self.variant) if p) or self.report.name

    @property
    def group(self) -> tuple[str, int | None]:
        """(method, number of labels): runs of one group are seeds of one setting."""
        return self.name, self.num_labels

    @property
    def is_baseline(self) -> bool:
        return self.bundle in BASELINE_BUNDLES if self.baseline is None else self.baseline


def parse_run(spec: str | Mapping[str, Any], base: Path = Path()) -> Run:
    """A run from ``"bundle/variant=FOLDER"`` (variant optional) or a mapping of :class:`Run` fields."""
    if isinstance(spec, str):
        if "=" not in spec:
            raise ComparisonError(None, f"run {spec!r}: expected 'bundle/variant=FOLDER' or a YAML/JSON run list")
        label, folder = spec.split("=", 1)
        bundle, _, variant = label.partition("/")
        return Run(report=base / folder, bundle=bundle, variant=variant)
    unknown = set(spec) - set(Run.__dataclass_fields__)
    if unknown or "report" not in spec:
        problem = f"unknown fields {sorted(unknown)}" if unknown else "no 'report' folder"
        raise ComparisonError(None, f"run {dict(spec)}: {problem}; fields are {list(Run.__dataclass_fields__)}")
    return Run(**{**spec, "report": base / str(spec["report"])})


def parse_runs(runs: str | Path | Sequence[str | Mapping[str, Any]]) -> list[Run]:
    """Runs from a YAML/JSON file (a list, or ``{"runs": [...]}``) or from a list of specs (:func:`parse_run`).

    Relative report folders in a file are relative to the file's folder.
    """
    if isinstance(runs, str | Path) and Path(runs).suffix in (".yaml", ".yml", ".json"):
        path = Path(runs)
        if not path.is_file():
            raise ComparisonError(path, "run list not found")
        data = yaml.safe_load(path.read_text())
        specs = data.get("runs") if isinstance(data, dict) else data
        if not isinstance(specs, list) or not specs:
            raise ComparisonError(path, "expected a non-empty list of runs (or {'runs': [...]})")
        return [parse_run(spec, path.parent) for spec in specs]
    specs = [runs] if isinstance(runs, str | Path) else list(runs)
    return [parse_run(str(s) if isinstance(s, Path) else s) for s in specs]


def report_dir(run: Run) -> Path:
    """The folder of the run's report: ``report`` itself or its ``eval/``."""
    for folder in (run.report, run.report / "eval"):
        if (folder / "summary.json").is_file() and (folder / "metrics.csv").is_file():
            return folder
    raise ComparisonError(run.report, f"run {run.name}: no summary.json and metrics.csv here or in eval/")


def _number(value: str) -> float | int | str | None:
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Metric rows of a ``metrics.csv``, numbers and flags converted back (text columns stay text)."""
    with open(path, newline="") as f:
        rows = [
            {
                k: (
                    v
                    if k in ("case_id", "patient_id", "dataset", "view", "class", "phase", "slice_position")
                    else _number(v)
                )
                for k, v in row.items()
            }
            for row in csv.DictReader(f)
        ]
    for row in rows:
        row["gt_empty"], row["pred_empty"] = bool(row["gt_empty"]), bool(row["pred_empty"])
    return rows


def check_comparable(
    runs: Sequence[Run], records: Sequence[Mapping[str, Any] | None], expected: Mapping[str, Any]
) -> None:
    """Raise :class:`ComparisonError` naming every run whose report was not scored on ``expected`` (the datalist
    split's fingerprint) with this version of the metrics."""
    problems = []
    for run, record in zip(runs, records, strict=True):
        if not record:
            problems.append(
                f"{run.name}: its summary.json does not record the split and metric version; score its predictions "
                "again with this samzoo version (its bundle's evaluate step, or samzoo evaluate)"
            )
            continue
        if record.get("metrics_version") != METRICS_VERSION:
            problems.append(
                f"{run.name}: metric version {record.get('metrics_version')} (samzoo {record.get('samzoo_version')}),"
                f" this samzoo computes version {METRICS_VERSION}; score it again"
            )
        split = record.get("split", {})
        if split.get("sha256") != expected["sha256"]:
            missing = sorted(set(expected["cases"]) - set(split.get("cases", [])))
            extra = sorted(set(split.get("cases", [])) - set(expected["cases"]))
            detail = ", ".join(
                part
                for part in (
                    f"cases missing {missing}" if missing else "",
                    f"cases not in the split {extra}" if extra else "",
                    f"selection {split.get('selection')} vs {expected['selection']}"
                    if split.get("selection") != expected["selection"]
                    else "",
                    f"views {split.get('views')} vs {expected['views']}"
                    if "views" in split and split["views"] != expected["views"]
                    else "",
                )
                if part
            )
            problems.append(
                f"{run.name}: evaluated on another split ({detail or 'same cases, different labels or scoring fields'})"
            )
    if problems:
        raise ComparisonError(None, "runs cannot be compared:\n  " + "\n  ".join(problems))


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _cell(stats: Mapping[str, Any] | None, digits: int) -> str:
    if stats is None:
        return "-"
    if stats["std"] is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _label(group: tuple[str, int | None]) -> str:
    method, labels = group
    return method if labels is None else f"{method}-{labels}"


class Comparison:
    """Loaded, checked runs and the statistics of the tables. Build with :func:`compare`."""

    def __init__(self, runs: Sequence[Run], rows: Sequence[list[dict[str, Any]]]) -> None:
        self.runs = list(runs)
        self.rows = {id(run): r for run, r in zip(runs, rows, strict=True)}
        self.groups = list(dict.fromkeys(run.group for run in runs))
        self.classes = list(dict.fromkeys(row["class"] for r in rows for row in r))
        self.metrics = [
            (m, title) for m, title in TABLE_METRICS if all(any(row[m] is not None for row in r) for r in rows)
        ]
        self.records: list[dict[str, Any]] = []

    def _group_rows(self, group: tuple[str, int | None], name: str) -> list[list[dict[str, Any]]]:
        """Per run of ``group``: its counted rows of class ``name``."""
        return [
            [row for row in self.rows[id(run)] if row["class"] == name and counted(row)]
            for run in self.runs
            if run.group == group
        ]

    def position_table(self, name: str) -> str:
        """CMR2D+T-SAM Table 1 layout for class ``name``: metric x method rows, slice-position columns."""
        pooled = {g: [row for r in self._group_rows(g, name) for row in r] for g in self.groups}
        positions = [p for p in POSITIONS if any(row["slice_position"] == p for rs in pooled.values() for row in rs)]
        columns = ["all", *positions]
        lines = [
            "| Metric | Method | " + " | ".join(f"{c.capitalize()} slices" for c in columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for metric, title in self.metrics:
            for k, group in enumerate(self.groups):
                cells = []
                for column in columns:
                    values = [
                        row[metric]
                        for row in pooled[group]
                        if row[metric] is not None and column in ("all", row["slice_position"])
                    ]
                    stats = describe(values) if values else None
                    cells.append(_cell(stats, 3))
                    if stats:
                        self._record("slice_position", name, group, column, metric, stats)
                lines.append(f"| {title if k == 0 else ''} | {_label(group)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def seeds_table(self, name: str) -> str:
        """SAM-Mix Tables 1-2 layout for class ``name``: per method and number of labels, mean ± std over seeds."""
        titles = " | ".join(title for _, title in self.metrics)
        lines = [f"| Method | Labels | Runs | {titles} |", "|---|---|---|" + "---|" * len(self.metrics)]
        for group in self.groups:
            per_run = self._group_rows(group, name)
            cells = []
            for metric, _ in self.metrics:
                means = [m for m in (_mean(row[metric] for row in r) for r in per_run) if m is not None]
                stats: dict[str, Any] | None = describe(means) if means else None
                if stats and stats["count"] == 1:  # one run has no spread; a std of 0 would claim one
                    stats["std"] = None
                cells.append(_cell(stats, 3))
                if stats:
                    self._record("seeds", name, group, "all", metric, stats)
            labels = "all" if group[1] is None else str(group[1])
            lines.append(f"| {group[0]} | {labels} | {len(per_run)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _per_plane(self, group: tuple[str, int | None], name: str, metric: str) -> dict[tuple, float]:
        """The group's value of ``metric`` per scored plane of class ``name``, averaged over its seeds."""
        values: dict[tuple, list[float]] = {}
        for rows in self._group_rows(group, name):
            for row in rows:
                if row[metric] is not None:
                    values.setdefault(tuple(row[k] for k in PLANE_KEY), []).append(row[metric])
        return {key: float(np.mean(v)) for key, v in values.items()}

    def best_baseline(self, name: str) -> tuple[str, int | None] | None:
        """The baseline group with the highest mean Dice on class ``name`` (None without baselines)."""
        baselines = [g for g in self.groups if all(run.is_baseline for run in self.runs if run.group == g)]
        scored = [(np.mean(list(self._per_plane(g, name, "dice").values()) or [-1.0]), g) for g in baselines]
        return max(scored, key=lambda s: s[0])[1] if scored else None

    def paired_table(self, name: str) -> str:
        """Per-plane differences (method - best baseline) with the Wilcoxon signed-rank p-value."""
        reference = self.best_baseline(name)
        if reference is None:
            return "No run is a baseline: nothing to pair against."
        if len(self.groups) == 1:
            return f"{_label(reference)} is the only method: nothing to pair."
        lines = [
            f"Reference: {_label(reference)} (best baseline by mean Dice). Differences are method - reference per "
            "scored slice and phase, seeds averaged; p: two-sided Wilcoxon signed-rank test.",
            "",
            "| Method | Metric | Pairs | Mean difference | Median difference | p |",
            "|---|---|---|---|---|---|",
        ]
        for group in self.groups:
            if group == reference:
                continue
            for metric, title in self.metrics:
                ref, mine = self._per_plane(reference, name, metric), self._per_plane(group, name, metric)
                keys = sorted(set(ref) & set(mine), key=str)
                diff = np.array([mine[k] - ref[k] for k in keys])
                if not len(diff):
                    continue
                p = 1.0 if not np.any(diff) else float(wilcoxon(diff).pvalue)
                stats = {"mean": float(diff.mean()), "std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0}
                self._record("paired", name, group, "all", metric, stats | {"count": len(diff)}, reference, p)
                lines.append(
                    f"| {_label(group)} | {title} | {len(diff)} | {diff.mean():+.3f} | {np.median(diff):+.3f} | "
                    f"{_p(p)} |"
                )
        return "\n".join(lines)

    def _record(
        self,
        table: str,
        name: str,
        group: tuple[str, int | None],
        column: str,
        metric: str,
        stats: Mapping[str, Any],
        reference: tuple[str, int | None] | None = None,
        p: float | None = None,
    ) -> None:
        self.records.append(
            {
                "table": table,
                "class": name,
                "method": group[0],
                "num_labels": group[1],
                "group": column,
                "metric": metric,
                "mean": stats["mean"],
                "std": stats["std"],
                "n": stats["count"],
                "reference": None if reference is None else _label(reference),
                "p_value": p,
            }
        )

    def markdown(self) -> str:
        """The whole ``comparison.md``; fills :attr:`records` for ``comparison.csv``."""
        self.records = []
        runs = "\n".join(
            f"| {run.name} | {'' if run.num_labels is None else run.num_labels} | "
            f"{'' if run.seed is None else run.seed} | {'yes' if run.is_baseline else 'no'} | {run.report} |"
            for run in self.runs
        )
        blocks = [
            "# Comparison",
            "",
            "| Method | Labels | Seed | Baseline | Report |",
            "|---|---|---|---|---|",
            runs,
        ]
        for name in self.classes:
            blocks += [
                "",
                f"## {name}",
                "",
                "### By slice position (mean ± std over slices)",
                "",
                self.position_table(name),
                "",
                "### Per method and number of labels (mean ± std over seeds of the run means)",
                "",
                self.seeds_table(name),
                "",
                "### Paired differences against the best baseline",
                "",
                self.paired_table(name),
            ]
        return "\n".join(blocks) + "\n"

    def box_plots(self, out_dir: Path) -> list[Path]:
        """One box plot per class and metric: the per-slice values of each method (seeds pooled)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in self.classes:
            for metric, title in self.metrics:
                data = [
                    [row[metric] for r in self._group_rows(g, name) for row in r if row[metric] is not None]
                    for g in self.groups
                ]
                fig = Figure(figsize=(1.2 + 1.1 * len(self.groups), 4))
                FigureCanvasAgg(fig)
                ax = fig.add_subplot()
                ax.boxplot([d or [math.nan] for d in data], medianprops={"color": "black"})
                ax.set_xticks(range(1, len(self.groups) + 1), [_label(g) for g in self.groups], rotation=30, ha="right")
                ax.set_ylabel(title)
                ax.set_title(f"{name}: {title} per slice")
                fig.tight_layout()
                path = out_dir / f"box_{name}_{metric}.png"
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, format="png", dpi=120)
                paths.append(path)
        return paths


def _p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def compare(
    datalist: str | Path,
    runs: str | Path | Sequence[str | Mapping[str, Any]],
    out_dir: str | Path,
    split: str = "test",
    tracking: str | None = None,
    tracking_uri: str | None = None,
    experiment_name: str = "samzoo_compare",
) -> Path:
    """Check ``runs`` against ``split`` of ``datalist``, write the comparison into ``out_dir``; return
    ``comparison.md``. ``tracking="mlflow"`` also logs the tables' numbers and files as one MLflow run
    (``tracking_uri`` defaults to ``sqlite:///<out_dir>/mlruns.db``)."""
    parsed = parse_runs(runs)
    if len({(run.group, run.seed) for run in parsed}) < len(parsed):
        raise ComparisonError(None, "two runs share method, number of labels and seed: give each its own seed")
    folders = [report_dir(run) for run in parsed]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in folders]
    items = load_datalist(datalist, split)
    if not items:
        raise ComparisonError(datalist, f"split {split!r} has no items")
    splits = [s.get("evaluation", {}).get("split", {}) for s in summaries]
    selections = {json.dumps(split.get("selection", {})) for split in splits}
    selection = json.loads(selections.pop()) if len(selections) == 1 else {}
    views = {json.dumps(split.get("views")) for split in splits}
    if len(views) == 1 and (recorded := json.loads(views.pop())) is not None:  # the views every run evaluated
        items = [item for item in items if item.get("view") in recorded]
    check_comparable(parsed, [s.get("evaluation") for s in summaries], split_fingerprint(items, selection))
    comparison = Comparison(parsed, [read_rows(folder / "metrics.csv") for folder in folders])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = comparison.markdown()
    md = out_dir / "comparison.md"
    with atomic_path(md) as tmp:
        tmp.write_text(markdown)
    write_csv(comparison.records, out_dir / "comparison.csv", CSV_FIELDS)
    figures = comparison.box_plots(out_dir / "figures")
    logger.info("compared %d runs on %s (%s): %s\n%s", len(parsed), datalist, split, out_dir, markdown)
    if tracking == "mlflow":
        _log_mlflow(comparison, out_dir, [md, out_dir / "comparison.csv", *figures], tracking_uri, experiment_name)
    elif tracking is not None:
        raise ValueError(f"tracking {tracking!r}: only 'mlflow' is supported")
    return md


def _log_mlflow(
    comparison: Comparison, out_dir: Path, files: Sequence[Path], tracking_uri: str | None, experiment_name: str
) -> None:
    """One MLflow run holding the runs compared (parameters), every table number (metrics) and the files."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri or f"sqlite:///{out_dir.resolve()}/mlruns.db")
    if mlflow.get_experiment_by_name(experiment_name) is None:  # artifacts next to the comparison, not in the cwd
        mlflow.create_experiment(experiment_name, artifact_location=(out_dir / "mlartifacts").resolve().as_uri())
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name="compare"):
        mlflow.set_tag("samzoo.stage", "compare")
        mlflow.log_params({f"run.{i}": f"{run.name}: {run.report}" for i, run in enumerate(comparison.runs)})
        metrics = {}
        for r in comparison.records:
            if r["table"] == "paired":
                continue
            labels = "" if r["num_labels"] is None else f"-{r['num_labels']}"
            key = f"{r['table']}/{r['class']}/{r['method']}{labels}/{r['group']}/{r['metric']}"
            metrics[re.sub(r"[^\w\-. :/]", "_", key)] = r["mean"]  # the characters MLflow accepts
        mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="figures" if path.suffix == ".png" else None)
