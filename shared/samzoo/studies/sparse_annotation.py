"""The sparse-annotation thesis's nnU-Net study: fewer volumes, cardiac regions, random slices, volumes x slices.

Every cell of a grid (thesis Tables 5.1-5.6, :data:`GRIDS`) and every seed trains the ``nnunet`` bundle in its own
folder ``out_dir/<grid>/<cell>/seed<k>`` through ``monai.bundle.run`` and evaluates it on the test split
(``evaluate.json``), which writes the samzoo metrics report there (``runs/eval``: ``metrics.csv`` per slice and
class, ``summary.json`` per class and slice position, plots). Training resumes from the newest checkpoint and a
report newer than the model is kept, so running the same command again only adds the missing cells. Subsets are
drawn once per seed and nested (:mod:`samzoo.nnunet.manifest`); cells asking for more volumes than the data has
are skipped and shown as "-", as in the thesis.

The tables follow the thesis's layout: one column per cell, rows Dice, HD and MASD (pixels; millimetres where the
spacing is known), each the mean over the classes of the class means over the evaluated test slices, ± the std
over seeds when there are several. Outputs in ``out_dir/<grid>``: ``runs.csv`` (one row per run),
``results.md`` and ``results.png``. ``--tracking mlflow`` gives every training and evaluation its MLflow run
(experiment ``nnunet``, run names ``<variant>/seed<k>``).

Command line (from the repository root; further ``--id value`` pairs override bundle config ids)::

    python -m samzoo.studies.sparse_annotation OUT_DIR --grid regions [--dataset_dir /data/prepared/acdc]
        [--seeds "[0,1,2]"] [--configuration 2d] [--tracking mlflow] [--max_epochs 50] [...]
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
from ..nnunet.manifest import setting_name

logger = logging.getLogger(__name__)

Cell = dict[str, Any]

GRIDS: dict[str, list[Cell]] = {
    # Table 5.1: number of training volumes (patients x ED/ES); None is every volume
    "volumes": [{"num_volumes": v} for v in (1, 8, 16, 24, 32, 48, 80, 120, 160, 192, 240)] + [{}],
    # Table 5.2: cardiac regions trained on, every volume
    "regions": [{"regions": r} for r in ("A", "M", "B", "A+M", "M+B", "A+B", "A+M+B")],
    # Table 5.3: random slices per volume, every volume
    "slices": [{"num_slices": s} for s in (1, 2, 4, 5, 6, 7, 8, 10, 13, 14, 16, 20)],
    # Tables 5.4-5.6: volumes x slices at about 1400 and 700 annotated slices
    "budget": [
        {"num_volumes": v, "num_slices": s}
        for v, s in (
            (65, 20), (100, 14), (120, 12), (160, 9), (240, 6),
            (32, 20), (40, 17), (50, 14), (60, 12), (77, 10), (80, 9), (80, 17), (144, 10), (96, 8), (192, 8),
            (120, 6),
        )
    ],
}  # fmt: skip
"""The thesis's grids; a cell is a set of bundle overrides (``num_volumes``, ``regions``, ``num_slices``)."""

METRICS = (("dice", "Dice"), ("hd_px", "HD (pixel)"), ("masd_px", "MASD (pixel)"), ("hd_mm", "HD (mm)"))
RUN_FIELDS = ("grid", "cell", "seed", "volumes", "annotated_slices", *(m for m, _ in METRICS), "train_s")


def cell_name(cell: Mapping[str, Any]) -> str:
    """The column title of a cell: ``24v``, ``B+M``, ``6s``, ``100v-14s``, ``all``; ``-zeroed`` for background."""
    name = setting_name(cell.get("num_volumes"), cell.get("regions"), cell.get("num_slices"))
    return name + ("-zeroed" if cell.get("unannotated") == "background" else "")


def _configs(bundles_dir: Path, *names: str) -> list[str]:
    return [str(bundles_dir / "nnunet" / "configs" / f"{name}.json") for name in names]


def _class_mean(summary: Mapping[str, Any], metric: str) -> float | None:
    """Mean over the classes of the class means of ``metric`` (None when no class has it)."""
    values = [c["all"][metric]["mean"] for c in summary["classes"].values() if metric in c["all"]]
    return statistics.fmean(values) if values else None


