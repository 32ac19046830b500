"""Zero-shot prompting study: how well SAM segments cardiac MRI slices from a few clicks or a box.

For every prompt configuration (bounding box on/off x positive points x negative points, thesis Tables 5.7/5.8)
and every repeat seed, each class of each ED/ES slice is prompted separately (single-mask output), the masks are
combined into one label map (:func:`samzoo.networks.sam_prompt.combine_masks`: later class wins, LV over myocardium
over RV) and scored per slice and class with :mod:`samzoo.metrics`. Embeddings come from the cache, so a grid of
18 configurations x 5 repeats costs one encoder pass per slice and 90 mask-decoder passes per slice and class.

Outputs in ``out_dir``: ``results.csv`` (one row per configuration and class, plus ``overall``: mean and std of
Dice, HD and MAD over every evaluated slice of every repeat, in pixels, and in mm over the slices whose spacing is
known; ``dice_repeat_std`` is the std of the per-repeat mean Dice), ``results.md`` (the same as Markdown tables)
and ``metrics.csv`` (every slice row, with the configuration and repeat).

Command line::

    python -m samzoo.studies.prompting DATALIST OUT_DIR [--split test] [--backbone lite_medsam]
        [--cache_dir DIR] [--repeats 5] [--num_volumes N] [--decoder_checkpoint FILE]
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.datalist import datalist_info, load_datalist
from ..embedding_cache import EmbeddingCache
from ..metrics import evaluate_items
from ..metrics.evaluation import classes_from_labels
from ..metrics.report import write_csv
from ..metrics.rows import ROW_FIELDS, counted
from ..networks.sam_prompt import SamPromptModel
from ..transforms.sam_prompt import (
    CachedEmbeddingd,
    LoadSliced,
    SamInputd,
    SamplePromptsd,
    select_volumes,
    slice_samples,
    slice_volumes,
)

logger = logging.getLogger(__name__)

METRICS = ("dice", "hd_px", "masd_px", "hd_mm", "masd_mm")
RESULT_FIELDS = (
    "boxes",
    "positives",
    "negatives",
    "class",
    "slices",
    *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
    "dice_repeat_std",
    "repeats",
)


@dataclass(frozen=True)
class PromptConfig:
    """One prompt setting: a box or not, positive points and re-used negative points per class."""

    boxes: bool
    positives: int
    negatives: int


def prompt_grid(
    boxes: Iterable[bool] = (False, True), positives: Iterable[int] = (2, 3, 5), negatives: Iterable[int] = (0, 1, 2)
) -> list[PromptConfig]:
    """Every combination, in the row order of the thesis tables (boxes, then positives, then negatives)."""
    return [PromptConfig(*combo) for combo in itertools.product(boxes, positives, negatives)]


def evaluate_slices(
    samples: Sequence[Mapping[str, Any]], predictions: Mapping[int, np.ndarray], classes: Mapping[int, str]
) -> list[dict[str, Any]]:
    """Metric rows (:data:`samzoo.metrics.rows.ROW_FIELDS`) of predicted (H, W) label maps, keyed by sample index.

    The samples of one datalist item are scored together on the item's (H, W, T) label, restricted to the frames
    predicted (:func:`slice_volumes`), so rows carry the usual phase, slice position and mm/pixel columns.
    """
    return evaluate_items(*slice_volumes(samples, predictions), classes)


@torch.no_grad()
def predict(model: SamPromptModel, sample: Mapping[str, Any], class_values: Sequence[int]) -> np.ndarray:
    """The (H, W) label map of one prepared sample (embedding as ``image``, prompts; see :mod:`samzoo.transforms.
    sam_prompt`): each class decoded separately, then :meth:`SamPromptModel.label_map`."""
    logits = model(
        sample["image"][None],
        sample["points"][None],
        sample["point_labels"][None],
        sample["boxes"][None] if "boxes" in sample else None,
    )[0]
    return model.label_map(logits, tuple(int(s) for s in sample["original_size"]), list(class_values))


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def aggregate(rows: Sequence[Mapping[str, Any]], config: PromptConfig, repeats: int) -> list[dict[str, Any]]:
    """Result rows of one configuration: per class and ``overall`` (every class pooled)."""
    used = [row for row in rows if counted(row)]
    results = []
    for name in [*dict.fromkeys(row["class"] for row in rows), "overall"]:
        mine = [row for row in used if name in ("overall", row["class"])]
        result: dict[str, Any] = dict(asdict(config), **{"class": name, "slices": len(mine), "repeats": repeats})
        for metric in METRICS:
            values = [row[metric] for row in mine if row[metric] is not None]
            result[f"{metric}_mean"], result[f"{metric}_std"] = _stats(values)
        per_repeat = [
            np.mean([r["dice"] for r in mine if r["repeat"] == k]) for k in sorted({r["repeat"] for r in mine})
        ]
        result["dice_repeat_std"] = _stats(per_repeat)[1]
        results.append(result)
    return results


def _cell(mean: float | None, std: float | None, digits: int) -> str:
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """Tables in the layout of thesis Tables 5.7/5.8: one per class (``overall`` first), mean ± std cells."""
    names = ["overall", *dict.fromkeys(r["class"] for r in results if r["class"] != "overall")]
    blocks = []
    for name in names:
        lines = [
            f"### {name}",
            "",
            "| Boxes | Pos. | Neg. | Dice | HD (px) | MAD (px) | HD (mm) | MAD (mm) | slices |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in results if r["class"] == name):
            cells = [
                "Y" if r["boxes"] else "N",
                str(r["positives"]),
                str(r["negatives"]),
                _cell(r["dice_mean"], r["dice_std"], 3),
                *(_cell(r[f"{m}_mean"], r[f"{m}_std"], 2) for m in ("hd_px", "masd_px", "hd_mm", "masd_mm")),
                str(r["slices"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def run_grid(
    model: SamPromptModel,
    samples: Sequence[Mapping[str, Any]],
    cache: EmbeddingCache,
    classes: Mapping[int, str],
    out_dir: str | Path,
    configs: Sequence[PromptConfig] | None = None,
    repeats: int = 5,
    seed: int = 0,
    margin: int = 5,
) -> list[dict[str, Any]]:
    """Run every configuration ``repeats`` times (seeds ``seed`` ... ``seed + repeats - 1``) on ``samples`` (from
    :func:`samzoo.transforms.sam_prompt.slice_samples`); write and return the result rows."""
    configs = prompt_grid() if configs is None else list(configs)
    values = list(classes)
    size = model.input_spec.image_size
    load, to_input, embed = LoadSliced(), SamInputd(model.input_spec), CachedEmbeddingd(cache)
    model.eval()
    predictions: dict[tuple[PromptConfig, int], dict[int, np.ndarray]] = {}
    for n, sample in enumerate(samples):
        prepared = embed(to_input(load(sample)))
        for config, repeat in itertools.product(configs, range(repeats)):
            prompts = SamplePromptsd(
                values, size, config.positives, config.negatives, config.boxes, margin, seed=seed + repeat
            )
            predictions.setdefault((config, repeat), {})[sample["index"]] = predict(model, prompts(prepared), values)
        logger.info("zero-shot grid: %d / %d slices", n + 1, len(samples))
    results, all_rows = [], []
    for config in configs:
        rows = []
        for repeat in range(repeats):
            for row in evaluate_slices(samples, predictions[config, repeat], classes):
                rows.append(dict(row, repeat=repeat))
        results += aggregate(rows, config, repeats)
        all_rows += [dict(row, **asdict(config)) for row in rows]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results, out_dir / "results.csv", RESULT_FIELDS)
    write_csv(all_rows, out_dir / "metrics.csv", (*ROW_FIELDS, "boxes", "positives", "negatives", "repeat"))
    (out_dir / "results.md").write_text(results_markdown(results))
    logger.info(
        "zero-shot grid written to %s\n%s", out_dir, results_markdown([r for r in results if r["class"] == "overall"])
    )
    return results


def main(
    datalist: str,
    out_dir: str,
    split: str = "test",
    backbone: str = "lite_medsam",
    checkpoint: str | None = None,
    pretrained: bool = True,
    decoder_checkpoint: str | None = None,
    cache_dir: str | None = None,
    repeats: int = 5,
    seed: int = 0,
    num_volumes: int | None = None,
) -> str:
    """Run the full grid on one split of a cine datalist (``num_volumes`` ED/ES volumes of it, drawn by patient with
    :func:`~samzoo.transforms.sam_prompt.select_volumes`); return the path of ``results.csv``."""
    classes = classes_from_labels(datalist_info(datalist)["labels"])
    samples = select_volumes(slice_samples(load_datalist(datalist, split), list(classes)), num_volumes, seed)
    model = SamPromptModel(backbone, checkpoint, pretrained, decoder_checkpoint)
    cache = EmbeddingCache(model.embed, model.identity, cache_dir)
    run_grid(model, samples, cache, classes, out_dir, repeats=repeats, seed=seed)
    return str(Path(out_dir) / "results.csv")


if __name__ == "__main__":
    import fire

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fire.Fire(main)
