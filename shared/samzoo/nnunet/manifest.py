"""Which volumes and slices of the training split carry annotation: subsets drawn once per seed, kept as a manifest.

A *volume* is one short-axis stack of one patient at one phase (ED or ES), as the sparse-annotation thesis counts
them (ACDC's 160 training volumes are 80 patients x ED/ES). A manifest names, for every volume kept, the slice
indices whose labels are used; every other slice of that volume is unannotated (nnU-Net's ignore label).

Draws are nested, so runs with a growing budget are comparable: with one seed, the volumes of ``num_volumes=8`` are
among those of ``num_volumes=24`` (:func:`~samzoo.transforms.sam_prompt.select_volumes`, the rule every samzoo
bundle uses), and the ``num_slices=4`` random slices of a volume are among its ``num_slices=6``: each volume's slices
are permuted once by a generator seeded with (seed, volume name), independently of which other volumes are drawn.
Regions are the thirds of the datalist's ``slice_position`` (docs/data.md): ``A`` apical, ``M`` mid, ``B`` basal.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import DataError
from ..transforms.sam_prompt import select_volumes

REGIONS = {"A": "apical", "M": "mid", "B": "basal"}
PHASES = ("ED", "ES")
CT_PHASE = "CT"


def stack_volumes(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ED and ES short-axis volumes of cine datalist items: one entry per case and phase, slices base first.

    Each entry: ``name`` (``<case_id>_<phase>``), ``patient_id``, ``case_id``, ``phase``, ``frame`` (the cine frame
    of that phase), ``items`` (the slice items in ``slice_index`` order) and ``positions`` (their slice positions).
    LAX items are left out: a long-axis slice is not part of a stack.
    """
    cases: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        if item.get("view", "SAX") == "SAX":
            cases.setdefault(item["case_id"], []).append(item)
    volumes = []
    for case_id in sorted(cases):
        slices = sorted(cases[case_id], key=lambda item: item["slice_index"])
        indices = [item["slice_index"] for item in slices]
        if len(set(indices)) != len(indices):
            raise DataError(slices[0]["label"], f"case {case_id} lists a slice index twice: {indices}")
        for phase in PHASES:
            frame = slices[0][f"{phase.lower()}_frame"]
            volumes.append(
                {
                    "name": f"{case_id}_{phase}",
                    "patient_id": slices[0]["patient_id"],
                    "case_id": case_id,
                    "phase": phase,
                    "frame": frame,
                    "items": slices,
                    "positions": [item.get("slice_position") for item in slices],
                }
            )
    return volumes


