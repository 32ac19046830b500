"""M&Ms-2, the Multi-Disease, Multi-View & Multi-Centre RV challenge (Martín-Isla et al., IEEE JBHI 2023).

One folder per subject, in ``<src>/dataset/<id>/`` (the download's layout) or ``<src>/<id>/``::

    <id>_SA_CINE.nii.gz                       short-axis cine (X, Y, Z, T)
    <id>_SA_ED.nii.gz, <id>_SA_ED_gt.nii.gz   ED volume (X, Y, Z) and its labels; the same for ES
    <id>_LA_CINE.nii.gz                       four-chamber long-axis cine (X, Y, 1, T)
    <id>_LA_ED.nii.gz, <id>_LA_ED_gt.nii.gz   ED slice (X, Y, 1) and its labels; the same for ES
    dataset_information.csv                   optional, in src: SUBJECT_CODE, DISEASE, VENDOR, ...

Labels are 1 LV, 2 myocardium, 3 RV and are remapped to ACDC's convention (3, 2, 1). The files do not say which
cine frames ED and ES are: each ED/ES volume is matched to the cine frame it equals, or failing that the frame it
correlates with best; items record ``frame_match`` ("exact" or "correlation"). Without a cine the view is written
as a two-frame clip [ED, ES] with ``cine`` false.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..datalist import CARDIAC_LABELS
from ..nifti import NiftiVolume, check_same_grid, load_nifti
from .cardiac import (
    MNMS_TO_ACDC,
    CineStack,
    frame_time_ms,
    header_spacing_known,
    image_array,
    read_label,
    stack_frames,
    write_cine_stack,
)

logger = logging.getLogger(__name__)

LABELS = dict(CARDIAC_LABELS)

VIEWS = {"SA": "SAX", "LA": "LAX"}
MIN_CORRELATION = 0.95
"""Below this a best-correlating frame is still used, with a warning: the ED/ES volume may not come from the cine."""


def collect(src: Path, dst: Path, info_csv: str | Path | None = None) -> list[dict[str, Any]]:
    """Prepare every subject folder below ``src`` (or ``src/dataset``) into ``dst``; return the datalist items."""
    root = src / "dataset" if (src / "dataset").is_dir() else src
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob(f"{p.name}_[SL]A_ED.nii.gz")))
    if not subjects:
        raise DataError(root, "no M&Ms-2 subject folders (<id>/<id>_SA_ED.nii.gz or <id>_LA_ED.nii.gz) found in it")
    if info_csv is None:
        info = _read_info(src / "dataset_information.csv", required=False)
    else:
        info = _read_info(Path(info_csv), required=True)
    items = []
    for subject in subjects:
        row = info.get(_subject_key(subject.name), {})
        extra = {"pathology": row.get("DISEASE"), "vendor": row.get("VENDOR")}
        for prefix in VIEWS:
            if (subject / f"{subject.name}_{prefix}_ED.nii.gz").is_file():
                items += write_cine_stack(_stack(subject, prefix, extra), dst, "mnms2")
    return items


def match_frame(volume: np.ndarray, cine: np.ndarray) -> tuple[int, str, float]:
    """Frame of a (X, Y, Z, T) cine that a (X, Y, Z) volume equals, else the best-correlating one.

    Returns (frame, "exact" or "correlation", Pearson correlation of that frame); frames are compared one at a
    time so a large cine is never copied whole.
    """
    target = volume.astype(np.float64).ravel()
    offset = target - target.mean()
    corr = np.zeros(cine.shape[-1])
    for t in range(cine.shape[-1]):
        frame = cine[..., t].astype(np.float64).ravel()
        if np.array_equal(frame, target):
            return t, "exact", 1.0
        centred = frame - frame.mean()
        norm = np.linalg.norm(centred) * np.linalg.norm(offset)
        corr[t] = centred @ offset / norm if norm > 0 else 0.0
    best = int(np.argmax(corr))
    return best, "correlation", float(corr[best])


def _subject_key(name: str) -> str:
    return name.lstrip("0") or "0"


def _read_info(path: Path, required: bool) -> dict[str, dict[str, str]]:
    """Rows of ``dataset_information.csv`` by subject number; {} when it is absent and not required."""
    if not path.is_file():
        if required:
            raise DataError(path, "file not found")
        return {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    if "SUBJECT_CODE" not in (reader.fieldnames or []):
        raise DataError(path, "lacks the column SUBJECT_CODE")
    return {_subject_key(row["SUBJECT_CODE"].strip()): row for row in rows}


def _stack(subject: Path, prefix: str, extra: dict[str, Any]) -> CineStack:
    """One view of a subject: the cine with ED/ES found by matching, or a two-frame clip without a cine."""
    name, view = subject.name, VIEWS[prefix]
    images: dict[str, NiftiVolume] = {}
    labels: dict[str, np.ndarray] = {}
    for phase in ("ED", "ES"):
        images[phase] = load_nifti(subject / f"{name}_{prefix}_{phase}.nii.gz", dtype=None)
        labels[phase] = read_label(
            images[phase].path.with_name(f"{name}_{prefix}_{phase}_gt.nii.gz"),
            images[phase],
            set(MNMS_TO_ACDC),
            MNMS_TO_ACDC,
        )
    cine_path = subject / f"{name}_{prefix}_CINE.nii.gz"
    if cine_path.is_file():
        source = load_nifti(cine_path, dtype=None)
        frames, match = _match_phases(source, images)
        image = image_array(source)
        label = stack_frames({frames[p]: labels[p] for p in frames}, image.shape[-1])
    else:
        logger.warning("%s is missing: %s %s written as a two-frame clip [ED, ES]", cine_path, name, view)
        source = images["ED"]
        check_same_grid(source, images["ES"], spatial_dims=3)
        frames, match = {"ED": 0, "ES": 1}, None
        image = np.stack([image_array(images["ED"]), image_array(images["ES"])], axis=-1)
        label = np.stack([labels["ED"], labels["ES"]], axis=-1)
    return CineStack(
        case_id=name,
        patient_id=name,
        view=view,
        image=image,
        label=label,
        affine=source.affine,
        spacing=source.zooms[:3],
        ed_frame=frames["ED"],
        es_frame=frames["ES"],
        labelled_frames=sorted(frames.values()),
        spacing_known=header_spacing_known(source.zooms),
        image_path=source.path,
        label_path=subject / f"{name}_{prefix}_ED_gt.nii.gz",
        timing_path=source.path,
        cine=match is not None,
        frame_time_ms=frame_time_ms(cine_path) if match is not None else None,
        extra={**extra, "frame_match": match},
    )


def _match_phases(cine: NiftiVolume, images: dict[str, NiftiVolume]) -> tuple[dict[str, int], str]:
    """Cine frame of each ED/ES volume, and "exact" when both equal their frame, else "correlation"."""
    frames, methods = {}, set()
    for phase, image in images.items():
        check_same_grid(cine, image, spatial_dims=3)
        frame, method, corr = match_frame(image.array, cine.array)
        if method != "exact":
            level = logging.WARNING if corr < MIN_CORRELATION else logging.INFO
            logger.log(level, "%s matches no cine frame exactly; best is frame %d (r = %.3f)", image.path, frame, corr)
        if frame in frames.values():
            raise DataError(image.path, f"matches cine frame {frame}, the frame the other phase matches")
        frames[phase] = frame
        methods.add(method)
    return frames, "exact" if methods == {"exact"} else "correlation"
