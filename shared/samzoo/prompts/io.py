"""Prompts given by a user: a JSON file of points and boxes, or boxes around the classes of an existing label map.

JSON layout (coordinates in pixels of the slice as loaded, ``x`` along the second array axis, ``y`` along the
first; a box is ``[x0, y0, x1, y1]``)::

    {"1": {"points": [[40, 52], [44, 60]], "labels": [1, 0], "box": [30, 40, 70, 80]},
     "3": {"box": [45, 35, 60, 50]}}

Keys are label values; each class needs points (with ``labels``, 1 positive / 0 negative) or a box, or both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from .sampling import ClassPrompts, bounding_box


def read_prompts(path: str | Path) -> dict[int, ClassPrompts]:
    """Parse a prompt JSON file; a malformed entry raises :class:`DataError` naming the file and the class."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(path, f"cannot read the prompt file: {error}") from error
    if not isinstance(raw, dict) or not raw:
        raise DataError(path, "expected an object mapping label values to prompts")
    prompts = {}
    for key, entry in raw.items():
        try:
            points = np.asarray(entry.get("points", []), dtype=np.float32).reshape(-1, 2)
            labels = np.asarray(entry.get("labels", [1] * len(points)), dtype=np.int64).reshape(-1)
            box = None if entry.get("box") is None else np.asarray(entry["box"], dtype=np.float32).reshape(4)
            value = int(key)
        except (AttributeError, TypeError, ValueError) as error:
            raise DataError(path, f"class {key!r}: malformed prompt ({error})") from error
        if len(labels) != len(points):
            raise DataError(path, f"class {key!r}: {len(points)} points but {len(labels)} labels")
        if not len(points) and box is None:
            raise DataError(path, f"class {key!r}: give points or a box")
        prompts[value] = ClassPrompts(points, labels, box)
    return prompts


def boxes_from_label(label: np.ndarray, classes: Sequence[int], margin: int = 5) -> dict[int, ClassPrompts]:
    """A box prompt (:func:`bounding_box`) for every class of ``classes`` present in the (H, W) ``label``."""
    return {
        value: ClassPrompts(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), bounding_box(label == value, margin))
        for value in classes
        if (label == value).any()
    }
