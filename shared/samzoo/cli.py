"""The ``samzoo`` command line: dataset preparation, synthetic demo data, evaluation and clinical read-outs.

Run ``samzoo --help`` or ``samzoo COMMAND --help`` for the arguments of each command.
"""

from __future__ import annotations

import logging
from pathlib import Path

import fire


class SamzooCLI:
    """Prepare datasets into datalists, generate synthetic demo data and evaluate predicted masks.

    samzoo prepare {acdc,mnms,mnms2,stacom,lits,totalseg} --src DIR --dst DIR [--seed N] [--val_fraction F]
                   [--test_fraction F] [--test_cases A,B] [--val_cases A,B] [dataset options]
    samzoo demo {cine,ct} --dst DIR [--cases N] [--seed N]
    samzoo compact --datalist FILE --dst DIR [--frames all|labelled|T]
    samzoo evaluate --pred DIR --datalist FILE --out DIR [--split test] [--pred_postfix S]
    samzoo clinical --pred DIR --datalist FILE --out DIR [--split test] [--pred_postfix S] [--classes 2]
    samzoo text_prompts --out DIR [--model ViT-B-32] [--pretrained openai]
    samzoo package BUNDLE --out DIR [--recipe_only] [--overwrite]
    samzoo verify BUNDLE
    """

    def prepare(
        self,
        dataset: str,
        src: str,
        dst: str,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        test_cases: list[str] | tuple[str, ...] | str | None = None,
        val_cases: list[str] | tuple[str, ...] | str | None = None,
        **options,
    ) -> str:
        """Read DATASET (acdc, mnms, mnms2, stacom, lits, totalseg) from SRC; write DST/datalist.json.

        Splits are by patient, deterministic for SEED, or given by TEST_CASES / VAL_CASES (comma separated or a
        list). Dataset-specific OPTIONS are passed on (e.g. ``--info_csv`` for mnms, ``--liver_label`` for
        totalseg); see docs/data.md. Nothing is ever written into SRC.
        """
        from .data.prepare import prepare

        path = prepare(
            dataset,
            Path(src),
            Path(dst),
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            test_cases=_as_list(test_cases),
            val_cases=_as_list(val_cases),
            **options,
        )
        return str(path)

    def demo(self, kind: str, dst: str, cases: int | None = None, seed: int = 0) -> str:
        """Write synthetic demo data of KIND to DST (cine: ACDC layout with SAX and LAX; ct: LiTS layout)."""
        from .data.demo import write_demo

        return str(write_demo(kind, Path(dst), cases=cases, seed=seed))

    def compact(self, datalist: str, dst: str, frames: str | int = "all") -> str:
        """Write a compact copy of a prepared cine DATALIST to DST: uint8 images (each cine min-max scaled) and
        FRAMES of each cine: all, the labelled ones, or T phases including ED and ES (docs/data.md)."""
        from .data.compact import compact_cine

        return str(compact_cine(Path(datalist), Path(dst), frames=frames))

    def evaluate(self, pred: str, datalist: str, out: str, split: str = "test", pred_postfix: str = "") -> str:
        """Compare predicted NIfTI masks in PRED with DATALIST's SPLIT; write OUT/metrics.csv, summary.json."""
        from .metrics.evaluation import evaluate_folder

        return str(evaluate_folder(Path(pred), Path(datalist), Path(out), split=split, pred_postfix=pred_postfix))

    def clinical(
        self,
        pred: str,
        datalist: str,
        out: str,
        split: str = "test",
        pred_postfix: str = "",
        classes: list[int] | tuple[int, ...] | int | str | None = None,
    ) -> str:
        """Read EDV, ESV, SV, EF and myocardial mass from the predicted stacks in PRED and from DATALIST's SPLIT;
        write OUT/clinical.csv, clinical_summary.json and plots (docs/clinical.md). CLASSES: the label values the
        method segments (default: all of the datalist's; ``--classes 2`` for myocardium only)."""
        from .clinical import clinical_folder

        values = _as_list(str(classes) if isinstance(classes, int) else classes)
        return str(
            clinical_folder(Path(pred), Path(datalist), Path(out), split, pred_postfix, values and map(int, values))
        )

    def text_prompts(self, out: str, model: str = "ViT-B-32", pretrained: str = "openai") -> list[str]:
        """Recompute the CLIP text embeddings of "sax" and "lax" into OUT/{sax,lax}.npy (needs the CLIP weights)."""
        from .networks.text_prompts import compute_text_prompts, save_text_prompts

        return [str(p) for p in save_text_prompts(compute_text_prompts(model_name=model, pretrained=pretrained), out)]

    def package(self, bundle: str, out: str, recipe_only: bool = False, overwrite: bool = False) -> str:
        """Write OUT/<name>_v<version>.zip: BUNDLE (a name under bundles/ or a folder) with samzoo vendored and its
        trained models/model.pt (left out with --recipe_only); runs where only the metadata's packages exist."""
        from .bundle.package import package_bundle

        return str(package_bundle(bundle, out, with_model=not recipe_only, overwrite=overwrite))

    def verify(self, bundle: str) -> dict:
        """Run MONAI's offline bundle checks on BUNDLE: metadata schema, config properties, network in/out and
        TorchScript export; return what each check found."""
        from .bundle.verify import verify_bundle

        return verify_bundle(bundle)


def _as_list(value: list[str] | tuple[str, ...] | str | None) -> list[str] | None:
    """Fire passes ``a,b`` as a tuple and ``a`` as a string; accept both, and comma-separated text."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def main() -> None:
    """Entry point of the ``samzoo`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fire.Fire(SamzooCLI(), name="samzoo")


if __name__ == "__main__":
    main()
