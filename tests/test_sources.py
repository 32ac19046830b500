import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from samzoo.data.sources import resolve_datalist
from samzoo.errors import DataError


def test_prepared_folder_or_file(tmp_path):
    (tmp_path / "datalist.json").write_text(json.dumps({"training": []}))
    assert resolve_datalist(tmp_path, "cine", tmp_path / "demo") == str(tmp_path / "datalist.json")
    assert resolve_datalist(tmp_path / "datalist.json", "cine", tmp_path / "demo") == str(tmp_path / "datalist.json")


def test_missing_prepared_dataset_names_the_path_and_writes_nothing(tmp_path):
    with pytest.raises(DataError, match="samzoo prepare"):
        resolve_datalist(tmp_path / "nowhere", "cine", tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


def test_demo_is_written_once_then_reused(tmp_path, monkeypatch):
    calls = []

    def fake_write_demo(kind, dst, **_):
        calls.append(kind)
        (dst / "prepared").mkdir(parents=True)
        (dst / "prepared" / "datalist.json").write_text("{}")

    monkeypatch.setattr("samzoo.data.demo.write_demo", fake_write_demo)
    first = resolve_datalist("", "cine", tmp_path / "demo")
    second = resolve_datalist(None, "cine", tmp_path / "demo")
    assert first == second == str(tmp_path / "demo" / "prepared" / "datalist.json")
    assert calls == ["cine"]


def test_processes_starting_on_a_missing_demo_write_it_once(tmp_path, monkeypatch):
    """torchrun starts every rank on the same config: only one may write the demo, the others read it."""
    writers, active = [], []

    def slow_write_demo(kind, dst, **_):
        active.append(kind)
        writers.append(len(active))  # how many were writing at once
        time.sleep(0.3)
        (dst / "prepared").mkdir(parents=True)
        (dst / "prepared" / "datalist.json").write_text("{}")
        active.pop()

    monkeypatch.setattr("samzoo.data.demo.write_demo", slow_write_demo)
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: resolve_datalist("", "cine", tmp_path / "demo"), range(4)))
    assert paths == [str(tmp_path / "demo" / "prepared" / "datalist.json")] * 4
    assert writers == [1]
