"""Bundle archives: what goes in, and that an archive runs where only its metadata's packages are installed."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from isolated_env import isolated_env, run_python
from samzoo.bundle.package import (
    VENDORED,
    package_bundle,
    packaged_metadata,
    resolve_file_references,
    vendor_config,
)
from samzoo.data.datalist import load_datalist
from samzoo.data.demo import write_demo
from samzoo.errors import DataError

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
TINY = {"roi_size": [32, 32], "num_phases": 6, "batch_size": 2, "num_workers": 0, "max_epochs": 1, "val_interval": 1}


def _copy_bundle(name: str, dst: Path) -> Path:
    """A copy of a repository bundle without run outputs or checkpoints, so tests never touch the working tree, next
    to a copy of the bundle it builds on (metadata ``samzoo_base_bundle``), if any."""
    copy = Path(
        shutil.copytree(BUNDLES / name, dst / name, ignore=shutil.ignore_patterns("runs", "*.pt", "__pycache__"))
    )
    base = json.loads((copy / "configs" / "metadata.json").read_text()).get("samzoo_base_bundle")
    if base is not None and not (dst / base).exists():
        _copy_bundle(base, dst)
    return copy


def test_vendor_config_rewrites_code_only():
    config = {
        "bundle_root": "bundles/x",
        "imports": ["$import samzoo", "$import samzoo.data.sources", "$from samzoo.losses import X", "$import torch"],
        "net": {"_target_": "samzoo.networks.cmr2dt_sam.CMR2DTSAM", "note": "samzoo.networks stays as text"},
        "items": "$samzoo.data.datalist.load_datalist(@datalist, 'training')",
        "other": "$mysamzoo.f() + samzoo_like",
    }
    out = vendor_config(config)
    assert out["bundle_root"] == "."
    assert out["imports"] == [
        f"$import {VENDORED} as samzoo",
        f"$import {VENDORED}.data.sources",
        f"$from {VENDORED}.losses import X",
        "$import torch",
    ]
    assert out["net"] == {"_target_": f"{VENDORED}.networks.cmr2dt_sam.CMR2DTSAM", "note": config["net"]["note"]}
    assert out["items"] == config["items"]
    assert out["other"] == config["other"]


def test_packaged_metadata_drops_samzoo():
    meta = {"version": "1.2.0", "required_packages_version": {"samzoo": "0.1.0", "nibabel": "5.4.2"}}
    out = packaged_metadata(meta)
    assert out["required_packages_version"] == {"nibabel": "5.4.2"}
    assert out["vendored_packages_version"]["samzoo"]
    assert meta["required_packages_version"]["samzoo"] == "0.1.0"


def test_archive_layout_and_refusals(tmp_path):
    src = _copy_bundle("cmr2dt_sam", tmp_path)
    (src / "runs").mkdir()
    (src / "runs" / "log.txt").write_text("run output")
    (src / "models" / "checkpoint_epoch=3.pt").write_bytes(b"optimizer state")
    with pytest.raises(DataError, match=r"model\.pt"):
        package_bundle(src, tmp_path / "out")

    recipe = package_bundle(src, tmp_path / "out", with_model=False)
    version = json.loads((src / "configs" / "metadata.json").read_text())["version"]
    assert recipe.name == f"cmr2dt_sam_v{version}.zip"
    names = zipfile.ZipFile(recipe).namelist()
    assert {n.split("/", 1)[0] for n in names} == {"cmr2dt_sam"}
    for required in ("configs/metadata.json", "configs/inference.json", "LICENSE", "docs/README.md", "large_files.yml"):
        assert f"cmr2dt_sam/{required}" in names
    assert "cmr2dt_sam/scripts/samzoo/networks/cmr2dt_sam.py" in names
    assert "cmr2dt_sam/models/text_prompts/sax.npy" in names
    assert not [n for n in names if n.endswith(".pt") or "/runs/" in n or "__pycache__" in n]
    packaged = json.loads(zipfile.ZipFile(recipe).read("cmr2dt_sam/configs/train.json"))
    assert packaged["bundle_root"] == "."
    assert (
        "samzoo"
        not in json.loads(zipfile.ZipFile(recipe).read("cmr2dt_sam/configs/metadata.json"))["required_packages_version"]
    )

    before = recipe.read_bytes()
    (src / "models" / "model.pt").write_bytes(b"weights")
    with pytest.raises(DataError, match="already exists"):
        package_bundle(src, tmp_path / "out")
    assert recipe.read_bytes() == before
    full = package_bundle(src, tmp_path / "out", overwrite=True)
    assert zipfile.ZipFile(full).read("cmr2dt_sam/models/model.pt") == b"weights"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [full.name]
    assert full.stat().st_mode & 0o044  # readable by others as umask allows, not mkstemp's private mode


def test_references_to_other_configs_are_resolved_from_the_bundle_itself(tmp_path):
    """inference.json takes the architecture from train.json by ``%`` references, which MONAI resolves from the
    working directory; the archive holds the values of the packaged bundle's own train.json instead."""
    src = _copy_bundle("cmr2dt_sam", tmp_path)
    train = json.loads((src / "configs" / "train.json").read_text())
    train["roi_size"], train["num_phases"] = [96, 96], 9  # differ from the repository's train.json
    (src / "configs" / "train.json").write_text(json.dumps(train))
    raw = json.loads((src / "configs" / "inference.json").read_text())
    assert raw["roi_size"].startswith("%") and raw["text_prompt_files"].startswith("%")
    archive = zipfile.ZipFile(package_bundle(src, tmp_path / "out", with_model=False))
    packaged = json.loads(archive.read("cmr2dt_sam/configs/inference.json"))
    assert packaged["roi_size"] == [96, 96] and packaged["num_phases"] == 9
    assert packaged["text_prompt_files"] == train["text_prompt_files"]
    assert not [k for k, v in packaged.items() if isinstance(v, str) and v.startswith("%")]
    with pytest.raises(DataError, match="outside the bundle's configs folder"):
        resolve_file_references({"backbone": "%elsewhere/train.json#backbone"}, src / "configs")
    assert resolve_file_references("%#backbone", src / "configs") == "%#backbone"  # within one file: MONAI's own


