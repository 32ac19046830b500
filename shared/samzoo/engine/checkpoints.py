"""Resuming training from the newest periodic checkpoint.

The bundles save ``{network, optimizer, lr_scheduler, trainer}`` every epoch with MONAI's ``CheckpointSaver``
(ignite writes it atomically: a temporary file, then a rename). Starting the same training again continues from
the newest of those files instead of from scratch; MONAI's ``CheckpointLoader`` reads it with
``weights_only=True``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"epoch=(\d+)")


def latest_checkpoint(ckpt_dir: str | Path, pattern: str = "checkpoint_epoch=*.pt") -> Path | None:
    """The periodic checkpoint with the highest epoch number in ``ckpt_dir``, or None."""
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob(pattern) if (m := _EPOCH.search(p.name))]
    return max(found)[1] if found else None


class ResumeFromLatestCheckpoint:
    """Handler: when the trainer starts, load the newest periodic checkpoint in ``ckpt_dir`` if there is one.

    ``enabled=False`` (``--resume false`` in the bundles, read by :func:`samzoo.options.flag`) starts from scratch;
    the old checkpoints are then replaced as training saves new ones.
    """

    def __init__(self, ckpt_dir: str | Path, load_dict: dict, enabled: bool = True, map_location: str = "cpu") -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.load_dict = load_dict
        self.enabled = enabled
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        path = latest_checkpoint(self.ckpt_dir) if self.enabled else None
        if path is None:
            return
        CheckpointLoader(load_path=str(path), load_dict=self.load_dict, map_location=self.map_location)(engine)
        logger.info("resumed from %s at epoch %d", path, engine.state.epoch)
