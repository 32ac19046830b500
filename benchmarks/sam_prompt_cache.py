"""Epoch time of mask-decoder fine-tuning with the embedding cache against recomputing every embedding.

Runs the sam_prompt bundle's trainer three times in one process on the same samples: filling the cache (first
epoch), reading it (the cached epoch time) and with ``embedding_dir`` None (every image encoded again, as without
a cache). Prints one JSON line with the times and the speed-up.

    python benchmarks/sam_prompt_cache.py --dataset_dir DIR [--num_volumes 2] [--backbone lite_medsam]
        [--pretrained False]   # random weights: times a SAM ViT without Meta's checkpoint
    python benchmarks/sam_prompt_cache.py --backbone vit_tiny --pretrained False   # synthetic demo, seconds

Without ``--dataset_dir`` it runs on the synthetic demo cine, written to a temporary folder.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import fire
import torch
from monai.bundle import ConfigWorkflow

CONFIG = Path(__file__).resolve().parents[1] / "bundles" / "sam_prompt" / "configs" / "train.json"


def epoch_seconds(bundle_root: str, embedding_dir: str | None, **overrides: object) -> tuple[float, int]:
    """Wall time of one training epoch (no validation, no checkpoints) and the number of samples."""
    handlers = json.loads(CONFIG.read_text())["train"]["handlers"]
    workflow = ConfigWorkflow(
        config_file=str(CONFIG),
        workflow_type="train",
        bundle_root=bundle_root,
        embedding_dir=embedding_dir,
        max_epochs=1,
        resume=False,
        **{"train#handlers": [h for h in handlers if h["_target_"] != "ValidationHandler"]},
        **overrides,
    )
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start, len(workflow.parser.get_parsed_content("train#samples"))


def main(
    dataset_dir: str = "",
    num_volumes: int = 2,
    backbone: str = "lite_medsam",
    pretrained: bool = True,
    threads: int = 1,
    batch_size: int = 4,
) -> None:
    torch.set_num_threads(threads)
    settings = {
        "dataset_dir": dataset_dir,
        "num_volumes": num_volumes,
        "backbone": backbone,
        "pretrained": pretrained,
        "batch_size": batch_size,
    }
    with tempfile.TemporaryDirectory() as root:
        cache = str(Path(root) / "embeddings")
        filling, samples = epoch_seconds(root, cache, **settings)
        cached, _ = epoch_seconds(root, cache, **settings)
        recomputed, _ = epoch_seconds(root, None, **settings)
    result = {
        "samples": samples,
        "backbone": backbone,
        "pretrained": pretrained,
        "threads": threads,
        "epoch_s_filling_cache": round(filling, 2),
        "epoch_s_cached": round(cached, 2),
        "epoch_s_recomputed": round(recomputed, 2),
        "speedup": round(recomputed / cached, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    fire.Fire(main)
