"""Synthetic cine MRI in the ACDC training layout, with samzoo's long-axis extension.

Every patient has a short-axis (SAX) stack, base first, and one four-chamber long-axis (LAX) slice, both over one
cardiac cycle. The anatomy is drawn as a map of tissue classes per slice and frame; the image and the labels are
both looked up from that one map, so they agree exactly:

- SAX: a bright LV blood pool with papillary muscles (labelled LV, as in ACDC), a dark myocardial ring of constant
  area (so it thickens as the cavity shrinks in systole) and an RV crescent; the LV narrows from base to apex and
  the RV ends before the apex. Size, wall thickness and ejection follow the ACDC group (NOR, MINF, DCM, HCM, RV).
- LAX: an elongated LV cavity inside a myocardial horseshoe that opens at the valve plane, the RV beside it, the
  atria beyond the valve plane (blood, unlabelled) and closed valves in systole.
- Around the heart: pericardial fat, chest wall (fat over muscle), lungs and the descending aorta.
- Image formation: bSSFP-like signal per tissue, a slight blur, a smooth coil bias field and Rician noise.

Files per patient, as in ACDC (``NN`` is the 1-based frame number)::

    patientNNN/Info.cfg                                 ED, ES, Group, Height, NbFrame, Weight
    patientNNN/patientNNN_4d.nii.gz                     SAX cine (X, Y, Z, T), int16
    patientNNN/patientNNN_frameNN.nii.gz, ..._gt        ED and ES frames (X, Y, Z) and labels (uint8)
    patientNNN/patientNNN_lax_4d.nii.gz                 LAX cine (X, Y, 1, T), int16
    patientNNN/patientNNN_lax_frameNN.nii.gz, ..._gt    LAX ED and ES frames and labels (X, Y, 1)

Labels follow ACDC: 0 background, 1 RV, 2 myocardium, 3 LV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ..nifti import save_nifti
from . import ellipse_coords, lobulation, random_lobes

AIR, LUNG, BODY, FAT, VESSEL, WALL, RV, MYO, LV, PAPILLARY = range(10)
"""Tissue classes of the synthetic anatomy (VESSEL: unlabelled blood; WALL: unlabelled muscle such as RV wall)."""

LABEL_OF_TISSUE = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 3], dtype=np.uint8)
"""ACDC label of each tissue class; papillary muscles belong to the LV cavity, as in the ACDC annotations."""

SIGNAL = np.array([4.0, 20.0, 110.0, 240.0, 290.0, 85.0, 300.0, 85.0, 310.0, 85.0])
"""Typical bSSFP signal of each tissue class (arbitrary scanner units, blood bright, muscle dark)."""

GROUPS = {
    "NOR": (24.0, 8.0, 0.60, 1.0),
    "MINF": (28.0, 7.5, 0.35, 1.0),
    "DCM": (31.0, 6.5, 0.22, 1.1),
    "HCM": (20.0, 13.0, 0.70, 0.9),
    "RV": (23.0, 8.0, 0.55, 1.5),
}
"""ACDC group -> LV cavity radius at the base at ED (mm), wall thickness (mm), cavity area ejection, RV size."""


@dataclass
class CineCase:
    """One synthetic patient: SAX stack and LAX slice over one cardiac cycle, labelled on every frame."""

    sax: np.ndarray  # (X, Y, Z, T) int16, slice 0 at the base
    sax_labels: np.ndarray  # (X, Y, Z, T) uint8
    lax: np.ndarray  # (X, Y, 1, T) int16
    lax_labels: np.ndarray  # (X, Y, 1, T) uint8
    ed: int  # 0-based frame indices
    es: int
    group: str
    height: float  # cm
    weight: float  # kg
    spacing: tuple[float, float, float]  # SAX voxel size (mm)
    lax_spacing: tuple[float, float, float]


@dataclass
class _Heart:
    """Per-patient heart geometry (mm) and motion, shared by the SAX and LAX views."""

    radius: float  # LV cavity radius at the base at ED
    wall: float
    rv_size: float
    fill: np.ndarray  # (T,) LV cavity area relative to ED
    rv_fill: np.ndarray  # (T,) RV cavity area relative to ED
    systole: np.ndarray  # (T,) bool, frames after ED up to ES (valves closed)


def cardiac_cycle(num_frames: int, ed: int, es: int, ejection: float) -> np.ndarray:
    """Cavity area (T,) relative to ED over one cycle: 1 at ED, ``1 - ejection`` at ES, cosine-shaped in between."""
    phase = (np.arange(num_frames) - ed) % num_frames
    systole = (es - ed) % num_frames
    contraction = np.where(
        phase <= systole,
        (1 - np.cos(np.pi * phase / systole)) / 2,
        (1 + np.cos(np.pi * (phase - systole) / (num_frames - systole))) / 2,
    )
    return 1.0 - ejection * contraction


def synthesize_cine(
    rng: np.random.Generator,
    size: int = 144,
    num_slices: int = 6,
    num_frames: int = 20,
    pixel_mm: float = 1.5,
    slice_mm: float = 10.0,
    lax_slice_mm: float = 8.0,
) -> CineCase:
    """Draw one patient: SAX (size, size, num_slices, num_frames) and LAX (size, size, 1, num_frames) cines."""
    group = str(rng.choice(list(GROUPS)))
    radius, wall, ejection, rv_size = (v * rng.uniform(0.9, 1.1) for v in GROUPS[group])
    ed = int(rng.integers(0, 2))
    es = ed + round(num_frames * rng.uniform(0.35, 0.40))
    heart = _Heart(
        radius=radius,
        wall=wall,
        rv_size=rv_size,
        fill=cardiac_cycle(num_frames, ed, es, ejection),
        rv_fill=cardiac_cycle(num_frames, ed, es, rng.uniform(0.35, 0.55)),
        systole=(np.arange(num_frames) > ed) & (np.arange(num_frames) <= es),
    )
    grid = _grid(size, pixel_mm)
    sax_tissue = _sax_tissue(rng, grid, heart, num_slices)
    lax_tissue = _lax_tissue(rng, grid, heart)[:, :, None]
    signal = SIGNAL * rng.uniform(0.6, 1.8) * rng.uniform(0.9, 1.1, SIGNAL.shape)
    signal[PAPILLARY] = signal[WALL] = signal[MYO]
    return CineCase(
        sax=_render(rng, sax_tissue, signal),
        sax_labels=LABEL_OF_TISSUE[sax_tissue],
        lax=_render(rng, lax_tissue, signal),
        lax_labels=LABEL_OF_TISSUE[lax_tissue],
        ed=ed,
        es=es,
        group=group,
        height=round(float(rng.uniform(155, 195)), 1),
        weight=round(float(rng.uniform(50, 110)), 1),
        spacing=(pixel_mm, pixel_mm, slice_mm),
        lax_spacing=(pixel_mm, pixel_mm, lax_slice_mm),
    )


def write_patient(case: CineCase, folder: Path) -> Path:
    """Write ``case`` as one ACDC patient folder (named ``patientNNN``, which also prefixes its files)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    num_frames = case.sax.shape[-1]
    (folder / "Info.cfg").write_text(
        f"ED: {case.ed + 1}\nES: {case.es + 1}\nGroup: {case.group}\nHeight: {case.height:.1f}\n"
        f"NbFrame: {num_frames}\nWeight: {case.weight:.1f}\n"
    )
    for prefix, image, labels, spacing in (
        (name, case.sax, case.sax_labels, case.spacing),
        (f"{name}_lax", case.lax, case.lax_labels, case.lax_spacing),
    ):
        affine = _affine(image.shape[:3], spacing)
        save_nifti(image, affine, folder / f"{prefix}_4d.nii.gz", zooms=(*spacing, 1.0))
        for frame in (case.ed, case.es):
            save_nifti(image[..., frame], affine, folder / f"{prefix}_frame{frame + 1:02d}.nii.gz")
            save_nifti(labels[..., frame], affine, folder / f"{prefix}_frame{frame + 1:02d}_gt.nii.gz")
    return folder


