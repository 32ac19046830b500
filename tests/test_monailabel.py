"""The bundles served by a real MONAI Label server (monaibundle sample app, offline) on loopback.

One server per module serves ``cmr2dt_sam`` and ``sam_mix`` as docs/monailabel.md describes: each bundle, with a
random-weight demo network whose output is pushed to foreground so that the masks are not empty, is packaged with
``samzoo package`` and unpacked into ``<app>/model``. The labels the REST infer API returns are compared with what
``monai.bundle`` inference with the repository's config writes for the same file with the same weights.

The same server serves ``sam_prompt`` as an interactive (DeepGrow-type) model under the folder name
``sam_prompt_deepgrow``, with LiteMedSAM's packaged weights and its own mask decoder as ``models/model.pt``: clicks
and a box on one slice of a synthetic volume are sent as 3D Slicer sends them.
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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from samzoo.bundle.package import package_bundle
from samzoo.engine.prompted_slices import prompted_label_map
from samzoo.networks.sam_prompt import SamPromptModel, to_sam_input
from samzoo.prompts import ClassPrompts

pytest.importorskip("monailabel", reason="MONAI Label is not installed (scripts/install.sh installs it)")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("cmr2dt_sam", "sam_mix")
INTERACTIVE = "sam_prompt_deepgrow"  # MONAI Label's monaibundle app serves a "deepgrow" folder as interactive
CINE_SHAPE = (80, 72, 12)  # (H, W, T): one slice's cine, time as the third axis
CINE_AFFINE = np.array([[0.0, -1.4, 0.0, 10.0], [1.4, 0.0, 0.0, -20.0], [0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
CT_AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])  # stored LPS-like, so the bundle's RAS reorientation is undone
DISK_SHAPE = (72, 64, 3)  # (H, W, D): a bright disk on slice 1
DISK_CENTRE, DISK_RADIUS = (36, 28), 14
STARTUP_TIMEOUT_S = 150.0


@dataclass
class Server:
    """A running MONAI Label server: its address, its app folder, the trained bundle folders it serves (as
    packaged), its studies folder and the log it writes."""

    url: str
    app: Path
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

    def infer(self, model: str, image: str, **params: object) -> bytes:
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
        if bundle.name == "cmr2dt_sam":
            network.head.bias.fill_(20.0)
        else:  # the liver logit is the classifier's last row, with one presence logit or two class logits
            network.classifier.fc.bias.zero_()
            network.classifier.fc.bias[-1] = 20.0
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
    nib.save(nib.Nifti1Image(_disk_volume(), CINE_AFFINE), studies / "disk.nii.gz")


def _disk() -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(DISK_SHAPE[0]), np.arange(DISK_SHAPE[1]), indexing="ij")
    return (rows - DISK_CENTRE[0]) ** 2 + (cols - DISK_CENTRE[1]) ** 2 < DISK_RADIUS**2


def _disk_volume() -> np.ndarray:
    """(H, W, D) noise, with a bright disk on slice 1."""
    volume = np.random.default_rng(1).normal(60, 8, DISK_SHAPE)
    volume[..., 1] += 140.0 * _disk()
    return volume.astype(np.float32)


def _write_interactive_bundle(bundle: Path) -> None:
    """A sam_prompt copy whose ``models/model.pt`` is LiteMedSAM's own mask decoder (MONAI Label serves a bundle
    only with a model file; a fine-tuned decoder takes its place the same way)."""
    shutil.copytree(REPO / "bundles" / "sam_prompt", bundle, ignore=shutil.ignore_patterns("runs", "*.pt"))
    (bundle / "models").mkdir(exist_ok=True)
    torch.save(SamPromptModel("lite_medsam").sam.mask_decoder.state_dict(), bundle / "models" / "model.pt")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("monailabel")
    subprocess.run(
        [sys.executable, "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle", "--output", str(root)],
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
    _write_interactive_bundle(trained / INTERACTIVE)
    with zipfile.ZipFile(package_bundle(trained / INTERACTIVE, root / "dist")) as archive:
        archive.extractall(app / "model")
    studies = root / "studies"
    _write_studies(studies)

    with _serve(app, studies, (*BUNDLES, INTERACTIVE), root / "server.log", trained) as served:
        yield served


@contextmanager
def _serve(
    app: Path, studies: Path, models: Sequence[str], log: Path, trained: Path, *options: str
) -> Iterator[Server]:
    """A MONAI Label server on a free loopback port for the app folder's ``models``, stopped on exit."""
    url = f"http://127.0.0.1:{_free_port()}"
    command = [
        sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
        "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
        "--conf", "models", ",".join(models), "--conf", "zoo_source", "github",
        "--conf", "skip_trainers", "true", "--conf", "sam2", "false", *options,
    ]  # fmt: skip
    served = Server(url=url, app=app, trained=trained, studies=studies, log=log)
    # CPU and the suite's thread count, so the server computes exactly as the in-process bundle inference does;
    # an unbuffered log, so failures can show it
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(served.log, "wb") as output:
        process = subprocess.Popen(command, cwd=log.parent, stdout=output, stderr=subprocess.STDOUT, env=env)
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
    assert set(info["models"]) == {*BUNDLES, INTERACTIVE}
    assert all(info["models"][name]["type"] == "segmentation" for name in BUNDLES)
    assert info["models"]["cmr2dt_sam"]["config"]["view"] == ["SAX", "LAX"]
    assert info["models"]["cmr2dt_sam"]["labels"] == {"myocardium": 2}  # MONAI Label leaves background out
    assert info["models"]["sam_mix"]["labels"] == {"liver": 1}
    assert info["trainers"] == {}
    assert info["datastore"]["total"] == 3


