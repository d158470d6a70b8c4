#!/usr/bin/env bash
# Every GPU measurement of the project, as one prepared script (about 6 minutes on one GPU):
#   bash bench/gpu.sh [OUT_DIR] [DATASHEET_BF16_TFLOPS]
# - model FLOPs utilisation of the `small` preset's training step in bf16, eager and compiled
#   (bench/mfu.py), against the card's measured matmul rate (and its datasheet figure if given);
# - per-micro-turn latency of a live `small` Session (bench/session.py).
# A lent GPU machine has PyTorch but not espeakng-loader: its wheel is carried in .whl/ and
# installed first.
set -euo pipefail
out=${1:-out/gpu}
datasheet=${2:-0}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
python3 bench/mfu.py --preset small --device cuda --datasheet-tflops "$datasheet" | tee "$out/mfu_small.txt"
python3 bench/mfu.py --preset small --device cuda --compile --datasheet-tflops "$datasheet" \
  | tee "$out/mfu_small_compiled.txt"
python3 bench/session.py --preset small --device cuda --minutes 2 | tee "$out/session_small_cuda.txt"
