"""What an evaluation report was computed on and with: the evaluated split and the metric definitions.

Every report's ``summary.json`` carries this record under ``"evaluation"``, so ``samzoo compare`` can refuse to put
side by side runs scored on different cases, different ground truth or with different metric code. The split is
identified by its content, not by file paths: the same prepared dataset moved to another folder keeps its
fingerprint, while a re-prepared dataset with another crop or another test case does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import __version__
from ..data.nifti import load_label

METRICS_VERSION = 1
"""Version of the metric definitions (:mod:`~samzoo.metrics.surface`, the rows of
:mod:`~samzoo.metrics.evaluation`, the statistics of :mod:`~samzoo.metrics.report`). Raise it with any change that
can change a number in ``metrics.csv`` or ``summary.json``; reports of different versions are not compared."""

ITEM_KEYS = ("dataset", "case_id", "view", "slice_index", "slice_position", "labelled_frames")
"""Datalist fields that decide which planes of an item are scored and how they are grouped."""


def _label_digest(path: str) -> str:
    """SHA-256 of a label map's shape and values (not of its file, whose gzip header holds a time stamp)."""
    array = load_label(path).array
    digest = hashlib.sha256(repr(array.shape).encode())
    for plane in np.moveaxis(array, -1, 0):
        digest.update(np.ascontiguousarray(plane).tobytes())
    return digest.hexdigest()


def split_fingerprint(items: Sequence[Mapping[str, Any]], selection: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The evaluated cases and one SHA-256 over every item's scoring fields and label values.

    ``views`` lists the items' views (``[None]`` for items without one, as CT), so that a comparison can take the
    same views of a datalist whose split holds others too (a SAX-only evaluation of a split with LAX slices).
    ``selection`` describes a rule that leaves planes of the items out of the scores (e.g. sam_mix's
    ``{"slice_fraction": 0.3}``); it enters the hash, so two reports scored on different parts of the same items
    differ.
    """
    records = sorted(
        (json.dumps({key: item.get(key) for key in ITEM_KEYS}, sort_keys=True), _label_digest(item["label"]))
        for item in items
    )
    digest = hashlib.sha256(json.dumps([records, dict(selection or {})], sort_keys=True).encode())
    return {
        "cases": sorted({str(item.get("case_id", "")) for item in items}),
        "views": sorted({item.get("view") for item in items}, key=str),
        "items": len(items),
        "selection": dict(selection or {}),
        "sha256": digest.hexdigest(),
    }


def evaluation_record(items: Sequence[Mapping[str, Any]], selection: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``"evaluation"`` entry of ``summary.json``: metric version, samzoo version and split fingerprint."""
    return {
        "metrics_version": METRICS_VERSION,
        "samzoo_version": __version__,
        "split": split_fingerprint(items, selection),
    }