def test_cine_label_has_the_cine_geometry_and_matches_bundle_inference(server: Server, tmp_path: Path) -> None:
    label = _infer(server, "cmr2dt_sam", "cine", tmp_path)
    assert label.shape == CINE_SHAPE
    np.testing.assert_allclose(label.affine, CINE_AFFINE, atol=1e-4)
    mask = np.asarray(label.dataobj)
    roi = ConfigParser.load_config_file(REPO / "bundles" / "cmr2dt_sam" / "configs" / "train.json")["roi_size"]
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


def test_clicks_segment_the_slice_reusing_its_embedding(server: Server, tmp_path: Path) -> None:
    """Prompts as 3D Slicer sends them for a 2D DeepGrow model: the ROI as [i0, i1, j0, j1, k0, k1], clicks as voxel
    indices [i, j, k] on the annotated slice. LiteMedSAM was trained with boxes, so the annotator draws the box
    first and corrects with clicks."""
    info = server.get("/info/")["models"][INTERACTIVE]
    assert info["type"] == "deepgrow" and info["dimension"] == 2  # Slicer's Deepgrow panel, one slice per request
    roi = [18, 54, 10, 46, 1, 1]
    inside, rim, outside = [36, 28, 1], [25, 28, 1], [20, 12, 1]  # outside the disk, inside the box
    latencies, masks = [], []
    for prompts in (
        {"roi": roi, "foreground": [], "background": []},
        {"roi": roi, "foreground": [inside], "background": []},
        {"roi": roi, "foreground": [inside, rim], "background": [outside], "slice": 1},
    ):
        start = time.perf_counter()
        label = _infer(server, INTERACTIVE, "disk", tmp_path, label="disk", **prompts)
        latencies.append(time.perf_counter() - start)
        assert label.shape == DISK_SHAPE
        np.testing.assert_allclose(label.affine, CINE_AFFINE, atol=1e-4)
        mask = np.asarray(label.dataobj)
        assert set(np.unique(mask)) == {0, 1} and not mask[..., [0, 2]].any()  # only the annotated slice
        for i, j, k in prompts["foreground"]:
            assert mask[i, j, k] == 1
        for i, j, k in prompts["background"]:
            assert mask[i, j, k] == 0
        masks.append(mask[..., 1].astype(bool))
        dice = 2 * (masks[-1] & _disk()).sum() / (masks[-1].sum() + _disk().sum())
        assert dice > 0.8, dice
    print(f"latencies (s): first request {latencies[0]:.2f}, later {', '.join(f'{t:.2f}' for t in latencies[1:])}")
    log = server.log.read_text(errors="replace")
    assert log.count("embedding computed") == 1 and log.count("embedding from the cache") == 2, server.log_tail()
    assert max(latencies[1:]) < latencies[0]  # the first request pays the encoder

    # The served mask is the bundle's: the same decoder (models/model.pt) and rule computed here.
    model = SamPromptModel("lite_medsam", decoder_checkpoint=server.trained / INTERACTIVE / "models" / "model.pt")
    model.eval()
    image = torch.as_tensor(_disk_volume()[..., 1])
    embedding = model.embed(to_sam_input(image, model.input_spec)[None])
    # guidance order: foreground then background clicks, each row-major, as (x, y) = (j, i); the box (x0, y0, x1, y1)
    points = np.array([[28, 25], [28, 36], [12, 20]], np.float32)
    prompts = ClassPrompts(points, np.array([1, 1, 0]), np.array([10, 18, 46, 54], np.float32))
    expected = prompted_label_map(model, embedding, {1: prompts}, DISK_SHAPE[:2])
    np.testing.assert_array_equal(masks[-1], expected == 1)

    # Clicks on two slices without a slice index fail, and the log says why.
    with pytest.raises(urllib.error.HTTPError):
        server.infer(INTERACTIVE, "disk", foreground=[[36, 28, 0], [36, 28, 2]], background=[])
    assert server.logged("prompt one slice"), server.log_tail()


