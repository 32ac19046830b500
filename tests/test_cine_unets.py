"""ConvLSTM and the U-Net baselines of cine segmentation: shapes, temporal reach, gradients, fitting a tiny problem."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet
from samzoo.networks.cine_unets import Framewise, RecurrentUNet, batch_to_frames, frames_to_batch
from samzoo.networks.convlstm import ConvLSTM

FEATURES = (4, 4, 8, 8, 16, 4)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_convlstm_shape(bidirectional):
    layer = ConvLSTM(3, 6, bidirectional=bidirectional)
    out = layer(torch.randn(2, 5, 3, 8, 7))
    assert out.shape == (2, 5, 12 if bidirectional else 6, 8, 7)
    assert layer.out_channels == out.shape[2]


def test_convlstm_rejects_4d_input():
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        ConvLSTM(1, 2)(torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_convlstm_temporal_reach(bidirectional):
    """A change in the last frame reaches earlier outputs only in the bidirectional layer; a change in the first
    frame always reaches the last output."""
    torch.manual_seed(0)
    layer = ConvLSTM(1, 2, bidirectional=bidirectional).eval()
    x = torch.randn(1, 4, 1, 6, 6)
    changed_last, changed_first = x.clone(), x.clone()
    changed_last[:, -1] += 1.0
    changed_first[:, 0] += 1.0
    with torch.no_grad():
        base, last, first = layer(x), layer(changed_last), layer(changed_first)
    assert not torch.allclose(first[:, -1], base[:, -1])
    assert torch.allclose(last[:, 0], base[:, 0]) != bidirectional


def test_frame_reshapes_are_inverse():
    x = torch.randn(2, 3, 4, 5, 6)
    assert torch.equal(batch_to_frames(frames_to_batch(x), 6), x)
    assert torch.equal(frames_to_batch(x)[7], x[1, ..., 1])


def test_framewise_frames_are_independent():
    torch.manual_seed(0)
    net = Framewise(BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=FEATURES)).eval()
    x = torch.randn(1, 1, 32, 32, 3)
    changed = x.clone()
    changed[..., 2] += 1.0
    with torch.no_grad():
        a, b = net(x), net(changed)
    assert a.shape == (1, 1, 32, 32, 3)
    assert torch.allclose(a[..., :2], b[..., :2], atol=1e-6)
    assert not torch.allclose(a[..., 2], b[..., 2])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_recurrent_unet_shape_and_gradients(bidirectional):
    torch.manual_seed(0)
    net = RecurrentUNet(features=FEATURES, bidirectional=bidirectional)
    x = torch.randn(2, 1, 32, 16, 5)
    out = net(x)
    assert out.shape == (2, 1, 32, 16, 5)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.recurrent.forward_cell.gates.weight.grad.abs().sum() > 0


def test_recurrent_unet_mixes_frames():
    torch.manual_seed(0)
    net = RecurrentUNet(features=FEATURES).eval()
    x = torch.randn(1, 1, 32, 32, 3)
    changed = x.clone()
    changed[..., 2] += 1.0
    with torch.no_grad():
        assert not torch.allclose(net(x)[..., 0], net(changed)[..., 0])


def test_recurrent_unet_odd_bidirectional_width():
    with pytest.raises(ValueError, match="even width"):
        RecurrentUNet(features=(4, 4, 8, 8, 15, 4))


def test_recurrent_unet_fits_a_tiny_problem():
    """Moving squares in noise: the network segments them (Dice > 0.9) after a few dozen steps."""
    torch.manual_seed(0)
    x = torch.zeros(4, 1, 32, 32, 3)
    for b in range(4):
        for t in range(3):
            r, c = torch.randint(4, 20, (2,)).tolist()
            x[b, 0, r : r + 8, c : c + 8, t] = 1.0
    target = x.clone()
    noisy = x + 0.3 * torch.randn_like(x)
    net = RecurrentUNet(features=FEATURES)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(40):
        opt.zero_grad()
        loss_fn(net(noisy), target).backward()
        opt.step()
    with torch.no_grad():
        pred = (net(noisy) > 0).float()
    dice = 2 * (pred * target).sum() / (pred.sum() + target.sum())
    assert dice > 0.9
