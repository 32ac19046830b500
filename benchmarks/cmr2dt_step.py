"""Time a CMR2D+T-SAM training step (forward, masked BCE + Dice, backward, MADGRAD step) per backbone: samzoo's
forward against a straightforward one written from the paper (``cmr2dt_reference.py``), same weights, same function.

- ``samzoo``: ``CMR2DTSAM.forward``, SDPA free to pick its fused kernels (flash / memory-efficient attention).
- ``reference``: every attention a materialised matmul-softmax, SAM's own attention modules, the paper's layouts.

Both run in the same precision (bf16 autocast on CUDA, fp32 on the CPU, ``--precision`` to choose), each backbone
and implementation in a fresh subprocess, so the peak resident memory (``ru_maxrss``: weights, optimizer state,
activations, the interpreter) belongs to that setting alone; on CUDA ``torch.cuda.max_memory_allocated`` too. FLOPs
are counted with ``torch.utils.flop_counter.FlopCounterMode`` during the first warm-up step of each implementation,
on the kernels its step uses. Networks are randomly initialised: speed
and memory do not depend on the weights. ``--profile`` prints where one step's time and memory go instead.

    python benchmarks/cmr2dt_step.py                      # GPU: 4 clips x 15 frames x 128^2, vit_b vit_h
    python benchmarks/cmr2dt_step.py --device cpu --clips 1 --frames 4 --size 64 --backbones vit_tiny
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch
from cmr2dt_reference import reference_forward
from madgrad import MADGRAD
from samzoo.losses import MaskedDiceBCELoss
from samzoo.networks import CMR2DTSAM, split_trainable
from timing import time_steps
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

IMPLEMENTATIONS = ("samzoo", "reference")
COLUMNS = ("step ms", "frames/s", "RSS GiB", "CUDA GiB", "TFLOP/step", "TFLOP/s")
WIDTHS = (9, 9, 8, 9, 10, 8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, default=4, help="clips per batch")
    parser.add_argument("--frames", type=int, default=15, help="frames per clip")
    parser.add_argument("--size", type=int, default=128, help="frame height and width")
    parser.add_argument("--backbones", nargs="+", default=["vit_b", "vit_h"], help="ViT backbones")
    parser.add_argument("--implementations", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 on CUDA, fp32 on the CPU")
    parser.add_argument("--steps", type=int, help="timed steps per setting (default: 10 on GPU, 1 on CPU)")
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed steps before timing, the first one counting the FLOPs (default: 3 on GPU, 1 on CPU)",
    )
    parser.add_argument("--checkpoint-blocks", action="store_true", help="activation checkpointing of ViT blocks")
    parser.add_argument("--profile", action="store_true", help="profile one samzoo step per backbone instead")
    parser.add_argument("--out", type=Path, help="JSON file (default: results/cmr2dt_step_<device>.json here)")
    parser.add_argument("--worker", nargs=2, metavar=("BACKBONE", "IMPLEMENTATION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    on_gpu = torch.device(args.device).type == "cuda"
    args.steps = args.steps or (10 if on_gpu else 1)
    args.warmup = max(1, (3 if on_gpu else 1) if args.warmup is None else args.warmup)
    args.precision = args.precision or ("bf16" if on_gpu else "fp32")
    return args


def make_batch(clips: int, args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random clip batch (clips, 1, size, size, frames) in [0, 1] and a random binary label of the same shape."""
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (clips, 1, args.size, args.size, args.frames)
    image = torch.rand(shape, device=device, generator=generator)
    return image, (torch.rand(shape, device=device, generator=generator) > 0.8).float()


def forward_backward(net: CMR2DTSAM, implementation: str, image: torch.Tensor, label: torch.Tensor, bf16: bool) -> None:
    """The training loss (``MaskedDiceBCELoss``, BCE + Dice) of one batch, back-propagated."""
    forward = net if implementation == "samzoo" else lambda x: reference_forward(net, x)
    with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = forward(image)
    MaskedDiceBCELoss()(logits, label).backward()


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_FLASH_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops,
}
"""The CPU flash-attention kernels, which ``FlopCounterMode`` does not count by itself: the same formulas as its
CUDA attention kernels, so a count runs on the kernels the training step uses."""


def build(name: str, args: argparse.Namespace, device: torch.device) -> CMR2DTSAM:
    torch.manual_seed(0)
    return CMR2DTSAM(name, image_size=args.size, checkpoint_blocks=args.checkpoint_blocks).to(device).train()


