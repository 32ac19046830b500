"""The bundles' mixed-precision path (bf16 autocast in MONAI's trainer and evaluator): one training and one
validation iteration of every bundle, on the CPU with autocast redirected to it, and on CUDA as the bundles run it.

MONAI's engines open ``torch.autocast("cuda")``, which does nothing on a CPU; redirecting it to the CPU's bf16
autocast runs the same code path (network, loss, inferer, post-processing) in bf16 here, so a dtype error shows
in CI instead of on a GPU."""

from __future__ import annotations

import math

import pytest
import torch
from monai.bundle import ConfigParser
from tiny_bundles import CASES, tiny_settings


@pytest.fixture
def autocast_on_cpu(monkeypatch) -> None:
    """``torch.autocast("cuda", ...)`` opens the CPU's autocast instead (this machine has no CUDA)."""
    real = torch.autocast

    def autocast(device_type: str, *args, **kwargs):
        return real("cpu" if device_type == "cuda" else device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", autocast)


def _one_step_each(bundle: str, tiny_demos, root, device: str) -> None:
    """Train one iteration and validate one batch of ``bundle`` with ``amp`` on; check that bf16 ran and that the
    loss, the metric and the float32 weights came out finite."""
    files, _, overrides = tiny_settings(bundle, tiny_demos, root)
    parser = ConfigParser()
    parser.read_config(files)
    parser.update({**overrides, "amp": True, "device": f"$torch.device('{device}')"})
    parser.update({"train#handlers": [], "validate#handlers": [], "train#trainer#epoch_length": 1})
    parser.update({"validate#evaluator#epoch_length": 1})
    network = parser.get_parsed_content("network")
    dtypes: set[torch.dtype] = set()

    def record(module, args, output) -> None:
        if isinstance(output, torch.Tensor):
            dtypes.add(output.dtype)

    hooks = [m.register_forward_hook(record) for m in network.modules() if isinstance(m, (torch.nn.Linear,))]
    hooks += [m.register_forward_hook(record) for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    before = {n: p.detach().clone() for n, p in network.named_parameters() if p.requires_grad}
    trainer = parser.get_parsed_content("train#trainer")
    trainer.run()
    assert torch.bfloat16 in dtypes, f"{bundle}: no layer ran in bf16 during training"
    output = trainer.state.output
    loss = (output[0] if isinstance(output, list) else output)["loss"]
    assert math.isfinite(float(loss))
    after = dict(network.named_parameters())
    assert all(after[n].dtype == torch.float32 and torch.isfinite(after[n]).all() for n in before)
    assert any(not torch.equal(before[n], after[n].detach()) for n in before), f"{bundle}: no weight changed"

    dtypes.clear()
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    for hook in hooks:
        hook.remove()
    assert torch.bfloat16 in dtypes, f"{bundle}: no layer ran in bf16 during validation"
    assert math.isfinite(evaluator.state.metrics[evaluator.state.key_metric_name])


@pytest.mark.slow
@pytest.mark.parametrize("bundle", sorted(CASES))
def test_bf16_autocast_trains_and_validates_on_the_cpu(bundle, tiny_demos, tmp_path, autocast_on_cpu):
    _one_step_each(bundle, tiny_demos, tmp_path, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bundle", sorted(CASES))
def test_bf16_autocast_trains_and_validates_on_cuda(bundle, tiny_demos, tmp_path):
    _one_step_each(bundle, tiny_demos, tmp_path, "cuda:0")
