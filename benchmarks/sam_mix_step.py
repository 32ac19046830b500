"""Time a SAM-Mix training step (forward, joint loss, backward, AdamW step) per backbone, bf16 autocast vs fp32.

A step is what the sam_mix bundle's trainer does with one batch: the ResNet-38 classifier and its CAM on every slice,
SAM (LoRA encoder, prompt encoder, mask decoder) on the ``--labelled`` slices with their CAM boxes, focal + Dice loss.
Throughput counts every slice of the batch (slices/s); peak memory is ``torch.cuda.max_memory_allocated`` (not
measured on CPU). Both settings run in the same process on the same network, fp32 first. Networks are randomly
initialised except LiteMedSAM, whose packaged weights load offline; speed and memory do not depend on the weights.
Prints a table and writes JSON.

    python benchmarks/sam_mix_step.py                    # GPU: batch 30 (10 labelled) x 256^2, vit_b and lite_medsam
    python benchmarks/sam_mix_step.py --device cpu --batch 4 --labelled 1 --backbones lite_medsam vit_tiny
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from samzoo.losses import SamMixLoss
from samzoo.networks.sam_mix import SamMix
from timing import time_steps

SETTINGS = {"fp32": False, "bf16": True}
"""Setting name -> whether the step runs under bf16 autocast."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=30, help="slices per batch (the paper's 30)")
    parser.add_argument("--labelled", type=int, default=10, help="labelled slices per batch, the ones SAM segments")
    parser.add_argument("--size", type=int, default=256, help="slice height and width (LiteMedSAM needs 256)")
    parser.add_argument("--classifier-width", type=float, default=1.0, help="ResNet-38 width (1: the reference)")
    parser.add_argument("--max-boxes", type=int, default=3, help="boxes per slice at most")
    parser.add_argument("--backbones", nargs="+", default=["vit_b", "lite_medsam"])
    parser.add_argument("--steps", type=int, help="timed steps per setting (default: 10 on GPU, 1 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps before timing (default: 3 on GPU, 0 on CPU)")
    parser.add_argument("--out", type=Path, help="JSON file (default: results/sam_mix_step_<device>.json here)")
    args = parser.parse_args()
    if not 0 < args.labelled <= args.batch:
        parser.error("--labelled must lie in 1 .. --batch")
    on_gpu = torch.device(args.device).type == "cuda"
    args.steps = args.steps or (10 if on_gpu else 1)
    args.warmup = (3 if on_gpu else 0) if args.warmup is None else args.warmup
    return args


def make_batch(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random slices (B, 1, S, S) in [0, 1] and targets: a centred square liver on every slice, the first
    ``--labelled`` slices labelled."""
    generator = torch.Generator(device=device).manual_seed(0)
    image = torch.rand(args.batch, 1, args.size, args.size, device=device, generator=generator)
    seg = torch.zeros_like(image)
    quarter = args.size // 4
    seg[..., quarter : 3 * quarter, quarter : 3 * quarter] = 1.0
    labelled = (torch.arange(args.batch, device=device) < args.labelled).float()[:, None]
    return image, {"seg": seg, "presence": torch.ones_like(labelled), "labelled": labelled}


def measure(net: SamMix, args: argparse.Namespace, device: torch.device, bf16: bool) -> dict:
    """Mean time and peak memory of ``args.steps`` training steps after ``args.warmup`` untimed ones."""
    image, target = make_batch(args, device)
    gate = target["labelled"][:, 0].cpu() > 0  # a host tensor, as the trainer's batch preparation gives it
    loss_fn = SamMixLoss()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = net(image, gate=gate)
        loss_fn(output, target).backward()
        optimizer.step()

    seconds, peak = time_steps(step, device, args.warmup, args.steps)
    return {"step_ms": 1e3 * seconds, "slices_per_s": args.batch / seconds, "peak_gib": peak}


def run_backbone(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    net = SamMix(
        name,
        pretrained=name == "lite_medsam",
        image_size=args.size,
        classifier_width=args.classifier_width,
        max_boxes=args.max_boxes,
    )
    net = net.to(device).train()
    common = {
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "frozen_params": sum(p.numel() for p in net.parameters() if not p.requires_grad),
    }
    return [
        {"backbone": name, "setting": setting, **common, **measure(net, args, device, bf16)}
        for setting, bf16 in SETTINGS.items()
    ]


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    rows = [row for name in args.backbones for row in run_backbone(name, args, device)]
    header = f"{'backbone':<12} {'setting':<5} {'step ms':>9} {'slices/s':>9} {'peak GiB':>9} {'trainable':>10}"
    print(header)
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(
            f"{r['backbone']:<12} {r['setting']:<5} {r['step_ms']:>9.0f} {r['slices_per_s']:>9.2f} {peak:>9} "
            f"{r['trainable_params']:>10}"
        )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    run = {
        "device": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **{k: v for k, v in vars(args).items() if k not in ("out", "device")},
        "results": rows,
    }
    out = args.out or Path(__file__).parent / "results" / f"sam_mix_step_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
