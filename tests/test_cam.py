"""CAM (Eq. 4) and CAM -> box prompts (Eqs. 5-8) on hand-made maps."""

import numpy as np
import pytest
import torch
from samzoo.cam import cam_boxes, class_activation_map
from samzoo.networks.resnet38 import ResNet38


def test_two_regions_give_two_boxes_in_xy_order():
    g = np.zeros((8, 10), dtype=np.float32)
    g[1:3, 2:5] = 1.0  # rows 1-2, cols 2-4
    g[5:8, 7] = 0.6  # rows 5-7, col 7: above 0.5 * max
    g[0, 9] = 0.4  # below tau = 0.5
    boxes = cam_boxes(g, omega=0.5)
    assert boxes.tolist() == [[2.0, 1.0, 4.0, 2.0], [7.0, 5.0, 7.0, 7.0]]


def test_threshold_follows_omega_and_diagonal_pixels_connect():
    g = np.zeros((5, 5), dtype=np.float32)
    g[0, 0], g[1, 1], g[4, 4] = 1.0, 0.8, 0.7
    assert cam_boxes(g, omega=0.9).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert cam_boxes(g, omega=0.75).tolist() == [[0.0, 0.0, 1.0, 1.0]]  # 8-connected diagonal
    assert cam_boxes(g, omega=0.5).tolist() == [[0.0, 0.0, 1.0, 1.0], [4.0, 4.0, 4.0, 4.0]]


def test_max_boxes_keeps_largest_regions_and_nonpositive_map_gives_none():
    g = np.zeros((6, 6), dtype=np.float32)
    g[0, 0] = 1.0
    g[3:6, 3:6] = 1.0
    assert cam_boxes(g, max_boxes=1).tolist() == [[3.0, 3.0, 5.0, 5.0]]
    assert cam_boxes(-np.ones((4, 4))).shape == (0, 4)
    with pytest.raises(ValueError):
        cam_boxes(g, omega=0.0)


def test_cam_matches_eq4_by_hand():
    torch.manual_seed(0)
    net = ResNet38(width=1 / 32).eval()
    x = torch.rand(2, 1, 32, 32)
    features = net.features(x)
    cam = class_activation_map(features, net.fc.weight, 0, (32, 32))
    by_hand = (features * net.fc.weight[0][None, :, None, None]).sum(1, keepdim=True)
    low = torch.nn.functional.interpolate(by_hand, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(cam, low, atol=1e-5)