def write_cine_raw(dst: Path, cases: int = 8, seed: int = 0) -> list[Path]:
    """Write ``cases`` synthetic patients ``patient001``... below ``dst``; patient ``i`` depends only on (seed, i)."""
    return [
        write_patient(synthesize_cine(np.random.default_rng([seed, i])), Path(dst) / f"patient{i + 1:03d}")
        for i in range(cases)
    ]


def _grid(size: int, pixel_mm: float) -> np.ndarray:
    """Pixel centres (size, size, 2) in mm, origin at the image centre."""
    axis = (np.arange(size) - (size - 1) / 2) * pixel_mm
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)


def _affine(shape: tuple[int, ...], spacing: tuple[float, float, float]) -> np.ndarray:
    """ACDC-like voxel-to-world affine (first axis pointing left), centred on the volume."""
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return affine


def _chest(rng: np.random.Generator, grid: np.ndarray) -> np.ndarray:
    """Static surroundings (X, Y): chest wall (fat over muscle), mediastinum, two lungs and the descending aorta."""
    tissue = np.full(grid.shape[:2], AIR, dtype=np.uint8)
    center = (rng.uniform(-10, 10), rng.uniform(-45, -30))
    axes = np.array([rng.uniform(150, 180), rng.uniform(105, 125)])
    angle = rng.uniform(-0.1, 0.1)
    fat, muscle = rng.uniform(8, 16), rng.uniform(8, 14)
    for tissue_class, shrink in ((FAT, 0.0), (BODY, fat)):
        tissue[ellipse_coords(grid, center, axes - shrink, angle)[0] < 1] = tissue_class
    cavity = ellipse_coords(grid, center, axes - fat - muscle, angle)[0] < 1
    for side in (-1, 1):
        lung_center = (center[0] + side * rng.uniform(70, 85), center[1] + rng.uniform(-5, 10))
        lung = ellipse_coords(grid, lung_center, (rng.uniform(45, 60), rng.uniform(70, 85)), rng.uniform(-0.3, 0.3))
        tissue[(lung[0] < lobulation(lung[1], random_lobes(rng, 2, 0.06))) & cavity] = LUNG
    aorta = (center[0] + rng.uniform(10, 30), center[1] - rng.uniform(15, 30))
    tissue[ellipse_coords(grid, aorta, (11.0, 11.0))[0] < 1] = VESSEL
    return tissue


