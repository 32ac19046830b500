#!/usr/bin/env bash
# Install samzoo, its test tools and the MONAI Label server into the active Python environment.
#
# torch and torchvision must come from the same build: the package index's torchvision wheels are built against
# its own torch, so both are installed from the default index together (`--isolated` ignores local pip settings
# such as extra wheel folders that may hold a CPU-only torch without a matching torchvision). The CUDA build also
# runs on machines without a GPU.
#
# monailabel and pydicom-seg are installed without their declared requirements: those would downgrade numpy to 1.x
# and jsonschema to 3.x and pull extras the server does not import (sam2, itk's filters, openslide...). What the
# server and the monaibundle app do import is the `label` extra of pyproject.toml (docs/monailabel.md).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --isolated "torch==2.13.0" "torchvision==0.28.0"
python -m pip install -q -e ".[test,label]"
python -m pip install -q --no-deps "monailabel==0.8.5" "pydicom-seg==0.4.1"
python -c "import torch, torchvision, segment_anything, open_clip, monai, monailabel.app, monailabel.tasks.infer.bundle, samzoo; print('samzoo', samzoo.__version__, 'torch', torch.__version__, 'monai', monai.__version__, 'monailabel', monailabel.__version__)"
