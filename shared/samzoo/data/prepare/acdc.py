"""ACDC (Bernard et al., IEEE TMI 2018) in its official layout, full or cropped.

One folder per patient, anywhere below the source (``training/`` and ``testing/`` included)::

    patientNNN/Info.cfg                         ED, ES (1-based frame numbers), Group, NbFrame, ...
    patientNNN/patientNNN_4d.nii.gz             short-axis cine (X, Y, Z, T)
    patientNNN/patientNNN_frameNN.nii.gz        frame NN of the cine (checked against it)
    patientNNN/patientNNN_frameNN_gt.nii.gz     labels of frame NN: 0 background, 1 RV, 2 myocardium, 3 LV
    patientNNN/patientNNN_meta.json             optional: {"spacing_known": bool, ...}
    patientNNN/patientNNN_lax_4d.nii.gz         optional long-axis cine (X, Y, 1, T)
    patientNNN/patientNNN_lax_frameNN_gt.nii.gz optional long-axis labels (X, Y, 1) at the same frames

Intensities are kept as given (full ACDC mixes 0-255 and raw scanner ranges). The voxel size is taken as known
unless ``meta.json`` says otherwise or the header holds exactly 1 x 1 x 1 mm, which is what a lost spacing looks
like.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ..datalist import CARDIAC_LABELS
from ..nifti import NiftiVolume, load_nifti
from .cardiac import (
    ACDC_VALUES,
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

_PATIENT = re.compile(r"patient\d+")


def collect(src: Path, dst: Path) -> list[dict[str, Any]]:
    """Prepare every ``patientNNN`` folder found below ``src`` into ``dst``; return the datalist items."""
    folders = sorted({path for path in src.rglob("patient*") if path.is_dir() and _PATIENT.fullmatch(path.name)})
    if not folders:
        raise DataError(src, "no ACDC patient folders (patientNNN/Info.cfg) found below it")
    seen: dict[str, Path] = {}
    items = []
    for folder in folders:
        if folder.name in seen:
            raise DataError(folder, f"patient {folder.name} also found at {seen[folder.name]}")
        seen[folder.name] = folder
        items += _patient_items(folder, dst)
    return items


def read_info(path: Path) -> dict[str, str]:
    """``Info.cfg`` as {key: value}; raise :class:`DataError` naming it when missing or without ED or ES."""
    if not path.is_file():
        raise DataError(path, "file not found")
    info = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if not re.fullmatch(r"\d+", info.get(key, "")):
            raise DataError(path, f"has no valid {key} frame number (found {info.get(key)!r})")
    if info["ED"] == info["ES"]:
        raise DataError(path, f"ED and ES are the same frame ({info['ED']}); the ES rows would score the ED frame")
    return info


def _patient_items(folder: Path, dst: Path) -> list[dict[str, Any]]:
    """Items of one patient: the SAX stack and, when present, the long-axis cine."""
    name = folder.name
    info = read_info(folder / "Info.cfg")
    ed, es = int(info["ED"]) - 1, int(info["ES"]) - 1
    cine_path = folder / f"{name}_4d.nii.gz"
    cine = _load_cine(cine_path)
    nb_frame = info.get("NbFrame", "")
    if nb_frame.isdigit() and int(nb_frame) != cine.array.shape[-1]:
        logger.warning("%s: NbFrame %s but the cine has %d frames", folder / "Info.cfg", nb_frame, cine.array.shape[-1])
    extra = {"pathology": info.get("Group")}
    known = _spacing_known(folder / f"{name}_meta.json", cine)
    items = write_cine_stack(
        _stack(folder, name, "SAX", cine, sorted(folder.glob(f"{name}_frame[0-9]*_gt.nii.gz")), ed, es, known, extra),
        dst,
        "acdc",
    )
    lax_path = folder / f"{name}_lax_4d.nii.gz"
    if lax_path.is_file():
        lax = _load_cine(lax_path)
        gt = sorted(folder.glob(f"{name}_lax_frame[0-9]*_gt.nii.gz"))
        items += write_cine_stack(_stack(folder, name, "LAX", lax, gt, ed, es, known, extra), dst, "acdc")
    return items


def _load_cine(path: Path) -> NiftiVolume:
    """A cine ``(H, W, Z, T)``; a file of another dimensionality is refused, naming its shape."""
    cine = load_nifti(path, dtype=None)
    if cine.array.ndim != 4:
        raise DataError(path, f"is {cine.array.ndim}D {cine.array.shape}; an ACDC cine is 4D (H, W, Z, T)")
    return cine


def _stack(
    folder: Path,
    name: str,
    view: str,
    cine: NiftiVolume,
    gt_paths: list[Path],
    ed: int,
    es: int,
    spacing_known: bool,
    extra: dict[str, Any],
) -> CineStack:
    """Read the labelled frames of one view into a :class:`CineStack` (frames from the ``frameNN`` numbers)."""
    if not gt_paths:
        raise DataError(folder, f"no {view} label files ({name}_{'lax_' if view == 'LAX' else ''}frameNN_gt.nii.gz)")
    num_frames = cine.array.shape[3]
    frames = {}
    for path in gt_paths:
        frame = int(re.search(r"frame(\d+)_gt", path.name).group(1)) - 1
        if not 0 <= frame < num_frames:
            raise DataError(path, f"frame number {frame + 1} lies outside the {num_frames} frames of {cine.path.name}")
        frames[frame] = read_label(path, cine, ACDC_VALUES)
        if view == "SAX":
            _check_frame_image(folder / path.name.replace("_gt", ""), cine, frame)
    missing = {ed, es} - set(frames)
    if missing:
        logger.warning("%s: no %s labels at the Info.cfg frame(s) %s", folder, view, [f + 1 for f in sorted(missing)])
    return CineStack(
        case_id=name,
        patient_id=name,
        view=view,
        image=image_array(cine),
        label=stack_frames(frames, num_frames),
        affine=cine.affine,
        spacing=cine.zooms[:3],
        ed_frame=ed,
        es_frame=es,
        labelled_frames=sorted(frames),
        spacing_known=spacing_known,
        image_path=cine.path,
        label_path=gt_paths[0],
        timing_path=folder / "Info.cfg",
        frame_time_ms=frame_time_ms(cine.path),
        extra=extra,
    )


def _check_frame_image(path: Path, cine: NiftiVolume, frame: int) -> None:
    """Warn when ``patientNNN_frameNN.nii.gz`` is not frame NN of the cine (the label may belong elsewhere)."""
    if not path.is_file():
        return
    image = load_nifti(path, dtype=np.float64).array
    expected = cine.array[..., frame].astype(np.float64)
    scale = max(float(np.abs(expected).max()), 1.0)
    if image.shape != expected.shape or not np.allclose(image, expected, rtol=1e-4, atol=1e-4 * scale):
        logger.warning("%s differs from frame %d of %s", path, frame + 1, cine.path.name)


def _spacing_known(meta_path: Path, cine: NiftiVolume) -> bool:
    """``spacing_known`` from the optional meta.json, else from the header (exactly 1 x 1 x 1 mm means lost)."""
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(meta_path, f"is not valid JSON ({err})") from err
        if "spacing_known" in meta:
            return bool(meta["spacing_known"])
    return header_spacing_known(cine.zooms)