def test_unknown_bundle_is_named(tmp_path):
    with pytest.raises(DataError, match="not_a_bundle"):
        package_bundle("not_a_bundle", tmp_path, bundles_root=BUNDLES)


def _monai_bundle(python: Path, cwd: Path, command: str, timeout: float = 900, **args) -> None:
    """``python -m monai.bundle COMMAND --key value ...`` in the isolated environment; strings pass as they are,
    other values as JSON."""
    flags = [x for k, v in args.items() for x in (f"--{k}", v if isinstance(v, str) else json.dumps(v))]
    done = run_python(python, ["-m", "monai.bundle", command, *flags], cwd, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server publishing tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_archive_trains_and_infers_without_samzoo(tmp_path, http_server):
    """The recipe package trains in an environment holding only the metadata's packages; the trained package,
    published over HTTP and fetched with ``monai.bundle download``, segments a cine there."""
    meta = json.loads((BUNDLES / "cmr2dt_sam" / "configs" / "metadata.json").read_text())
    packages = ["monai", "torch", "numpy", *(k for k in meta["required_packages_version"] if k != "samzoo")]
    python = isolated_env(tmp_path / "venv", packages)
    probe = run_python(python, ["-c", "import samzoo"], tmp_path, timeout=60)
    assert probe.returncode != 0 and "No module named 'samzoo'" in probe.stderr

    datalist = write_demo("cine", tmp_path / "demo", cases=6, seed=1)
    recipe = package_bundle(_copy_bundle("cmr2dt_sam", tmp_path / "src"), tmp_path / "dist", with_model=False)
    with zipfile.ZipFile(recipe) as zf:
        zf.extractall(tmp_path / "trained")
    bundle = tmp_path / "trained" / "cmr2dt_sam"
    _monai_bundle(python, bundle, "run", config_file="configs/train.json", dataset_dir=str(datalist.parent), **TINY)
    assert (bundle / "models" / "model.pt").is_file()

    # Publish the trained bundle as a release archive and fetch it as a user would.
    shutil.rmtree(bundle / "runs")
    trained = package_bundle(bundle, http_server[0])
    fetched = tmp_path / "fetched"
    _monai_bundle(
        python, tmp_path, "download", name="cmr2dt_sam", url=f"{http_server[1]}/{trained.name}", bundle_dir=str(fetched)
    )
    installed = fetched / "cmr2dt_sam"
    assert (installed / "models" / "model.pt").read_bytes() == (bundle / "models" / "model.pt").read_bytes()

    item = load_datalist(datalist, "test")[0]
    _monai_bundle(
        python,
        installed,
        "run",
        config_file="configs/inference.json",
        output_dir=str(tmp_path / "pred"),
        input_files=[item["image"]],
        roi_size=TINY["roi_size"],
    )
    # Only the mask is left in the output folder: the per-slice predictions stay in a scratch folder, removed.
    masks = [p for p in (tmp_path / "pred").rglob("*") if p.is_file()]
    assert [p.name for p in masks] == [Path(item["image"]).name.replace(".nii.gz", "_seg.nii.gz")]
    image, mask = nib.load(item["image"]), nib.load(str(masks[0]))
    assert mask.shape == image.shape
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 2}


CHECK_TRAIN = """
import sys
from monai.bundle import ConfigWorkflow
workflow = ConfigWorkflow(config_file="configs/train.json", workflow_type="train", logging_file=False,
                          output_dir=sys.argv[1], ckpt_dir=sys.argv[1] + "/models")
workflow.initialize()
assert workflow.check_properties() == [], workflow.check_properties()
print(type(workflow.network_def).__module__)
"""


def _bundles_to_build() -> list:
    """Every bundle; one whose network exists only after training (nnU-Net plans it for the dataset, metadata
    ``network_from_training``) has no ``network_def`` for this check to build: tests/test_nnunet.py trains it."""
    names = sorted(p.parent.parent.name for p in BUNDLES.glob("*/configs/metadata.json"))
    return [
        pytest.param(name, marks=pytest.mark.skip(reason=meta["network_from_training"]))
        if "network_from_training" in (meta := json.loads((BUNDLES / name / "configs" / "metadata.json").read_text()))
        else name
        for name in names
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", _bundles_to_build())
def test_every_archive_builds_its_training_without_samzoo(tmp_path, name):
    """Each packaged bundle resolves its whole training workflow (demo data, datasets, network, trainer) in an
    environment holding only the packages its metadata lists."""
    archive = package_bundle(_copy_bundle(name, tmp_path / "src"), tmp_path / "dist", with_model=False)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unpacked")
    meta = json.loads((tmp_path / "unpacked" / name / "configs" / "metadata.json").read_text())
    python = isolated_env(tmp_path / "venv", ["monai", "torch", "numpy", *meta["required_packages_version"]])
    done = run_python(python, ["-c", CHECK_TRAIN, str(tmp_path / "out")], tmp_path / "unpacked" / name, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    # samzoo's networks run from the archive's vendored copy; a bundle may also use MONAI's own
    assert done.stdout.strip().splitlines()[-1].startswith(("scripts.samzoo.networks", "monai.networks"))
