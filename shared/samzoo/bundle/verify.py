"""MONAI's own offline checks of a bundle, run together: ``samzoo verify BUNDLE``.

- ``metadata.json`` against the MONAI bundle specification. ``monai.bundle verify_metadata`` downloads the schema its
  ``schema`` URL names; offline it is given :data:`SCHEMA`, our transcription of the specification's mandatory keys
  (docs/source/mb_specification.rst in MONAI) plus a semantic version with a changelog entry.
- ``ConfigWorkflow.check_properties()`` of ``train.json`` and ``inference.json``.
- ``verify_net_in_out`` with a fake input shaped as ``network_data_format`` declares. Inputs besides ``image`` (such
  as cmr2dt_sam's ``view``) are passed as extra forward arguments built from their declaration.
- A TorchScript export of the network with MONAI's ``convert_to_torchscript``: scripted where the network
  scripts, otherwise traced at the declared input shape (segment-anything's ViT blocks do not script), and checked
  against the eager network on the same input. A bundle whose network cannot be exported says why in its
  metadata's ``torchscript_export`` ("not supported: ..."), and the check reports that instead.
- A bundle whose network exists only after training (nnU-Net's, defined by the plans made for a dataset) says why in
  its metadata's ``network_from_training``; until ``models/model.pt`` exists only its metadata is checked, and the
  other checks report "needs a trained bundle: <why>" (its training workflow plans a dataset before it has
  properties to check, and its inference workflow needs the trained model).

The checks need the bundle's data: they use the synthetic demo data its ``train.json`` writes when no dataset is
given, in a temporary folder, so the bundle folder is left as it was.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out
from monai.bundle.scripts import _get_fake_spatial_shape
from monai.networks.utils import convert_to_torchscript
from monai.utils import get_equivalent_dtype

from ..data.datalist import load_datalist
from .package import bundle_dir, config_stack

logger = logging.getLogger(__name__)

SCHEMA = Path(__file__).with_name("metadata_schema.json")
"""The bundle metadata schema used offline (see the module docstring)."""


class BundleCheckError(RuntimeError):
    """A bundle failed one of MONAI's checks; the message names the bundle, the check and what is wrong."""


def check_metadata(meta_file: str | Path) -> None:
    """MONAI's ``verify_metadata`` of ``meta_file`` against :data:`SCHEMA` (no download)."""
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA))


def check_properties(bundle: Path, config: str, workflow_type: str, **overrides: Any) -> ConfigWorkflow:
    """Initialise ``configs/<config>.json`` as a MONAI workflow of ``workflow_type`` and require every property."""
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_stack(bundle, config)],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        bundle_root=str(bundle),
        **overrides,
    )
    workflow.initialize()
    missing = workflow.check_properties()
    if missing:
        raise BundleCheckError(f"{bundle.name}: {config}.json lacks {workflow_type} properties {missing}")
    return workflow


