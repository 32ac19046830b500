"""Self-contained bundle archives in the MONAI model-zoo layout.

A bundle in this repository references the installed ``samzoo`` package. A packaged bundle must run where samzoo is
not installed, so :func:`package_bundle` vendors the package into the bundle's ``scripts/`` folder (the model zoo's
place for bundle code, importable as ``scripts.samzoo`` once the bundle root is on ``sys.path``, which MONAI's
``run`` and MONAI Label both arrange) and rewrites the configs' references from ``samzoo.`` to ``scripts.samzoo.``.
samzoo imports itself only relatively, so the vendored copy never reaches for an installed one. ``bundle_root``
becomes ``"."``: like every model-zoo bundle, a packaged bundle runs from its own folder.

A config may take settings from another config file of its bundle by MONAI's ``%`` reference
(``"backbone": "%bundles/cmr2dt_sam/configs/train.json#backbone"``: inference reads the architecture training
declares). MONAI resolves such paths from the working directory, which MONAI Label does not set to the bundle, so
:func:`resolve_file_references` writes the referenced content into the packaged configs.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.bundle.utils import MACRO_KEY

from .. import __version__
from ..atomic import atomic_path
from ..errors import DataError

logger = logging.getLogger(__name__)

VENDORED = "scripts.samzoo"
_TARGET = re.compile(r"^samzoo(?=\.)")
_IMPORT = re.compile(r"^(\$\s*(?:import|from)\s+)samzoo(?=[.\s])")
_BUNDLE_FILES = ("configs/metadata.json", "configs/train.json", "configs/inference.json", "LICENSE", "docs/README.md")
_CHECKPOINT_SUFFIXES = (".pt", ".pth")


def bundle_dir(bundle: str | Path, bundles_root: str | Path = "bundles") -> Path:
    """The folder of ``bundle``: a path to a bundle folder, or a bundle name under ``bundles_root``."""
    for candidate in (Path(bundle), Path(bundles_root) / str(bundle)):
        if (candidate / "configs" / "metadata.json").is_file():
            return candidate
    names = sorted(p.parent.parent.name for p in Path(bundles_root).glob("*/configs/metadata.json"))
    raise DataError(Path(bundle), f"not a bundle folder and not a bundle name under {bundles_root}/ (known: {names})")


def package_bundle(
    bundle: str | Path,
    out: str | Path,
    with_model: bool = True,
    overwrite: bool = False,
    bundles_root: str | Path = "bundles",
) -> Path:
    """Write ``OUT/<name>_v<version>.zip``: the bundle with samzoo vendored, its trained ``models/model.pt``
    (unless ``with_model`` is false: a recipe-only package) and no training checkpoints or run outputs.

    The zip holds one folder named after the bundle, as the MONAI bundle specification asks, so
    ``monai.bundle download`` unpacks it into ``<bundle_dir>/<name>``. An existing archive is kept unless
    ``overwrite``; the archive is written to a temporary file first and renamed, so a failure leaves nothing behind.
    """
    src = bundle_dir(bundle, bundles_root)
    name = src.resolve().name
    missing = [f for f in _BUNDLE_FILES if not (src / f).is_file()]
    if missing:
        raise DataError(src, f"incomplete bundle, missing {missing}")
    model = src / "models" / "model.pt"
    if with_model and not model.is_file():
        raise DataError(model, "no trained model: train the bundle first, or package the recipe only")
    version = json.loads((src / "configs" / "metadata.json").read_text())["version"]
    target = Path(out) / f"{name}_v{version}.zip"
    if target.exists() and not overwrite:
        raise DataError(target, "already exists; pass --overwrite (overwrite=True) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)

    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in _bundle_entries(src, with_model):
            archive.writestr(f"{name}/{arcname}", data)
    logger.info("wrote %s (%s)", target, "with model" if with_model else "recipe only")
    return target


def _bundle_entries(src: Path, with_model: bool) -> Iterator[tuple[str, bytes]]:
    """(path inside the bundle, content) of every packaged file."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if not path.is_file() or rel.startswith(("runs/", "scripts/")) or "__pycache__" in rel:
            continue
        checkpoint = rel.startswith("models/") and path.suffix in _CHECKPOINT_SUFFIXES
        if checkpoint and not (with_model and rel == "models/model.pt"):
            continue
        if rel == "configs/metadata.json":
            yield rel, _dump(packaged_metadata(json.loads(path.read_text())))
        elif rel.startswith("configs/") and path.suffix == ".json":
            config = resolve_file_references(json.loads(path.read_text()), src / "configs")
            yield rel, _dump(vendor_config(config))
        else:
            yield rel, path.read_bytes()
    yield "scripts/__init__.py", b'"""This bundle\'s code: the samzoo package it was built with."""\n'
    package = Path(__file__).parents[1]
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield f"scripts/samzoo/{path.relative_to(package).as_posix()}", path.read_bytes()


def vendor_config(config: Any) -> Any:
    """``config`` with its references to ``samzoo`` pointed at the vendored copy and ``bundle_root`` at ".".

    ``_target_`` paths and import statements are rewritten; ``$import samzoo`` becomes ``$import scripts.samzoo as
    samzoo``, so every expression's ``samzoo.…`` already means the vendored package and stays as it is.
    """
    if isinstance(config, dict):
        return {
            key: "."
            if key == "bundle_root"
            else _TARGET.sub(VENDORED, value)
            if key == "_target_" and isinstance(value, str)
            else vendor_config(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [vendor_config(value) for value in config]
    if isinstance(config, str):
        if config.strip() == "$import samzoo":
            return f"$import {VENDORED} as samzoo"
        return _IMPORT.sub(rf"\1{VENDORED}", config)
    return config


def resolve_file_references(config: Any, configs_dir: Path) -> Any:
    """``config`` with every ``%<file>#<id>`` reference replaced by the content of ``id`` in that file, read from
    ``configs_dir`` (the bundle's own ``configs/``: the part of ``<file>`` after its last ``configs`` folder), so
    that the config no longer depends on the working directory. References within one file (``%#id``) stay."""
    if isinstance(config, dict):
        return {key: resolve_file_references(value, configs_dir) for key, value in config.items()}
    if isinstance(config, list):
        return [resolve_file_references(value, configs_dir) for value in config]
    if isinstance(config, str) and config.startswith(MACRO_KEY):
        path, ids = ConfigParser.split_path_id(config[len(MACRO_KEY) :])
        if path:
            parts = Path(path).parts
            if "configs" not in parts:
                raise DataError(configs_dir, f"{config!r} references a file outside the bundle's configs folder")
            at = len(parts) - 1 - parts[::-1].index("configs")
            target = configs_dir.joinpath(*parts[at + 1 :])
            if not target.is_file():
                raise DataError(target, f"referenced by {config!r} but not in the bundle")
            content = ConfigParser(ConfigParser.load_config_file(str(target)))[ids]
            return resolve_file_references(content, configs_dir)
    return config


def packaged_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata of the packaged bundle: samzoo is vendored, so it is no longer a package to install."""
    packaged = dict(metadata)
    packaged["required_packages_version"] = {
        k: v for k, v in metadata.get("required_packages_version", {}).items() if k != "samzoo"
    }
    packaged["vendored_packages_version"] = {"samzoo": __version__}
    return packaged


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=4) + "\n").encode()


__all__ = [
    "VENDORED",
    "bundle_dir",
    "package_bundle",
    "packaged_metadata",
    "resolve_file_references",
    "vendor_config",
]
