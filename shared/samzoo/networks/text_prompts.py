"""CLIP text embeddings of the view prompts "sax" and "lax".

CMR2D+T-SAM tells its mask decoder which view it sees by a text prompt embedded with CLIP. The embeddings of the two
words never change, so they are computed once (:func:`compute_text_prompts`, needs the CLIP weights), stored as
small ``.npy`` files with a bundle (:func:`save_text_prompts`) and read back by the network
(:func:`load_text_prompts`): training and inference never load CLIP.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import DataError

VIEW_PROMPTS = ("sax", "lax")
"""Prompt words in view-index order: index 0 is short axis (SAX), 1 is long axis (LAX)."""
CLIP_MODEL = "ViT-B-32"
CLIP_PRETRAINED = "openai"


@torch.no_grad()
def encode_text_prompts(model: nn.Module, tokenizer, prompts: Sequence[str] = VIEW_PROMPTS) -> torch.Tensor:
    """``model.encode_text`` of each prompt, not normalised: (len(prompts), D) float32."""
    model.eval()
    return model.encode_text(tokenizer(list(prompts))).float()


def compute_text_prompts(
    prompts: Sequence[str] = VIEW_PROMPTS, model_name: str = CLIP_MODEL, pretrained: str = CLIP_PRETRAINED
) -> torch.Tensor:
    """Embed ``prompts`` with an open_clip model: (len(prompts), D) float32.

    Args:
        pretrained: an open_clip pretrained tag (downloaded by open_clip) or the path of a local weights file.

    Raises:
        FileNotFoundError: ``pretrained`` is neither a tag nor an existing file.
        RuntimeError: open_clip could not load the weights (e.g. no network); the stored embeddings of a bundle can
            be used instead.
    """
    import open_clip  # only here: training and inference read the stored embeddings and need no CLIP

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags and not Path(pretrained).is_file():
        raise FileNotFoundError(
            f"{pretrained}: neither a weights file nor a pretrained tag of open_clip {model_name} ({', '.join(tags)})"
        )
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained)
    except RuntimeError as error:
        raise RuntimeError(
            f"could not load CLIP {model_name} weights {pretrained!r} ({error}); compute the prompt embeddings where "
            "the weights can be downloaded, or use the stored sax.npy / lax.npy"
        ) from error
    return encode_text_prompts(model, open_clip.get_tokenizer(model_name), prompts)


def save_text_prompts(
    embeddings: torch.Tensor, folder: str | Path, prompts: Sequence[str] = VIEW_PROMPTS
) -> list[Path]:
    """Write one ``<prompt>.npy`` of shape (1, D) per row of ``embeddings`` (P, D); each file appears atomically."""
    if embeddings.ndim != 2 or embeddings.shape[0] != len(prompts):
        raise ValueError(f"expected ({len(prompts)}, D) embeddings, got {tuple(embeddings.shape)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for prompt, row in zip(prompts, embeddings.detach().cpu().float().numpy(), strict=True):
        path = folder / f"{prompt}.npy"
        with atomic_path(path) as tmp:
            np.save(tmp, row[None])
        paths.append(path)
    return paths


def load_text_prompts(paths: Sequence[str | Path]) -> torch.Tensor:
    """Read prompt embeddings, one (1, D) or (D,) array per file, in view-index order: (len(paths), D) float32."""
    rows = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError(path, "text prompt embedding file not found")
        array = np.load(path)
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
            raise DataError(path, f"expected a float array of shape (1, D), got {array.dtype} {array.shape}")
        if rows and array.shape != rows[0].shape:
            raise DataError(path, f"embedding size {array.shape[0]} differs from {paths[0]} ({rows[0].shape[0]})")
        rows.append(array.astype(np.float32))
    if not rows:
        raise ValueError("no text prompt files given")
    return torch.from_numpy(np.stack(rows))
