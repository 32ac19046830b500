"""Semi-supervised slice sets: every slice keeps its presence label, only N chosen slices keep their mask.

SAM-Mix trains its classifier on all slices and its segmentation branch on N labelled slices (N = 5, 50 or 100),
drawn reproducibly by seed among the liver-positive training slices. :class:`SemiSupervisedSlices` hides the masks
of all other slices and marks each item with ``labelled``; :class:`LabelledBatchSampler` puts labelled slices into
every batch, so a handful of labelled slices still meets the segmentation loss at every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["LabelledBatchSampler", "SemiSupervisedSlices", "select_labelled"]


def select_labelled(presence: torch.Tensor | Sequence[float], n: int, seed: int) -> list[int]:
    """Indices (sorted) of ``n`` slices drawn without replacement among those with presence 1, by ``seed``
    (the presence of CT slices: :meth:`samzoo.transforms.ct.CTSliceDataset.presence`).

    The same seed and presence always give the same slices; a larger ``n`` is not a superset of a smaller one.
    """
    positives = np.flatnonzero(np.asarray(presence, dtype=np.float32) > 0)
    if not 0 <= n <= len(positives):
        raise ValueError(f"cannot label {n} slices: the training set has {len(positives)} liver-positive slices")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(positives, size=n, replace=False))


class SemiSupervisedSlices(Dataset):
    """Slices where only ``labelled`` keep their mask: every item gains ``labelled`` (1,), 1.0 or 0.0, and the
    label of an unlabelled slice is replaced by zeros, so no mask outside the chosen N can reach a loss."""

    def __init__(self, slices: Dataset, labelled: Sequence[int], label_key: str = "label") -> None:
        self.slices = slices
        self.labelled = sorted(set(labelled))
        self._labelled = set(self.labelled)
        self.label_key = label_key

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.slices[i])
        is_labelled = i in self._labelled
        item["labelled"] = torch.tensor([float(is_labelled)])
        if not is_labelled:
            item[self.label_key] = torch.zeros_like(item[self.label_key])
        return item


class LabelledBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices: ``labelled_per_batch`` from the labelled slices (cycled in shuffled
    order) and the rest from the other slices (each once per epoch, shuffled).

    An epoch is one pass over the unlabelled slices, ``ceil(U / (batch_size - labelled_per_batch))`` batches; the
    last batch may be shorter. Shuffling follows a generator seeded with ``seed``, so runs repeat exactly.
    """

    def __init__(
        self, num_items: int, labelled: Sequence[int], batch_size: int, labelled_per_batch: int, seed: int = 0
    ) -> None:
        super().__init__()
        self.labelled = sorted(set(labelled))
        self.unlabelled = sorted(set(range(num_items)) - set(self.labelled))
        per_batch = min(labelled_per_batch, len(self.labelled))
        if not 0 < per_batch < batch_size:
            raise ValueError(
                f"need 0 < labelled_per_batch < batch_size and a labelled slice, got {labelled_per_batch}, "
                f"{batch_size} and {len(self.labelled)} labelled slices"
            )
        self.batch_size = batch_size
        self.per_batch = per_batch
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return max(1, math.ceil(len(self.unlabelled) / (self.batch_size - self.per_batch)))

    def __iter__(self) -> Iterator[list[int]]:
        order = [self.unlabelled[i] for i in torch.randperm(len(self.unlabelled), generator=self.generator)]
        step = self.batch_size - self.per_batch
        cycle: list[int] = []
        for b in range(len(self)):
            while len(cycle) < self.per_batch:
                cycle += [self.labelled[i] for i in torch.randperm(len(self.labelled), generator=self.generator)]
            chosen, cycle = cycle[: self.per_batch], cycle[self.per_batch :]
            yield order[b * step : (b + 1) * step] + chosen
