"""Saving checkpoints safely and resuming training from the newest periodic checkpoint of the same run.

The bundles save the training state (network, optimizer, trainer...) every epoch with :class:`CheckpointSaver` and the
best network as ``model.pt`` with another. MONAI's ``CheckpointSaver`` writes in place and ignite removes the
superseded file before writing the new one, so a crash while saving could leave no intact checkpoint, and the
fixed-name ``model.pt`` is deleted and then rewritten. :class:`AtomicDiskSaver` writes to a temporary file renamed
into place and removes superseded files only after that.

Every periodic checkpoint carries the run record (``run_record`` in each ``train.json``: the settings that identify
the run, such as the datalist, backbone, variant and seed) and the best-model saver's record of the best score.
Starting the same training again continues from the newest periodic checkpoint with :class:`ResumeFromLatestCheckpoint`,
which refuses a checkpoint of another run before touching anything.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader as MonaiCheckpointLoader
from monai.handlers import CheckpointSaver as MonaiCheckpointSaver

from ..atomic import atomic_path
from ..errors import DataError

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"epoch=(\d+)")
PERIODIC = "checkpoint_epoch=*.pt"
"""File names of the periodic checkpoints."""
RUN_RECORD = "run_record"
"""Key of the run record in a periodic checkpoint."""


def periodic_checkpoints(ckpt_dir: str | Path, pattern: str = PERIODIC) -> list[Path]:
    """The periodic checkpoints in ``ckpt_dir``, newest (highest epoch number) first."""
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob(pattern) if (m := _EPOCH.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(ckpt_dir: str | Path, pattern: str = PERIODIC) -> Path | None:
    """The periodic checkpoint with the highest epoch number in ``ckpt_dir``, or None."""
    found = periodic_checkpoints(ckpt_dir, pattern)
    return found[0] if found else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True``; a missing, truncated or foreign file is a :class:`DataError`
    naming it (torch's own messages name neither the file nor the fix)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for a damaged file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(path, f"is not a readable checkpoint (damaged, truncated or another format): {first}") from err
    if not isinstance(checkpoint, dict):
        raise DataError(path, f"holds a {type(checkpoint).__name__}, not a checkpoint dictionary")
    return checkpoint


def ensure_writable(folder: str | Path, purpose: str) -> Path:
    """Create ``folder`` if needed and check a file can be written there, before any work that would save to it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise DataError(
            folder, f"cannot write the {purpose} here ({err.strerror or err}); choose another folder"
        ) from err
    return folder


def plain_record(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as JSON values (paths as strings, tuples as lists), the form ``weights_only`` loading returns."""
    return json.loads(json.dumps(dict(settings), default=str))


class AtomicDiskSaver(DiskSaver):
    """Ignite save handler that writes each checkpoint to a temporary file renamed into place
    (:func:`samzoo.atomic.atomic_path`) and removes the files ignite asks to remove only after that, never the file
    just written. A crash while saving therefore keeps the previous checkpoint. ``filename`` fixes the file name
    (``model.pt``), as MONAI's own save handler does."""

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        super().__init__(dirname, require_empty=False)
        self.filename = filename
        self._superseded: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)
        for old in self._superseded:
            if old != filename:
                (self.dirname / old).unlink(missing_ok=True)
        self._superseded = []

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        with atomic_path(path) as tmp:
            func(checkpoint, tmp, **self.kwargs)

    def remove(self, filename: str) -> None:
        """Called by ignite before it saves the new file: remember the file, remove it once the new one is saved."""
        self._superseded.append(self.filename or filename)


