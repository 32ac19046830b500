"""Shared fixtures: the optional real-data folder and temporary synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SAMZOO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real development datasets (``../shared/data``); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """Run the suite on one intra-op thread.

    The test tensors are too small to gain from threading, and on a shared 2-core machine idle OpenMP workers
    waiting for a busy core cost far more than the work itself.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_demos(tmp_path_factory) -> dict[str, Path]:
    """Small datalists of the cine and CT demos (enough items for two ranks, few iterations)."""
    from samzoo.data.demo import write_demo
    from tiny_bundles import small_datalist

    root = tmp_path_factory.mktemp("ddp_demo")
    cine = write_demo("cine", root / "cine", cases=6, seed=3)
    ct = write_demo("ct", root / "ct")
    return {"cine": small_datalist(cine, {"training": 8, "validation": 3}), "ct": ct}
