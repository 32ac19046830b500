"""Datalists in MONAI's decathlon style, with patient-level splits.

A datalist is a JSON file ``{"training": [...], "validation": [...], "test": [...], ...}`` read with
:func:`monai.data.load_decathlon_datalist`. Paths in items are relative to the datalist's folder. Besides the three
splits it records how it was made: ``dataset``, ``labels`` (value -> name, one convention per task), ``seed`` and
the split settings, so a run can be traced back to its data.

Cardiac cine items (one per slice of one view; the image is that slice's cine, shape (H, W, T))::

    image, label         prepared cine and label files, (H, W, T); label is 0 on unlabelled frames
    case_id, patient_id  case (a scan) and patient (the unit of splitting)
    dataset, view        source dataset; "SAX" or "LAX"
    slice_index          index of the slice in its source stack (0 for a single LAX slice)
    num_slices           slices in the source stack
    slice_position       "basal", "mid", "apical" (thirds of the labelled SAX slices, base first) or null
    num_frames           phases in the cine
    ed_frame, es_frame   0-based ED and ES frame indices
    labelled_frames      0-based indices of the frames that carry labels
    labelled             whether any labelled frame of this slice contains a structure
    spacing              voxel size in mm (x, y, slice), spacing_known: whether it is real

CT items (one per volume, image and label (X, Y, Z) in RAS-like axial order as on disk)::

    image, label, case_id, patient_id, dataset, spacing, spacing_known, num_slices
    liver_slices         indices of the slices that contain liver
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import DataError

SPLITS = ("training", "validation", "test")

CARDIAC_LABELS = {"0": "background", "1": "RV", "2": "myocardium", "3": "LV"}
"""The one cardiac label convention of samzoo (ACDC's); other datasets are remapped to it during preparation."""

LIVER_LABELS = {"0": "background", "1": "liver"}


def split_patients(
    patients: Sequence[str],
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    test_cases: Iterable[str] | None = None,
    val_cases: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Assign every patient to exactly one split.

    Explicit ``test_cases``/``val_cases`` win; the remaining patients are shuffled with ``seed`` (independently of
    the order they were found in) and cut by the fractions, rounding to the nearest patient. Naming every patient
    in ``test_cases``/``val_cases`` makes an evaluation-only datalist (e.g. a cross-domain test set) with an empty
    training split; fractions that leave no patient for training are an error.
    """
    unique = sorted(set(patients))
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise DataError(None, f"{name} must lie in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(None, f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    fixed: dict[str, list[str]] = {"test": [], "validation": []}
    for split, given in (("test", test_cases), ("validation", val_cases)):
        cases = [] if given is None else [str(c) for c in given]
        repeated = sorted({c for c in cases if cases.count(c) > 1})
        if repeated:
            raise DataError(None, f"{split} cases {repeated} are named more than once; name each patient once")
        for case in cases:
            if case not in unique:
                raise DataError(None, f"{split} case {case!r} is not among the {len(unique)} patients found")
            fixed[split].append(case)
    overlap = set(fixed["test"]) & set(fixed["validation"])
    if overlap:
        raise DataError(None, f"patients {sorted(overlap)} are given for both test and validation")
    rest = [p for p in unique if p not in set(fixed["test"]) | set(fixed["validation"])]
    order = np.random.default_rng(seed).permutation(len(rest))
    rest = [rest[i] for i in order]
    n_test = 0 if test_cases is not None else round(test_fraction * len(unique))
    n_val = 0 if val_cases is not None else round(val_fraction * len(unique))
    splits = {
        "test": sorted(fixed["test"] + rest[:n_test]),
        "validation": sorted(fixed["validation"] + rest[n_test : n_test + n_val]),
        "training": sorted(rest[n_test + n_val :]),
    }
    if not splits["training"] and rest:
        raise DataError(None, f"no patient left for training out of {len(unique)}")
    return splits


def build_datalist(items: Sequence[dict[str, Any]], splits: dict[str, list[str]], **info: Any) -> dict[str, Any]:
    """Group ``items`` into the splits by their ``patient_id``; ``info`` is stored alongside (dataset, labels...)."""
    where = {p: split for split, patients in splits.items() for p in patients}
    datalist: dict[str, Any] = dict(info)
    datalist.update({split: [] for split in SPLITS})
    for item in items:
        datalist[where[item["patient_id"]]].append(item)
    datalist["num_patients"] = {split: len(splits[split]) for split in SPLITS}
    return datalist


def write_datalist(datalist: dict[str, Any], dst: str | Path, src: str | Path | None = None) -> Path:
    """Write ``dst/datalist.json`` atomically; refuse a destination inside the source dataset folder."""
    dst = Path(dst).resolve()
    if src is not None:
        ensure_outside(dst, src)
    dst.mkdir(parents=True, exist_ok=True)
    path = dst / "datalist.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(datalist, indent=1) + "\n")
    return path


def ensure_outside(dst: str | Path, src: str | Path) -> None:
    """Raise :class:`DataError` when ``dst`` is ``src`` or lies inside it: preparation never writes into sources."""
    dst, src = Path(dst).resolve(), Path(src).resolve()
    if dst == src or src in dst.parents:
        raise DataError(dst, f"destination lies inside the source dataset {src}; choose a folder outside it")


def load_datalist(
    path: str | Path, split: str = "training", views: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Items of one split with paths made absolute (relative paths are taken from the datalist's folder); with
    ``views``, only the cine items whose ``view`` is one of them (e.g. ``["SAX"]``).

    An empty split is an error: training without validation items would never select a model, and an empty test
    split would report nothing.
    """
    path = Path(path)
    data = _read(path)
    if split not in data:
        raise DataError(path, f"has no split {split!r} (found: {sorted(k for k in data if k in SPLITS)})")
    if not data[split]:
        raise DataError(path, f"split {split!r} is empty (prepare again with more cases, or --val_cases/--test_cases)")
    base = path.parent
    items = []
    for number, item in enumerate(data[split]):
        where = f"{split} item {number}"
        if not isinstance(item, dict) or "image" not in item:
            raise DataError(path, f"{where} has no 'image' field")
        if split != "test" and "label" not in item:
            raise DataError(path, f"{where} ({item['image']}) has no 'label' field (null for an unlabelled item)")
        item = dict(item)
        for key in ("image", "label"):
            if key in item and item[key] is not None:
                item[key] = str(base / item[key])
        _check_spacing(path, where, item.get("spacing"))
        items.append(item)
    if views is not None:
        items = [item for item in items if item.get("view") in views]
    return items


def datalist_info(path: str | Path) -> dict[str, Any]:
    """The datalist's top-level description (everything except the split lists)."""
    return {k: v for k, v in _read(Path(path)).items() if k not in SPLITS}


def _read(path: Path) -> dict[str, Any]:
    """The datalist at ``path`` as a dict; a missing, unreadable or non-JSON-object file is a :class:`DataError`."""
    if not path.is_file():
        raise DataError(path, "datalist not found (run `samzoo prepare ...` or `samzoo demo ...` first)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, f"is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DataError(path, f"is not a datalist (a JSON object with {', '.join(SPLITS)} lists)")
    return data


def _check_spacing(path: Path, where: str, spacing: object) -> None:
    """A voxel size must be positive numbers, or absent."""
    if spacing is None:
        return
    values = spacing if isinstance(spacing, list | tuple) else [spacing]
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values):
        raise DataError(path, f"{where} has spacing {spacing!r}; it must be positive numbers in mm")