def ct_volumes(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The volumes of CT datalist items, in :func:`stack_volumes`'s form: one per item, named by its ``case_id``,
    phase ``CT``, every axial slice without a cardiac position."""
    return [
        {
            "name": item["case_id"],
            "patient_id": item["patient_id"],
            "case_id": item["case_id"],
            "phase": CT_PHASE,
            "items": [{"slice_index": z} for z in range(int(item["num_slices"]))],
            "positions": [None] * int(item["num_slices"]),
        }
        for item in items
    ]


def parse_regions(regions: str | Iterable[str] | None) -> list[str]:
    """Region letters (``"B+M"``, ``"BM"`` or ``["B", "M"]``) as slice positions in base-to-apex order."""
    if regions is None or regions == "":
        return []
    letters = [c for c in regions.replace("+", "")] if isinstance(regions, str) else [str(r) for r in regions]
    unknown = sorted(set(letters) - set(REGIONS))
    if unknown:
        raise DataError(None, f"unknown cardiac regions {unknown}; use A (apical), M (mid) and B (basal)")
    return [REGIONS[r] for r in ("B", "M", "A") if r in letters]


def _slice_order(name: str, count: int, seed: int) -> list[int]:
    """A permutation of a volume's ``count`` slice positions that depends only on (seed, volume name)."""
    return [int(i) for i in np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(count)]


def draw_manifest(
    volumes: Sequence[Mapping[str, Any]],
    num_volumes: int | None = None,
    regions: str | Iterable[str] | None = None,
    num_slices: int | None = None,
    seed: int = 0,
    phases: Sequence[str] = PHASES,
) -> dict[str, Any]:
    """The annotated subset of ``volumes`` (from :func:`stack_volumes` or :func:`ct_volumes`; ``phases`` are
    theirs) for one setting and seed.

    ``num_volumes`` volumes are kept (None: all); of each, the slices in ``regions`` (None: every slice) and of
    those the first ``num_slices`` of the volume's seeded permutation (None: all of them). A volume left with no
    annotated slice (a region its stack does not have) is dropped and listed under ``without_slices``.
    """
    if num_slices is not None and num_slices < 1:
        raise DataError(None, f"num_slices must be at least 1, got {num_slices}")
    wanted = parse_regions(regions)
    kept = select_volumes(volumes, num_volumes, seed, phases)
    chosen: dict[str, Any] = {}
    without = []
    for volume in kept:
        positions = volume["positions"]
        order = _slice_order(volume["name"], len(positions), seed)
        eligible = [i for i in order if not wanted or positions[i] in wanted]
        picked = sorted(eligible[:num_slices] if num_slices is not None else eligible)
        if not picked:
            without.append(volume["name"])
            continue
        chosen[volume["name"]] = {
            "patient_id": volume["patient_id"],
            "phase": volume["phase"],
            "slices": len(positions),
            "annotated": [volume["items"][i]["slice_index"] for i in picked],
        }
    return {
        "seed": int(seed),
        "num_volumes": num_volumes,
        "regions": [k for k, v in REGIONS.items() if v in wanted],
        "num_slices": num_slices,
        "volumes": chosen,
        "without_slices": without,
        "annotated_slices": sum(len(v["annotated"]) for v in chosen.values()),
    }


def save_manifest(manifest: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``manifest`` to ``path``; an existing manifest with other content is refused, never replaced.

    Rerunning a setting redraws the same subset (the draw is deterministic), so a differing file means the
    folder belongs to another setting, seed or dataset.
    """
    path = Path(path)
    text = json.dumps(manifest, indent=1) + "\n"
    if path.is_file():
        if json.loads(path.read_text()) != json.loads(text):
            raise DataError(path, "holds the manifest of another subset (setting, seed or data); use another folder")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def run_manifest(
    datalist: str | Path,
    path: str | Path,
    layout: str = "stack",
    num_volumes: int | None = None,
    regions: str | Iterable[str] | None = None,
    num_slices: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The manifest of one run: drawn from the datalist's training split and saved to ``path``
    (:func:`save_manifest`). The ``cine`` layout keeps ``num_volumes`` ED/ES volumes as whole slices (one case per
    slice, only ED and ES labelled), the ``ct`` layout ``num_volumes`` CT volumes with every slice; regions and
    slice counts apply to ``stack`` volumes only."""
    from ..data.datalist import load_datalist
    from .dataset import cine_case_name

    items = load_datalist(datalist, "training")
    if layout != "stack" and (regions or num_slices is not None):
        raise DataError(None, "regions and num_slices select slices of stacks: use layout 'stack' for them")
    if layout == "ct":
        manifest = draw_manifest(ct_volumes(items), num_volumes, seed=seed, phases=(CT_PHASE,))
    elif layout == "cine":
        manifest = draw_manifest(stack_volumes(items), num_volumes, None, None, seed)
        patients = {v["patient_id"] for v in manifest["volumes"].values()}
        manifest["volumes"] = {
            cine_case_name(item): {"patient_id": item["patient_id"], "annotated": item["labelled_frames"]}
            for item in items
            if item["patient_id"] in patients
        }
    else:
        manifest = draw_manifest(stack_volumes(items), num_volumes, regions, num_slices, seed)
    save_manifest(manifest, path)
    return manifest


def setting_name(num_volumes: int | None, regions: str | Iterable[str] | None, num_slices: int | None) -> str:
    """A short name of a sparsity setting for run names and tables, e.g. ``24v-M+B-6s`` or ``all``."""
    parts = [] if num_volumes is None else [f"{num_volumes}v"]
    letters = "+".join(k for k, v in REGIONS.items() if v in parse_regions(regions))
    parts += [letters] if letters else []
    parts += [] if num_slices is None else [f"{num_slices}s"]
    return "-".join(parts) or "all"
