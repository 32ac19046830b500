"""Simulated user prompts for one 2D slice: positive points, negative points re-used from other classes, boxes.

Coordinates follow segment-anything: a point is ``(x, y)`` = (column, row) of the array it was drawn from, a box is
``(x0, y0, x1, y1)`` with inclusive pixel corners. Everything here works on the slice's own grid; mapping to the
model's input grid is a scaling done by the caller (:mod:`samzoo.networks.sam_prompt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassPrompts:
    """The prompts of one class: ``points`` (N, 2) as (x, y), ``labels`` (N,) 1 positive / 0 negative, ``box``
    (4,) as (x0, y0, x1, y1) or None."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None


def has_classes(label: np.ndarray, classes: Sequence[int]) -> bool:
    """Whether every class in ``classes`` has at least one pixel in the (H, W) label map."""
    return all(bool((label == value).any()) for value in classes)


def sample_positive_points(mask: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """``num_points`` distinct (x, y) points inside the (H, W) boolean ``mask``.

    The first point is the mask's centre of mass (rounded to the nearest pixel) when that pixel belongs to the mask,
    which it does not for a ring such as the myocardium; every other point is drawn uniformly, without replacement,
    from the remaining mask pixels (with replacement only when the mask has too few pixels), so every call returns
    exactly ``num_points`` points.
    """
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("cannot sample positive points from an empty mask")
    centre = np.rint([rows.mean(), cols.mean()]).astype(int)
    chosen: list[int] = []
    if num_points > 0 and mask[centre[0], centre[1]]:
        chosen.append(int(np.flatnonzero((rows == centre[0]) & (cols == centre[1]))[0]))
    rest = np.setdiff1d(np.arange(rows.size), chosen)
    pool = rest if rest.size else np.asarray(chosen)
    count = num_points - len(chosen)
    chosen += rng.choice(pool, size=count, replace=pool.size < count).tolist()
    return np.stack([cols[chosen], rows[chosen]], axis=1).astype(np.float32)


def bounding_box(mask: np.ndarray, margin: int = 5) -> np.ndarray:
    """(x0, y0, x1, y1) around the mask's extreme pixels, widened by ``margin`` pixels and clipped to the slice."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("cannot draw a box around an empty mask")
    height, width = mask.shape
    return np.array(
        [
            max(cols.min() - margin, 0),
            max(rows.min() - margin, 0),
            min(cols.max() + margin, width - 1),
            min(rows.max() + margin, height - 1),
        ],
        dtype=np.float32,
    )


def sample_prompts(
    label: np.ndarray,
    classes: Sequence[int],
    num_positive: int,
    num_negative: int,
    use_box: bool,
    rng: np.random.Generator,
    margin: int = 5,
) -> dict[int, ClassPrompts]:
    """Prompts for every class of an (H, W) label map that holds all of ``classes``.

    Each class gets ``num_positive`` positive points (:func:`sample_positive_points`). Negative points are not drawn
    anew: a class re-uses the first ``num_negative`` positive points of *each other* class, so with three classes
    and ``num_negative=1`` the myocardium gets one negative point in the RV and one in the LV. Every class therefore
    has ``num_positive + num_negative * (len(classes) - 1)`` points. ``use_box`` adds :func:`bounding_box`.
    """
    missing = [value for value in classes if not (label == value).any()]
    if missing:
        raise ValueError(f"the slice holds no pixel of classes {missing}; such slices are left out")
    positives = {value: sample_positive_points(label == value, num_positive, rng) for value in classes}
    prompts = {}
    for value in classes:
        negatives = [positives[other][:num_negative] for other in classes if other != value]
        points = np.concatenate([positives[value], *negatives]).reshape(-1, 2)
        labels = np.concatenate([np.ones(len(positives[value])), np.zeros(len(points) - len(positives[value]))])
        box = bounding_box(label == value, margin) if use_box else None
        prompts[value] = ClassPrompts(points.astype(np.float32), labels.astype(np.int64), box)
    return prompts
