"""Cine inference: phase-grouped prediction, output geometry and input naming."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from samzoo.data.nifti import save_nifti
from samzoo.data.phases import phase_group_count, sample_phase_indices
from samzoo.engine import CineMaskAssembler, PhaseGroupInferer, ViewPromptInferer, expand_cine_inputs
from samzoo.errors import DataError


@pytest.mark.parametrize(
    ("num_frames", "num_phases", "groups"),
    [(30, 15, 2), (28, 15, 2), (23, 15, 2), (22, 15, 1), (10, 15, 1), (30, 5, 6), (45, 30, 2), (30, None, 1)],
)
def test_group_count_is_the_rounded_training_spacing(num_frames, num_phases, groups):
    # 28 / 15 = 1.87 -> 2, 23 / 15 = 1.53 -> 2, 22 / 15 = 1.47 -> 1, 45 / 30 = 1.5 rounds up.
    assert phase_group_count(num_frames, num_phases) == groups


class RecordingNetwork:
    """Stands in for the network: records the frames (by value) and keyword arguments of every clip it gets."""

    def __init__(self) -> None:
        self.clips: list[list[int]] = []
        self.kwargs: list[dict] = []

    def __call__(self, image: torch.Tensor, **kwargs) -> torch.Tensor:
        self.clips.append(image[0, 0, 0, 0].long().tolist())
        self.kwargs.append(kwargs)
        return -image


def _cine(num_frames: int, batch: int = 1) -> torch.Tensor:
    """(B, 1, 2, 2, T) whose frame t holds the value t everywhere."""
    return torch.arange(num_frames, dtype=torch.float32).expand(batch, 1, 2, 2, num_frames).clone()


@pytest.mark.parametrize(
    ("num_frames", "clips"),
    [
        (30, [list(range(0, 30, 2)), list(range(1, 30, 2))]),
        (31, [list(range(0, 31, 2)), list(range(1, 31, 2))]),
        (45, [list(range(0, 45, 3)), list(range(1, 45, 3)), list(range(2, 45, 3))]),
        (12, [list(range(12))]),
    ],
)
def test_every_frame_is_predicted_once_at_the_training_spacing(num_frames, clips):
    network = RecordingNetwork()
    cine = _cine(num_frames, batch=2)
    out = PhaseGroupInferer(num_phases=15)(cine, network)
    assert network.clips == clips
    assert sorted(frame for clip in network.clips for frame in clip) == list(range(num_frames))
    assert torch.equal(out, -cine)  # each prediction is back at its own frame


def test_groups_are_the_training_phase_grids():
    # A 30-frame cine has 15 training phases 2 frames apart; with ED = ES on the grid nothing is forced in, so the
    # training clip at ED = g is exactly group g.
    network = RecordingNetwork()
    PhaseGroupInferer(num_phases=15)(_cine(30), network)
    for g, clip in enumerate(network.clips):
        assert clip == sample_phase_indices(30, 15, ed_frame=g, es_frame=g).tolist()


def test_all_frames_at_once_without_num_phases_and_view_for_every_group():
    network = RecordingNetwork()
    PhaseGroupInferer(num_phases=None)(_cine(30), network)
    assert network.clips == [list(range(30))]

    network = RecordingNetwork()
    ViewPromptInferer("LAX", num_phases=15)(_cine(30, batch=3), network)
    assert len(network.clips) == 2
    assert all(kwargs["view"].tolist() == [1, 1, 1] for kwargs in network.kwargs)


def _write(path, shape, zooms, units=("mm", "sec")):
    affine = np.diag([zooms[0], zooms[1], zooms[2] if len(shape) == 4 else 1.0, 1.0])
    return save_nifti(np.zeros(shape, dtype=np.float32), affine, path, zooms=zooms, units=units)


@pytest.mark.parametrize(
    ("shape", "zooms", "units"),
    [((6, 5, 4), (1.5, 1.25, 33.0), ("mm", "msec")), ((6, 5, 3, 4), (1.5, 1.25, 8.0, 0.033), ("mm", "sec"))],
)
def test_masks_keep_the_input_voxel_sizes_and_frame_interval(tmp_path, shape, zooms, units):
    cine = _write(tmp_path / "in" / "cine.nii.gz", shape, zooms, units)
    pred_dir = tmp_path / "pred"
    slice_shape = shape[:2] + shape[-1:]
    names = ["cine"] if len(shape) == 3 else [f"cine_s{z:02d}" for z in range(shape[2])]
    for name in names:
        save_nifti(np.full(slice_shape, 2, dtype=np.uint8), np.eye(4), pred_dir / f"{name}.nii.gz")
    (out,) = CineMaskAssembler([cine], pred_dir, tmp_path / "out")()
    mask = nib.load(str(out))
    assert mask.shape == shape
    np.testing.assert_allclose(mask.header.get_zooms(), zooms, rtol=1e-6)
    assert mask.header.get_xyzt_units() == units
    np.testing.assert_allclose(mask.affine, nib.load(str(cine)).affine)


def test_inputs_with_the_same_name_are_refused_before_writing(tmp_path):
    first = _write(tmp_path / "a" / "cine.nii.gz", (6, 5, 3, 4), (1.0, 1.0, 8.0, 33.0))
    second = _write(tmp_path / "b" / "cine.nii.gz", (6, 5, 3, 4), (1.0, 1.0, 8.0, 33.0))
    work_dir = tmp_path / "work"
    with pytest.raises(DataError, match=r"b/cine\.nii\.gz: has the same name as .*a/cine\.nii\.gz"):
        expand_cine_inputs([first, second], work_dir)
    assert not work_dir.exists()
    assert len(expand_cine_inputs([first], work_dir)) == 3


def test_an_input_refused_late_removes_the_slices_written_before_it(tmp_path):
    stack = _write(tmp_path / "stack.nii.gz", (6, 5, 3, 4), (1.0, 1.0, 8.0, 33.0))
    flat = save_nifti(np.zeros((6, 5), dtype=np.float32), np.eye(4), tmp_path / "flat.nii.gz")
    work_dir = tmp_path / "work"
    with pytest.raises(DataError, match=r"flat\.nii\.gz: shape \(6, 5\): expected a cine"):
        expand_cine_inputs([stack, flat], work_dir)
    assert not work_dir.exists()
