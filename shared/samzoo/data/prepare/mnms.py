"""M&Ms, the first Multi-Centre, Multi-Vendor & Multi-Disease challenge (Campello et al., IEEE TMI 2021).

The open dataset as distributed (``OpenDataset/`` of the download)::

    211230_M&Ms_Dataset_information_diagnosis_opendataset.csv   External code, VendorName, Vendor, Centre, ED, ES, ...
    Training/Labeled/<code>/<code>_sa.nii.gz      short-axis cine (X, Y, Z, T)
    Training/Labeled/<code>/<code>_sa_gt.nii.gz   labels (X, Y, Z, T) at the ED and ES frames only
    Training/Unlabeled/<code>/...                 no labels: skipped
    Validation/<code>/...  Testing/<code>/...     same files as Training/Labeled

ED and ES in the CSV are 0-based frame indices. Labels are 1 LV, 2 myocardium, 3 RV and are remapped to ACDC's
convention (3, 2, 1).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..datalist import CARDIAC_LABELS
from ..nifti import load_nifti
from .cardiac import (
    MNMS_TO_ACDC,
    CineStack,
    frame_time_ms,
    header_spacing_known,
    image_array,
    read_label,
    write_cine_stack,
)

logger = logging.getLogger(__name__)

LABELS = dict(CARDIAC_LABELS)

CASE_FOLDERS = ("Training/Labeled", "Validation", "Testing")
INFO_COLUMNS = ("External code", "ED", "ES")


def collect(src: Path, dst: Path, info_csv: str | Path | None = None) -> list[dict[str, Any]]:
    """Prepare every labelled M&Ms case below ``src`` into ``dst``; ``info_csv`` defaults to the one found in src."""
    info = read_info_csv(Path(info_csv) if info_csv is not None else find_info_csv(src))
    roots = [src / sub for sub in CASE_FOLDERS if (src / sub).is_dir()]
    if not roots:
        raise DataError(src, f"none of the M&Ms folders {', '.join(CASE_FOLDERS)} found in it")
    cases = sorted((case for root in roots for case in root.iterdir() if case.is_dir()), key=lambda p: p.name)
    items = []
    for case in cases:
        if case.name not in info.rows:
            raise DataError(info.path, f"has no row for case {case.name} (found in {case.parent})")
        items += write_cine_stack(_stack(case, info.rows[case.name], info.path), dst, "mnms")
    return items


@dataclass
class InfoTable:
    """The M&Ms information CSV: one row per case code, with the file it came from (for error messages)."""

    path: Path
    rows: dict[str, dict[str, str]]


def find_info_csv(src: Path) -> Path:
    """The one CSV below ``src`` with an "External code" column; raise :class:`DataError` if none or several."""
    found = [path for path in sorted(src.rglob("*.csv")) if "External code" in _header(path)]
    if len(found) != 1:
        problem = "no information CSV" if not found else f"several information CSVs ({', '.join(map(str, found))})"
        raise DataError(src, f"{problem} with an 'External code' column found below it; pass --info_csv")
    return found[0]


def read_info_csv(path: Path) -> InfoTable:
    """Rows of the information CSV by case code; raise :class:`DataError` naming it for missing columns."""
    if not path.is_file():
        raise DataError(path, "file not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    missing = [c for c in INFO_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(path, f"lacks the column(s) {', '.join(missing)}")
    return InfoTable(path, {row["External code"].strip(): row for row in rows})


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def _frame(row: dict[str, str], key: str, path: Path) -> int:
    try:
        return int(float(row[key]))
    except ValueError as err:
        raise DataError(path, f"{key} of case {row['External code']} is not a frame index: {row[key]!r}") from err


def _stack(case: Path, row: dict[str, str], info_path: Path) -> CineStack:
    """Read one case's cine and 4D labels into a :class:`CineStack` with ED/ES from the information CSV."""
    code = case.name
    cine = load_nifti(case / f"{code}_sa.nii.gz", dtype=None)
    label_path = case / f"{code}_sa_gt.nii.gz"
    label = read_label(label_path, cine, set(MNMS_TO_ACDC), MNMS_TO_ACDC, spatial_dims=None)
    ed, es = _frame(row, "ED", info_path), _frame(row, "ES", info_path)
    annotated = [int(t) for t in np.flatnonzero(label.reshape(-1, label.shape[-1]).any(axis=0))]
    extra_frames = sorted(set(annotated) - {ed, es})
    if extra_frames:
        logger.warning("%s: labels also at frames %s besides ED %d and ES %d", label_path, extra_frames, ed, es)
    return CineStack(
        case_id=code,
        patient_id=code,
        view="SAX",
        image=image_array(cine),
        label=label,
        affine=cine.affine,
        spacing=cine.zooms[:3],
        ed_frame=ed,
        es_frame=es,
        labelled_frames=sorted({ed, es, *extra_frames}),
        spacing_known=header_spacing_known(cine.zooms),
        image_path=cine.path,
        label_path=label_path,
        timing_path=info_path,
        frame_time_ms=frame_time_ms(cine.path),
        extra={"pathology": row.get("Pathology"), "vendor": row.get("VendorName"), "centre": row.get("Centre")},
    )
