"""MONAI's offline bundle checks on every bundle, and that they catch what they are for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from samzoo.bundle.verify import check_metadata, export_torchscript, fake_inputs, inference_parser, verify_bundle

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
NAMES = sorted(p.parent.parent.name for p in BUNDLES.glob("*/configs/metadata.json"))


@pytest.mark.parametrize("name", NAMES)
def test_metadata_follows_the_specification(name):
    meta = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
    check_metadata(BUNDLES / name / "configs" / "metadata.json")
    assert meta["version"] in meta["changelog"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.pop("task"), "task"),
        (lambda m: m.update(version="1.0"), "1.0"),
        (lambda m: m["network_data_format"]["inputs"]["image"].pop("dtype"), "dtype"),
    ],
)
def test_metadata_check_names_the_problem(tmp_path, change, field):
    meta = json.loads((BUNDLES / "cmr2dt_sam" / "configs" / "metadata.json").read_text())
    change(meta)
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=field):
        check_metadata(path)


def test_torchscript_export_matches_the_network(tmp_path):
    bundle = BUNDLES / "cmr2dt_sam"
    parser = inference_parser(bundle)
    net = parser.get_parsed_content("network_def").eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    assert export_torchscript(bundle, tmp_path / "model.pt", tmp_path / "model.ts", n=8, frames=15) == "traced"
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    image, extra = fake_inputs(parser, n=8, frames=6)  # another number of frames than the export used
    image = torch.cat([image, image.flip(-1)])
    view = torch.tensor([[0], [1]])
    with torch.no_grad():
        torch.testing.assert_close(scripted(image, view), net(image, view), atol=1e-5, rtol=1e-4)
    assert set(extra) == {"view"}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_bundle_passes_the_checks(name):
    report = verify_bundle(BUNDLES / name)
    assert report["metadata"] == "valid"
    meta = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
    if "network_from_training" in meta and not (BUNDLES / name / "models" / "model.pt").is_file():
        needs = f"needs a trained bundle: {meta['network_from_training']}"
        assert set(report.values()) == {"valid", needs}
        return
    assert report["train_properties"] == report["inference_properties"] == "complete"
    assert report["net_in_out"] == "verified"
    declared = meta["torchscript_export"]
    expected = declared if declared.startswith("not supported") else declared.split(":")[0].split()[0]
    assert report["torchscript"] == expected
