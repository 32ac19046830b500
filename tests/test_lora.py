"""LoRA wrapper: frozen base weights, exact trainable counts, identity at initialisation."""

import torch
from samzoo.networks import build_backbone
from samzoo.networks.lora import LoRALinear, add_lora, lora_parameters
from torch import nn


def test_lora_linear_starts_as_identity_update_and_trains_only_factors():
    base = nn.Linear(6, 4)
    layer = LoRALinear(base, rank=2)
    x = torch.randn(3, 6)
    assert torch.equal(layer(x), base(x))
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_a", "lora_b"]
    with torch.no_grad():
        layer.lora_b.fill_(1.0)
    expected = base(x) + (x @ layer.lora_a.t()) @ torch.ones(2, 4)  # alpha = rank: scale 1
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_add_lora_on_vit_tiny_counts_and_freezes():
    sam, _ = build_backbone("vit_tiny")
    encoder = sam.image_encoder
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    wrapped = add_lora(encoder, rank=8)
    assert len(wrapped) == 8  # qkv and proj of 4 blocks
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    # per block: qkv 96 -> 288: 8*96 + 288*8; proj 96 -> 96: 8*96 + 96*8
    assert trainable == 4 * (8 * 96 + 288 * 8 + 8 * 96 + 96 * 8) == 18432
    assert trainable == sum(p.numel() for p in lora_parameters(encoder))
    optimizer = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=1.0)
    encoder(torch.randn(1, 3, 256, 256)).square().mean().backward()
    optimizer.step()
    after = dict(encoder.named_parameters())
    for name, value in before.items():
        key = name.replace(".qkv.", ".qkv.base.").replace(".proj.", ".proj.base.")
        key = key if key in after else name
        assert torch.equal(after[key], value), key
    assert any(p.abs().sum() > 0 for p in encoder.parameters() if p.requires_grad)
