"""nnU-Net raw datasets written from a samzoo datalist, then fingerprinted, planned and preprocessed by nnU-Net.

nnU-Net therefore sees exactly the patients and splits of the other bundles: the training split (reduced to the
manifest's volumes and slices) and the validation split (fully annotated, used for model selection) become
``imagesTr``/``labelsTr`` with a ``splits_final.json`` whose fold 0 is that training/validation split; the test
split is never written, it is predicted from the datalist.

Two layouts of a cine datalist:

- ``stack``: one 3D case per patient and phase, the ED (or ES) frame of every short-axis slice stacked base first
  (the thesis's volumes; nnU-Net's ``2d`` configuration trains on their slices, ``3d_fullres`` on the stacks);
- ``cine``: one 3D case per slice item, (H, W, T) with time as the third axis (CMR2D+T-SAM's nnUNet-3D); only the
  labelled frames (ED, ES) carry labels.

And one of a CT datalist:

- ``ct``: one 3D case per CT volume, as stored (the bundle's CT variant writes the volumes on SAM-Mix's grid first,
  :func:`~samzoo.nnunet.ct.network_grid_datalist`); nnU-Net's ``2d`` configuration trains on its axial slices.

Voxels without annotation get nnU-Net's ignore label (``"ignore"`` in ``dataset.json``, one above the last class),
so nnU-Net leaves them out of the loss and of its patch sampling; ``unannotated="background"`` writes 0 instead, the
thesis's zeroing, which teaches them as background. Images are written with a diagonal affine of the voxel size
(nnU-Net only uses the spacing; the cine's time axis gets spacing 1).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..data.datalist import datalist_info, load_datalist
from ..data.nifti import load_label, load_nifti, save_nifti
from ..errors import DataError
from .folders import AUGMENTATION_WORKERS
from .manifest import stack_volumes
from .workers import worker_threads

LAYOUTS = ("stack", "cine", "ct")
CHANNELS = {"stack": "MRI", "cine": "MRI", "ct": "CT"}
"""nnU-Net's channel name per layout; it picks the normalisation (``CT``: nnU-Net's CT scheme, others z-score)."""
UNANNOTATED = ("ignore", "background")
MARKER = "samzoo_dataset.json"
"""File in the raw dataset folder recording what it was written from; a folder without it is never touched."""


def dataset_labels(datalist: str | Path) -> dict[str, int]:
    """nnU-Net's ``labels`` (name -> value) from the datalist's ``labels``, with ``ignore`` one above the last.

    nnU-Net needs consecutive values from 0 (background), so a datalist with gaps (STACOM: 0 and 2) is refused.
    """
    labels = datalist_info(datalist).get("labels")
    if not labels:
        raise DataError(datalist, "has no 'labels' (value -> name) to build nnU-Net's dataset.json from")
    values = sorted(int(v) for v in labels)
    if values != list(range(len(values))):
        raise DataError(datalist, f"nnU-Net needs consecutive label values 0..K, the datalist has {values}")
    return {labels[str(v)]: v for v in values} | {"ignore": len(values)}


def _spacing(item: Mapping[str, Any]) -> list[float]:
    return [float(s) for s in item.get("spacing") or (1.0, 1.0, 1.0)]


def stack_arrays(volume: Mapping[str, Any], annotated: set[int] | None, fill: int) -> tuple[np.ndarray, ...]:
    """Image and label (H, W, Z) of one phase of a stack; slices outside ``annotated`` (None: all) get ``fill``."""
    images, labels = [], []
    for item in volume["items"]:
        image = load_nifti(item["image"]).array
        label = load_label(item["label"]).array
        if volume["frame"] not in item["labelled_frames"]:
            raise DataError(item["label"], f"frame {volume['frame']} ({volume['phase']}) is not a labelled frame")
        images.append(image[..., volume["frame"]])
        slice_label = label[..., volume["frame"]].astype(np.uint8)
        if annotated is not None and item["slice_index"] not in annotated:
            slice_label = np.full_like(slice_label, fill)
        labels.append(slice_label)
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise DataError(volume["items"][0]["image"], f"slices of {volume['case_id']} differ in shape: {shapes}")
    return np.stack(images, axis=-1), np.stack(labels, axis=-1)


def cine_arrays(item: Mapping[str, Any], fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and label (H, W, T) of one cine slice; frames without labels get ``fill``."""
    image = load_nifti(item["image"]).array
    label = load_label(item["label"]).array.astype(np.uint8)
    unlabelled = np.setdiff1d(np.arange(label.shape[-1]), item["labelled_frames"])
    label[..., unlabelled] = fill
    return image, label


