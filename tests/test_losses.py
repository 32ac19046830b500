import math

import torch
import torch.nn.functional as F
from samzoo.losses import IGNORE_VALUE, MaskedDiceBCELoss


def test_ignored_voxels_do_not_change_loss_or_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, 4, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8, 4) > 0.5).float()
    target[..., 1:3] = IGNORE_VALUE  # frames 1 and 2 unlabelled
    loss = MaskedDiceBCELoss()(logits, target)
    loss.backward()
    assert torch.all(logits.grad[..., 1:3] == 0)
    assert torch.any(logits.grad[..., 0] != 0)

    # Changing the logits of ignored frames leaves the loss unchanged.
    other = logits.detach().clone()
    other[..., 1:3] = 100.0
    assert torch.isclose(MaskedDiceBCELoss()(other, target), loss.detach())


def test_matches_hand_computed_terms_without_ignore():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 1, 2, 2)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1e-5) / (p.sum() + target.sum() + 1e-5)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    got = MaskedDiceBCELoss(lambda_dice=0.7, lambda_bce=0.3)(logits, target)
    assert torch.isclose(got, 0.7 * dice + 0.3 * bce, atol=1e-6)


def test_all_ignored_gives_finite_zero_bce():
    logits = torch.randn(1, 1, 4, 4)
    target = torch.full((1, 1, 4, 4), float(IGNORE_VALUE))
    loss = MaskedDiceBCELoss(lambda_dice=0.0)(logits, target)
    assert torch.isfinite(loss) and loss == 0


def test_background_false_positives_raise_the_loss_in_every_channel():
    # Three pixels: background, class 0, class 1; two independent binary masks (one per class).
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).view(1, 2, 1, 3)
    right = torch.where(target > 0, 20.0, -20.0)
    assert MaskedDiceBCELoss()(right, target) < 1e-6
    # Logit 0 (probability 0.5) on the background pixel in both channels. Per channel the Dice is
    # 1 - 2 * 1 / (1.5 + 1) = 0.2; the BCE is ln 2 on 2 of the 6 elements, so its mean is ln 2 / 3.
    unsure = right.clone()
    unsure[..., 0] = 0.0
    expected = 0.2 + math.log(2) / 3
    assert math.isclose(float(MaskedDiceBCELoss()(unsure, target)), expected, rel_tol=1e-4)
