"""Does the micro-turn loop keep its deadline while the background model is busy?

    .venv/bin/python bench/background.py                  # process and thread workers
    .venv/bin/python bench/background.py --worker process --steps 500

One tiny-preset Session (one torch thread, randomly initialised: it costs what a
trained one costs) steps back to back, in alternating blocks:

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
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml.config import get_config  # noqa: E402
from minitml.model import InteractionModel  # noqa: E402
from minitml.neural_background import NeuralBackground  # noqa: E402
from minitml.session import Session  # noqa: E402

HARD = "eighty seven times sixty three".split()


def cpu_seconds(background: NeuralBackground) -> float:
    """CPU time (user + system) the worker has used so far, from /proc (0 where unavailable)."""
    if background.worker == "process":
        path = f"/proc/{background.pid}/stat"
    else:
        path = f"/proc/self/task/{background._handle.native_id}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def p99(xs: list[float]) -> float:
    return float(torch.tensor(xs).quantile(0.99))


def measure(model, worker: str, steps: int, block: int, n_samples: int) -> dict:
    bg = NeuralBackground(n_samples=n_samples, word_delay_s=0.0, worker=worker, timeout_s=1e6)
    session = Session(model, background=bg, overrun="ignore")
    chunk = 0.05 * torch.randn(3200, generator=torch.Generator().manual_seed(0))
    for _ in range(20):  # warm both paths
        session.step(chunk)
    ms = {"idle": [], "busy": []}
    own = {"idle": [], "busy": []}  # the loop's own CPU time per step (ms)
    cpu = {"idle": 0.0, "busy": 0.0}
    wall = {"idle": 0.0, "busy": 0.0}
    answered = 0
    for i in range(2 * steps // block):
        phase = "busy" if i % 2 else "idle"
        if phase == "busy":  # more work than the block can finish: the worker never pauses
            for _ in range(block):
                session.handoff.submit(HARD, session.turn * 0.2, session.turn)
        c0, w0 = cpu_seconds(bg), time.perf_counter()
        for _ in range(block):
            t0 = time.thread_time()
            ms[phase].append(session.step(chunk).compute_ms)
            own[phase].append(1000 * (time.thread_time() - t0))
        cpu[phase] += cpu_seconds(bg) - c0
        wall[phase] += time.perf_counter() - w0
        if phase == "busy":
            answered += sum(c.status == "done" for c in session.handoff.calls)
            session.cancel_background()
            session.reset()  # forget the calls: the next idle block starts clean
            time.sleep(0.1)  # the worker drops the cancelled calls
    session.close()
    out = {"worker": worker}
    for phase in ("idle", "busy"):
        out[f"median_ms_{phase}"] = round(float(torch.tensor(ms[phase]).median()), 2)
        out[f"p99_ms_{phase}"] = round(p99(ms[phase]), 2)
        out[f"median_cpu_ms_{phase}"] = round(float(torch.tensor(own[phase]).median()), 2)
        out[f"worker_cpu_share_{phase}"] = round(cpu[phase] / wall[phase], 3)
    out["ratio"] = round(out["p99_ms_busy"] / out["p99_ms_idle"], 3)
    out["calls_answered_busy"] = answered
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
