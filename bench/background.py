"""Does the micro-turn loop keep its deadline while the background model is busy?

    .venv/bin/python bench/background.py                  # process and thread workers
    .venv/bin/python bench/background.py --worker process --steps 500

One tiny-preset Session (one torch thread, randomly initialised: it costs what a
trained one costs) steps back to back, in alternating blocks
(`minitml.neural_background.deadline_under_load`, which notebook 09 runs small):

- idle: the background model is attached but has nothing to do;
- busy: the neural background model (`NeuralBackground`, n_samples answers per
  call, no artificial delay) is flooded with two-digit multiplications, so its
  worker computes without a pause; results stream back into the text-in queue.

Blocks alternate so that both conditions see the same machine load. Per worker
kind (a thread in this process, or a process of its own at idle priority) it
reports the step time (median, p99) idle and busy, their ratio, the loop's own
CPU time per step (if it stays put while the wall time grows, the step waited
for a core: the machine has none to spare), and how much CPU the worker used
(from /proc, Linux). The machine's load average is in the JSON: on a machine
whose cores are already busy, any background work competes for them. The last line is JSON; its
`p99_ms_idle`, `p99_ms_busy` and `ratio` are for the process worker, the default
of `NeuralBackground`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml.config import get_config  # noqa: E402
from minitml.model import InteractionModel  # noqa: E402
from minitml.neural_background import deadline_under_load  # noqa: E402


def p99(xs: list[float]) -> float:
    return float(torch.tensor(xs).quantile(0.99))


def measure(model, worker: str, steps: int, block: int, n_samples: int) -> dict:
    run = deadline_under_load(model, worker, steps, block, n_samples)
    out = {"worker": worker}
    for phase in ("idle", "busy"):
        out[f"median_ms_{phase}"] = round(float(torch.tensor(run["ms"][phase]).median()), 2)
        out[f"p99_ms_{phase}"] = round(p99(run["ms"][phase]), 2)
        out[f"median_cpu_ms_{phase}"] = round(float(torch.tensor(run["own_ms"][phase]).median()), 2)
        out[f"worker_cpu_share_{phase}"] = round(run["worker_cpu_share"][phase], 3)
    out["ratio"] = round(out["p99_ms_busy"] / out["p99_ms_idle"], 3)
    out["calls_answered_busy"] = run["calls_answered_busy"]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=["process", "thread", "both"], default="both")
    p.add_argument("--steps", type=int, default=300, help="steps per condition")
    p.add_argument("--block", type=int, default=50, help="steps per alternating block")
    p.add_argument("--samples", type=int, default=256, help="answers sampled per call (CPU per call)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = get_config("tiny")
    model = InteractionModel(cfg).eval()
    workers = ["process", "thread"] if args.worker == "both" else [args.worker]
    results = {}
    for worker in workers:
        r = results[worker] = measure(model, worker, args.steps, args.block, args.samples)
        print(f"{worker:7s} worker: step median {r['median_ms_idle']:.1f} -> {r['median_ms_busy']:.1f} ms, "
              f"p99 {r['p99_ms_idle']:.1f} -> {r['p99_ms_busy']:.1f} ms (ratio {r['ratio']:.2f}); "
              f"worker CPU share idle {r['worker_cpu_share_idle']:.2f}, "
              f"busy {r['worker_cpu_share_busy']:.2f}; "
              f"{r['calls_answered_busy']} calls answered while busy")
    main_worker = workers[0]
    line = {"bench": "background", "preset": "tiny", "threads": 1, "steps": args.steps,
            "samples_per_call": args.samples, "cpus": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2), **results[main_worker]}
    for worker in workers[1:]:
        for key in ("p99_ms_busy", "p99_ms_idle", "ratio", "worker_cpu_share_busy"):
            line[f"{key}_{worker}"] = results[worker][key]
    print(json.dumps(line))


if __name__ == "__main__":
    main()
