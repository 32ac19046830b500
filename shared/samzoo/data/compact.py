"""Compact copies of prepared cine datasets: 8-bit intensities and, optionally, fewer frames.

A prepared cine dataset is mostly int16 or float images. Every cardiac bundle min-max scales each clip before it
reaches a network, so storing each cine min-max scaled to 0..255 changes what the network sees by at most half a
grey level in 255, and keeping only the frames a job reads (the labelled ED/ES frames for 2D work, or ``T`` phases
including ED and ES for 2D+T work) shrinks the copy further. That makes a dataset small enough to move to an
offline GPU node or to keep in memory; the copy is an ordinary datalist that every bundle reads with
``--dataset_dir``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import removed_on_failure
from ..errors import DataError
from .datalist import SPLITS, datalist_info, ensure_outside, load_datalist, write_datalist
from .nifti import load_label, load_nifti, save_nifti
from .phases import sample_phase_indices

logger = logging.getLogger(__name__)

__all__ = ["compact_cine", "kept_frames", "to_uint8"]


def kept_frames(item: dict[str, Any], frames: str | int) -> list[int]:
    """Source frames of ``item`` that a compact copy keeps, in temporal order.

    ``"all"`` keeps every frame, ``"labelled"`` the labelled frames (ED and ES for ACDC and M&Ms), and an integer
    ``T`` the ``T`` phases that :func:`~samzoo.data.phases.sample_phase_indices` spreads over the cycle, ED and
    ES included (every frame when the cine has no more than ``T``).
    """
    num_frames = int(item["num_frames"])
    if frames == "all":
        return list(range(num_frames))
    if frames == "labelled":
        return sorted(set(item["labelled_frames"]) | {item["ed_frame"], item["es_frame"]})
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise DataError(None, f"frames must be 'all', 'labelled' or a number of phases >= 2, got {frames!r}")
    if num_frames <= frames:
        return list(range(num_frames))
    return [int(f) for f in sample_phase_indices(num_frames, frames, item["ed_frame"], item["es_frame"])]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``image`` min-max scaled to 0..255 and rounded (a constant image becomes 0)."""
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.rint((image.astype(np.float64) - low) * (255.0 / (high - low))).astype(np.uint8)


def _compact_item(item: dict[str, Any], dst: Path, frames: str | int, labels: set[int]) -> dict[str, Any]:
    """Write the compact image and label of one cine item below ``dst``; return its new datalist item."""
    keep = kept_frames(item, frames)
    image, label = load_nifti(item["image"], dtype=None), load_label(item["label"], labels)
    if image.array.ndim != 3 or label.array.shape != image.array.shape:
        raise DataError(
            image.path,
            f"expected an (H, W, T) cine with a label of the same shape, got "
            f"{image.array.shape} and {label.array.shape}",
        )
    name = Path(item["image"]).name
    save_nifti(to_uint8(image.array[..., keep]), image.affine, dst / "images" / name, image.zooms, image.units)
    save_nifti(label.array[..., keep], label.affine, dst / "labels" / name, image.zooms, image.units)
    position = {frame: k for k, frame in enumerate(keep)}
    labelled = [position[f] for f in item["labelled_frames"] if f in position]
    return dict(
        item,
        image=f"images/{name}",
        label=f"labels/{name}",
        num_frames=len(keep),
        ed_frame=position[item["ed_frame"]],
        es_frame=position[item["es_frame"]],
        labelled_frames=labelled,
        cine=bool(item.get("cine", True)) and (frames != "labelled" or len(keep) == item["num_frames"]),
        source_frames=keep,
    )


def compact_cine(datalist: str | Path, dst: str | Path, frames: str | int = "all") -> Path:
    """Write a compact copy of the cine datalist ``datalist`` (every split) to ``dst``; return its datalist path.

    Images become uint8 (each cine min-max scaled to 0..255, see :func:`to_uint8`), labels stay as they are, and
    only :func:`kept_frames` of each cine are written; items keep their fields, with the frame indices renumbered
    and ``source_frames`` naming the source frames. ``dst`` must not hold a datalist already and must lie outside
    the source folder, so nothing the user has is overwritten.
    """
    datalist, dst = Path(datalist), Path(dst)
    info = datalist_info(datalist)
    if (dst / "datalist.json").exists():
        raise DataError(dst / "datalist.json", "already exists; choose an empty destination folder")
    ensure_outside(dst, datalist.parent)
    present = [split for split in SPLITS if json.loads(datalist.read_text()).get(split)]
    splits = {split: load_datalist(datalist, split) for split in present}
    items = [item for split_items in splits.values() for item in split_items]
    if not all(item.get("num_frames") for item in items):
        raise DataError(datalist, "is not a cine datalist (its items have no frames); only cine data is compacted")
    names = [Path(item["image"]).name for item in items]
    if len(set(names)) != len(names):
        raise DataError(datalist, "has several images with the same file name; they would overwrite each other")
    longest = max(int(item["num_frames"]) for item in items)
    if isinstance(frames, int) and not isinstance(frames, bool) and frames > longest:
        raise DataError(
            datalist, f"--frames {frames} exceeds the longest cine ({longest} frames); use --frames all to keep all"
        )
    labels = {int(value) for value in info.get("labels", {})} or None
    with removed_on_failure(dst):
        compacted = {
            split: [_compact_item(item, dst, frames, labels) for item in items] for split, items in splits.items()
        }
        path = write_datalist(dict(info, **compacted, compacted_from=str(datalist.resolve()), frames=frames), dst)
    logger.info("wrote %s: %d items, frames %s, uint8 images", path, sum(map(len, compacted.values())), frames)
    return path
