"""Time a CMR2D+T-SAM training step (forward, backward, optimizer step) per backbone, in two settings.

- ``bf16+sdpa``: bf16 autocast, SDPA free to pick its fused kernels (flash / memory-efficient attention).
- ``fp32+eager``: the same network in fp32 with SDPA held to its math backend, i.e. plain matmul-softmax attention.

For each it reports frames/s, peak memory (``torch.cuda.max_memory_allocated``; not measured on CPU) and achieved
TFLOP/s, prints a table and writes JSON. The FLOPs of a step are counted once per backbone with
``torch.utils.flop_counter.FlopCounterMode`` on the math attention path, where every matmul is visible (the counter
does not see every fused kernel, e.g. not the CPU flash kernel), on one clip and multiplied by the clips; both settings
do this same work. Networks are randomly initialised: speed and memory do not depend on the weights.

    python benchmarks/cmr2dt_step.py                      # GPU: 4 clips x 15 frames x 128^2, vit_b vit_h lite_medsam
    python benchmarks/cmr2dt_step.py --device cpu --clips 1 --frames 4 --size 64 --backbones vit_tiny
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
from pathlib import Path

import torch
from madgrad import MADGRAD
from samzoo.networks import CMR2DTSAM, split_trainable
from timing import time_steps
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

SETTINGS = {"bf16+sdpa": True, "fp32+eager": False}
"""Setting name -> whether it uses bf16 autocast with fused attention."""
WIDTHS = (9, 9, 9, 10, 8)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, default=4, help="clips per batch")
    parser.add_argument("--frames", type=int, default=15, help="frames per clip")
    parser.add_argument("--size", type=int, default=128, help="frame height and width")
    parser.add_argument("--backbones", nargs="+", default=["vit_b", "vit_h", "lite_medsam"])
    parser.add_argument("--steps", type=int, help="timed steps per setting (default: 10 on GPU, 1 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps before timing (default: 3 on GPU, 0 on CPU)")
    parser.add_argument("--checkpoint-blocks", action="store_true", help="activation checkpointing of ViT blocks")
    parser.add_argument("--out", type=Path, help="JSON file (default: results/cmr2dt_step_<device>.json here)")
    args = parser.parse_args()
    on_gpu = torch.device(args.device).type == "cuda"
    args.steps = args.steps or (10 if on_gpu else 1)
    args.warmup = (3 if on_gpu else 0) if args.warmup is None else args.warmup
    return args


def make_batch(clips: int, args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random clip batch (clips, 1, size, size, frames) in [0, 1] and a random binary label of the same shape."""
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (clips, 1, args.size, args.size, args.frames)
    image = torch.rand(shape, device=device, generator=generator)
    return image, (torch.rand(shape, device=device, generator=generator) > 0.8).float()


def forward_backward(
    net: CMR2DTSAM, image: torch.Tensor, label: torch.Tensor, bf16: bool, fused_attention: bool
) -> None:
    backend = contextlib.nullcontext() if fused_attention else sdpa_kernel(SDPBackend.MATH)
    with backend, torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = net(image)
    torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), label).backward()


def count_flops(net: CMR2DTSAM, args: argparse.Namespace, device: torch.device) -> int:
    """FLOPs of forward and backward on one clip with matmul-softmax attention, times the clips per batch."""
    image, label = make_batch(1, args, device)
    counter = FlopCounterMode(display=False)
    with counter:
        forward_backward(net, image, label, bf16=device.type == "cuda", fused_attention=False)
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() * args.clips


def measure(net: CMR2DTSAM, args: argparse.Namespace, device: torch.device, fused: bool) -> dict:
    """Mean time and peak memory of ``args.steps`` training steps after ``args.warmup`` untimed ones."""
    image, label = make_batch(args.clips, args, device)
    optimizer = MADGRAD([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward(net, image, label, bf16=fused, fused_attention=fused)
        optimizer.step()

    seconds, peak = time_steps(step, device, args.warmup, args.steps)
    return {"step_ms": 1e3 * seconds, "frames_per_s": args.clips * args.frames / seconds, "peak_gib": peak}


def run_backbone(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    net = CMR2DTSAM(name, image_size=args.size, checkpoint_blocks=args.checkpoint_blocks).to(device).train()
    trainable, frozen = split_trainable(net)
    params = dict(net.named_parameters())
    flops = count_flops(net, args, device)
    common = {
        "trainable_params": sum(params[n].numel() for n in trainable),
        "frozen_params": sum(params[n].numel() for n in frozen),
        "tflop_per_step": flops / 1e12,
    }
    rows = []
    for setting, fused in SETTINGS.items():
        row = {"backbone": name, "setting": setting, **common}
        try:
            row.update(measure(net, args, device, fused))
            row["tflop_per_s"] = flops / (row["step_ms"] / 1e3) / 1e12
        except torch.OutOfMemoryError:
            row["error"] = "out of memory"
        net.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def table_line(backbone: str, setting: str, cells: tuple[str, ...]) -> str:
    return f"{backbone:<12} {setting:<11} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True))


def format_row(row: dict) -> str:
    if "error" in row:
        return f"{row['backbone']:<12} {row['setting']:<11} {row['error']}"
    peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
    values = (
        f"{row['step_ms']:.1f}",
        f"{row['frames_per_s']:.1f}",
        peak,
        f"{row['tflop_per_step']:.3f}",
        f"{row['tflop_per_s']:.2f}",
    )
    return table_line(row["backbone"], row["setting"], values)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{name}, torch {torch.__version__}: {args.clips} clips x {args.frames} frames x {args.size}^2")
    print(table_line("backbone", "setting", ("step ms", "frames/s", "peak GiB", "TFLOP/step", "TFLOP/s")))
    rows = [row for backbone in args.backbones for row in run_backbone(backbone, args, device)]
    out = args.out or Path(__file__).parent / "results" / f"cmr2dt_step_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    report = {"device": name, "torch": torch.__version__, "settings": settings, "results": rows}
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
