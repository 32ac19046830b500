"""Interactive prompting: click requests as guidance channels and back, the click inferer, the in-memory cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from samzoo.embedding_cache import EmbeddingCache
from samzoo.engine.prompted_slices import ClickInferer, prompted_label_map
from samzoo.errors import DataError
from samzoo.networks.sam_prompt import SamPromptModel, to_sam_input
from samzoo.studies.prompting import PromptConfig, prompt_grid
from samzoo.transforms.sam_prompt import ClickGuidanced, guidance_prompts

SHAPE = (20, 16, 4)


@pytest.fixture(scope="module")
def tiny() -> SamPromptModel:
    torch.manual_seed(0)
    return SamPromptModel("vit_tiny", pretrained=False).eval()


def _request(**prompts) -> dict:
    image = torch.as_tensor(np.random.default_rng(0).normal(size=(1, *SHAPE)), dtype=torch.float32)
    return {"image": image, "image_path": "volume.nii.gz", **prompts}


def test_clicks_and_box_become_guidance_on_one_slice_and_decode_back() -> None:
    request = _request(foreground=[[5, 6, 2], [7, 3, 2]], background=[[10, 10, 2]], roi=[12, 2, 1, 9, 2, 2])
    out = ClickGuidanced()(request)["image"]
    assert out.shape == (4, *SHAPE)
    torch.testing.assert_close(out[0], request["image"][0])
    assert not out[1:, ..., [0, 1, 3]].any()  # guidance only on slice 2
    assert out[1].sum() == 2 and out[2].sum() == 1 and out[3].sum() == 11 * 9  # the roi's corners sorted
    k, prompts = guidance_prompts(out[1:])
    assert k == 2
    np.testing.assert_array_equal(prompts.points, [[6, 5], [3, 7], [10, 10]])  # (x, y) = (j, i), row-major
    np.testing.assert_array_equal(prompts.labels, [1, 1, 0])
    np.testing.assert_array_equal(prompts.box, [1, 2, 9, 12])  # (x0, y0, x1, y1)


def test_slice_parameter_keeps_the_clicks_on_it() -> None:
    out = ClickGuidanced()(_request(foreground=[[5, 6, 0], [7, 3, 1]], background=[], slice=1))["image"]
    k, prompts = guidance_prompts(out[1:])
    assert k == 1
    np.testing.assert_array_equal(prompts.points, [[3, 7]])


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({"foreground": [[5, 6, 0], [7, 3, 1]]}, "prompt one slice"),
        ({"foreground": [[25, 6, 1]]}, "outside"),
        ({"foreground": [], "background": [[1, 1, 1]]}, "foreground click or a box"),
        ({"foreground": [[1.5, 1, 1]]}, "whole voxel indices"),
        ({"foreground": [[1, 1]]}, "3 voxel indices"),
        ({"roi": [2, 8, 2, 8, 1, 1], "slice": 4}, "slice 4 is outside"),
    ],
)
def test_bad_click_requests_are_refused_naming_the_image(prompts: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as error:
        ClickGuidanced()(_request(**prompts))
    assert "volume.nii.gz" in str(error.value)


def test_click_inferer_segments_only_the_prompted_slice_and_reuses_the_embedding(tiny: SamPromptModel) -> None:
    guided = ClickGuidanced()(_request(foreground=[[5, 6, 2]], background=[[15, 12, 2]], roi=[2, 18, 1, 14, 2, 2]))
    inferer = ClickInferer(memory_size=2)
    first = inferer(guided["image"][None], tiny)
    assert first.shape == (1, 1, *SHAPE) and first.dtype == torch.uint8
    assert not first[..., [0, 1, 3]].any()
    cache = inferer.cache(tiny)
    assert (cache.misses, cache.hits) == (1, 0)
    torch.testing.assert_close(inferer(guided["image"][None], tiny), first)
    assert (cache.misses, cache.hits) == (1, 1)
    _, prompts = guidance_prompts(guided["image"][1:])
    image = guided["image"][0, ..., 2]
    embedding = tiny.embed(to_sam_input(image, tiny.input_spec)[None])
    expected = prompted_label_map(tiny, embedding, {1: prompts}, tuple(image.shape))
    np.testing.assert_array_equal(first[0, 0, ..., 2].numpy(), expected)


def test_memory_cache_keeps_the_most_recent_embeddings(tiny: SamPromptModel) -> None:
    calls = []

    def encoder(batch: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return tiny.embed(batch)

    cache = EmbeddingCache(encoder, tiny.identity, None, memory_size=1)
    images = [to_sam_input(torch.rand(20, 16), tiny.input_spec) for _ in range(2)]
    torch.testing.assert_close(cache(images[0]), cache(images[0]))
    assert len(calls) == 1
    cache(images[1])  # evicts the first
    cache(images[0])
    assert len(calls) == 3 and (cache.hits, cache.misses) == (1, 3)


def test_default_grid_adds_box_only_and_one_click_to_the_thesis_grid() -> None:
    grid = prompt_grid()
    assert len(grid) == 20 and grid == sorted(grid)
    assert grid[0] == PromptConfig(False, 1, 0) and grid[10] == PromptConfig(True, 0, 0)
    assert len(prompt_grid(extra=())) == 18
    with pytest.raises(ValueError, match="box or at least one positive"):
        PromptConfig(False, 0, 0)
    with pytest.raises(ValueError, match="negatives <= positives"):
        PromptConfig(True, 1, 2)
