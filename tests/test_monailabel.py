"""The bundles served by a real MONAI Label server (monaibundle sample app, offline) on loopback.

One server per module serves ``cmr2dt_sam`` and ``sam_mix`` as docs/monailabel.md describes: each bundle, with a
random-weight demo network whose output is pushed to foreground so that the masks are not empty, is packaged with
``samzoo package`` and unpacked into ``<app>/model``. The labels the REST infer API returns are compared with what
``monai.bundle`` inference with the repository's config writes for the same file with the same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from samzoo.bundle.package import package_bundle

pytest.importorskip("monailabel", reason="MONAI Label is not installed (scripts/install.sh installs it)")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("cmr2dt_sam", "sam_mix")
CINE_SHAPE = (80, 72, 12)  # (H, W, T): one slice's cine, time as the third axis
CINE_AFFINE = np.array([[0.0, -1.4, 0.0, 10.0], [1.4, 0.0, 0.0, -20.0], [0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
CT_AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])  # stored LPS-like, so the bundle's RAS reorientation is undone
STARTUP_TIMEOUT_S = 150.0


@dataclass
class Server:
    """A running MONAI Label server: its address, the trained bundle folders it serves (as packaged), its studies
    folder and the log it writes."""

    url: str
    trained: Path
    studies: Path
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def logged(self, text: str, timeout: float = 30.0) -> bool:
        """Whether ``text`` appears in the log within ``timeout`` seconds (errors are logged after the response)."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return json.loads(response.read())

    def infer(self, model: str, image: str, **params: str) -> bytes:
        """POST /infer/<model> for a datastore image and return the label file; request params go in the
        ``params`` form field."""
        query = urllib.parse.urlencode({"image": image, "output": "image"})
        body = urllib.parse.urlencode({"params": json.dumps(params)}).encode()
        request = urllib.request.Request(f"{self.url}/infer/{model}?{query}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.read()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_model(bundle: Path) -> None:
    """``models/model.pt`` for a bundle copy: the inference config's network with random weights, its output biased
    to foreground (every cine pixel in the crop is myocardium; every CT slice is classed liver and goes to SAM)."""
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    with torch.no_grad():
        bias = network.head.bias if bundle.name == "cmr2dt_sam" else network.classifier.fc.bias
        bias.fill_(20.0)
    (bundle / "models").mkdir(exist_ok=True)
    torch.save(network.state_dict(), bundle / "models" / "model.pt")


def _write_studies(studies: Path) -> None:
    """A cine (H, W, T) with a beating disk and a CT volume with a bright block, in non-trivial geometries."""
    studies.mkdir(parents=True)
    rng = np.random.default_rng(0)
    height, width, frames = CINE_SHAPE
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    radius = 10 + 3 * np.sin(2 * np.pi * np.arange(frames) / frames)
    cine = ((rows - 40) ** 2 + (cols - 30) ** 2)[..., None] < radius**2
    cine = 200.0 * cine + rng.normal(0, 5, CINE_SHAPE)
    nib.save(nib.Nifti1Image(cine.astype(np.float32), CINE_AFFINE), studies / "cine.nii.gz")
    ct = np.full((48, 40, 10), -1000.0)
    ct[8:40, 6:34] = 40.0
    ct[12:30, 10:26, 2:8] = 120.0
    nib.save(nib.Nifti1Image(ct.astype(np.int16), CT_AFFINE), studies / "ct.nii.gz")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("monailabel")
    monailabel = [sys.executable, "-m", "monailabel.main"]
    subprocess.run(
        [*monailabel, "apps", "--download", "--name", "monaibundle", "--output", str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    app = root / "monaibundle"
    trained = root / "trained"
    for name in BUNDLES:
        copy = trained / name
        shutil.copytree(REPO / "bundles" / name, copy, ignore=shutil.ignore_patterns("runs", "eval", "*.pt"))
        _write_model(copy)
        with zipfile.ZipFile(package_bundle(copy, root / "dist")) as archive:
            archive.extractall(app / "model")
    studies = root / "studies"
    _write_studies(studies)

    url = f"http://127.0.0.1:{_free_port()}"
    command = [
        *monailabel, "start_server", "--app", str(app), "--studies", str(studies),
        "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
        "--conf", "models", ",".join(BUNDLES), "--conf", "zoo_source", "github",
        "--conf", "skip_trainers", "true", "--conf", "sam2", "false",
    ]  # fmt: skip
    served = Server(url=url, trained=trained, studies=studies, log=root / "server.log")
    # CPU and the suite's thread count, so the server computes exactly as the in-process bundle inference does;
    # an unbuffered log, so failures can show it
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(served.log, "wb") as log:
        process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        started = time.monotonic()
        while True:
            try:
                served.get("/info/")
                break
            except (urllib.error.URLError, ConnectionError):
                pass
            if process.poll() is not None or time.monotonic() - started > STARTUP_TIMEOUT_S:
                pytest.fail(f"MONAI Label did not come up on {url}; server log:\n{served.log_tail()}")
            time.sleep(0.5)
        print(f"MONAI Label answered on {url} after {time.monotonic() - started:.1f} s")
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _infer(server: Server, model: str, image: str, tmp_path: Path, **params: str) -> nib.Nifti1Image:
    """The label the infer API returns, read back as NIfTI; a failed request shows the server log."""
    try:
        data = server.infer(model, image, **params)
    except urllib.error.HTTPError as err:
        raise AssertionError(f"infer {model} on {image} failed ({err}); server log:\n{server.log_tail()}") from err
    path = tmp_path / f"{model}_{image}_label.nii.gz"
    path.write_bytes(data)
    return nib.load(path)


def _bundle_inference(bundle: Path, image: Path, output_dir: Path) -> nib.Nifti1Image:
    """``monai.bundle`` inference with the repository's config and the weights of the bundle folder ``bundle`` on
    ``image``, in float32 on the CPU like the server; returns the mask it writes."""
    configs = REPO / "bundles" / bundle.name / "configs"
    workflow = ConfigWorkflow(
        config_file=str(configs / "inference.json"),
        meta_file=str(configs / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        bundle_root=str(bundle),
        input_files=[str(image)],
        output_dir=str(output_dir),
        device="$torch.device('cpu')",
        amp=False,
    )
    workflow.initialize()
    workflow.run()
    outputs = list(output_dir.rglob(f"{image.name.removesuffix('.nii.gz')}_*.nii.gz"))
    assert len(outputs) == 1, outputs
    return nib.load(outputs[0])


def test_info_lists_both_bundles_with_the_view_option(server: Server) -> None:
    info = server.get("/info/")
    assert set(info["models"]) == set(BUNDLES)
    assert all(info["models"][name]["type"] == "segmentation" for name in BUNDLES)
    assert info["models"]["cmr2dt_sam"]["config"]["view"] == ["SAX", "LAX"]
    assert info["models"]["cmr2dt_sam"]["labels"] == {"myocardium": 2}  # MONAI Label leaves background out
    assert info["models"]["sam_mix"]["labels"] == {"liver": 1}
    assert info["trainers"] == {}
    assert info["datastore"]["total"] == 2


def test_cine_label_has_the_cine_geometry_and_matches_bundle_inference(server: Server, tmp_path: Path) -> None:
    label = _infer(server, "cmr2dt_sam", "cine", tmp_path)
    assert label.shape == CINE_SHAPE
    np.testing.assert_allclose(label.affine, CINE_AFFINE, atol=1e-4)
    mask = np.asarray(label.dataobj)
    roi = ConfigParser.load_config_file(REPO / "bundles" / "cmr2dt_sam" / "configs" / "inference.json")["roi_size"]
    # the whole heart crop is myocardium (label 2) in every frame, everything outside it background
    assert set(np.unique(mask)) == {0, 2}
    assert (mask == 2).sum() == roi[0] * roi[1] * CINE_SHAPE[2]
    expected = _bundle_inference(server.trained / "cmr2dt_sam", server.studies / "cine.nii.gz", tmp_path / "b")
    np.testing.assert_array_equal(mask, np.asarray(expected.dataobj))

    # The view prompt is a request option: LAX is served, an unknown view fails and the log says why.
    lax = _infer(server, "cmr2dt_sam", "cine", tmp_path, view="LAX")
    assert lax.shape == CINE_SHAPE
    with pytest.raises(urllib.error.HTTPError) as info:
        server.infer("cmr2dt_sam", "cine", view="2CH")
    assert info.value.code == 500
    assert server.logged("unknown view '2CH'"), server.log_tail()


def test_ct_label_has_the_ct_geometry_and_matches_bundle_inference(server: Server, tmp_path: Path) -> None:
    label = _infer(server, "sam_mix", "ct", tmp_path)
    source = nib.load(server.studies / "ct.nii.gz")
    assert label.shape == source.shape
    np.testing.assert_allclose(label.affine, CT_AFFINE, atol=1e-4)
    mask = np.asarray(label.dataobj)
    assert set(np.unique(mask)) == {0, 1}
    expected = _bundle_inference(server.trained / "sam_mix", server.studies / "ct.nii.gz", tmp_path / "b")
    np.testing.assert_array_equal(mask, np.asarray(expected.dataobj))