@pytest.fixture(scope="module")
def threaded_server(server: Server) -> Iterator[Server]:
    """The same app folder's cmr2dt_sam served with the infer endpoint off the event loop (docs/monailabel.md)."""
    log = server.log.with_name("threaded_server.log")
    options = ("--uvicorn_app", "samzoo.monailabel_app:app")
    with _serve(server.app, server.studies, ("cmr2dt_sam",), log, server.trained, *options) as served:
        yield served


@dataclass
class Burst:
    """What ``BURST`` concurrent cine infer requests got: their labels and latencies, and the latencies of the
    ``/info/`` requests sent one after another while they ran."""

    labels: list[np.ndarray]
    latencies: list[float]
    info_latencies: list[float]


BURST = 8


def _burst(server: Server, tmp_path: Path) -> Burst:
    def infer(index: int) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        label = _infer(server, "cmr2dt_sam", "cine", tmp_path / str(index))
        return np.asarray(label.dataobj), time.perf_counter() - start

    for index in range(BURST):
        (tmp_path / str(index)).mkdir(parents=True)
    info_latencies = []
    with ThreadPoolExecutor(BURST) as pool:
        futures = [pool.submit(infer, index) for index in range(BURST)]
        while not all(future.done() for future in futures):
            start = time.perf_counter()
            server.get("/info/")
            info_latencies.append(time.perf_counter() - start)
            time.sleep(0.05)  # an annotator's client polling, leaving the cores to the inference
        results = [future.result() for future in futures]
    return Burst([label for label, _ in results], [latency for _, latency in results], info_latencies)


def test_threaded_server_answers_a_burst_and_info_meanwhile(server: Server, threaded_server: Server, tmp_path: Path):
    """Eight annotators at once: every request is answered with the single request's mask, each as soon as its own
    inference ends, and /info/ answers during the burst; MONAI Label's default app holds all of them until the
    burst ends."""
    single = np.asarray(_infer(threaded_server, "cmr2dt_sam", "cine", tmp_path).dataobj)
    assert (single == 2).any()
    bursts = {}
    for name, served in (("default", server), ("threaded", threaded_server)):
        bursts[name] = burst = _burst(served, tmp_path / name)
        for label in burst.labels:
            np.testing.assert_array_equal(label, single)
        print(
            f"{name}: {BURST} concurrent requests answered after {min(burst.latencies):.2f}-"
            f"{max(burst.latencies):.2f} s; {len(burst.info_latencies)} /info/ during the burst, slowest "
            f"{max(burst.info_latencies):.2f} s"
        )
    threaded, default = bursts["threaded"], bursts["default"]
    # one inference at a time, answered as each ends: the first request waits for one inference, not for eight
    assert min(threaded.latencies) < 0.5 * max(threaded.latencies)
    assert len(threaded.info_latencies) > 1 and max(threaded.info_latencies) < 0.5 * max(threaded.latencies)
    # the default app answers nothing until the whole burst is done
    assert min(default.latencies) > 0.8 * max(default.latencies)
    assert max(default.info_latencies) > 2 * max(threaded.info_latencies)
