"""Point and box prompts: centre of mass inside and outside the class, negative re-use, box margin, prompt files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from samzoo.errors import DataError
from samzoo.prompts import bounding_box, has_classes, sample_positive_points, sample_prompts
from samzoo.prompts.io import boxes_from_label, read_prompts


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _three_classes() -> np.ndarray:
    """RV disc at the left, a myocardial ring around an LV disc at the right, on a 40 x 60 slice."""
    label = np.zeros((40, 60), dtype=np.int64)
    label[_disc(label.shape, (20, 12), 6)] = 1
    label[_disc(label.shape, (20, 38), 12)] = 2
    label[_disc(label.shape, (20, 38), 7)] = 3
    return label


def test_first_point_is_centre_of_mass_when_inside() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[10:15, 20:29] = True  # centre of mass (12, 24): row 12, column 24
    points = sample_positive_points(mask, 3, np.random.default_rng(0))
    assert points.shape == (3, 2)
    np.testing.assert_array_equal(points[0], [24, 12])  # (x, y)
    assert all(mask[int(y), int(x)] for x, y in points)
    assert len({tuple(p) for p in points.tolist()}) == 3


def test_centre_of_mass_outside_a_ring_is_discarded() -> None:
    ring = _disc((41, 41), (20, 20), 12) & ~_disc((41, 41), (20, 20), 7)
    assert not ring[20, 20]
    for seed in range(5):
        points = sample_positive_points(ring, 5, np.random.default_rng(seed))
        assert points.shape == (5, 2)
        assert all(ring[int(y), int(x)] for x, y in points)
        assert [20, 20] not in points.tolist()


def test_points_depend_on_seed_and_tiny_masks_still_give_enough() -> None:
    mask = _disc((50, 50), (25, 25), 10)
    a, b = (sample_positive_points(mask, 4, np.random.default_rng(s)) for s in (0, 1))
    np.testing.assert_array_equal(a[0], b[0])  # the centre of mass is fixed
    assert not np.array_equal(a[1:], b[1:])
    single = np.zeros((5, 5), dtype=bool)
    single[2, 3] = True
    np.testing.assert_array_equal(sample_positive_points(single, 2, np.random.default_rng(0)), [[3, 2], [3, 2]])


def test_bounding_box_margin_and_clipping() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[10:15, 20:29] = True
    np.testing.assert_array_equal(bounding_box(mask), [15, 5, 33, 19])
    np.testing.assert_array_equal(bounding_box(mask, margin=0), [20, 10, 28, 14])
    mask[:] = False
    mask[1:3, 36:40] = True
    np.testing.assert_array_equal(bounding_box(mask), [31, 0, 39, 7])


def test_negatives_reuse_other_classes_positive_points() -> None:
    label = _three_classes()
    prompts = sample_prompts(
        label, [1, 2, 3], num_positive=2, num_negative=1, use_box=True, rng=np.random.default_rng(0)
    )
    for value in (1, 2, 3):
        p = prompts[value]
        assert p.points.shape == (4, 2)  # 2 positives + 1 from each of the 2 other classes
        np.testing.assert_array_equal(p.labels, [1, 1, 0, 0])
        assert all(label[int(y), int(x)] == value for x, y in p.points[:2])
        others = [o for o in (1, 2, 3) if o != value]
        np.testing.assert_array_equal(p.points[2:], np.stack([prompts[o].points[0] for o in others]))
        np.testing.assert_array_equal(p.box, bounding_box(label == value, 5))
    none = sample_prompts(label, [1, 2, 3], 3, 0, use_box=False, rng=np.random.default_rng(0))
    assert none[2].box is None and none[2].labels.tolist() == [1, 1, 1]
    two = sample_prompts(label, [1, 2, 3], 3, 2, use_box=False, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(two[3].points[3:5], two[1].points[:2])
    np.testing.assert_array_equal(two[3].points[5:7], two[2].points[:2])


def test_slices_missing_a_class_are_refused() -> None:
    label = _three_classes()
    label[label == 1] = 0
    assert not has_classes(label, [1, 2, 3]) and has_classes(label, [2, 3])
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        sample_prompts(label, [1, 2, 3], 2, 1, True, np.random.default_rng(0))


def test_prompt_file_and_label_boxes(tmp_path) -> None:
    path = tmp_path / "prompts.json"
    path.write_text(
        json.dumps(
            {"1": {"points": [[3, 4], [5, 6]], "labels": [1, 0], "box": [0, 1, 9, 10]}, "3": {"box": [2, 2, 8, 8]}}
        )
    )
    prompts = read_prompts(path, [1, 2, 3], (12, 10))
    np.testing.assert_array_equal(prompts[1].points, [[3, 4], [5, 6]])
    np.testing.assert_array_equal(prompts[1].labels, [1, 0])
    assert prompts[1].labels.dtype == np.int64
    assert prompts[3].points.shape == (0, 2) and prompts[3].box.tolist() == [2, 2, 8, 8]
    boxes = boxes_from_label(_three_classes(), [1, 2, 3, 4], margin=0)
    assert sorted(boxes) == [1, 2, 3]
    np.testing.assert_array_equal(boxes[3].box, [31, 13, 45, 27])


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        ({"2": {"points": [[1, 1]], "labels": [1, 1]}}, "1 points but 2 labels"),
        ({"2": {}}, "give points or a box"),
        ({"2": {"points": [[1, 1], [2, 2]], "labels": [1, 2]}}, r"1 \(positive\) or 0 \(negative\), got \[1.0, 2.0\]"),
        ({"2": {"points": [[1, 1]], "labels": [-1]}}, "point labels must be 1"),
        ({"2": {"points": [[1, 1]], "labels": [0.5]}}, "point labels must be 1"),
        ({"2": {"points": [[float("nan"), 1]]}}, "finite"),
        ({"2": {"box": [0, 0, float("inf"), 5]}}, "finite"),
        ({"2": {"box": [6, 0, 5, 5]}}, r"box \[6.0, 0.0, 5.0, 5.0\] needs x0 <= x1 and y0 <= y1"),
        ({"2": {"box": [0, 6, 5, 5]}}, "needs x0 <= x1 and y0 <= y1"),
        ({"2": {"points": [[10, 3]]}}, r"on the 12 x 10 slice \(0 <= x <= 9, 0 <= y <= 11\)"),
        ({"2": {"points": [[3, -1]]}}, "on the 12 x 10 slice"),
        ({"2": {"box": [0, 0, 9, 12]}}, "on the 12 x 10 slice"),
        ({"300": {"box": [0, 0, 5, 5]}}, r"class '300' is not one of the classes \[1, 2, 3\]"),
        ({"0": {"box": [0, 0, 5, 5]}}, "class '0' is not one of the classes"),
    ],
)
def test_prompt_files_that_sam_would_misread_are_refused(tmp_path, prompt: dict, problem: str) -> None:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(prompt))
    with pytest.raises(DataError, match=problem) as error:
        read_prompts(path, [1, 2, 3], (12, 10))
    assert error.value.path == path
