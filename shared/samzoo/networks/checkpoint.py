"""Reading checkpoints and loading them into a model, with a report of what happened to every tensor.

Loading never fails silently: :func:`load_pretrained` returns a :class:`LoadReport` listing the tensors that were
loaded, resized to a new token grid (:mod:`.pos_embed`), newly initialised and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import DataError
from .pos_embed import resize_position_table
from .registry import PretrainedWeights


@dataclass
class LoadReport:
    """What happened to every tensor when a checkpoint met a model.

    ``loaded``, ``resized`` and ``ignored`` use checkpoint key names; ``initialised`` names the model's tensors that
    did not come from the checkpoint. ``resized`` maps a key to (checkpoint shape, model shape).
    """

    source: str | None
    loaded: list[str] = field(default_factory=list)
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Counts, every resized tensor, and the modules (block indices as ``*``) of initialised and ignored ones."""
        head = f"weights from {self.source}" if self.source else "no checkpoint: random initialisation"
        lines = [
            f"{head}: {len(self.loaded)} loaded, {len(self.resized)} resized, "
            f"{len(self.initialised)} newly initialised, {len(self.ignored)} ignored"
        ]
        lines += [f"  resized {key}: {old} -> {new}" for key, (old, new) in self.resized.items()]
        if self.source:
            lines += [f"  initialised {group} ({n})" for group, n in _module_groups(self.initialised).items()]
            lines += [f"  ignored {group} ({n})" for group, n in _module_groups(self.ignored).items()]
        return "\n".join(lines)

    def for_module(self, source: nn.Module, target: nn.Module) -> LoadReport:
        """The report as seen by ``target``, a network built from some of ``source``'s modules.

        Tensors are matched by identity: checkpoint tensors that ``target`` does not hold become ignored, and
        ``target``'s tensors that ``source`` did not have are listed (under ``target``'s names) as initialised.
        """
        held = {id(t) for t in target.state_dict(keep_vars=True).values()}
        source_tensors = source.state_dict(keep_vars=True)
        kept = {key for key, t in source_tensors.items() if id(t) in held}
        from_source = {id(t) for t in source_tensors.values()}
        return LoadReport(
            source=self.source,
            loaded=[key for key in self.loaded if key in kept],
            resized={key: shapes for key, shapes in self.resized.items() if key in kept},
            initialised=[key for key in self.initialised if key in kept]
            + [key for key, t in target.state_dict(keep_vars=True).items() if id(t) not in from_source],
            ignored=sorted(self.ignored + [key for key in self.loaded + list(self.resized) if key not in kept]),
        )


def _module_groups(keys: list[str]) -> dict[str, int]:
    """Tensor count per owning module, with numeric path parts (block indices) replaced by ``*``."""
    groups: dict[str, int] = {}
    for key in keys:
        parts = ["*" if part.isdigit() else part for part in key.split(".")[:-1]]
        group = ".".join(parts) or key
        groups[group] = groups.get(group, 0) + 1
    return groups


def read_checkpoint(path: str | Path, weights: PretrainedWeights | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``; ``{"model": ...}`` and ``{"state_dict": ...}``
    wrappers are unwrapped.

    A file torch cannot read raises :class:`DataError` naming it: a truncated download otherwise surfaces as torch's
    bare "PytorchStreamReader failed ...". With ``weights`` the message compares the file's size with the official
    one and gives the URL and SHA-256 to fetch and check a fresh copy (the file is not hashed here: that would cost
    seconds on every load).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError... for unreadable files
        raise DataError(path, _unreadable_checkpoint(path, error, weights)) from error
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "expected a state dict mapping names to tensors")
    return state


def _unreadable_checkpoint(path: str | Path, error: Exception, weights: PretrainedWeights | None) -> str:
    problem = (
        f"torch.load(weights_only=True) cannot read it ({type(error).__name__}: {error}); it may be an incomplete or "
        "damaged download, or not a plain tensor checkpoint"
    )
    if weights is None:
        return problem
    facts = [f"The official {weights.file_name}"]
    if weights.num_bytes is not None:
        facts.append(f"has {weights.num_bytes:,} bytes (this file {Path(path).stat().st_size:,})")
    if weights.url is not None:
        facts.append(f"is at {weights.url}")
    if weights.sha256 is not None:
        facts.append(f"has SHA-256 {weights.sha256}")
    return f"{problem}. {facts[0]} {', '.join(facts[1:])}" if len(facts) > 1 else problem


def load_pretrained(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path | None = None
) -> LoadReport:
    """Copy every checkpoint tensor that fits ``model``, resizing position tables to the model's token grid.

    A tensor whose shape differs and that is not a position table means the checkpoint belongs to another
    architecture: that raises :class:`DataError` naming ``source`` and the key rather than loading half a model.
    """
    report = LoadReport(source=None if source is None else str(source))
    adapted = {}
    for key, target in model.state_dict().items():
        if key not in state_dict:
            report.initialised.append(key)
            continue
        value = state_dict[key]
        if value.shape != target.shape:
            value = resize_position_table(key, value, target.shape)
            if value is None:
                raise DataError(
                    source,
                    f"tensor {key} has shape {tuple(state_dict[key].shape)} in the checkpoint but the model needs "
                    f"{tuple(target.shape)}",
                )
            report.resized[key] = (tuple(state_dict[key].shape), tuple(target.shape))
        else:
            report.loaded.append(key)
        adapted[key] = value
    report.ignored = sorted(set(state_dict) - set(adapted))
    model.load_state_dict(adapted, strict=False)
    return report
