"""``samzoo prepare``: read a public dataset in its official layout and write prepared files plus a datalist.

Every dataset module exposes ``LABELS`` (value -> name) and ``collect(src, dst, **options) -> list[dict]``, which
reads the source, writes the prepared files below ``dst`` and returns the datalist items (paths relative to
``dst``, each with a ``patient_id``). :func:`prepare` adds what all datasets share: refusing to write into the
source, checking options, splitting by patient and writing ``dst/datalist.json``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from ... import __version__
from ...atomic import removed_on_failure
from ...errors import DataError
from ..datalist import SPLITS, build_datalist, ensure_outside, split_patients, write_datalist

logger = logging.getLogger(__name__)

DATASETS = {
    "acdc": f"{__name__}.acdc",
    "mnms": f"{__name__}.mnms",
    "mnms2": f"{__name__}.mnms2",
    "stacom": f"{__name__}.stacom",
    "lits": f"{__name__}.lits",
    "totalseg": f"{__name__}.totalseg",
}
"""Dataset name -> module implementing ``LABELS`` and ``collect``; imported only when asked for."""


def dataset_module(dataset: str) -> ModuleType:
    """The module that reads ``dataset``; raise :class:`DataError` listing the valid names for an unknown one."""
    if dataset not in DATASETS:
        raise DataError(None, f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    try:
        return importlib.import_module(DATASETS[dataset])
    except ModuleNotFoundError as err:
        if err.name != DATASETS[dataset]:
            raise
        raise DataError(None, f"dataset {dataset!r} is not available in this installation of samzoo") from err


def prepare(
    dataset: str,
    src: Path,
    dst: Path,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    test_cases: Sequence[str] | None = None,
    val_cases: Sequence[str] | None = None,
    **options: object,
) -> Path:
    """Prepare ``dataset`` from ``src`` into ``dst`` and return the path of ``dst/datalist.json``.

    Patients are split with :func:`~samzoo.data.datalist.split_patients` (explicit cases first, the rest shuffled
    with ``seed``). ``options`` go to the dataset's ``collect`` (e.g. ``info_csv`` for mnms); unknown ones are an
    error. Nothing is written into ``src``; re-running into the same ``dst`` overwrites only the prepared files
    and the datalist.
    """
    src, dst = Path(src), Path(dst)
    module = dataset_module(dataset)
    _check_options(dataset, module, options)
    if not src.is_dir():
        raise DataError(src, "source dataset folder not found")
    ensure_outside(dst, src)
    logger.info("preparing %s from %s into %s", dataset, src, dst)
    with removed_on_failure(dst):  # a failure (a bad case, a bad split) leaves no prepared files behind
        items = module.collect(src, dst, **options)
        if not items:
            raise DataError(src, f"no {dataset} cases found")
        splits = split_patients(
            [item["patient_id"] for item in items],
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            test_cases=test_cases,
            val_cases=val_cases,
        )
        datalist = build_datalist(
            items,
            splits,
            dataset=dataset,
            labels=module.LABELS,
            seed=seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            test_cases=None if test_cases is None else list(test_cases),
            val_cases=None if val_cases is None else list(val_cases),
            options={key: str(value) for key, value in options.items()},
            source=str(src.resolve()),
            samzoo_version=__version__,
        )
        path = write_datalist(datalist, dst, src)
    counts = ", ".join(f"{split} {len(splits[split])}" for split in SPLITS)
    logger.info(
        "wrote %s: %d items from %d patients (%s)", path, len(items), len(set().union(*splits.values())), counts
    )
    return path


def _check_options(dataset: str, module: ModuleType, options: dict[str, object]) -> None:
    """Raise :class:`DataError` naming the options that ``collect`` of ``dataset`` does not take."""
    parameters = inspect.signature(module.collect).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [name for name in parameters if name not in ("src", "dst")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(f"--{name}" for name in accepted) or "no options"
        raise DataError(
            None, f"unknown option(s) {', '.join('--' + u for u in unknown)} for {dataset}; it takes {takes}"
        )
