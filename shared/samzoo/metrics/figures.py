"""Pictures of predictions: per-case overlays (image, label and prediction contours) and animated cines.

One PNG per evaluated item shows the planes that were scored, the image in grey with the contour of each class in
the label (solid) and the prediction (dashed), a colour per class. For cine predictions an animated GIF runs
through the T frames with the prediction painted over the image. Arrays are shown as in the CAM pictures of
inference: the first axis left to right, the second bottom to top. Figures are bare :class:`Figure` objects on an
Agg canvas (no pyplot state, no display).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..data.nifti import load_label, load_nifti
from ..errors import DataError
from .evaluation import LabelSource, strip_nifti

__all__ = ["animate_cine", "overlay_planes", "plot_overlay", "write_figures"]

OVERLAY_ALPHA = 0.45


def _colour(k: int) -> str:
    return f"C{k % 10}"


def overlay_planes(item: Mapping[str, Any], label: np.ndarray, pred: np.ndarray) -> list[tuple[int, str]]:
    """The planes (index on the last axis, title) an overlay shows.

    Cine items: their labelled frames (ED, ES). Volumes: the axial slice where the label holds the most foreground
    and the one where the prediction does (one slice when they agree; the middle slice when both are empty).
    """
    if "labelled_frames" in item:
        names = {item.get("ed_frame"): "ED", item.get("es_frame"): "ES"}
        return [(f, f"{names.get(f, 'frame')} (frame {f})") for f in item["labelled_frames"]]
    areas = [(mask > 0).sum(axis=(0, 1)) for mask in (label, pred)]
    chosen = [int(np.argmax(a)) for a in areas if a.any()] or [label.shape[-1] // 2]
    return [(z, f"slice {z}") for z in dict.fromkeys(chosen)]


def _window(image: np.ndarray) -> tuple[float, float]:
    """Display range: the 1st to 99th percentile, so a few bright voxels do not darken the picture."""
    low, high = np.percentile(image, (1, 99))
    return float(low), float(max(high, low + 1e-6))


def plot_overlay(
    image: np.ndarray,
    label: np.ndarray,
    pred: np.ndarray,
    planes: Sequence[tuple[int, str]],
    classes: Mapping[int, str],
    path: str | Path,
    title: str = "",
) -> Path:
    """Save one panel per plane of ``(image, label, pred)`` (same shape, planes on the last axis) to ``path``."""
    fig = Figure(figsize=(3.2 * len(planes) + 1.6, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(planes), squeeze=False)[0]
    for ax, (index, name) in zip(axes, planes, strict=True):
        plane = image[..., index]
        vmin, vmax = _window(plane)
        ax.imshow(plane.T, cmap="gray", origin="lower", vmin=vmin, vmax=vmax)
        for k, value in enumerate(classes):
            for mask, style in ((label, "solid"), (pred, "dashed")):
                region = mask[..., index] == value
                if region.any() and not region.all():
                    ax.contour(region.T.astype(np.float32), levels=[0.5], colors=_colour(k), linestyles=style)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    handles = [Line2D([], [], color=_colour(k), label=name) for k, name in enumerate(classes.values())]
    handles += [Line2D([], [], color="black", label="label"), Line2D([], [], color="k", ls="--", label="prediction")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80)
    return Path(path)


def _painted(pred: np.ndarray, classes: Mapping[int, str]) -> np.ndarray:
    """RGBA picture (second axis up, as displayed) of the predicted classes over a transparent background."""
    shown = pred.T
    rgba = np.zeros((*shown.shape, 4), dtype=np.float32)
    for k, value in enumerate(classes):
        rgba[shown == value] = (*to_rgba(_colour(k))[:3], OVERLAY_ALPHA)
    return rgba


def animate_cine(
    image: np.ndarray, pred: np.ndarray, classes: Mapping[int, str], path: str | Path, fps: float = 8.0
) -> Path:
    """Save an animated GIF of a cine ``image`` (H, W, T) with ``pred`` (H, W, T) painted over it, one frame per
    time point (matplotlib animation, Pillow writer)."""
    if image.ndim != 3 or image.shape != pred.shape:
        raise ValueError(f"expected a cine and its prediction of one shape (H, W, T), got {image.shape}, {pred.shape}")
    frames = image.shape[-1]
    fig = Figure(figsize=(3.2, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axis("off")
    vmin, vmax = _window(image)
    shown = ax.imshow(image[..., 0].T, cmap="gray", origin="lower", vmin=vmin, vmax=vmax)
    painted = ax.imshow(_painted(pred[..., 0], classes), origin="lower")
    caption = ax.set_title("", fontsize=9)

    def draw(t: int) -> tuple:
        shown.set_data(image[..., t].T)
        painted.set_data(_painted(pred[..., t], classes))
        caption.set_text(f"frame {t + 1}/{frames}")
        return shown, painted, caption

    FuncAnimation(fig, draw, frames=frames, blit=False).save(str(path), writer=PillowWriter(fps=fps), dpi=80)
    return Path(path)


def _as_array(source: LabelSource) -> np.ndarray:
    if isinstance(source, str | Path):
        return load_label(source).array
    return np.asarray(source.detach().cpu() if hasattr(source, "detach") else source)


def write_figures(
    items: Sequence[Mapping[str, Any]],
    predictions: Iterable[LabelSource],
    classes: Mapping[int, str],
    out_dir: str | Path,
    animate: int | None = 0,
) -> list[Path]:
    """Per item, ``out_dir/overlays/<label name>.png`` (:func:`plot_overlay` of :func:`overlay_planes`) and, for
    the first ``animate`` items (every item when None), ``out_dir/animations/<label name>.gif``
    (:func:`animate_cine`, about 2 s each on a CPU, hence the cap); return the files written.

    ``items`` and ``predictions`` are those of :func:`~samzoo.metrics.evaluation.evaluate_items` (label maps with
    the label's shape, as files or arrays); images are read from ``item["image"]`` and must share that shape.
    """
    out_dir = Path(out_dir)
    folders = {"overlays": out_dir / "overlays", "animations": out_dir / "animations"}
    written: list[Path] = []
    for number, (item, prediction) in enumerate(zip(items, predictions, strict=True)):
        image = load_nifti(item["image"]).array
        label, pred = load_label(item["label"]).array, _as_array(prediction)
        if not image.shape == label.shape == pred.shape:
            raise DataError(
                item["image"], f"image {image.shape}, label {label.shape} and prediction {pred.shape} differ in shape"
            )
        name = strip_nifti(Path(item["label"]).name)
        folders["overlays"].mkdir(parents=True, exist_ok=True)
        title = " ".join(str(item[k]) for k in ("case_id", "view") if item.get(k))
        planes = overlay_planes(item, label, pred)
        written.append(plot_overlay(image, label, pred, planes, classes, folders["overlays"] / f"{name}.png", title))
        if animate is None or number < animate:
            folders["animations"].mkdir(parents=True, exist_ok=True)
            written.append(animate_cine(image, pred, classes, folders["animations"] / f"{name}.gif"))
    return written
