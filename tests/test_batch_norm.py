"""Batch-norm statistics recomputed with the current weights."""

import pytest
import torch
from samzoo.engine import recalibrate_batch_norm
from torch import nn


def test_statistics_are_the_average_of_the_batch_statistics_without_dropout():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Dropout(0.5), nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3))
    norm = net[2]
    norm.momentum = 0.3
    batches = [torch.randn(4, 1, 8, 8) * (i + 1) for i in range(3)]
    net.train()
    assert recalibrate_batch_norm(net, iter(batches)) == 3
    with torch.no_grad():
        inputs = [net[0](b) for b in batches]  # what the layer saw: dropout was off
    mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(0)
    var = torch.stack([x.var(dim=(0, 2, 3)) for x in inputs]).mean(0)  # unbiased, as batch norm keeps it
    torch.testing.assert_close(norm.running_mean, mean)
    torch.testing.assert_close(norm.running_var, var)
    assert norm.momentum == 0.3 and net.training and all(m.training for m in net)
    net.eval()
    recalibrate_batch_norm(net, batches)
    assert not any(m.training for m in net)


def test_no_batches_is_an_error_that_keeps_the_statistics():
    norm = nn.BatchNorm1d(2)
    norm.running_mean.fill_(3.0)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batch_norm(norm, [])
    assert norm.running_mean.tolist() == [3.0, 3.0]
