#!/usr/bin/env bash
# Every check that needs CUDA in one command (benchmarks/gpu_check.py): installs the carried wheels (wheels/, built
# with `python benchmarks/gpu_check.py --build-carry`) next to the node's own torch, then runs the checks.
#   bash benchmarks/gpu_check.sh [--out DIR] [--budget SECONDS]      on the GPU node
#   bash benchmarks/gpu_check.sh --dry-run --out DIR                 CPU, tiny sizes (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
site=""
if compgen -G "wheels/*.whl" > /dev/null; then
    python -m pip install --quiet --no-index --no-deps --target .gpu_site wheels/*.whl
    site="$PWD/.gpu_site:"
fi
export PYTHONPATH="${site}$PWD/shared${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/gpu_check.py "$@"
