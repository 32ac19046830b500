"""Image embeddings computed once and kept on disk, keyed by content.

The key hashes the exact encoder input (the preprocessed (3, S, S) tensor: source pixels, the slice and frame they
came from, clipping, scaling, resizing and padding all show in it) together with the backbone's identity (its name
and a hash of its image-encoder weights). So the ED and ES frames of one slice, two backbones, two preprocessings
and an augmented copy of an image all get different keys, and an embedding is only ever reused for the very same
input to the very same encoder. Images changed by augmentation are therefore recomputed, never served from the
cache of another image; the bundles avoid that cost by not augmenting the image (see the bundle docs).

Files: ``<cache_dir>/<key[:2]>/<key>.pt``, a float32 tensor (256, g, g), written to a temporary name and renamed,
read with ``weights_only=True``. About 4 MB per LiteMedSAM slice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from .atomic import atomic_path
from .errors import DataError


def embedding_key(image: torch.Tensor, identity: str) -> str:
    """Content key of encoder input ``image`` (3, S, S) for the encoder named by ``identity``."""
    value = image.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{identity};{tuple(value.shape)};{value.dtype};".encode())
    digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings of encoder inputs, read from ``cache_dir`` or computed with ``encoder`` and stored there.

    Args:
        encoder: maps a batch of encoder inputs (B, 3, S, S) to embeddings (B, 256, g, g), e.g.
            :meth:`samzoo.networks.sam_prompt.SamPromptModel.embed`.
        identity: names the encoder and its weights (:attr:`SamPromptModel.identity`).
        cache_dir: where embeddings live; None computes every embedding anew (the baseline the cache is timed
            against).
    """

    def __init__(
        self, encoder: Callable[[torch.Tensor], torch.Tensor], identity: str, cache_dir: str | Path | None
    ) -> None:
        self.encoder = encoder
        self.identity = identity
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        if self.cache_dir is None:
            raise ValueError("this EmbeddingCache has no cache_dir")
        return self.cache_dir / key[:2] / f"{key}.pt"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """The embedding (256, g, g) of one encoder input (3, S, S), on the CPU."""
        if self.cache_dir is None:
            self.misses += 1
            return self.encoder(image[None])[0].cpu()
        path = self.path(embedding_key(image, self.identity))
        if path.is_file():
            self.hits += 1
            return self._read(path)
        self.misses += 1
        embedding = self.encoder(image[None])[0].cpu().float()
        self._write(path, embedding)
        return embedding

    @staticmethod
    def _read(path: Path) -> torch.Tensor:
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise DataError(path, f"unreadable cached embedding ({error}); delete the file to recompute it") from error
        if not isinstance(value, torch.Tensor) or value.ndim != 3:
            raise DataError(path, "a cached embedding must be a (C, g, g) tensor; delete the file to recompute it")
        return value

    @staticmethod
    def _write(path: Path, embedding: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(embedding.clone(), tmp)
