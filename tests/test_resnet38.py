"""ResNet-38: depth, reference size, output stride 8."""

import torch
from samzoo.networks.resnet38 import ResNet38
from torch import nn


def test_reference_network_has_38_layers_and_4096_channels():
    net = ResNet38()
    main_path = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and "shortcut" not in n]
    assert len(main_path) + 1 == 38  # 37 convolutions on the main path plus the FC layer
    assert net.out_channels == 4096 and net.fc.in_features == 4096
    assert 100e6 < sum(p.numel() for p in net.parameters()) < 110e6


def test_small_network_shapes():
    net = ResNet38(width=1 / 16).eval()
    x = torch.rand(2, 1, 64, 48)
    assert net.features(x).shape == (2, 256, 8, 6)
    assert net(x).shape == (2, 1)
