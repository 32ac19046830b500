"""The config files of a bundle, or of a method that is a variant of one: SAM-PP is sam_mix with
``variants/sam_pp.json`` after its ``train.json`` (and before ``evaluate.json``)."""

from __future__ import annotations

from pathlib import Path

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
VARIANTS = {"sam_pp": ("sam_mix", "variants/sam_pp.json")}


def config_files(method: str, *names: str) -> list[str]:
    """Paths of the config files ``names`` (e.g. "train.json", "evaluate.json") of ``method``."""
    bundle, variant = VARIANTS.get(method, (method, None))
    configs = BUNDLES / bundle / "configs"
    files = []
    for name in names:
        files.append(str(configs / name))
        if name == "train.json" and variant is not None:
            files.append(str(configs / variant))
    return files


__all__ = ["BUNDLES", "config_files"]
