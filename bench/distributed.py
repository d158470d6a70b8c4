"""Training throughput: 1 process against 2 (FSDP2 over gloo; experts gathered or split), compile on/off.

    .venv/bin/python bench/distributed.py                 # tiny preset, about 3 minutes on 2 cores
    .venv/bin/python bench/distributed.py --steps 40 --batch-size 16 --no-compile

Every variant is the same training run (`python -m minitml train`, same seed,
same global batch, same data), started as a fresh command:

    1 process, 1 thread          the baseline every ratio is against
    1 process, 2 threads         intra-op parallelism: torch splits each matmul over 2 cores
    2 processes, 1 thread each   data parallelism with FSDP2 (torchrun, gloo): half the batch each
    2 processes, experts split   the same, with expert parallelism: each process keeps 2 of the
                                 4 experts and sends tokens to them (all-to-all) instead of
                                 gathering the experts' weights
    1 process, 1 thread, compile torch.compile of each block's attention and dense FFN (the
                                 MoE dispatch has data-dependent shapes and stays eager);
                                 the first steps pay for compiling, from an empty cache

Throughput = tokens of the global batch per second over the steps after the
first `--warmup` (compiling, allocator and cache warm-up are excluded). The
last loss of each run is printed beside it, and the largest relative difference
from the baseline's losses over all steps: the variants train the same model
(FSDP's reduction order and the per-process MoE balance loss are the only
differences of the 2-process run). The last line is JSON.

On a 2-core machine, two processes cannot double the speed of one: the
baseline's one thread already owns a core, and a second process brings its
own copy of the activations, its share of the batch's preprocessing, and
all-gathers and reduce-scatters of every block's weights each step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, launcher: list[str], extra: list[str], args, out: Path, env: dict) -> dict:
    folder = out / name.replace(" ", "_").replace(",", "")
    command = [*launcher, "train", "--preset", args.preset, "--steps", str(args.warmup + args.steps),
               "--batch-size", str(args.batch_size), "--max-turns", str(args.max_turns),
               "--train-dialogues", str(args.dialogues), "--val-dialogues", "4",
               "--eval-every", "100000", "--out", str(folder), *extra]
    # A fresh compile cache per variant: the first steps show the whole cost of compiling.
    env = {**env, "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor")}
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    history = json.loads((folder / "history.json").read_text())
    measured = history[args.warmup:]
    seconds = measured[-1]["elapsed_s"] - history[args.warmup - 1]["elapsed_s"]
    tokens = sum(row["tokens"] for row in measured)
    return {"variant": name, "history": history,
            "tokens_per_s": tokens / seconds, "s_per_step": seconds / len(measured),
            "first_steps_s": history[args.warmup - 1]["elapsed_s"], "last_loss": history[-1]["loss"],
            "command_s": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=20, help="measured steps")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before measuring")
    parser.add_argument("--batch-size", type=int, default=8, help="global batch (conversations)")
    parser.add_argument("--max-turns", type=int, default=30,
                        help="micro-turns per conversation (30 = 6 s; every conversation is longer)")
    parser.add_argument("--dialogues", type=int, default=64, help="training conversations generated")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = parser.parse_args()

    python = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    one = [python, "-m", "minitml"]
    two = [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "minitml"]
    variants = [("1 process, 1 thread", one, ["--threads", "1"]),
                ("1 process, 2 threads", one, ["--threads", "2"]),
                ("2 processes, 1 thread each", two, ["--threads", "1"]),
                ("2 processes, experts split", two, ["--threads", "1", "--expert-parallel"])]
    if not args.no_compile:
        variants.append(("1 process, 1 thread, compile", one, ["--threads", "1", "--compile"]))

    print(f"{args.preset} preset, global batch {args.batch_size} x {args.max_turns} micro-turns, "
          f"{args.steps} steps measured after {args.warmup}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, launcher, extra in variants:
            rows.append(run(name, launcher, extra, args, Path(tmp), env))
            r = rows[-1]
            print(f"  {name:30s} {r['tokens_per_s']:8.0f} tokens/s  {r['s_per_step']:6.3f} s/step  "
                  f"(first {args.warmup} steps {r['first_steps_s']:.1f} s)  last loss {r['last_loss']:.5f}")
    base = rows[0]["tokens_per_s"]
    print(f"\nparity with 1 process, 1 thread: largest relative difference over all "
          f"{args.warmup + args.steps} steps")
    for r in rows[1:]:
        r["parity"] = {key: max(abs(a[key] - b[key]) / abs(a[key])
                                for a, b in zip(rows[0]["history"], r["history"]))
                       for key in ("loss", "text", "mel", "aux", "grad_norm")}
        print(f"  {r['variant']:30s} " + "  ".join(f"{k} {v:.1e}" for k, v in r["parity"].items()))
    print(f"\n| variant | tokens/s | ratio to 1 process, 1 thread | first {args.warmup} steps (s) "
          f"| last loss |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["ratio"] = r["tokens_per_s"] / base
        print(f"| {r['variant']} | {r['tokens_per_s']:.0f} | {r['ratio']:.2f} | "
              f"{r['first_steps_s']:.1f} | {r['last_loss']:.5f} |")
    for r in rows:
        del r["history"]
    print(json.dumps({"bench": "distributed", "preset": args.preset, "batch_size": args.batch_size,
                      "max_turns": args.max_turns, "steps": args.steps,
                      "load_average": os.getloadavg()[0], "rows": rows}))


if __name__ == "__main__":
    main()
