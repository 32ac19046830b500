"""Patient-level splits and datalist files (samzoo.data.datalist)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist
from samzoo.data.datalist import (
    SPLITS,
    build_datalist,
    datalist_info,
    ensure_outside,
    load_datalist,
    split_patients,
    write_datalist,
)
from samzoo.errors import DataError

PATIENTS = [f"p{i:02d}" for i in range(20)]


def test_every_patient_lands_in_exactly_one_split_with_rounded_sizes():
    splits = split_patients(PATIENTS, seed=3, val_fraction=0.1, test_fraction=0.2)
    assert sorted(p for s in SPLITS for p in splits[s]) == PATIENTS
    assert [len(splits[s]) for s in SPLITS] == [14, 2, 4]


def test_split_is_deterministic_for_a_seed_and_ignores_input_order_and_duplicates():
    shuffled = PATIENTS[::-1] + PATIENTS[:5]
    random.Random(0).shuffle(shuffled)
    assert split_patients(PATIENTS, seed=7) == split_patients(shuffled, seed=7)
    assert split_patients(PATIENTS, seed=7) != split_patients(PATIENTS, seed=8)


def test_explicit_cases_win_and_switch_off_their_fraction():
    splits = split_patients(PATIENTS, seed=0, test_fraction=0.5, test_cases=["p03", "p11"], val_cases=["p00"])
    assert splits["test"] == ["p03", "p11"]
    assert splits["validation"] == ["p00"]
    assert len(splits["training"]) == 17


def test_naming_every_patient_makes_an_evaluation_only_datalist(tmp_path):
    splits = split_patients(PATIENTS, test_cases=PATIENTS[2:], val_cases=PATIENTS[:2])
    assert splits == {"test": PATIENTS[2:], "validation": PATIENTS[:2], "training": []}
    items = [{"image": f"{p}.nii.gz", "patient_id": p} for p in PATIENTS]
    path = write_datalist(build_datalist(items, split_patients(PATIENTS, test_cases=PATIENTS)), tmp_path)
    assert len(load_datalist(path, "test")) == 20
    with pytest.raises(DataError, match="split 'training' is empty") as err:
        load_datalist(path, "training")
    assert err.value.path == path


def test_fraction_rounds_to_the_nearest_patient():
    # 7 patients: 0.2 * 7 = 1.4 -> 1 test patient, 0.1 * 7 = 0.7 -> 1 validation patient
    splits = split_patients([f"q{i}" for i in range(7)], seed=1)
    assert [len(splits[s]) for s in SPLITS] == [5, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"val_fraction \+ test_fraction"),
        ({"test_cases": ["nobody"]}, "'nobody' is not among"),
        ({"test_cases": ["p01"], "val_cases": ["p01"]}, "both test and validation"),
        ({"test_fraction": 0.6, "val_fraction": 0.38}, "no patient left for training"),
    ],
)
def test_bad_split_settings_raise(kwargs, message):
    with pytest.raises(DataError, match=message):
        split_patients(PATIENTS, **kwargs)


def _items() -> list[dict]:
    return [
        {"image": f"images/{p}_s{k}.nii.gz", "label": f"labels/{p}_s{k}.nii.gz", "patient_id": p}
        for p in ("a", "b", "c")
        for k in range(2)
    ]


def test_build_datalist_groups_items_by_patient_and_keeps_info():
    splits = {"training": ["a"], "validation": ["b"], "test": ["c"]}
    datalist = build_datalist(_items(), splits, dataset="demo", seed=4)
    assert datalist["dataset"] == "demo" and datalist["seed"] == 4
    assert {i["patient_id"] for i in datalist["training"]} == {"a"}
    assert [i["image"] for i in datalist["test"]] == ["images/c_s0.nii.gz", "images/c_s1.nii.gz"]
    assert datalist["num_patients"] == {"training": 1, "validation": 1, "test": 1}


def test_written_datalist_loads_with_paths_relative_to_its_folder(tmp_path):
    splits = {"training": ["a", "b"], "validation": [], "test": ["c"]}
    data = build_datalist(_items(), splits, dataset="demo")
    data["test"][0]["label"] = None
    path = write_datalist(data, tmp_path / "out")
    assert path == (tmp_path / "out" / "datalist.json").resolve()
    assert sorted(p.name for p in path.parent.iterdir()) == ["datalist.json"]  # no temporary file left

    test = load_datalist(path, "test")
    assert test[0]["image"] == str(path.parent / "images/c_s0.nii.gz")
    assert test[0]["label"] is None
    assert test[1]["label"] == str(path.parent / "labels/c_s1.nii.gz")
    assert datalist_info(path) == {"dataset": "demo", "num_patients": {"training": 2, "validation": 0, "test": 1}}

    monai_items = load_decathlon_datalist(path, data_list_key="training")
    assert [i["image"] for i in monai_items] == [i["image"] for i in load_datalist(path, "training")]


def test_load_datalist_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="datalist not found") as err:
        load_datalist(tmp_path / "missing.json")
    assert err.value.path == tmp_path / "missing.json"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_datalist(bad)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"training": []}))
    with pytest.raises(DataError, match=r"no split 'test' \(found: \['training'\]\)"):
        load_datalist(partial, "test")


def test_destination_inside_source_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for dst in (src, src / "prepared", src / "a" / ".." / "b"):
        with pytest.raises(DataError, match="inside the source"):
            ensure_outside(dst, src)
    ensure_outside(tmp_path / "prepared", src)
    ensure_outside(tmp_path / "src_prepared", src)  # a sibling sharing the name prefix is outside
    with pytest.raises(DataError, match="inside the source"):
        write_datalist({"training": []}, src / "out", src)
    assert not (src / "out").exists()


def test_resolved_paths_see_through_symlinks(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    link = tmp_path / "link"
    link.symlink_to(src)
    with pytest.raises(DataError):
        ensure_outside(link / "prepared", Path(src))
