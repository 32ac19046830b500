"""Synthetic abdominal CT in the LiTS layout, in Hounsfield units, for the liver segmentation demo.

Each volume is an axial stack over the upper abdomen drawn as a map of tissue classes in world millimetres; the
image (HU per class, slight blur, noise) and the label are both looked up from that map, so they agree exactly:

- air around the body; the body an ellipse of subcutaneous fat over the abdominal wall muscle; inside, bowel and
  visceral fat with gas pockets in the lower slices;
- spine (cortex ~700 HU over marrow), ribs in the upper slices, paraspinal muscles, aorta and vena cava;
- the liver (~60 HU, labelled 1) on the patient's right in the upper slices, ending 42-58 % of the way up so
  that slices with and without liver both occur, also among the middle 30 % that SAM-Mix trains on; its vessels
  are liver; sometimes one or two hypodense tumours (labelled 2, inside the liver); the gallbladder beside it is
  not liver;
- organs of similar density nearby, so the liver is not the only bright structure: spleen (~50 HU), enhancing
  kidneys (~170 HU), stomach with a gas cap, lung bases behind the liver dome.

Volumes are stored as many DICOM conversions store them (voxel axes pointing to the patient's left, posterior
and superior), at about 2.8 x 2.8 x 5 mm, the in-plane grid of a 512-pixel scan reduced four times. Files, as in
LiTS (``N`` from 0)::

    Training Batch 1/volume-N.nii         (X, Y, Z) int16, HU
    Training Batch 1/segmentation-N.nii   (X, Y, Z) uint8: 0 background, 1 liver, 2 tumour
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ..nifti import save_nifti
from . import ellipse_coords, lobulation, random_lobes

(AIR, FAT, MUSCLE, BOWEL, GAS, BONE, MARROW, BLOOD, LIVER, LIVER_VESSEL, TUMOUR, SPLEEN, KIDNEY, FLUID, LUNG) = range(
    15
)
"""Tissue classes of the synthetic abdomen (FLUID: bile, urine, cerebrospinal fluid, gastric content)."""

HU = np.array([-1000, -100, 45, 30, -900, 700, 250, 160, 60, 150, 20, 50, 170, 10, -850], dtype=np.float64)
"""Typical portal-venous-phase density of each tissue class (HU)."""

LABEL_OF_TISSUE = np.zeros(len(HU), dtype=np.uint8)
LABEL_OF_TISSUE[[LIVER, LIVER_VESSEL]] = 1
LABEL_OF_TISSUE[TUMOUR] = 2

BATCH_FOLDER = "Training Batch 1"


@dataclass
class CTCase:
    """One synthetic CT volume in its stored voxel order."""

    volume: np.ndarray  # (X, Y, Z) int16, HU
    segmentation: np.ndarray  # (X, Y, Z) uint8: 0 background, 1 liver, 2 tumour
    affine: np.ndarray  # (4, 4) voxel -> world (RAS+, mm)


def synthesize_ct(
    rng: np.random.Generator, shape: tuple[int, int, int] = (128, 128, 40), pixel_mm: float = 2.8, slice_mm: float = 5.0
) -> CTCase:
    """Draw one abdominal CT volume of ``shape`` voxels of about ``pixel_mm`` in-plane and ``slice_mm`` apart."""
    pixel = pixel_mm * rng.uniform(0.93, 1.07)
    affine = np.diag([-pixel, -pixel, slice_mm, 1.0])
    affine[:3, 3] = [pixel * (shape[0] - 1) / 2, pixel * (shape[1] - 1) / 2, rng.uniform(-500, -300)]
    index = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    height = slice_mm * (shape[2] - 1)
    points = np.concatenate([world[..., :2], world[..., 2:] - affine[2, 3]], axis=-1).astype(np.float32)  # z from 0
    tissue = _abdomen(rng, points, height, smooth_sigma=(8.0 / pixel, 8.0 / pixel, 8.0 / slice_mm))
    hu = HU + rng.normal(0, 5, HU.shape)
    hu[TUMOUR] = hu[LIVER] - rng.uniform(25, 45)
    image = gaussian_filter(hu[tissue], sigma=(0.6, 0.6, 0.3)) + rng.normal(0, rng.uniform(10, 20), shape)
    volume = np.clip(np.round(image), -1024, 3071).astype(np.int16)
    return CTCase(volume=volume, segmentation=LABEL_OF_TISSUE[tissue], affine=affine)


def write_ct_raw(dst: Path, cases: int = 8, seed: int = 0) -> list[Path]:
    """Write ``cases`` volume/segmentation pairs below ``dst``; volume ``i`` depends only on (seed, i)."""
    folder = Path(dst) / BATCH_FOLDER
    paths = []
    for i in range(cases):
        case = synthesize_ct(np.random.default_rng([seed, i]))
        zooms = tuple(np.linalg.norm(case.affine[:3, :3], axis=0))
        paths.append(save_nifti(case.volume, case.affine, folder / f"volume-{i}.nii", zooms=zooms))
        save_nifti(case.segmentation, case.affine, folder / f"segmentation-{i}.nii", zooms=zooms)
    return paths


def _abdomen(
    rng: np.random.Generator, points: np.ndarray, height: float, smooth_sigma: tuple[float, float, float]
) -> np.ndarray:
    """Tissue classes (X, Y, Z) at ``points`` (X, Y, Z, 3): x to the patient's right, y anterior, z up from 0."""
    xy, z = points[:, :, :1, :2], points[..., 2]  # axial slices: the in-plane grid (X, Y, 1, 2) is shared
    tissue = np.full(points.shape[:3], AIR, dtype=np.uint8)
    semi = np.array([rng.uniform(135, 165), rng.uniform(95, 120)])
    center = np.array([rng.uniform(-8, 8), rng.uniform(-15, 0)])
    fat, wall = rng.uniform(10, 28), rng.uniform(8, 14)
    lobes = random_lobes(rng, 3, 0.03)

    def body(shrink: float) -> np.ndarray:
        radius, phi = ellipse_coords(xy, center, semi - shrink)
        return np.broadcast_to(radius < lobulation(phi, lobes), tissue.shape)

    tissue[body(0)] = FAT
    tissue[body(fat)] = MUSCLE
    inside = body(fat + wall)
    texture = gaussian_filter(rng.normal(size=tissue.shape), smooth_sigma)
    texture /= texture.std()
    tissue[inside] = np.where(texture[inside] < -0.3, FAT, BOWEL)
    tissue[inside & (texture > 1.8) & (z < 0.5 * height)] = GAS

    inner_a, inner_b = semi - fat - wall
    spine_y = center[1] - inner_b + 30
    around_spine = xy - (center[0], spine_y)
    for side in (-1, 1):
        _fill(tissue, around_spine, (side * 32, -8), (20, 26), MUSCLE)
    _fill(tissue, around_spine, (0, 0), (19, 17), BONE)
    _fill(tissue, around_spine, (0, 0), (16, 14), MARROW)
    _fill(tissue, around_spine, (0, -24), (7, 7), FLUID)
    _fill(tissue, around_spine, (0, -40), (5, 12), BONE)
    _fill(tissue, around_spine, (-16, 30), (11, 11), BLOOD)  # aorta, left of the midline
    _fill(tissue, around_spine, (22, 32), (10, 12), BLOOD)  # inferior vena cava
    upper = z > rng.uniform(0.4, 0.55) * height
    for angle in np.linspace(-1.2, 0.9, 6):  # around the lateral and posterior body wall
        for side in (-1, 1):
            rib = (side * (inner_a + 4) * np.cos(angle), (inner_b + 4) * np.sin(angle))
            _fill(tissue, xy - center, rib, (5, 5), BONE, where=upper)

    for side in (-1, 1):
        lung = (side * 0.5 * inner_a, center[1] - 0.25 * inner_b, height + rng.uniform(25, 45))
        tissue[ellipse_coords(points, lung, (0.35 * inner_a, 0.45 * inner_b, 60))[0] < 1] = LUNG
    for side, level in ((1, 0.3), (-1, 0.4)):  # the right kidney lies lower
        kidney = (side * rng.uniform(50, 60), spine_y + 12, level * height + rng.uniform(-10, 10))
        angle = side * rng.uniform(0.3, 0.6)
        tissue[ellipse_coords(points, kidney, (22, 30, 50), angle)[0] < 1] = KIDNEY
        tissue[ellipse_coords(points, kidney, (9, 13, 25), angle)[0] < 1] = FLUID
    spleen = (-0.6 * inner_a, center[1] - 0.3 * inner_b, rng.uniform(0.65, 0.8) * height)
    tissue[ellipse_coords(points, spleen, (28, 50, 45), rng.uniform(0.3, 0.8))[0] < 1] = SPLEEN
    stomach = (-0.3 * inner_a, center[1] + 0.3 * inner_b, rng.uniform(0.7, 0.85) * height)
    stomach_axes = (45, 32, 50)
    in_stomach = ellipse_coords(points, stomach, stomach_axes, rng.uniform(-0.4, 0.4))[0] < 1
    tissue[in_stomach] = FLUID
    tissue[in_stomach & (points[..., 1] > stomach[1] + 0.45 * stomach_axes[1])] = GAS

    bottom, top = rng.uniform(0.42, 0.58) * height, rng.uniform(0.95, 1.1) * height
    mid, half = (bottom + top) / 2, (top - bottom) / 2
    liver_lobes = random_lobes(rng, 3, 0.06)
    right_lobe = (rng.uniform(0.4, 0.5) * inner_a, center[1] + rng.uniform(-0.1, 0.1) * inner_b, mid)
    left_lobe = (0.0, center[1] + 0.45 * inner_b, top - 0.6 * half)
    liver = np.zeros_like(inside)
    for lobe, axes in (
        (right_lobe, (0.5 * inner_a, 0.75 * inner_b, half)),
        (left_lobe, (0.4 * inner_a, 0.3 * inner_b, 0.6 * half)),
    ):
        radius, phi = ellipse_coords(points, lobe, axes, rng.uniform(-0.2, 0.2))
        liver |= radius < lobulation(phi, liver_lobes)
    liver &= inside
    tissue[liver] = LIVER
    for _ in range(3):
        vessel = right_lobe[:2] + rng.uniform(-0.25, 0.25, 2) * inner_a
        tissue[liver & (ellipse_coords(xy, vessel, (4, 4))[0] < 1)] = LIVER_VESSEL
    gallbladder = (0.2 * inner_a, center[1] + 0.2 * inner_b, bottom + 0.3 * (top - bottom))
    tissue[ellipse_coords(points, gallbladder, (14, 20, 30), rng.uniform(0, np.pi))[0] < 1] = FLUID
    in_liver = np.argwhere(LABEL_OF_TISSUE[tissue] == 1)
    for _ in range(int(rng.choice([0, 1, 1, 2])) if len(in_liver) else 0):
        spot = points[tuple(in_liver[rng.integers(len(in_liver))])]
        axes = rng.uniform(7, 22) * rng.uniform(0.8, 1.2, 3)
        tumour = ellipse_coords(points, spot, axes, rng.uniform(0, np.pi))[0] < 1
        tissue[tumour & (LABEL_OF_TISSUE[tissue] == 1)] = TUMOUR
    return tissue


def _fill(
    tissue: np.ndarray,
    xy: np.ndarray,
    center: tuple[float, float],
    semi_axes: tuple[float, float],
    tissue_class: int,
    where: np.ndarray | None = None,
) -> None:
    """Paint an elliptic cylinder along z at in-plane ``xy`` (X, Y, 1, 2), optionally only ``where`` (X, Y, Z) holds."""
    mask = np.broadcast_to(ellipse_coords(xy, center, semi_axes)[0] < 1, tissue.shape)
    tissue[mask if where is None else mask & where] = tissue_class
