"""CT volumes on SAM-Mix's grid, as a datalist nnU-Net's ``ct`` layout trains on.

SAM-Mix compares with an nnU-Net trained on the slices it trains on itself: the abdominal window (width 400 HU,
centre 40 HU) scaled to [0, 1], 256 x 256 slices, the middle 30 % of the slices of each training volume
(:func:`~samzoo.transforms.ct.ct_volume_transforms`, the sam_mix bundle's preprocessing). :func:`network_grid_datalist`
writes every volume of a CT datalist through that preprocessing once and returns a datalist of the results, with the
same patients and splits. Training and validation volumes are cut to the middle slices; test volumes keep every
slice, so evaluation scores whole volumes on the network's grid, as the sam_mix bundle's ``network_grid`` report.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datalist import SPLITS, datalist_info, load_datalist, write_datalist
from ..data.nifti import save_nifti
from ..errors import DataError
from ..transforms.ct import ABDOMINAL_WINDOW, ct_volume_transforms

GRID_KEY = "network_grid"
"""Datalist entry recording the source datalist and the preprocessing a grid datalist was written with."""


def network_grid_datalist(
    datalist: str | Path, dst: str | Path, image_size: int = 256, slice_fraction: float | None = 0.3
) -> str:
    """Write the volumes of the CT ``datalist`` on SAM-Mix's grid to ``dst`` and return ``dst/datalist.json``.

    Images are windowed and scaled to [0, 1] (float32), labels resized by nearest neighbour, both in RAS order
    with the affine the preprocessing leaves; training and validation volumes keep the middle ``slice_fraction`` of
    their slices (None: all). Items keep their fields, with ``spacing``, ``num_slices`` and ``liver_slices`` of the
    grid and ``slice_start``, the source slice of grid slice 0. The folder is written complete or not at all (a
    temporary folder renamed into place); one written with the same source and settings is reused, one holding
    anything else is refused.
    """
    dst = Path(dst)
    record = {
        "source": str(Path(datalist).resolve()),
        "window": list(ABDOMINAL_WINDOW),
        "image_size": int(image_size),
        "slice_fraction": slice_fraction,
    }
    path = dst / "datalist.json"
    if path.is_file():
        if datalist_info(path).get(GRID_KEY) != json.loads(json.dumps(record)):
            raise DataError(path, f"holds another grid datalist (see its {GRID_KEY!r}); choose another folder")
        return str(path)
    if dst.exists() and any(dst.iterdir()):
        raise DataError(dst, "exists and holds no grid datalist; it is left alone (choose another folder)")
    grid: dict[str, Any] = {**datalist_info(datalist), GRID_KEY: record}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}."))  # renamed into place when complete
    try:
        for split in SPLITS:
            fraction = None if split == "test" else slice_fraction
            transform = ct_volume_transforms(spatial_size=int(image_size), slice_fraction=fraction)
            grid[split] = [_grid_item(item, transform(item), tmp) for item in load_datalist(datalist, split)]
        write_datalist(grid, tmp)
        if dst.exists():
            dst.rmdir()
        tmp.rename(dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return str(path)


def _grid_item(item: dict[str, Any], volume: dict[str, Any], dst: Path) -> dict[str, Any]:
    """Save one preprocessed volume (image, label (1, S, S, D)) under ``dst`` and return its datalist item."""
    affine = np.asarray(volume["image"].affine, dtype=np.float64)
    image = np.asarray(volume["image"].detach().cpu())[0].astype(np.float32)
    label = np.asarray(volume["label"].detach().cpu())[0].astype(np.uint8)
    name = f"{item['case_id']}.nii.gz"
    save_nifti(image, affine, dst / "images" / name)
    save_nifti(label, affine, dst / "labels" / name)
    return {
        **item,
        "image": f"images/{name}",
        "label": f"labels/{name}",
        "spacing": [float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)],
        "num_slices": int(label.shape[-1]),
        "liver_slices": [int(z) for z in np.flatnonzero(label.reshape(-1, label.shape[-1]).any(axis=0))],
        "slice_start": int(volume.get("slice_start", 0)),
    }
