"""The benchmark scripts run (tiny sizes) and report what they say they report."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mfu_bench_runs_on_the_cpu():
    result = subprocess.run(
        [sys.executable, "bench/mfu.py", "--preset", "tiny", "--device", "cpu", "--batch-size", "1",
         "--turns", "4", "--steps", "2", "--warmup", "1", "--datasheet-tflops", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["tokens_per_step"] == 1 * 4 * 14  # 4 patches + 4 audio + 2 text-in + 4 output positions
    assert row["tokens_per_s"] == row["tokens_per_step"] / row["step_s_median"]
    # forward + backward: about 6 FLOPs per active matmul weight per token; the tiny model has
    # under 2.8M parameters, so 56 tokens cost under 6 * 2.8e6 * 56 = 9.4e8 FLOPs plus attention
    assert 1e-5 < row["counted_tflop_per_step"] < 1.2e-3
    assert 0 < row["mfu_vs_measured"] and row["mfu_vs_datasheet"] > 0
