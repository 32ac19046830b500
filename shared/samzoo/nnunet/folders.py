"""The nnU-Net folders of one run.

nnU-Net finds its data through the environment variables ``nnUNet_raw``, ``nnUNet_preprocessed`` and
``nnUNet_results`` (read at each use by ``nnunetv2.paths``). A bundle run sets them to folders below its own output
folder, so a run never reads or writes a dataset of the user's global nnU-Net set-up, and two runs with different
output folders never share one.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
AUGMENTATION_WORKERS = "nnUNet_n_proc_DA"
"""nnU-Net's variable for the number of data augmentation processes."""


def use_run_folders(root: str | Path, augmentation_workers: int = 0) -> dict[str, str]:
    """Point nnU-Net at ``root/raw``, ``root/preprocessed`` and ``root/results`` (created); return them by name.

    The variables are set for this process (nnU-Net has no other way to be told); the next run sets its own.
    ``augmentation_workers`` (``nnUNet_n_proc_DA``) is the number of data augmentation processes; 0 augments in the
    main process, which keeps a CPU run from competing with itself for a few cores.
    """
    root = Path(root).resolve()
    folders = {}
    for name in FOLDERS:
        path = root / name.removeprefix("nnUNet_")
        path.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(path)
        folders[name] = str(path)
    os.environ[AUGMENTATION_WORKERS] = str(int(augmentation_workers))
    return folders