def volume_arrays(item: Mapping[str, Any], annotated: set[int] | None, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and label (X, Y, Z) of one volume item (CT); slices outside ``annotated`` (None: all) get ``fill``."""
    image = load_nifti(item["image"]).array
    label = load_label(item["label"]).array.astype(np.uint8)
    if image.shape != label.shape:
        raise DataError(item["label"], f"label shape {label.shape} differs from the image's {image.shape}")
    if annotated is not None:
        label[..., np.setdiff1d(np.arange(label.shape[-1]), sorted(annotated))] = fill
    return image, label


def case_arrays(
    case: Mapping[str, Any], annotated: Sequence[int] | None = None, fill: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Image and label of one case of :func:`dataset_cases`, its unannotated slices (``stack``, ``ct``; None: all
    annotated) or unlabelled frames (``cine``) set to ``fill``."""
    kept = None if annotated is None else set(annotated)
    if case["layout"] == "stack":
        return stack_arrays({**case, "case_id": case["name"].rsplit("_", 1)[0]}, kept, fill)
    if case["layout"] == "cine":
        return cine_arrays(case["items"][0], fill)
    return volume_arrays(case["items"][0], kept, fill)


def cine_case_name(item: Mapping[str, Any]) -> str:
    """The case name of one cine slice item in the ``cine`` layout."""
    return f"{item['case_id']}_{item.get('view') or 'SAX'}_s{int(item['slice_index']):02d}"


def dataset_cases(
    datalist: str | Path, split: str, layout: str, manifest: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The nnU-Net cases of one split: ``name``, ``layout``, ``spacing`` (x, y, z), ``items`` (the datalist items
    it holds), and for ``stack`` the ``frame`` and ``phase`` it shows. ``manifest`` keeps only its volumes
    (training)."""
    if layout not in LAYOUTS:
        raise DataError(None, f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    items = load_datalist(datalist, split)
    if layout == "stack":
        cases = [
            {"name": v["name"], "spacing": _spacing(v["items"][0]), "items": v["items"], "frame": v["frame"]}
            | {"phase": v["phase"]}
            for v in stack_volumes(items)
        ]
    elif layout == "cine":
        cases = [
            {"name": cine_case_name(item), "spacing": [*_spacing(item)[:2], 1.0], "items": [item]} for item in items
        ]
    else:
        cases = [{"name": item["case_id"], "spacing": _spacing(item), "items": [item]} for item in items]
    cases = [{**case, "layout": layout} for case in cases]
    if manifest is not None:
        cases = [case for case in cases if case["name"] in manifest["volumes"]]
    return cases


def _write_case(folder: Path, case: Mapping[str, Any], annotated: Sequence[int] | None, fill: int) -> None:
    image, label = case_arrays(case, annotated, fill)
    affine = np.diag([*case["spacing"], 1.0])
    save_nifti(image.astype(np.float32), affine, folder / "imagesTr" / f"{case['name']}_0000.nii.gz")
    save_nifti(label, affine, folder / "labelsTr" / f"{case['name']}.nii.gz")


def _existing(roots: Sequence[Path], dataset_id: int) -> list[Path]:
    return sorted(p for root in roots if root.is_dir() for p in root.glob(f"Dataset{dataset_id:03d}_*"))


def write_raw_dataset(
    datalist: str | Path,
    raw_root: str | Path,
    dataset_id: int,
    name: str,
    layout: str = "stack",
    manifest: Mapping[str, Any] | None = None,
    unannotated: str = "ignore",
    other_roots: Sequence[str | Path] = (),
) -> Path:
    """Write ``raw_root/Dataset<id>_<name>`` (imagesTr, labelsTr, dataset.json) and return the folder.

    The training cases are the manifest's volumes with only their ``annotated`` slices labelled (every case, fully
    labelled, without a manifest); validation cases are complete. A folder already written from the same datalist,
    layout, manifest and ``unannotated`` is reused as it is. Any other content under that dataset id, in
    ``raw_root`` or in ``other_roots`` (the preprocessed and results folders), is refused, never overwritten.
    """
    if unannotated not in UNANNOTATED:
        raise DataError(None, f"unannotated must be one of {UNANNOTATED}, got {unannotated!r}")
    if not 1 <= int(dataset_id) <= 999:
        raise DataError(None, f"nnU-Net dataset ids lie in 1..999, got {dataset_id}")
    raw_root = Path(raw_root)
    folder = raw_root / f"Dataset{int(dataset_id):03d}_{name}"
    record = {
        "datalist": str(Path(datalist).resolve()),
        "layout": layout,
        "unannotated": unannotated,
        "manifest": manifest,
        "samzoo_version": __version__,
    }
    for existing in _existing([raw_root, *map(Path, other_roots)], int(dataset_id)):
        if existing.name != folder.name:
            raise DataError(existing, f"dataset id {dataset_id} is taken by another dataset; choose another id")
    if folder.exists():
        marker = folder / MARKER
        if not marker.is_file():
            raise DataError(folder, "exists and was not written by samzoo; it is left alone (choose another id)")
        if json.loads(marker.read_text()) != json.loads(json.dumps(record)):
            raise DataError(folder, f"holds another dataset (see {MARKER}); choose another dataset id or folder")
        return folder
    labels = dataset_labels(datalist)
    fill = labels["ignore"] if unannotated == "ignore" else 0
    training = dataset_cases(datalist, "training", layout, manifest)
    validation = dataset_cases(datalist, "validation", layout)
    if not training:
        raise DataError(datalist, "no training case is left after the subset")
    raw_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=raw_root, prefix=f".{folder.name}."))
    try:
        for case in training:
            annotated = None if manifest is None else manifest["volumes"][case["name"]]["annotated"]
            _write_case(tmp, case, annotated, fill)
        for case in validation:
            _write_case(tmp, case, None, fill)
        dataset_json = {
            "name": name,
            "description": f"written by samzoo from {record['datalist']} ({layout} layout)",
            "channel_names": {"0": CHANNELS[layout]},
            "labels": labels,
            "numTraining": len(training) + len(validation),
            "file_ending": ".nii.gz",
        }
        (tmp / "dataset.json").write_text(json.dumps(dataset_json, indent=1) + "\n")
        (tmp / "splits.json").write_text(
            json.dumps([{"train": [c["name"] for c in training], "val": [c["name"] for c in validation]}]) + "\n"
        )
        (tmp / MARKER).write_text(json.dumps(record, indent=1) + "\n")
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def plan_and_preprocess(dataset_id: int, configuration: str, batch_size: int | None = None) -> Path:
    """Fingerprint, plan and preprocess one dataset for ``configuration`` with nnU-Net's own planning API, once:
    an existing preprocessed configuration is kept. Writes fold 0 of the datalist's split as ``splits_final.json``.
    Returns the dataset's preprocessed folder. The per-case work runs in one thread of this process
    (:func:`~samzoo.nnunet.workers.worker_threads`).

    ``batch_size`` replaces the planned batch size of ``configuration`` in this run's plans (patch size, network
    and preprocessing stay nnU-Net's): a CPU schedule's knob, recorded in the plans the model is saved with.
    """
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(int(dataset_id))
    folder = Path(nnUNet_preprocessed) / name
    # nnU-Net's planner sets torch's thread count to nnUNet_n_proc_DA, which must then be at least 1
    workers = os.environ.get(AUGMENTATION_WORKERS)
    os.environ[AUGMENTATION_WORKERS] = str(max(1, int(workers or 1)))
    try:
        with worker_threads():
            _plan_and_preprocess(int(dataset_id), configuration, folder)
    finally:
        if workers is not None:
            os.environ[AUGMENTATION_WORKERS] = workers
    plans_file = folder / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    if configuration not in plans["configurations"]:
        raise DataError(plans_file, f"nnU-Net planned no {configuration!r} configuration for this dataset")
    if batch_size is not None and plans["configurations"][configuration]["batch_size"] != int(batch_size):
        plans["configurations"][configuration]["batch_size"] = int(batch_size)
        with atomic_path(plans_file) as tmp:
            tmp.write_text(json.dumps(plans, indent=1) + "\n")
    shutil.copyfile(Path(nnUNet_raw) / name / "splits.json", folder / "splits_final.json")
    return folder


def _plan_and_preprocess(dataset_id: int, configuration: str, folder: Path) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    if not (folder / "nnUNetPlans.json").is_file():
        extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, verbose=False)
        plan_experiments([dataset_id])
    if not (folder / f"nnUNetPlans_{configuration}").is_dir():
        preprocess([dataset_id], configurations=(configuration,), num_processes=(1,))


def prepare_dataset(
    folders: Mapping[str, str],
    datalist: str | Path,
    dataset_id: int,
    name: str,
    layout: str,
    configuration: str,
    manifest: Mapping[str, Any] | None = None,
    unannotated: str = "ignore",
    batch_size: int | None = None,
) -> int:
    """Everything before training, once per run folder: the raw dataset (:func:`write_raw_dataset`), then
    nnU-Net's planning and preprocessing (:func:`plan_and_preprocess`). ``folders`` are the run's nnU-Net folders,
    as :func:`~samzoo.nnunet.folders.use_run_folders` set them. Returns ``dataset_id`` for the trainer.
    """
    write_raw_dataset(
        datalist,
        folders["nnUNet_raw"],
        dataset_id,
        name,
        layout,
        manifest,
        unannotated,
        other_roots=(folders["nnUNet_preprocessed"], folders["nnUNet_results"]),
    )
    plan_and_preprocess(dataset_id, configuration, batch_size)
    return int(dataset_id)


def case_items(cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The datalist items the cases hold, each once, in case order: the items an evaluation of these cases scores
    (the ``stack`` layout leaves long-axis slices out, and holds each slice in its ED and its ES case)."""
    return list({item["label"]: dict(item) for case in cases for item in case["items"]}.values())
