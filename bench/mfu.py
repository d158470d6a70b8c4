"""Model FLOPs utilisation of a training step: useful FLOPs per second over what the chip can do.

    .venv/bin/python bench/mfu.py --preset small --device cuda      # bf16 on a GPU
    .venv/bin/python bench/mfu.py                                   # tiny, fp32, on a CPU

Everything is measured in this run:
- the chip's matrix rate: a large square matmul in the training dtype, timed
  (bf16 8192 x 8192 on a GPU, fp32 1024 x 1024 on a CPU); this is the
  denominator, beside the datasheet figure when `--datasheet-tflops` is given;
- the FLOPs of one training step (forward + backward), counted by PyTorch's
  `FlopCounterMode` on the real step: matmuls and attention, as MFU counts them
  (norms, activations and the optimizer are not model FLOPs, and neither is the
  forward that activation checkpointing runs again);
- the step time: AdamW on random micro-turn blocks of the preset's shapes,
  median of `--steps` steps after `--warmup`.

MFU = counted FLOPs per step / step time / matrix rate. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml.config import get_config  # noqa: E402
from minitml.distributed import resolve_device  # noqa: E402
from minitml.model import InteractionModel  # noqa: E402
from minitml.stream import random_blocks  # noqa: E402
from minitml.train import compile_blocks  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of (n x n) @ (n x n), best of `repeats` timed after a warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 10)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default=None, help="default: small on a GPU, tiny on a CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--turns", type=int, default=0, help="micro-turns per sequence (0: the window)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile attention and dense FFNs")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--datasheet-tflops", type=float, default=0.0,
                        help="the card's dense bf16 TFLOP/s from its datasheet, "
                             "shown beside the measured rate")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device))
    bf16 = device.type == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32
    args.preset = args.preset or ("small" if device.type == "cuda" else "tiny")
    cfg = get_config(args.preset)
    turns = args.turns or cfg.model.window_micro_turns

    torch.manual_seed(0)
    model = InteractionModel(cfg).to(device)
    model.activation_checkpointing = args.activation_checkpointing
    if args.compile:
        compile_blocks(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    blocks = random_blocks(cfg, turns, args.batch_size).to(device)
    tokens = args.batch_size * turns * cfg.positions_per_micro_turn

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(blocks)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    model.activation_checkpointing = False  # model FLOPs: a recomputed forward is not counted
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    model.activation_checkpointing = args.activation_checkpointing
    times = []
    for _ in range(args.steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)

    n = 8192 if device.type == "cuda" else 1024
    rate = matmul_rate(device, dtype, n, repeats=5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    result = {
        "bench": "mfu", "preset": args.preset, "device": name, "dtype": str(dtype).removeprefix("torch."),
        "batch_size": args.batch_size, "turns": turns, "tokens_per_step": tokens,
        "compile": args.compile, "activation_checkpointing": args.activation_checkpointing,
        "step_s_median": step_s, "tokens_per_s": tokens / step_s,
        "counted_tflop_per_step": flops / 1e12, "achieved_tflops": flops / step_s / 1e12,
        "matmul_tflops_measured": rate / 1e12, "mfu_vs_measured": flops / step_s / rate,
    }
    if args.datasheet_tflops:
        result["datasheet_tflops"] = args.datasheet_tflops
        result["mfu_vs_datasheet"] = flops / step_s / (args.datasheet_tflops * 1e12)
    print(f"{args.preset} on {name} ({result['dtype']}): batch {args.batch_size} x {turns} micro-turns "
          f"= {tokens} tokens per step")
    print(f"  step {step_s * 1e3:.1f} ms (median of {args.steps}), {tokens / step_s:,.0f} tokens/s")
    print(f"  counted {flops / 1e12:.3f} TFLOP per step -> {flops / step_s / 1e12:.2f} TFLOP/s achieved")
    print(f"  matmul rate measured ({n} x {n}): {rate / 1e12:.2f} TFLOP/s "
          f"-> MFU {result['mfu_vs_measured']:.1%}")
    if args.datasheet_tflops:
        print(f"  datasheet {args.datasheet_tflops:.0f} TFLOP/s -> MFU {result['mfu_vs_datasheet']:.1%}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
