"""Every random stream a training run draws from, as one object a checkpoint can save and restore.

A resumed run reproduces the uninterrupted one only if it continues every stream where the interrupted run left
it: Python's ``random``, NumPy's global generator, torch's CPU and CUDA generators (the data loader's shuffling and
its workers' seeds are drawn from torch's), and the own generator (``R``) of each random MONAI transform, which
MONAI's ``DataLoader`` seeds once when it is built and which then advances from epoch to epoch. Saving happens when
the periodic checkpoint is written (after the epoch's validation), restoring when the resumed trainer starts,
before the next epoch's data loader iterator draws anything.

The states are stored as tensors and plain numbers, so the checkpoint stays loadable with ``weights_only=True``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable, Transform

__all__ = ["RandomStates", "random_transforms"]


def random_transforms(obj: Any) -> list[Randomizable]:
    """The random transforms inside ``obj`` (a dataset, a ``Compose`` or a transform), in a fixed order, including
    those held inside other transforms (``RandAffined`` draws through its own ``RandAffine``)."""
    found: dict[int, Randomizable] = {}

    def visit(item: Any) -> None:
        if isinstance(item, list | tuple):
            for element in item:
                visit(element)
            return
        if not isinstance(item, Transform) or id(item) in found:
            return
        if isinstance(item, Randomizable):
            found[id(item)] = item
        for value in vars(item).values():
            visit(value)

    visit(getattr(obj, "transform", obj))
    return list(found.values())


def _numpy_state(generator: np.random.RandomState) -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = generator.get_state()
    return {"keys": torch.as_tensor(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}


def _set_numpy_state(generator: np.random.RandomState, state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    generator.set_state(("MT19937", keys, int(state["pos"]), int(state["has_gauss"]), float(state["gauss"])))


class RandomStates:
    """Checkpointable state of all random streams of a run; ``datasets`` hold the random transforms to include."""

    def __init__(self, datasets: Sequence[Any] = ()) -> None:
        self.datasets = list(datasets)

    def _transforms(self) -> list[Randomizable]:
        return [t for dataset in self.datasets for t in random_transforms(dataset)]

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        return {
            "python": {"version": version, "internal": torch.as_tensor(internal, dtype=torch.int64), "gauss": gauss},
            "numpy": _numpy_state(np.random.mtrand._rand),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "transforms": [_numpy_state(t.R) for t in self._transforms()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        python = state["python"]
        random.setstate((int(python["version"]), tuple(int(v) for v in python["internal"]), python["gauss"]))
        _set_numpy_state(np.random.mtrand._rand, state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        transforms = self._transforms()
        if len(transforms) != len(state["transforms"]):
            raise ValueError(
                f"the checkpoint holds {len(state['transforms'])} random transform states, this run has "
                f"{len(transforms)}: the preprocessing changed"
            )
        for transform, saved in zip(transforms, state["transforms"], strict=True):
            _set_numpy_state(transform.R, saved)
