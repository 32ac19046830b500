"""CAM (Eq. 4) and CAM -> box prompts (Eqs. 5-8): hand-made maps, and the tensor labelling against scipy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from samzoo.networks.cam import cam_box_prompts, cam_boxes, class_activation_map
from samzoo.networks.resnet38 import ResNet38


def tensor_boxes(g: np.ndarray, omega: float = 0.5, max_boxes: int | None = None) -> torch.Tensor:
    """Boxes of one map through the batched, tensor-labelled path: the valid rows of ``cam_box_prompts``."""
    boxes, valid = cam_box_prompts(torch.as_tensor(g, dtype=torch.float32)[None], omega, max_boxes, True)
    return boxes[0][valid[0]]


@pytest.fixture(params=["scipy", "tensor"])
def boxes_of(request):
    """The two ways of finding boxes, which must agree on every hand-made map."""
    return cam_boxes if request.param == "scipy" else tensor_boxes


def test_two_regions_give_two_boxes_in_xy_order(boxes_of):
    g = np.zeros((8, 10), dtype=np.float32)
    g[1:3, 2:5] = 1.0  # rows 1-2, cols 2-4
    g[5:8, 7] = 0.6  # rows 5-7, col 7: above 0.5 * max
    g[0, 9] = 0.4  # below tau = 0.5
    boxes = boxes_of(g, omega=0.5)
    assert boxes.tolist() == [[2.0, 1.0, 4.0, 2.0], [7.0, 5.0, 7.0, 7.0]]


def test_threshold_follows_omega_and_diagonal_pixels_connect(boxes_of):
    g = np.zeros((5, 5), dtype=np.float32)
    g[0, 0], g[1, 1], g[4, 4] = 1.0, 0.8, 0.7
    assert boxes_of(g, omega=0.9).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert boxes_of(g, omega=0.75).tolist() == [[0.0, 0.0, 1.0, 1.0]]  # 8-connected diagonal
    assert boxes_of(g, omega=0.5).tolist() == [[0.0, 0.0, 1.0, 1.0], [4.0, 4.0, 4.0, 4.0]]


def test_max_boxes_keeps_largest_regions_and_nonpositive_map_gives_none(boxes_of):
    g = np.zeros((6, 6), dtype=np.float32)
    g[0, 0] = 1.0
    g[3:6, 3:6] = 1.0
    assert boxes_of(g, max_boxes=1).tolist() == [[3.0, 3.0, 5.0, 5.0]]
    assert boxes_of(-np.ones((4, 4))).shape == (0, 4)
    with pytest.raises(ValueError):
        boxes_of(g, omega=0.0)


@pytest.mark.parametrize("max_boxes", [None, 1, 3])
def test_tensor_labelling_matches_scipy_on_random_cams(max_boxes):
    """Maps like real CAMs (a coarse random map upsampled bilinearly), several regions each, both paths."""
    torch.manual_seed(0)
    cams = F.interpolate(torch.randn(12, 1, 6, 5), size=(48, 40), mode="bilinear", align_corners=False)[:, 0]
    cams[3] = -cams[3].abs()  # no positive activation: no box
    for omega in (0.3, 0.5, 0.8):
        expected_boxes, expected_valid = cam_box_prompts(cams, omega, max_boxes, tensor_labelling=False)
        boxes, valid = cam_box_prompts(cams, omega, max_boxes, tensor_labelling=True)
        assert torch.equal(boxes, expected_boxes) and torch.equal(valid, expected_valid)
        assert not valid[3].any() and max(len(cam_boxes(cam, omega)) for cam in cams) > 1  # choices to make
        for cam, kept, ok in zip(cams, boxes, valid, strict=True):  # and both are cam_boxes, padded
            assert torch.equal(kept[ok], cam_boxes(cam, omega, max_boxes))
        if max_boxes is not None:
            assert boxes.shape == (12, max_boxes, 4)  # fixed by max_boxes, whatever the maps hold


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensor_labelling_never_waits_for_the_gpu():
    cams = F.interpolate(torch.randn(6, 1, 32, 32), size=(256, 256), mode="bilinear", align_corners=False)[:, 0]
    expected = cam_box_prompts(cams, 0.5, 3)
    torch.cuda.set_sync_debug_mode("error")
    try:
        boxes, valid = cam_box_prompts(cams.cuda(), 0.5, 3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(boxes.cpu(), expected[0]) and torch.equal(valid.cpu(), expected[1])


def test_cam_matches_eq4_by_hand():
    torch.manual_seed(0)
    net = ResNet38(width=1 / 32).eval()
    x = torch.rand(2, 1, 32, 32)
    features = net.features(x)
    cam = class_activation_map(features, net.fc.weight, 0, (32, 32))
    by_hand = (features * net.fc.weight[0][None, :, None, None]).sum(1, keepdim=True)
    low = torch.nn.functional.interpolate(by_hand, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(cam, low, atol=1e-5)
