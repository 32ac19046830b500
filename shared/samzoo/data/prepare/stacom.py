"""STACOM 2011 LV Segmentation Challenge (Cardiac Atlas Project; Suinesiaputra et al., MedIA 2014), as NIfTI.

The challenge distributes de-identified DICOM (``DET<7 digits>/DET..._SA<k>_ph<t>.dcm`` and ``_LA<k>_ph<t>.dcm``)
with myocardium masks as images, under the CAP data use agreement. samzoo does not read that DICOM distribution:
its mask encoding could not be checked against the data, and reading DICOM geometry needs a DICOM library samzoo
does not depend on. It reads the same data converted to NIfTI, one folder per patient::

    <patient>/<patient>_SA.nii.gz         short-axis cine stack (X, Y, Z, T), slices ordered by position
    <patient>/<patient>_SA_gt.nii.gz      myocardium mask (X, Y, Z, T), 0/1, every frame
    <patient>/<patient>_LA<k>.nii.gz      optional long-axis cines (X, Y, 1, T), k = 1, 2, ...
    <patient>/<patient>_LA<k>_gt.nii.gz   their myocardium masks

Patients without masks (the challenge's unlabelled half) are skipped with a warning. The myocardium becomes label
2 of the ACDC convention and every frame is labelled. ED and ES are the frames where the LV cavity (the area the
myocardium encloses, summed over the short-axis slices) is largest and smallest; long-axis cines take the same
phases, rescaled when they have a different number of frames.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import binary_fill_holes

from ...errors import DataError
from ..nifti import load_nifti
from .cardiac import (
    MYOCARDIUM,
    CineStack,
    frame_time_ms,
    header_spacing_known,
    image_array,
    read_label,
    write_cine_stack,
)

logger = logging.getLogger(__name__)

LABELS = {"0": "background", "2": "myocardium"}

ACCEPTED_LAYOUT = (
    "samzoo reads STACOM 2011 as NIfTI, one folder per patient: <patient>/<patient>_SA.nii.gz (X, Y, Z, T) with "
    "<patient>_SA_gt.nii.gz (myocardium 0/1, every frame), and optional <patient>_LA<k>.nii.gz (X, Y, 1, T) with "
    "<patient>_LA<k>_gt.nii.gz; see docs/data.md"
)

_LAX = re.compile(r"_LA(\d+)\.nii\.gz$")


def collect(src: Path, dst: Path) -> list[dict[str, Any]]:
    """Prepare every labelled patient folder in ``src`` into ``dst``; return the datalist items."""
    patients = sorted(p for p in src.iterdir() if p.is_dir() and (p / f"{p.name}_SA.nii.gz").is_file())
    if not patients:
        dicom = next(src.rglob("*_SA*_ph*.dcm"), None)
        found = (
            f"found the challenge's DICOM distribution ({dicom.name}), which is not read directly; " if dicom else ""
        )
        raise DataError(src, f"{found}no patient folder with <patient>_SA.nii.gz in it. {ACCEPTED_LAYOUT}")
    items = []
    for patient in patients:
        if not (patient / f"{patient.name}_SA_gt.nii.gz").is_file():
            logger.warning("%s: no myocardium masks (%s_SA_gt.nii.gz), skipped", patient, patient.name)
            continue
        items += _patient_items(patient, dst)
    return items


def cavity_areas(myocardium: np.ndarray) -> np.ndarray:
    """LV cavity area per frame of a (X, Y, Z, T) myocardium mask: pixels enclosed by it, summed over slices."""
    areas = np.zeros(myocardium.shape[3], dtype=np.int64)
    for t in range(myocardium.shape[3]):
        for k in range(myocardium.shape[2]):
            ring = myocardium[:, :, k, t] > 0
            areas[t] += int((binary_fill_holes(ring) & ~ring).sum())
    return areas


def _patient_items(patient: Path, dst: Path) -> list[dict[str, Any]]:
    """Items of one patient: the SAX stack, then each long-axis view as slice k of the patient's LAX set."""
    name = patient.name
    sax = _stack(patient / f"{name}_SA.nii.gz", name, "SAX")
    areas = cavity_areas(sax.label)
    if not areas.any():
        raise DataError(sax.label_path, "the myocardium encloses no cavity in any frame, so ED and ES cannot be found")
    sax = replace(sax, ed_frame=int(np.argmax(areas)), es_frame=int(np.argmin(areas)))
    items = write_cine_stack(sax, dst, "stacom")
    numbered = {int(m.group(1)): p for p in patient.glob(f"{name}_LA*.nii.gz") if (m := _LAX.search(p.name))}
    for index, number in enumerate(sorted(numbered)):
        lax = _stack(numbered[number], name, "LAX", first_slice=index, total_slices=len(numbered))
        num_frames = lax.image.shape[3]
        ed, es = (min(round(f * num_frames / sax.image.shape[3]), num_frames - 1) for f in (sax.ed_frame, sax.es_frame))
        items += write_cine_stack(replace(lax, ed_frame=ed, es_frame=es), dst, "stacom")
    return items


def _stack(path: Path, patient: str, view: str, first_slice: int = 0, total_slices: int | None = None) -> CineStack:
    """Read one cine and its myocardium mask (myocardium -> label 2, every frame labelled)."""
    cine = load_nifti(path, dtype=None)
    label_path = path.with_name(path.name.replace(".nii.gz", "_gt.nii.gz"))
    label = read_label(label_path, cine, {0, 1}, {1: MYOCARDIUM}, spatial_dims=None)
    return CineStack(
        case_id=patient,
        patient_id=patient,
        view=view,
        image=image_array(cine),
        label=label,
        affine=cine.affine,
        spacing=cine.zooms[:3],
        ed_frame=0,
        es_frame=0,
        labelled_frames=list(range(cine.array.shape[3])),
        spacing_known=header_spacing_known(cine.zooms),
        image_path=cine.path,
        label_path=label_path,
        timing_path=label_path,
        frame_time_ms=frame_time_ms(cine.path),
        first_slice=first_slice,
        total_slices=total_slices,
    )
