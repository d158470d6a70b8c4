"""Which shape of model learns most per CPU minute: throughput, MFU and (optionally) probes.

    .venv/bin/python bench/shapes.py                  # tokens/s and MFU of each shape (minutes)
    .venv/bin/python bench/shapes.py --minutes 20     # then train each for 20 min and probe it

The shapes are the tiny preset and a few neighbours of about its size (SHAPES). The
first row, "old", is the tiny preset as `data/tiny.pt` was first trained: no heard head
and every target weighing 1; every ratio is against it, measured in the same run.

Throughput. Each shape gets a `Trainer` on the real training data (same seed, same batch
order); the shapes then take turns, `--steps` training steps each, for `--rounds` rounds,
so a burst of load on this shared machine falls on all of them alike. Reported: the
median step time, training tokens per second, the FLOPs of one step as PyTorch's
`FlopCounterMode` counts them on a real step (matmuls and attention: what MFU counts),
and MFU against the matrix rate measured in the same run (fp32 1024 x 1024 on one thread).

Equal wall time (`--minutes M`). Each shape then trains on for as many steps as M minutes
hold at its measured step time (a cosine schedule over those steps) and is probed on the
held-out dialogues, teacher-forced (`Trainer.validate`: the asked-for value words, every
word, the heard head), beside each probe's control. The last line is JSON.
"""

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from mfu import matmul_rate  # noqa: E402  (bench/mfu.py)
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from minitml.config import get_config  # noqa: E402
from minitml.train import TrainConfig, Trainer  # noqa: E402
from minitml.world.dataset import load_dataset, make_dataset  # noqa: E402
from minitml.world.vocab import VOCAB  # noqa: E402

OLD = dict(word_weight=1.0, reply_weight=1.0, heard_weight=0.0)  # the first recipe's weights
SHAPES = {  # name: (changes to the tiny preset's model config, recipe changes)
    "old": (dict(heard_head=False), OLD),
    "tiny": ({}, {}),
    "deep": (dict(d_model=96, n_layers=6, d_ff=384), {}),
    "wide": (dict(d_model=192, n_layers=2, n_heads=6, n_kv_heads=6, d_ff=768), {}),
    "dense": (dict(moe_every=0), {}),
}


def shape_config(name: str):
    cfg = get_config("tiny")
    model, _ = SHAPES[name]
    if "d_model" in model:  # the experts scale with the width, as in the preset (2 x d_model)
        cfg = cfg.replace(moe=replace(cfg.moe, d_expert=2 * model["d_model"]))
    return cfg.replace(model=replace(cfg.model, **model))


def make_trainer(name: str, steps: int, base: TrainConfig, out: Path, train, val) -> Trainer:
    _, recipe = SHAPES[name]
    tc = replace(base, steps=steps, schedule="cosine", eval_every=10**9, keep_every=0,
                 out=str(out / name), **recipe)
    return Trainer(tc, train, val, cfg=shape_config(name), vocab=list(VOCAB))


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one training step on a real batch, as FlopCounterMode counts them."""
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return counter.get_total_flops()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="timed steps per shape per round")
    p.add_argument("--minutes", type=float, default=0.0, help="then train each shape this long and probe it")
    p.add_argument("--out", default="out/shapes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--train-dialogues", type=int, default=TrainConfig.train_dialogues)
    p.add_argument("--val-dialogues", type=int, default=TrainConfig.val_dialogues)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = args.shapes.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        p.error(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    base = TrainConfig(batch_size=args.batch_size, train_dialogues=args.train_dialogues,
                       val_dialogues=args.val_dialogues)
    train = load_dataset(make_dataset("train", base.train_dialogues, base.data_seed))
    val = load_dataset(make_dataset("heldout", base.val_dialogues, base.data_seed))
    out = Path(args.out)

    trainers = {n: make_trainer(n, 10**6, base, out, train, val) for n in names}
    flops = {n: step_flops(t) for n, t in trainers.items()}  # also the warm-up step
    times: dict[str, list[float]] = {n: [] for n in names}
    tokens: dict[str, list[int]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for n, t in trainers.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                row = t.train_step()
                times[n].append(time.perf_counter() - t0)
                tokens[n].append(row["tokens"])
    rate = matmul_rate(torch.device("cpu"), torch.float32, 1024, repeats=5)

    rows = []
    for n in names:
        step_s = statistics.median(times[n])
        per_token = flops[n] / statistics.mean(tokens[n])  # the counted step had its own batch
        tok_s = statistics.mean(tokens[n]) / step_s
        m = trainers[n].model
        rows.append({"shape": n, "params": sum(q.numel() for q in m.parameters()),
                     "d_model": m.cfg.model.d_model, "n_layers": m.cfg.model.n_layers,
                     "moe_every": m.cfg.model.moe_every, "step_s": step_s, "tokens_per_s": tok_s,
                     "mfu": per_token * tok_s / rate})
    ref = rows[0]
    print(f"{args.rounds} rounds x {args.steps} steps per shape (batch {base.batch_size}), one thread; "
          f"matmul rate measured {rate / 1e9:.1f} GFLOP/s; ratios against '{ref['shape']}'")
    print(f"{'shape':6} {'params':>9} {'d':>4} {'L':>2} {'step s':>7} {'tokens/s':>9} {'x':>5} "
          f"{'MFU':>6} {'x':>5}")
    for r in rows:
        print(f"{r['shape']:6} {r['params']:>9,} {r['d_model']:>4} {r['n_layers']:>2} {r['step_s']:>7.2f} "
              f"{r['tokens_per_s']:>9,.0f} {r['tokens_per_s'] / ref['tokens_per_s']:>5.2f} "
              f"{r['mfu']:>6.1%} {r['mfu'] / ref['mfu']:>5.2f}")

    if args.minutes:
        for r in rows:
            n = r["shape"]
            steps = max(1, int(args.minutes * 60 / r["step_s"]))
            t = make_trainer(n, steps, base, out, train, val)  # afresh: the same weights and batches
            start = time.perf_counter()
            while t.step < steps:
                t.train_step()
            r.update(minutes=(time.perf_counter() - start) / 60, steps=steps)
            r.update({k: v for k, v in t.validate().items() if k.startswith(("probe_", "val_"))})
        print(f"\nequal wall time: {args.minutes:g} min of training each, then the held-out probes "
              f"(teacher-forced, n targets; control: always the commonest)")
        print(f"{'shape':6} {'steps':>5} {'min':>5} {'value':>6} {'words':>6} {'heard':>6} {'val loss':>8}")
        for r in rows:
            heard = f"{r['probe_heard']:.2f}" if "probe_heard" in r else "-"
            print(f"{r['shape']:6} {r['steps']:>5} {r['minutes']:>5.1f} {r['probe_value']:>6.2f} "
                  f"{r['probe_words']:>6.2f} {heard:>6} {r['val_loss']:>8.3f}")
        c = rows[-1]
        print(f"controls: value {c['probe_value_chance']:.2f} (n={c['probe_value_n']}), "
              f"words {c['probe_words_chance']:.2f} (n={c['probe_words_n']})")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
