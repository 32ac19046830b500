"""Inference on user cines: one slice (H, W, T) or a whole stack (H, W, Z, T) per NIfTI file.

The network works on one slice's cine at a time. A stack is split into per-slice cines (written to a work folder
with each slice's own geometry, as ``samzoo prepare`` does), every slice is predicted, and
:class:`CineMaskAssembler` puts the slice masks back into one file with the input's shape and geometry.
:class:`PhaseGroupInferer` predicts a cine in interleaved groups of frames spaced as in training;
:class:`ViewPromptInferer` adds the view prompt of the request, the same for every cine, so the pipeline also runs
where the inferer only receives the image (MONAI Label).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.inferers import Inferer

from ..atomic import removed_on_failure
from ..data.nifti import check_distinct_stems, load_nifti, nifti_stem, save_nifti
from ..data.phases import phase_group_count
from ..data.prepare.cardiac import slice_affine
from ..errors import DataError
from ..transforms.supervision import view_index

logger = logging.getLogger(__name__)


def expand_cine_inputs(files: Sequence[str | Path], work_dir: str | Path) -> list[dict[str, Any]]:
    """Items for the inference pipeline: a (H, W, T) file as it is, a (H, W, Z, T) file split into Z slice files.

    Outputs are named after the inputs' file names, so inputs that share one (``a/cine.nii.gz``, ``b/cine.nii.gz``)
    are refused with :class:`DataError` before anything is written; an input refused later (NaNs, a wrong shape)
    removes the slice files written before it.
    """
    if isinstance(files, (str, Path)):
        files = [files]
    if not files:
        raise DataError(None, "no input files given (set input_files to one or more NIfTI cines)")
    check_distinct_stems(files)
    items = []
    with removed_on_failure(work_dir) as work_dir:
        for file in map(Path, files):
            vol = load_nifti(file)
            _check_signal(file, vol.array)
            if vol.array.ndim == 3:
                items.append({"image": str(file), "source": str(file)})
            elif vol.array.ndim == 4:
                for z in range(vol.array.shape[2]):
                    out = work_dir / f"{nifti_stem(file)}_s{z:02d}.nii.gz"
                    save_nifti(vol.array[:, :, z, :], slice_affine(vol.affine, z), out)
                    items.append({"image": str(out), "source": str(file)})
            else:
                raise DataError(file, f"shape {vol.array.shape}: expected a cine (H, W, T) or a stack (H, W, Z, T)")
    return items


MIN_SIDE = 8
"""Smallest image side (pixels) that still carries a heart; smaller inputs are segmented with a warning."""


def _check_signal(path: Path, array: np.ndarray) -> None:
    """Warn (in the run's log) when an input carries no signal, a constant image or one a few pixels wide, whose
    mask is only what the network makes of a blank field (NaNs are refused when the file is read)."""
    if array.size and float(array.max()) == float(array.min()):
        logger.warning(
            "%s is constant (%g everywhere): it carries no signal; its mask is not a segmentation",
            path,
            float(array.flat[0]),
        )
    elif min(array.shape[:2]) < MIN_SIDE:
        logger.warning(
            "%s is %d x %d pixels: too small to show a heart; its mask is not a segmentation", path, *array.shape[:2]
        )


class PhaseGroupInferer(Inferer):
    """Predict whole cines (B, C, H, W, T) as interleaved clips with the temporal spacing of training.

    Training clips hold ``num_phases`` phases spread over the cycle, so the temporal attention learns neighbours
    about ``T / num_phases`` frames apart. The frames are split into ``k`` groups ``g, g + k, g + 2k, ...``
    (:func:`~samzoo.data.phases.phase_group_count`), each group is one call of ``network`` with the other
    arguments unchanged, and the outputs are put back at their frames, so every frame is predicted exactly once.
    ``num_phases=None`` predicts all frames in one call.
    """

    def __init__(self, num_phases: int | None = 15) -> None:
        super().__init__()
        self.num_phases = num_phases

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        frames = inputs.shape[-1]
        groups = phase_group_count(frames, self.num_phases)
        outputs = [network(inputs[..., g::groups], *args, **kwargs) for g in range(groups)]
        order = torch.cat([torch.arange(g, frames, groups) for g in range(groups)])
        return torch.cat(outputs, dim=-1)[..., torch.argsort(order).to(inputs.device)]


class ViewPromptInferer(PhaseGroupInferer):
    """Run ``network(image, view)`` with one view prompt for the whole batch (B, 1, H, W, T), in phase groups.

    MONAI Label calls ``inferer(image, network)`` with nothing else from the request, so the view comes from the
    bundle config: ``view`` is a view name, or a list of names whose first entry is the one chosen (MONAI Label's
    drop-down options, see :func:`samzoo.transforms.supervision.view_choices`). With ``prompted=False`` (a network
    without text prompts) the network gets the image alone. ``num_phases`` as in :class:`PhaseGroupInferer`.
    """

    def __init__(self, view: str | Sequence[str] = "SAX", prompted: bool = True, num_phases: int | None = 15) -> None:
        super().__init__(num_phases)
        self.view_index = view_index(view if isinstance(view, str) else view[0], "the inferer's view option")
        self.prompted = prompted

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.prompted:
            kwargs["view"] = torch.full((inputs.shape[0],), self.view_index, dtype=torch.long, device=inputs.device)
        return super().__call__(inputs, network, *args, **kwargs)


class CineMaskAssembler:
    """When inference completes, write ``<output_dir>/<input name><postfix>.nii.gz`` for every input file.

    Slice predictions are read from ``pred_dir`` (named after the per-slice files) and stacked back to
    (H, W, Z, T) for stacks; the input's affine and voxel sizes (the frame interval included) are kept, so the mask
    overlays the input in any viewer and keeps its timing.

    ``scratch_dir``, when given, is the folder of the per-slice files and their predictions: it is removed once the
    masks are written, and when the run fails (the error is raised on), so the output folder holds only masks.
    List this handler before ``StatsHandler``: ignite stops at the first ``EXCEPTION_RAISED`` handler that raises.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        pred_dir: str | Path,
        output_dir: str | Path,
        postfix: str = "_seg",
        scratch_dir: str | Path | None = None,
    ) -> None:
        self.files = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
        self.pred_dir = Path(pred_dir)
        self.output_dir = Path(output_dir)
        self.postfix = postfix
        self.scratch_dir = None if scratch_dir is None else Path(scratch_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._discard)

    def _discard(self, engine: Engine, error: BaseException) -> None:
        self._remove_scratch()
        raise error

    def _remove_scratch(self) -> None:
        if self.scratch_dir is not None:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def __call__(self, engine: Engine | None = None) -> list[Path]:
        try:
            return self._assemble()
        finally:
            self._remove_scratch()

    def _assemble(self) -> list[Path]:
        written = []
        for file in self.files:
            vol = load_nifti(file)
            stem = nifti_stem(file)
            if vol.array.ndim == 3:
                mask = self._read(self.pred_dir / f"{stem}.nii.gz", vol.array.shape)
            else:
                shape = vol.array.shape[:2] + vol.array.shape[3:]
                slices = [
                    self._read(self.pred_dir / f"{stem}_s{z:02d}.nii.gz", shape) for z in range(vol.array.shape[2])
                ]
                mask = np.stack(slices, axis=2)
            out = self.output_dir / f"{stem}{self.postfix}.nii.gz"
            if out.resolve() == file.resolve():
                raise DataError(out, "the mask would overwrite its input; choose another output_dir or postfix")
            written.append(save_nifti(mask.astype(np.uint8), vol.affine, out, zooms=vol.zooms, units=vol.units))
            logger.info("mask of %s written to %s", file, out)
        return written

    @staticmethod
    def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray:
        pred = load_nifti(path, dtype=np.uint8).array
        if pred.shape != tuple(shape):
            raise DataError(path, f"prediction shape {pred.shape} differs from the input's {tuple(shape)}")
        return pred