def _sax_tissue(rng: np.random.Generator, grid: np.ndarray, heart: _Heart, num_slices: int) -> np.ndarray:
    """Tissue classes of the SAX stack (X, Y, Z, T), slice 0 at the base."""
    background = _chest(rng, grid)
    center = rng.uniform(-12, 12, 2)
    drift = rng.uniform(-2, 2, 2)  # the long axis is not quite perpendicular to the slices
    ellipticity, angle = rng.uniform(0.0, 0.12), rng.uniform(0, np.pi)
    lobes = random_lobes(rng, 2, 0.05)
    rv_angle = rng.uniform(2.4, 3.4)  # direction from the LV centre to the RV
    direction = np.array([np.cos(rv_angle), np.sin(rv_angle)])
    rv_reach = rng.uniform(0.6, 0.7)  # depth (0 base, 1 apex) where the RV ends, above the last slice
    papillary_angles = rv_angle + np.pi + rng.uniform(-1.4, -0.7), rv_angle + np.pi + rng.uniform(0.7, 1.4)
    reach = rng.uniform(0.8, 0.95)
    num_frames = heart.fill.shape[0]
    tissue = np.empty((*grid.shape[:2], num_slices, num_frames), dtype=np.uint8)
    for k in range(num_slices):
        depth = (k + 0.5) / num_slices * reach  # 0 at the base, 1 at the apex
        cavity_ed = heart.radius * np.sqrt(1 - depth**2)
        epi_area = (cavity_ed + heart.wall) ** 2 - cavity_ed**2
        rv_scale = 1 - (depth / rv_reach) ** 2
        lv_center = center + k * drift
        rho, phi = ellipse_coords(grid, lv_center, (1 + ellipticity, 1 - ellipticity), angle)
        radius = rho / lobulation(phi, lobes)  # equivalent radius (mm) of the lobulated ellipse
        for t in range(num_frames):
            cavity = cavity_ed * np.sqrt(heart.fill[t])
            epi = np.sqrt(cavity**2 + epi_area)
            frame = background.copy()
            frame[radius < epi + 3.0] = FAT
            if rv_scale > 0.15:
                rv_depth = heart.rv_size * rv_scale * (cavity_ed + heart.wall) * 0.6 * np.sqrt(heart.rv_fill[t])
                radial, tangential = 0.9 * epi, 1.5 * heart.rv_size * np.sqrt(rv_scale) * (cavity_ed + heart.wall)
                rv_center = lv_center + (epi + rv_depth - radial) * direction
                outer = ellipse_coords(grid, rv_center, (radial + 3.0, tangential + 3.0), rv_angle)[0] < 1
                frame[ellipse_coords(grid, rv_center, (radial + 6.0, tangential + 6.0), rv_angle)[0] < 1] = FAT
                frame[outer] = WALL
                frame[ellipse_coords(grid, rv_center, (radial, tangential), rv_angle)[0] < 1] = RV
            frame[radius < epi] = MYO
            frame[radius < cavity] = LV
            if 0.25 < depth < 0.75:
                size = 2.0 + 0.06 * cavity_ed
                for a in papillary_angles:
                    spot = lv_center + (cavity - 0.8 * size) * np.array([np.cos(a), np.sin(a)])
                    frame[(ellipse_coords(grid, spot, (size, size))[0] < 1) & (radius < cavity)] = PAPILLARY
            tissue[:, :, k, t] = frame
    return tissue