def fake_inputs(parser: ConfigParser, n: int, frames: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The ``image`` tensor ``verify_net_in_out`` builds and zeros for every other declared input (batch of 1)."""
    tensors = {}
    for name, spec in parser.get("_meta_#network_data_format#inputs").items():
        shape = _get_fake_spatial_shape(spec["spatial_shape"], n=n, any=frames)
        dtype = get_equivalent_dtype(spec["dtype"], torch.Tensor)
        tensors[name] = (torch.rand if dtype.is_floating_point else torch.zeros)(1, spec["num_channels"], *shape).to(
            dtype
        )
    return tensors.pop("image"), tensors


class OutputOf(torch.nn.Module):
    """``network(...)[key]``: one declared output of a network that returns a dict, for ``verify_net_in_out``."""

    def __init__(self, network: torch.nn.Module, key: str) -> None:
        super().__init__()
        self.network = network
        self.key = key

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.network(*args, **kwargs)[self.key]


def check_net_in_out(bundle: Path, n: int, frames: int, **overrides: Any) -> None:
    """MONAI's ``verify_net_in_out`` on ``inference.json``'s ``network_def``.

    MONAI checks one tensor, ``outputs#pred``. A network returning a dict declares which entry each output is
    (``network_output_key``); every declared output is then checked in turn, through :class:`OutputOf`.
    """
    parser = inference_parser(bundle, **overrides)
    _, extra = fake_inputs(parser, n, frames)
    outputs = parser.get("_meta_#network_data_format#outputs")
    for name, spec in outputs.items():
        checked: dict[str, Any] = {}
        net_id = "network_def"
        if "network_output_key" in spec:
            net_id = "verified_output"
            checked[net_id] = {
                "_target_": f"{__name__}.OutputOf",
                "network": "@network_def",
                "key": spec["network_output_key"],
            }
        elif name != "pred":
            continue
        checked["_meta_#network_data_format#outputs#pred"] = spec
        verify_net_in_out(
            net_id=net_id,
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=[str(f) for f in config_stack(bundle, "inference")],
            device="cpu",
            n=n,
            any=frames,
            extra_forward_args=extra,
            bundle_root=str(bundle),
            **overrides,
            **checked,
        )


def export_torchscript(
    bundle: Path, ckpt_file: Path | None, filepath: Path, n: int, frames: int, **overrides: Any
) -> str:
    """Write ``inference.json``'s network, with the weights of ``ckpt_file`` (a state dict) when given, as TorchScript
    to ``filepath``; return "scripted" or "traced"."""
    parser = inference_parser(bundle, **overrides)
    net = parser.get_parsed_content("network_def")
    if ckpt_file is not None:
        net.load_state_dict(torch.load(ckpt_file, map_location="cpu", weights_only=True))
    net.eval()
    image, extra = fake_inputs(parser, n, frames)
    inputs = [image, *extra.values()]
    try:
        convert_to_torchscript(net, str(filepath), verify=True, inputs=inputs)
        return "scripted"
    except Exception as error:  # torch.jit.script raises several unrelated types on unsupported code
        logger.info("%s does not script (%s); tracing at input shape %s", bundle.name, error, tuple(image.shape))
    convert_to_torchscript(net, str(filepath), verify=True, inputs=inputs, use_trace=True)
    return "traced"


def inference_parser(bundle: Path, **overrides: Any) -> ConfigParser:
    """The bundle's ``inference.json`` with its metadata, rooted at ``bundle``."""
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_stack(bundle, "inference")])
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def verify_bundle(bundle: str | Path, n: int = 8, frames: int = 15, bundles_root: str | Path = "bundles") -> dict:
    """Run every check on ``bundle`` (a name under ``bundles_root`` or a folder); raise on the first failure and
    return what each check found. ``n`` and ``frames`` size the fake input ("8*n" and "*" in the metadata)."""
    src = bundle_dir(bundle, bundles_root)
    report: dict[str, Any] = {}
    check_metadata(src / "configs" / "metadata.json")
    report["metadata"] = "valid"
    untrained = inference_parser(src).get("_meta_#network_from_training", "")
    if untrained and not (src / "models" / "model.pt").is_file():
        needs = f"needs a trained bundle: {untrained}"
        return report | dict.fromkeys(("train_properties", "inference_properties", "net_in_out", "torchscript"), needs)
    with tempfile.TemporaryDirectory() as tmp:
        work = {"output_dir": tmp, "ckpt_dir": f"{tmp}/models"}
        train = check_properties(src, "train", "train", **work)
        report["train_properties"] = "complete"
        sample = load_datalist(train.parser.get_parsed_content("datalist"), "test")[0]["image"]
        check_properties(src, "inference", "inference", dataset_dir=str(Path(sample).parent), **work)
        report["inference_properties"] = "complete"
        check_net_in_out(src, n, frames)
        report["net_in_out"] = "verified"
        declared = inference_parser(src).get("_meta_#torchscript_export", "")
        if declared.startswith("not supported"):
            report["torchscript"] = declared
        else:
            report["torchscript"] = export_torchscript(src, None, Path(tmp) / "model.ts", n, frames)
    return report


__all__ = [
    "SCHEMA",
    "BundleCheckError",
    "OutputOf",
    "check_metadata",
    "check_net_in_out",
    "check_properties",
    "export_torchscript",
    "fake_inputs",
    "inference_parser",
    "verify_bundle",
]
