#!/usr/bin/env bash
# The GPU run of bench/session.py, as one prepared script (a lent GPU machine has
# PyTorch but not espeakng-loader: its wheel is carried in .whl/ and installed first).
#   bash bench/gpu_session.sh [OUT_DIR]
set -euo pipefail
out=${1:-out/gpu}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
python3 bench/session.py --preset small --device cuda --minutes 10 | tee "$out/session_small_cuda.txt"
python3 bench/session.py --preset tiny --device cuda --minutes 2 | tee "$out/session_tiny_cuda.txt"
