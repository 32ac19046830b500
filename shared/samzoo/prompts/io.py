"""Prompts given by a user: a JSON file of points and boxes, or boxes around the classes of an existing label map.

JSON layout (coordinates in pixels of the slice as loaded, ``x`` along the second array axis, ``y`` along the
first; a box is ``[x0, y0, x1, y1]``)::

    {"1": {"points": [[40, 52], [44, 60]], "labels": [1, 0], "box": [30, 40, 70, 80]},
     "3": {"box": [45, 35, 60, 50]}}

Keys are label values among the bundle's classes; each class needs points (with ``labels``, 1 positive / 0
negative) or a box, or both. Points and boxes must lie on the slice: 0 <= x <= W - 1 and 0 <= y <= H - 1 (pixel
indices; a box's corners are inclusive, as :func:`~samzoo.prompts.sampling.bounding_box` draws them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .sampling import ClassPrompts, bounding_box


def read_prompts(path: str | Path, classes: Sequence[int], shape: tuple[int, int]) -> dict[int, ClassPrompts]:
    """Parse a prompt JSON file for an (H, W) slice of ``shape`` segmented into ``classes``.

    Everything SAM would misread is refused here, before the model runs, with a :class:`DataError` naming the file
    and the class: labels other than 0/1 (SAM reads 2/3 as box corners, -1 as padding), coordinates that are not
    finite or lie off the slice, boxes with x0 > x1 or y0 > y1, and label values that are not among ``classes``.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(path, f"cannot read the prompt file: {error}") from error
    if not isinstance(raw, dict) or not raw:
        raise DataError(path, "expected an object mapping label values to prompts")
    height, width = shape
    prompts = {}
    for key, entry in raw.items():
        try:
            points = np.asarray(entry.get("points", []), dtype=np.float32).reshape(-1, 2)
            labels = np.asarray(entry.get("labels", [1] * len(points)), dtype=np.float64).reshape(-1)
            box = None if entry.get("box") is None else np.asarray(entry["box"], dtype=np.float32).reshape(4)
            value = int(key)
        except (AttributeError, TypeError, ValueError) as error:
            raise DataError(path, f"class {key!r}: malformed prompt ({error})") from error
        if value not in classes:
            raise DataError(path, f"class {key!r} is not one of the classes {list(classes)}")
        if len(labels) != len(points):
            raise DataError(path, f"class {key!r}: {len(points)} points but {len(labels)} labels")
        if not len(points) and box is None:
            raise DataError(path, f"class {key!r}: give points or a box")
        if not np.isin(labels, (0, 1)).all():
            got = labels.tolist()
            raise DataError(path, f"class {key!r}: point labels must be 1 (positive) or 0 (negative), got {got}")
        corners = points if box is None else np.concatenate([points, box.reshape(2, 2)])
        if not np.isfinite(corners).all():
            raise DataError(path, f"class {key!r}: coordinates must be finite numbers")
        if box is not None and (box[0] > box[2] or box[1] > box[3]):
            raise DataError(path, f"class {key!r}: box {box.tolist()} needs x0 <= x1 and y0 <= y1")
        if (corners < 0).any() or (corners > [width - 1, height - 1]).any():
            raise DataError(
                path,
                f"class {key!r}: points and boxes must lie on the {height} x {width} slice (0 <= x <= "
                f"{width - 1}, 0 <= y <= {height - 1})",
            )
        prompts[value] = ClassPrompts(points, labels.astype(np.int64), box)
    return prompts


def boxes_from_label(label: np.ndarray, classes: Sequence[int], margin: int = 5) -> dict[int, ClassPrompts]:
    """A box prompt (:func:`bounding_box`) for every class of ``classes`` present in the (H, W) ``label``."""
    return {
        value: ClassPrompts(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), bounding_box(label == value, margin))
        for value in classes
        if (label == value).any()
    }