def _lax_tissue(rng: np.random.Generator, grid: np.ndarray, heart: _Heart) -> np.ndarray:
    """Tissue classes of the four-chamber LAX slice (X, Y, T)."""
    background = _chest(rng, grid)
    length_ed, radius_ed = heart.radius * rng.uniform(2.8, 3.3), heart.radius
    wall_area = (length_ed + heart.wall) * (radius_ed + heart.wall) - length_ed * radius_ed
    rv_width = heart.rv_size * rng.uniform(0.6, 0.8) * radius_ed
    atrium = rng.uniform(0.28, 0.35) * length_ed
    apex_angle = rng.uniform(3.6, 4.4)
    axis = np.array([np.cos(apex_angle), np.sin(apex_angle)])
    base = rng.uniform(-10, 10, 2) - 0.1 * length_ed * axis
    offset = grid - base
    s = offset @ axis  # along the long axis: 0 at the valve plane, positive towards the apex
    w = offset @ np.array([-axis[1], axis[0]])  # across it: the RV on the negative side

    def half(length: float, width: float) -> np.ndarray:
        return (s >= 0) & ((s / length) ** 2 + (w / width) ** 2 < 1)

    def atrium_at(center_w: float, scale: float, width: float) -> np.ndarray:
        return (s < 0) & (((s + 0.9 * atrium * scale) / (atrium * scale)) ** 2 + ((w - center_w) / width) ** 2 < 1)

    atria = ((0.1 * radius_ed, 0.9 * radius_ed), (-(radius_ed + heart.wall + 0.5 * rv_width), 0.8 * rv_width))
    tissue = np.empty((*grid.shape[:2], heart.fill.shape[0]), dtype=np.uint8)
    for t in range(heart.fill.shape[0]):
        length, radius = length_ed * heart.fill[t] ** 0.2, radius_ed * np.sqrt(heart.fill[t])
        thickness = (-(length + radius) + np.sqrt((length + radius) ** 2 + 4 * wall_area)) / 2
        epi = half(length + thickness, radius + thickness)
        rv_outer = radius + thickness + rv_width * np.sqrt(heart.rv_fill[t])
        rv_length = 0.8 * (length + thickness)
        atrial_scale = 1 + 0.15 * (1 - heart.fill[t]) / (1 - heart.fill.min())
        pericardium = half(length + thickness + 3, radius + thickness + 3) | (
            half(rv_length + 5, rv_outer + 5) & (w < 0)
        )
        frame = background.copy()
        frame[pericardium] = FAT
        for center_w, width in atria:
            frame[atrium_at(center_w, atrial_scale, width + 2.5)] = WALL
            frame[atrium_at(center_w, atrial_scale, width)] = VESSEL
        if heart.systole[t]:
            frame[(s >= -2.5) & (s < 0) & (w > -rv_outer) & (w < radius + thickness)] = WALL
        frame[half(rv_length + 3, rv_outer + 3) & (w < 0) & ~epi] = WALL
        frame[half(rv_length, rv_outer) & (w < 0) & ~epi] = RV
        frame[epi] = MYO
        frame[half(length, radius)] = LV
        tissue[:, :, t] = frame
    return tissue


def _render(rng: np.random.Generator, tissue: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """MR magnitude image (X, Y, Z, T) int16 from tissue classes: blur, smooth bias field, Rician noise."""
    clean = gaussian_filter(signal[tissue].astype(np.float32), sigma=(0.7, 0.7, 0, 0))
    x, y = np.meshgrid(np.linspace(-1, 1, tissue.shape[0]), np.linspace(-1, 1, tissue.shape[1]), indexing="ij")
    z = np.linspace(-1, 1, tissue.shape[2])[None, None, :]
    c = rng.normal(0, 0.1, 6)
    bias = np.exp(c[0] * x[..., None] + c[1] * y[..., None] + c[2] * (x * y)[..., None] + c[3] * x[..., None] ** 2)
    bias = bias * np.exp(c[4] * y[..., None] ** 2 + c[5] * z)
    clean *= bias[..., None].astype(np.float32)
    sigma = signal[VESSEL] * rng.uniform(0.03, 0.06)
    noisy = np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))
    return np.clip(np.round(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)
