"""Tensor connected-component labelling against scipy, on random masks and on long winding regions."""

import numpy as np
import pytest
import torch
from samzoo.networks.components import label_components, region_boxes
from scipy import ndimage

STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), dtype=bool)}


def assert_same_regions(mask: np.ndarray, labels: np.ndarray, connectivity: int) -> None:
    """``labels`` (B, H, W) splits every mask of ``mask`` into exactly scipy's regions; background pixels keep
    their own flat index."""
    for b, (m, found) in enumerate(zip(mask, labels, strict=True)):
        reference, count = ndimage.label(m, structure=STRUCTURE[connectivity])
        pairs = set(zip(reference[m].tolist(), found[m].tolist(), strict=True))
        assert len(pairs) == count == len(set(found[m].tolist()))  # one label per region, one region per label
        assert np.array_equal(found[~m], b * m.size + np.flatnonzero(~m))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_labels_match_scipy_on_random_masks(connectivity):
    rng = np.random.default_rng(0)
    for height, width in [(1, 1), (1, 17), (13, 1), (9, 11), (24, 31)]:
        for density in (0.3, 0.55, 0.8):
            mask = rng.random((3, height, width)) < density
            labels = label_components(torch.from_numpy(mask), connectivity).numpy()
            assert labels.shape == mask.shape and labels.dtype == np.int64
            assert_same_regions(mask, labels, connectivity)


def _serpentine(size: int) -> np.ndarray:
    """One path that runs along every other row, turning at alternate ends."""
    mask = np.zeros((size, size), dtype=bool)
    mask[::2] = True
    mask[1::4, -1] = True
    mask[3::4, 0] = True
    return mask


def _spiral(size: int) -> np.ndarray:
    """One path winding inwards, its turns one pixel apart."""
    mask = np.zeros((size, size), dtype=bool)
    mask[0, 0] = True
    y, x, direction = 0, 0, 0
    steps = ((0, 1), (1, 0), (0, -1), (-1, 0))
    while True:
        for _ in range(2):  # go on, or turn right once
            dy, dx = steps[direction]
            if 0 <= y + 2 * dy < size and 0 <= x + 2 * dx < size and not mask[y + 2 * dy, x + 2 * dx]:
                break
            direction = (direction + 1) % 4
        else:
            return mask
        mask[y + dy, x + dx] = mask[y + 2 * dy, x + 2 * dx] = True
        y, x = y + 2 * dy, x + 2 * dx


@pytest.mark.parametrize("connectivity", [4, 8])
def test_long_winding_regions_are_found_whole(connectivity):
    """Paths thousands of pixels long: the fixed number of rounds must still join them into one region."""
    shapes = [_serpentine(64), _spiral(63), _serpentine(64).T[::-1].copy()]
    for shape in shapes:
        assert ndimage.label(shape, structure=STRUCTURE[connectivity])[1] == 1 and shape.sum() > 1500
    mask = np.stack([np.pad(s, ((0, 64 - s.shape[0]), (0, 64 - s.shape[1]))) for s in shapes])
    assert_same_regions(mask, label_components(torch.from_numpy(mask), connectivity).numpy(), connectivity)


def test_region_boxes_keep_the_largest_regions_in_first_pixel_order():
    mask = torch.zeros(2, 6, 8, dtype=torch.bool)
    mask[0, 0, 6] = True  # area 1, first
    mask[0, 2:5, 1:3] = True  # area 6, second
    mask[0, 4, 6:8] = True  # area 2, third
    mask[1, 5, 0] = True  # the only region of image 1
    labels = label_components(mask)
    boxes, valid = region_boxes(labels, mask, 2)
    assert boxes[0].tolist() == [[1.0, 2.0, 2.0, 4.0], [6.0, 4.0, 7.0, 4.0]]  # the two largest, in row-major order
    assert valid.tolist() == [[True, True], [True, False]]
    assert boxes[1].tolist() == [[0.0, 5.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]]  # padding is zeros
    boxes, valid = region_boxes(labels, mask, 3)
    assert boxes[0, 0].tolist() == [6.0, 0.0, 6.0, 0.0] and valid[0].all()


def test_label_components_rejects_bad_input():
    with pytest.raises(ValueError, match="bool mask"):
        label_components(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="connectivity"):
        label_components(torch.zeros(1, 4, 4, dtype=torch.bool), connectivity=6)
