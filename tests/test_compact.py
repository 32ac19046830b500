"""Compact cine copies: uint8 scaling by hand, frame choice, what the cine pipeline sees, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from samzoo.data.compact import compact_cine, kept_frames, to_uint8
from samzoo.data.datalist import load_datalist
from samzoo.data.demo import write_demo
from samzoo.data.nifti import load_nifti
from samzoo.errors import DataError
from samzoo.transforms.cine import cine_transforms

ITEM = {"num_frames": 20, "ed_frame": 2, "es_frame": 9, "labelled_frames": [2, 9]}


@pytest.fixture(scope="module")
def demo_cine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo("cine", tmp_path_factory.mktemp("demo"), cases=2, seed=5)


def test_to_uint8_by_hand() -> None:
    np.testing.assert_array_equal(to_uint8(np.array([-10, 0, 10], dtype=np.int16)), [0, 128, 255])
    np.testing.assert_array_equal(to_uint8(np.full((2, 2), 7.5)), np.zeros((2, 2)))
    assert to_uint8(np.array([0.0, 1.0])).dtype == np.uint8


def test_kept_frames() -> None:
    assert kept_frames(ITEM, "all") == list(range(20))
    assert kept_frames(ITEM, "labelled") == [2, 9]
    phases = kept_frames(ITEM, 5)
    assert len(phases) == 5 and {2, 9} <= set(phases) and phases == sorted(phases)
    assert kept_frames(ITEM, 30) == list(range(20))
    for bad in ("some", 1, True):
        with pytest.raises(DataError, match="frames must be"):
            kept_frames(ITEM, bad)


def test_pipeline_sees_the_same_clip_from_a_compact_copy(demo_cine: Path, tmp_path: Path) -> None:
    path = compact_cine(demo_cine, tmp_path / "compact", frames=15)
    original, compact = load_datalist(demo_cine, "training"), load_datalist(path, "training")
    assert [i["case_id"] for i in original] == [i["case_id"] for i in compact]
    pipeline = cine_transforms(train=False, num_phases=15, roi_size=(64, 64))
    for source, item in zip(original, compact, strict=True):
        assert item["num_frames"] == 15 and item["source_frames"] == kept_frames(source, 15)
        assert item["source_frames"][item["ed_frame"]] == source["ed_frame"]
        assert item["source_frames"][item["es_frame"]] == source["es_frame"]
        assert load_nifti(item["image"], dtype=None).array.dtype == np.uint8
        expected, got = pipeline(dict(source)), pipeline(dict(item))
        np.testing.assert_array_equal(got["label"], expected["label"])
        np.testing.assert_array_equal(got["frame_mask"], expected["frame_mask"])
        # each cine is quantised over all its frames, the pipeline rescales the clip: at most ~1.5 grey levels off
        assert float((got["image"] - expected["image"]).abs().max()) < 1.5 / 255 * 2


def test_labelled_frames_only(demo_cine: Path, tmp_path: Path) -> None:
    path = compact_cine(demo_cine, tmp_path / "compact", frames="labelled")
    for item in load_datalist(path, "training"):
        assert item["num_frames"] == 2 and item["labelled_frames"] == [0, 1] and item["cine"] is False
        label = load_nifti(item["label"], dtype=None).array
        assert label.shape[-1] == 2 and label.any() == item["labelled"]
    info = json.loads(path.read_text())
    assert info["frames"] == "labelled" and info["compacted_from"] == str(demo_cine.resolve())


def test_refuses_to_overwrite_or_write_into_the_source(demo_cine: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="inside the source"):
        compact_cine(demo_cine, demo_cine.parent / "compact")
    (tmp_path / "datalist.json").write_text("{}")
    with pytest.raises(DataError, match="already exists"):
        compact_cine(demo_cine, tmp_path)


def test_refuses_ct(tmp_path: Path) -> None:
    datalist = tmp_path / "ct" / "datalist.json"
    datalist.parent.mkdir()
    item = {"image": "a.nii.gz", "label": "b.nii.gz", "num_slices": 10}
    datalist.write_text(json.dumps({"training": [item], "validation": [], "test": []}))
    with pytest.raises(DataError, match="not a cine datalist"):
        compact_cine(datalist, tmp_path / "out")


def test_command_line_takes_a_number_of_frames(demo_cine: Path, tmp_path: Path) -> None:
    args = ["compact", "--datalist", str(demo_cine), "--dst", str(tmp_path / "c"), "--frames", "4"]
    out = subprocess.run([sys.executable, "-m", "samzoo.cli", *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert {item["num_frames"] for item in load_datalist(tmp_path / "c" / "datalist.json")} == {4}