def run_cell(
    run_dir: str | Path,
    cell: Mapping[str, Any],
    seed: int,
    bundles_dir: str | Path = "bundles",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one cell with one seed in ``run_dir``; return its row (fields :data:`RUN_FIELDS`)."""
    run_dir, bundles_dir = Path(run_dir), Path(bundles_dir)
    settings = {"bundle_root": str(run_dir), "seed": seed, **(overrides or {}), **cell}
    models = run_dir / "models"
    before = latest_checkpoint(models)
    start = time.perf_counter()
    run(config_file=_configs(bundles_dir, "train"), **settings)
    train_s = time.perf_counter() - start
    stored = run_dir / "runs" / "train_seconds.txt"
    if latest_checkpoint(models) != before or not stored.is_file():
        stored.write_text(f"{train_s:.1f}\n")
    report = run_dir / "runs" / "eval" / "summary.json"
    if not report.is_file() or report.stat().st_mtime < (models / "model.pt").stat().st_mtime:
        run(config_file=_configs(bundles_dir, "train", "evaluate"), **settings)
    summary = json.loads(report.read_text())
    manifest = json.loads((run_dir / "runs" / "manifest.json").read_text())
    return {
        "cell": cell_name(cell),
        "seed": seed,
        "volumes": len(manifest["volumes"]),
        "annotated_slices": manifest["annotated_slices"],
        **{metric: _class_mean(summary, metric) for metric, _ in METRICS},
        "train_s": float(stored.read_text()),
    }


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def write_tables(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out_dir: str | Path) -> str:
    """Write ``runs.csv``, ``results.md`` (rows metrics, one column per cell, mean ± std over seeds) and
    ``results.png`` (each metric per cell) into ``out_dir``; return the Markdown table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(RUN_FIELDS))
        writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row.get(k) for k in RUN_FIELDS} for row in rows)
    values = {
        (column, metric): [r[metric] for r in rows if r["cell"] == column and r[metric] is not None]
        for column in columns
        for metric, _ in METRICS
    }
    lines = ["| Metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for metric, title in METRICS:
        lines.append(f"| {title} | " + " | ".join(_cell(values[c, metric]) for c in columns) + " |")
    annotated = {c: [r["annotated_slices"] for r in rows if r["cell"] == c] for c in columns}
    lines.append("| Annotated slices | " + " | ".join(_cell(annotated[c]).split(".")[0] for c in columns) + " |")
    table = "\n".join(lines) + "\n"
    (out_dir / "results.md").write_text(table)
    _plot(values, columns, out_dir / "results.png")
    return table


def _plot(values: Mapping[tuple[str, str], Sequence[float]], columns: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    x = range(len(columns))
    for ax, (metric, title) in zip(axes, METRICS, strict=True):
        means = [statistics.fmean(values[c, metric]) if values[c, metric] else float("nan") for c in columns]
        ax.plot(x, means, "o-")
        ax.set_xticks(list(x), columns, rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_study(
    out_dir: str | Path,
    cells: Sequence[Mapping[str, Any]],
    grid: str = "custom",
    seeds: Sequence[int] = (0,),
    available_volumes: int | None = None,
    bundles_dir: str | Path = "bundles",
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every cell and seed (:func:`run_cell`), then the tables (:func:`write_tables`) in ``out_dir/<grid>``.

    Cells with ``num_volumes`` above ``available_volumes`` are skipped (a "-" column). Without ``dataset_dir`` in
    ``overrides`` all runs share one synthetic demo in ``out_dir/demo_cine``.
    """
    out_dir = Path(out_dir) / grid
    overrides = {"demo_dir": str(Path(out_dir).parent / "demo_cine"), **(overrides or {})}
    columns = [cell_name(cell) for cell in cells]
    rows: list[dict[str, Any]] = []
    for cell in cells:
        if available_volumes is not None and cell.get("num_volumes", 0) > available_volumes:
            logger.info("%s: skipped, the data has %d training volumes", cell_name(cell), available_volumes)
            continue
        for seed in seeds:
            logger.info("%s cell %s, seed %d", grid, cell_name(cell), seed)
            row = run_cell(out_dir / cell_name(cell) / f"seed{seed}", cell, seed, bundles_dir, overrides)
            rows.append({"grid": grid, **row})
            write_tables(rows, columns, out_dir)
    logger.info("results in %s\n%s", out_dir, write_tables(rows, columns, out_dir))
    return rows


def main(
    out_dir: str,
    grid: str = "regions",
    cells: Sequence[Mapping[str, Any]] | None = None,
    seeds: Sequence[int] = (0,),
    bundles_dir: str = "bundles",
    **overrides: Any,
) -> str:
    """Command line of :func:`run_study`: a grid of :data:`GRIDS` or explicit ``--cells "[{...}, ...]"`` (then
    named by ``--grid``); returns the path of ``results.md``."""
    if cells is None and grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {sorted(GRIDS)} or give --cells")
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    available = _available_volumes(overrides.get("dataset_dir"))
    run_study(out_dir, list(cells or GRIDS[grid]), grid, seeds, available, bundles_dir, overrides)
    return str(Path(out_dir) / grid / "results.md")


def _available_volumes(dataset_dir: str | None) -> int | None:
    """ED/ES volumes in the training split of a prepared dataset (None for the demo, made on first use)."""
    if not dataset_dir:
        return None
    from ..data.datalist import load_datalist
    from ..data.sources import resolve_datalist
    from ..nnunet.manifest import stack_volumes

    return len(stack_volumes(load_datalist(resolve_datalist(dataset_dir, "cine", ""), "training")))


if __name__ == "__main__":
    import fire

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fire.Fire(main)
