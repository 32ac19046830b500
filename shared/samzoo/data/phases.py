"""Which frames of a cine a clip holds: the phase schedule shared by the cine transforms, inference and compact
copies of a dataset.

:func:`sample_phase_indices` spreads a clip's phases over the cardiac cycle, ED and ES always included;
:func:`phase_group_count` says into how many interleaved clips a whole cine is split for prediction, so that every
frame is predicted once with the spacing training used.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["phase_group_count", "sample_phase_indices"]


def sample_phase_indices(num_frames: int, num_phases: int, ed_frame: int, es_frame: int, offset: int = 0) -> np.ndarray:
    """Source frames of ``num_phases`` phases spread evenly over the cycle, always including ED and ES.

    Phase ``k`` starts on the grid ``(ed_frame + offset + (k * num_frames) // num_phases) % num_frames`` (integer
    arithmetic, so the grid is exact and, when ``num_frames >= num_phases``, free of repeats). ED, then ES, replaces
    the grid point nearest to it on the cycle (ties go to the earlier grid point; a point already replaced is never
    taken twice). The result is sorted, so phases keep the cine's temporal order.

    With fewer frames than phases the grid holds every frame once or twice: all frames (ED and ES included) are
    kept and the nearest ones repeated, so a batch always has ``num_phases`` phases.

    Args:
        num_frames: frames in the cine.
        num_phases: phases to sample.
        ed_frame, es_frame: 0-based ED and ES frames; ES may come before ED (the cycle wraps around).
        offset: shift of the grid in frames, ``0 <= offset < max(1, num_frames // num_phases)``; drawn at random in
            training to vary which frames between ED and ES are seen.

    Returns:
        int64 array ``(num_phases,)`` of source frame indices in ascending order.
    """
    if num_frames < 1 or num_phases < 1:
        raise DataError(None, f"need at least one frame and one phase, got {num_frames} frames, {num_phases} phases")
    for name, frame in (("ed_frame", ed_frame), ("es_frame", es_frame)):
        if not 0 <= frame < num_frames:
            raise DataError(None, f"{name} {frame} lies outside the cine's {num_frames} frames")
    if not 0 <= offset < max(1, num_frames // num_phases):
        raise DataError(None, f"offset {offset} must lie in [0, {max(1, num_frames // num_phases)})")
    steps = (np.arange(num_phases, dtype=np.int64) * num_frames) // num_phases
    grid = (ed_frame + offset + steps) % num_frames
    forced: list[int] = []
    for target in dict.fromkeys((ed_frame, es_frame)):
        hits = np.flatnonzero(grid == target)
        if hits.size:
            forced.append(int(hits[0]))
            continue
        gap = np.abs(grid - target).astype(np.float64)
        gap = np.minimum(gap, num_frames - gap)
        gap[forced] = np.inf
        slot = int(np.argmin(gap))
        grid[slot] = target
        forced.append(slot)
    return np.sort(grid, kind="stable")


def phase_group_count(num_frames: int, num_phases: int | None) -> int:
    """How many interleaved groups a cine of ``num_frames`` is split into for prediction: ``k = max(1, round(T / P))``
    (halves round up), group ``g`` being frames ``g, g + k, g + 2k, ...``.

    Training clips sample ``P = num_phases`` phases evenly over the cycle, about ``T / P`` frames apart, so each group
    shows the temporal attention its training spacing while every frame is still predicted once. With ``T < P``
    (training repeats frames) or ``num_phases=None`` the whole cine is one group.
    """
    if num_frames < 1:
        raise ValueError(f"need at least one frame, got {num_frames}")
    if num_phases is None:
        return 1
    if num_phases < 1:
        raise ValueError(f"num_phases must be a positive number or None, got {num_phases}")
    return max(1, (2 * num_frames + num_phases) // (2 * num_phases))