def worker(name: str, implementation: str, args: argparse.Namespace, device: torch.device) -> dict:
    """One backbone and implementation: its FLOPs, then mean time and peak memory of ``args.steps`` timed steps."""
    net = build(name, args, device)
    trainable, frozen = split_trainable(net)
    params = dict(net.named_parameters())
    row = {
        "backbone": name,
        "implementation": implementation,
        "trainable_params": sum(params[n].numel() for n in trainable),
        "frozen_params": sum(params[n].numel() for n in frozen),
    }
    image, label = make_batch(args.clips, args, device)
    optimizer = MADGRAD([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward(net, implementation, image, label, args.precision == "bf16")
        optimizer.step()

    counter = FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS)
    try:
        with counter:  # the first warm-up step, counted
            step()
        seconds, cuda_peak = time_steps(step, device, args.warmup - 1, args.steps)
    except torch.OutOfMemoryError:
        return {**row, "error": "out of memory"}
    return {
        **row,
        "step_ms": 1e3 * seconds,
        "frames_per_s": args.clips * args.frames / seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
        "peak_cuda_gib": cuda_peak,
        "tflop_per_step": counter.get_total_flops() / 1e12,
        "tflop_per_s": counter.get_total_flops() / seconds / 1e12,
    }


def run_setting(name: str, implementation: str, argv: list[str]) -> dict:
    """``worker`` in a fresh interpreter; its row, or the error it died of (e.g. killed for memory)."""
    command = [sys.executable, __file__, *argv, "--worker", name, implementation]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode < 0:
        error = f"killed by signal {-result.returncode} (out of memory?)"
    elif result.returncode > 0:
        error = result.stderr.strip().splitlines()[-1]
    else:
        return json.loads(result.stdout.strip().splitlines()[-1])
    return {"backbone": name, "implementation": implementation, "error": error}


def profile(name: str, args: argparse.Namespace, device: torch.device) -> None:
    """One samzoo step under ``torch.profiler`` (memory on): the operators by time and by memory allocated."""
    net = build(name, args, device)
    image, label = make_batch(args.clips, args, device)
    forward_backward(net, "samzoo", image, label, args.precision == "bf16")  # warm-up
    net.zero_grad(set_to_none=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        forward_backward(net, "samzoo", image, label, args.precision == "bf16")
    averages = prof.key_averages()
    time_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    memory_key = "self_cuda_memory_usage" if device.type == "cuda" else "self_cpu_memory_usage"
    print(f"{name}: operators by self time\n{averages.table(sort_by=time_key, row_limit=20)}")
    print(f"{name}: operators by memory allocated\n{averages.table(sort_by=memory_key, row_limit=12)}")


def table_line(backbone: str, implementation: str, cells: tuple[str, ...]) -> str:
    return f"{backbone:<12} {implementation:<10} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True))


def format_row(row: dict) -> str:
    if "error" in row:
        return f"{row['backbone']:<12} {row['implementation']:<10} {row['error']}"
    cuda = "-" if row["peak_cuda_gib"] is None else f"{row['peak_cuda_gib']:.2f}"
    values = (
        f"{row['step_ms']:.1f}",
        f"{row['frames_per_s']:.2f}",
        f"{row['peak_rss_gib']:.2f}",
        cuda,
        f"{row['tflop_per_step']:.3f}",
        f"{row['tflop_per_s']:.3f}",
    )
    return table_line(row["backbone"], row["implementation"], values)


def compare(rows: list[dict]) -> dict | None:
    """samzoo against the reference: speed-up (reference time / samzoo time) and memory ratios (samzoo / reference)."""
    by_name = {row["implementation"]: row for row in rows if "error" not in row}
    if set(by_name) != set(IMPLEMENTATIONS):
        return None
    ours, ref = by_name["samzoo"], by_name["reference"]
    ratios = {"speedup": ref["step_ms"] / ours["step_ms"], "rss_ratio": ours["peak_rss_gib"] / ref["peak_rss_gib"]}
    if ours["peak_cuda_gib"] is not None and ref["peak_cuda_gib"] is not None:
        ratios["cuda_ratio"] = ours["peak_cuda_gib"] / ref["peak_cuda_gib"]
    return ratios


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.worker:
        print(json.dumps(worker(*args.worker, args, device)))
        return
    if args.profile:
        for backbone in args.backbones:
            profile(backbone, args, device)
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{name}, torch {torch.__version__}, {args.precision}: {args.clips} clips x {args.frames} frames x "
          f"{args.size}^2, MaskedDiceBCELoss, MADGRAD, {args.warmup} warm-up + {args.steps} timed steps")  # fmt: skip
    print(table_line("backbone", "forward", COLUMNS))
    results = []
    for backbone in args.backbones:
        rows = []
        for implementation in args.implementations:
            rows.append(run_setting(backbone, implementation, argv))
            print(format_row(rows[-1]), flush=True)
        ratios = compare(rows)
        if ratios is not None:
            print(f"{backbone}: samzoo {ratios['speedup']:.2f}x the reference's speed, "
                  f"{ratios['rss_ratio']:.2f}x its peak RSS")  # fmt: skip
        results.append({"backbone": backbone, "rows": rows, "comparison": ratios})
    out = args.out or Path(__file__).parent / "results" / f"cmr2dt_step_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "worker", "profile")}
    report = {"device": name, "torch": torch.__version__, "settings": settings, "results": results}
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
