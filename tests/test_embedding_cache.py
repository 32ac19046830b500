"""Embedding cache: keys by content (ED vs ES, backbone, preprocessing, augmentation), hits, misses, files."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from samzoo.embedding_cache import EmbeddingCache, embedding_key
from samzoo.errors import DataError
from samzoo.networks.sam_prompt import SamPromptModel, to_sam_input


@pytest.fixture(scope="module")
def tiny() -> SamPromptModel:
    torch.manual_seed(0)
    return SamPromptModel("vit_tiny", pretrained=False)


def _cine() -> np.ndarray:
    """(H, W, T) = (30, 24, 4): a bright square that shrinks from frame to frame."""
    cine = np.zeros((30, 24, 4), dtype=np.float32)
    for t in range(4):
        cine[5 + t : 25 - t, 4 + t : 20 - t, t] = 100.0
    return cine + np.linspace(0, 5, 24, dtype=np.float32)[None, :, None]


def test_keys_separate_frames_backbones_and_preprocessing(tiny: SamPromptModel) -> None:
    spec = tiny.input_spec
    cine = _cine()
    ed, es = (to_sam_input(cine[..., t], spec) for t in (0, 2))
    assert embedding_key(ed, tiny.identity) != embedding_key(es, tiny.identity)
    assert embedding_key(ed, tiny.identity) == embedding_key(to_sam_input(cine[..., 0].copy(), spec), tiny.identity)
    torch.manual_seed(1)
    other = SamPromptModel("vit_tiny", pretrained=False)
    assert other.identity != tiny.identity  # same architecture, other weights
    lite = SamPromptModel("lite_medsam", pretrained=True)
    assert lite.identity.startswith("lite_medsam-") and lite.identity != tiny.identity
    keys = {embedding_key(ed, identity) for identity in (tiny.identity, other.identity, lite.identity)}
    assert len(keys) == 3
    for changed in (
        replace(spec, intensity_max=1.0),
        replace(spec, image_size=128),
        replace(spec, clip_percentiles=(5, 95)),
    ):
        assert embedding_key(to_sam_input(cine[..., 0], changed), tiny.identity) != embedding_key(ed, tiny.identity)
    flipped = to_sam_input(cine[:, ::-1, 0], spec)  # an augmented copy never reuses the original's embedding
    assert embedding_key(flipped, tiny.identity) != embedding_key(ed, tiny.identity)


def test_sam_input_scaling_resizing_padding(tiny: SamPromptModel) -> None:
    spec = replace(tiny.input_spec, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0), intensity_max=1.0)
    image = to_sam_input(np.tile(np.arange(24, dtype=np.float32), (32, 1)), spec)
    assert image.shape == (3, 256, 256)
    assert torch.equal(image[0], image[2])
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0 + 1e-6
    assert torch.all(image[:, :, 192:] == 0)  # 32 x 24 -> 256 x 192, padded on the right
    assert float(image[0, :, 191].mean()) > 0.9


def test_cache_hits_misses_and_files(tiny: SamPromptModel, tmp_path) -> None:
    calls = []

    def encoder(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape)
        return tiny.embed(batch)

    cache = EmbeddingCache(encoder, tiny.identity, tmp_path)
    image = to_sam_input(_cine()[..., 0], tiny.input_spec)
    first = cache(image)
    assert first.shape == (256, 16, 16) and (cache.hits, cache.misses) == (0, 1)
    path = cache.path(embedding_key(image, tiny.identity))
    assert path.is_file() and path.parent.name == path.name[:2]
    again = EmbeddingCache(encoder, tiny.identity, tmp_path)(image)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert len(calls) == 1
    other = EmbeddingCache(encoder, "another-encoder", tmp_path)
    other(image)
    assert other.misses == 1 and len(calls) == 2
    uncached = EmbeddingCache(encoder, tiny.identity, None)
    torch.testing.assert_close(uncached(image), first)
    uncached(image)
    assert uncached.misses == 2 and len(calls) == 4
    path.write_bytes(b"not a tensor")
    with pytest.raises(DataError, match="cached embedding"):
        cache(image)
