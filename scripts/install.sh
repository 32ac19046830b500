#!/usr/bin/env bash
# Install samzoo and its test tools into the active Python environment.
#
# torch and torchvision must come from the same build: the package index's torchvision wheels are built against
# its own torch, so both are installed from the default index together (`--isolated` ignores local pip settings
# such as extra wheel folders that may hold a CPU-only torch without a matching torchvision). The CUDA build also
# runs on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --isolated "torch==2.13.0" "torchvision==0.28.0"
python -m pip install -q -e ".[test]"
python -c "import torch, torchvision, segment_anything, open_clip, monai, samzoo; print('samzoo', samzoo.__version__, 'torch', torch.__version__, 'monai', monai.__version__)"