class _RunRecord:
    """The run record as an object ignite can save (it saves ``state_dict()`` of every entry)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = plain_record(settings)

    def state_dict(self) -> dict[str, Any]:
        return self.settings


class CheckpointSaver(MonaiCheckpointSaver):
    """MONAI's ``CheckpointSaver`` writing through :class:`AtomicDiskSaver`.

    ``run_record`` (the settings identifying the run) is stored with every checkpoint this saver writes, for
    :class:`ResumeFromLatestCheckpoint`. A best-model saver (``save_key_metric=True``) has ``state_dict()``: its
    record of the best score, so a periodic checkpoint can carry it and a resumed run does not replace ``model.pt``
    with a worse one (MONAI's ``load_state_dict`` restores it).
    """

    def __init__(
        self, save_dir: str, save_dict: dict, run_record: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        ensure_writable(save_dir, "checkpoints")
        if run_record is not None:
            save_dict = {**save_dict, RUN_RECORD: _RunRecord(run_record)}
        super().__init__(save_dir, save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(save_dir, checkpoint.save_handler.filename)

    def state_dict(self) -> dict[str, Any]:
        """The best-model record: the saved files and their scores."""
        if self._key_metric_checkpoint is None:
            raise ValueError("only a saver with save_key_metric=True has a best-model record to save")
        return self._key_metric_checkpoint.state_dict()


class ResumeFromLatestCheckpoint:
    """Handler: continue training from the newest periodic checkpoint in ``ckpt_dir`` of the same run.

    When attached (just before the trainer runs) it reads that checkpoint once (``weights_only=True``) and compares
    its run record with ``run_record``; a checkpoint of another run, or one without a record, raises
    :class:`~samzoo.errors.DataError` before anything is written. When the trainer starts, the objects of
    ``load_dict`` are restored from it, keeping the trainer's ``max_epochs`` as MONAI's ``CheckpointLoader`` does.

    ``enabled=False`` (``--resume false``, read by :func:`samzoo.options.flag`) starts from scratch and removes the
    periodic checkpoints already in ``ckpt_dir``, so that a later resume can only pick one of the new run.
    """

    def __init__(
        self,
        ckpt_dir: str | Path,
        load_dict: dict,
        run_record: Mapping[str, Any],
        enabled: bool = True,
        map_location: str = "cpu",
    ) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.load_dict = load_dict
        self.run_record = plain_record(run_record)
        self.enabled = enabled
        self.map_location = map_location
        self._path: Path | None = None
        self._checkpoint: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        ensure_writable(self.ckpt_dir, "checkpoints")
        for leftover in self.ckpt_dir.glob(".tmp_*"):
            leftover.unlink()  # the temporary file of a save that was killed midway
        if not self.enabled:
            for stale in self.ckpt_dir.glob(PERIODIC):
                stale.unlink()
            return
        self._path, self._checkpoint = self._newest_intact()
        if self._path is None:
            return
        self._check_record(self._checkpoint.get(RUN_RECORD))
        engine.add_event_handler(Events.STARTED, self)
        engine.add_event_handler(Events.STARTED, self._remove_superseded_after_first_save)

    def _newest_intact(self) -> tuple[Path | None, dict[str, Any] | None]:
        """The newest periodic checkpoint that can be read, with its content; damaged newer ones are reported."""
        damaged: list[DataError] = []
        for path in periodic_checkpoints(self.ckpt_dir):
            try:
                checkpoint = load_checkpoint(path, self.map_location)
            except DataError as err:
                damaged.append(err)
                continue
            for err in damaged:
                logger.warning("%s; resuming from the older intact %s instead", err, path.name)
            return path, checkpoint
        if damaged:
            raise DataError(
                self.ckpt_dir,
                f"no intact checkpoint to resume from ({'; '.join(str(e) for e in damaged)}). Run with "
                "--resume false to start afresh, or give the run its own folders with --ckpt_dir DIR --output_dir DIR",
            )
        return None, None

    def _remove_superseded_after_first_save(self, engine: Engine) -> None:
        """Once the resumed run has saved its first periodic checkpoint, the ones before it (the one resumed from
        and any damaged newer one) are superseded: remove them, as the saver removes its own older files."""

        def remove(_: Engine) -> None:
            newest = latest_checkpoint(self.ckpt_dir)
            for path in periodic_checkpoints(self.ckpt_dir):
                if path != newest:
                    path.unlink(missing_ok=True)

        engine.add_event_handler(Events.EPOCH_COMPLETED(once=engine.state.epoch + 1), remove)

    def _check_record(self, stored: dict[str, Any] | None) -> None:
        how = (
            "Run with --resume false to start afresh (this replaces the files in that folder), or give this run "
            "its own folders with --ckpt_dir DIR --output_dir DIR to keep both."
        )
        if stored is None:
            raise DataError(self._path, f"this checkpoint holds no run record, so it cannot be resumed safely. {how}")
        differ = [
            f"{key}: {stored.get(key)!r} -> {self.run_record.get(key)!r}"
            for key in sorted(stored.keys() | self.run_record.keys())
            if stored.get(key) != self.run_record.get(key)
        ]
        if differ:
            raise DataError(
                self._path, f"this checkpoint is of another run (checkpoint -> now): {'; '.join(differ)}. {how}"
            )

    def __call__(self, engine: Engine) -> None:
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        absent = sorted(set(self.load_dict) - set(self._checkpoint))
        if absent:
            logger.warning("%s holds no %s; they start afresh, so the run may not repeat exactly", self._path, absent)
        load = {key: obj for key, obj in self.load_dict.items() if key in self._checkpoint}
        Checkpoint.load_objects(to_load=load, checkpoint=self._checkpoint)
        self._checkpoint = None
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise DataError(
                self._path, f"the checkpoint is at epoch {engine.state.epoch}, beyond max_epochs={max_epochs}"
            )
        engine.state.max_epochs = max_epochs
        if epoch_length is not None and engine.state.epoch_length != epoch_length:
            # another number of processes or batch size: an epoch is still one pass over this run's loader, and the
            # iteration count restarts at the whole epochs done (ignite reads a partial epoch from it otherwise)
            logger.info(
                "epochs had %d iterations in the checkpoint and have %d now", engine.state.epoch_length, epoch_length
            )
            engine.state.epoch_length = epoch_length
            engine.state.iteration = engine.state.epoch * epoch_length
        logger.info("resumed from %s at epoch %d", self._path, engine.state.epoch)


class CheckpointLoader(MonaiCheckpointLoader):
    """MONAI's ``CheckpointLoader`` whose failures name the file and the problem: a missing or damaged file, or one
    trained with other settings (another ``--unet_channels`` or ``--backbone``), is a :class:`DataError` with a
    summary of the mismatch, instead of torch's message without the path or its dump of every key. It loads when
    the engine starts, before the first batch is read (and a workflow can be built without the file, as MONAI's
    bundle checks do)."""

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except Exception:
            checkpoint = load_checkpoint(self.load_path)
            key = next(iter(self.load_dict))
            if len(self.load_dict) == 1 and key not in checkpoint:
                checkpoint = {key: checkpoint}
            for name, obj in self.load_dict.items():
                if isinstance(obj, torch.nn.Module):
                    _check_fits(self.load_path, name, obj, checkpoint.get(name))
            raise


def _check_fits(path: str | Path, name: str, module: torch.nn.Module, state: Any) -> None:
    """Raise :class:`DataError` when ``state`` cannot be loaded strictly into ``module``, saying how it differs."""
    if not isinstance(state, Mapping):
        raise DataError(path, f"holds no {name!r} state dict")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} -> {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or reshaped:
        example = (reshaped or missing or unexpected)[0]
        raise DataError(
            path,
            f"does not fit the {name} built from these settings: {len(missing)} tensors missing, {len(unexpected)} "
            f"unexpected, {len(reshaped)} of another shape (e.g. {example}). Pass the settings it was trained with "
            "(such as --backbone, --unet_channels, --roi_size)",
        )
