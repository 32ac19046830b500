"""TransUNet and MultiMix, the CT baselines written here: shapes, gradients and fitting a tiny problem."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss
from samzoo.networks.multimix import MultiMix
from samzoo.networks.transunet import TransUNet

TINY_TRANSUNET = {
    "resnet_layers": (1, 1, 1),
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "mlp_dim": 64,
    "head_channels": 32,
    "decoder_channels": (32, 16, 16, 8),
}
TINY_MULTIMIX = {"features": (4, 8, 16, 32, 64)}


def _disks(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy slices (n, 1, size, size), every other one holding a bright disk, and their masks; odd indices
    are empty."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(n, 1, size, size)
    for i in range(0, n, 2):
        cy, cx = (torch.randint(size // 4, 3 * size // 4, (2,), generator=g)).tolist()
        masks[i, 0] = (((yy - cy) ** 2 + (xx - cx) ** 2) <= (size / 6) ** 2).float()
    images = 0.2 + 0.6 * masks + 0.05 * torch.randn(n, 1, size, size, generator=g)
    return images, masks


def test_transunet_shapes_and_paper_size():
    net = TransUNet(in_channels=2, out_channels=3, image_size=64, **TINY_TRANSUNET)
    features, skips = net.encoder(torch.zeros(2, 2, 64, 64))
    assert features.shape == (2, 1024, 4, 4)
    assert [s.shape for s in skips] == [(2, 512, 8, 8), (2, 256, 16, 16), (2, 64, 32, 32)]
    assert net(torch.zeros(2, 2, 64, 64)).shape == (2, 3, 64, 64)
    assert net.embedding.position_embeddings.shape == (1, 16, 32)  # one token per 1/16 position
    # R50-ViT-B/16 with the cascaded upsampler: about 105 M parameters, as the paper's model
    paper = TransUNet(image_size=256)
    assert 100e6 < sum(p.numel() for p in paper.parameters()) < 110e6
    assert sum(len(stage) for stage in paper.encoder.stages) == 16 and len(paper.transformer) == 12


@pytest.mark.parametrize(("size", "message"), [(40, "multiple of 16"), (48, "built for 64")])
def test_transunet_refuses_sides_it_cannot_take(size, message):
    if size % 16:
        with pytest.raises(ValueError, match=message):
            TransUNet(image_size=size, **TINY_TRANSUNET)
    else:
        with pytest.raises(ValueError, match=message):
            TransUNet(image_size=64, **TINY_TRANSUNET)(torch.zeros(1, 1, size, size))


def test_transunet_gradients_reach_every_part():
    torch.manual_seed(0)
    net = TransUNet(image_size=32, **TINY_TRANSUNET)
    net(torch.randn(2, 1, 32, 32)).square().mean().backward()
    for name in ("encoder.root.0.weight", "embedding.position_embeddings", "transformer.1.mlp.linear2.weight",
                 "head.conv.weight", "decoder.3.convs.conv_1.conv.weight", "segmentation.weight"):  # fmt: skip
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_transunet_fits_a_tiny_problem():
    torch.manual_seed(0)
    images, masks = _disks(4, 32)
    net = TransUNet(image_size=32, dropout_rate=0.0, **TINY_TRANSUNET)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loss_fn = DiceLoss(sigmoid=True)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = loss_fn(net(images[::2]), masks[::2])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    net.eval()
    with torch.no_grad():
        assert _hard_dice(net(images[::2]), masks[::2]) > 0.8


def test_multimix_shapes_saliency_and_score():
    torch.manual_seed(0)
    net = MultiMix(in_channels=2, out_channels=3, **TINY_MULTIMIX)
    out = net(torch.randn(2, 2, 48, 32))
    assert out["mask"].shape == (2, 3, 48, 32) and out["score"].shape == (2, 1) and out["cam"].shape == (2, 2, 48, 32)
    assert (out["cam"] >= 0).all() and out["cam"].sum() > 0
    assert not out["cam"].requires_grad  # the bridge is an input, not a path for gradients
    # the saliency of an evaluation step under no_grad equals the training step's, taken with dropout off
    net.eval()
    image = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        evaluated = net(image)
    assert not net.training
    # score = logit(present) - logit(absent): its sigmoid is the softmax probability of "present"
    logits = net.classify(net.encode(image)[-1])
    assert torch.allclose(torch.sigmoid(evaluated["score"][:, 0]), logits.softmax(1)[:, 1], atol=1e-6)
    net.train()
    assert torch.allclose(net.saliency(image), evaluated["cam"]) and net.training


def test_multimix_saliency_is_the_input_gradient_of_the_predicted_class():
    torch.manual_seed(1)
    net = MultiMix(**TINY_MULTIMIX).eval()
    image = torch.randn(1, 1, 32, 32, requires_grad=True)
    logits = net.classify(net.encode(image)[-1])
    logits[0, logits.argmax()].backward()
    assert torch.allclose(net.saliency(image), image.grad.abs())


def test_multimix_gradients_reach_both_branches():
    torch.manual_seed(0)
    net = MultiMix(**TINY_MULTIMIX)
    out = net(torch.randn(2, 1, 32, 32))
    (out["mask"].square().mean() + out["score"].square().mean()).backward()
    params = dict(net.named_parameters())
    for name in ("encoder.0.0.conv.weight", "fc.weight", "decoder.0.0.conv.weight", "segmentation.weight"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    # the first decoder level reads the image and its saliency: its input has 64 + 32 + 2 channels
    assert params["decoder.0.0.conv.weight"].shape[1] == 64 + 32 + 2


def _hard_dice(logits: torch.Tensor, masks: torch.Tensor) -> float:
    return 1 - DiceLoss()((logits.sigmoid() > 0.5).float(), masks).item()


def test_multimix_fits_a_tiny_problem_in_both_tasks():
    torch.manual_seed(0)
    images, masks = _disks(8, 32)
    presence = masks.flatten(1).any(1, keepdim=True).float()
    net = MultiMix(dropout=0.0, **TINY_MULTIMIX)
    with torch.no_grad():
        assert _hard_dice(net.eval()(images)["mask"][::2], masks[::2]) < 0.5
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    dice, bce = DiceLoss(sigmoid=True), torch.nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        out = net(images)
        loss = bce(out["score"], presence) + dice(out["mask"][::2], masks[::2])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]  # the soft Dice of instance-normed logits falls slowly; the hard one below
    net.eval()
    with torch.no_grad():
        out = net(images)
    assert ((out["score"] > 0) == (presence > 0)).all()
    assert _hard_dice(out["mask"][::2], masks[::2]) > 0.8
