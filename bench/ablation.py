"""The ablation: each change of the training recipe alone, against the old recipe.

    .venv/bin/python bench/ablation.py [--steps 300] [--n 30] [--arms old,weights,heard,all,voices,own]

Every arm trains the tiny preset from the same initial weights on the same
6000 training dialogues, in the same batch order, for the same number of steps
(the changes cost next to nothing per step, so equal steps are equal wall time;
the table prints each arm's measured wall time to show it), with the same cosine
learning-rate schedule, then plays the same
held-out scenarios (n per kind, greedy, closed loop) and is scored on the
benchmark's clips (minitml.metrics). The arms:

    old       the recipe data/tiny.pt was first trained with: every target weighs 1
    weights   word targets x5, a reply's first word and <call> / </call> x2 on top
    heard     the heard head: every user word is a target where it ends
    all       both
    voices    both, and the training users' voices perturbed (`train.perturb_voices`)
    own       both, and in the decay half the conversations hear the model's own
              dMel frames instead of the recording (`train.own_speech`: the recipe
              of `make train`)
    speakers  both, on the same dialogues spoken by 348 training voices instead of 66
              (`speakers="many"`, world/voices.py; the held-out voices are the same)
    norm      the `own` arm with one scale for every input: patches, dMel and words each
              through their own RMSNorm (`embed_norm`, InteractionModel.scaled)

`--seed` draws other initial weights and another batch order for every arm
(the same for all arms of one run); `--name` gives an arm's row another name (an
arm run again, with another seed or on another machine, beside its first run).
Each arm writes out/ablation/<arm>/
(checkpoint, history with the probes, results.json); an arm whose results.json
exists is not run again, and one with a last.pt resumes from it. Run it on one
thread while the other core does other work. The last line is JSON.
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from minitml.config import get_config  # noqa: E402
from minitml.evaluate import cell, evaluate  # noqa: E402
from minitml.train import TrainConfig, Trainer, legs_s  # noqa: E402
from minitml.world.dataset import load_dataset, make_dataset  # noqa: E402
from minitml.world.scenarios import KINDS  # noqa: E402
from minitml.world.vocab import VOCAB  # noqa: E402

ARMS = {  # own_speech and embed_norm are TrainConfig's last changes: "own" has the first, "norm" both
    "old": dict(word_weight=1.0, reply_weight=1.0, heard_weight=0.0, own_speech=0.0, embed_norm=0),
    "weights": dict(word_weight=5.0, reply_weight=2.0, heard_weight=0.0, own_speech=0.0, embed_norm=0),
    "heard": dict(word_weight=1.0, reply_weight=1.0, heard_weight=1.0, own_speech=0.0, embed_norm=0),
    "all": dict(word_weight=5.0, reply_weight=2.0, heard_weight=1.0, own_speech=0.0, embed_norm=0),
    "voices": dict(word_weight=5.0, reply_weight=2.0, heard_weight=1.0, voice_shift=2, voice_level=1,
                   own_speech=0.0, embed_norm=0),
    "own": dict(word_weight=5.0, reply_weight=2.0, heard_weight=1.0, own_speech=0.5, embed_norm=0),
    "speakers": dict(word_weight=5.0, reply_weight=2.0, heard_weight=1.0, own_speech=0.0, speakers="many",
                     embed_norm=0),
    "norm": dict(word_weight=5.0, reply_weight=2.0, heard_weight=1.0, own_speech=0.5, embed_norm=1),
}

COLUMNS = [  # (kind, metric) of the table, beside the probes
    ("all", "right"), ("all", "right_chance"), ("smooth_turn", "took_turn"), ("smooth_turn", "latency"),
    ("pause", "took_turn"), ("backchannel", "took_turn"), ("hesitation", "offered_help"),
    ("visual_cue", "on_time"), ("timer", "on_time"), ("background", "called"),
    ("background", "right"), ("interruption", "speaking_at_barge_in"),
]


def run_arm(name: str, steps: int, n: int, out: Path, train, val, seed: int = 0) -> dict:
    folder = out / name
    done = folder / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    tc = TrainConfig(steps=steps, eval_every=50, schedule="cosine", keep_every=0, out=str(folder),
                     seed=seed, **ARMS[name])
    cfg = get_config(tc.preset)  # the arms without the heard loss have no heard head either
    cfg = cfg.replace(model=replace(cfg.model, heard_head=tc.heard_weight > 0,
                                    embed_norm=bool(tc.embed_norm)))
    trainer = Trainer(tc, train, val, cfg=cfg, vocab=list(VOCAB))
    if (folder / "last.pt").exists():
        trainer.resume(folder / "last.pt")
    history = trainer.fit(progress=False)
    start = time.perf_counter()
    results = evaluate(trainer.model, KINDS, n, thresholds=(), progress=False)
    val_row = [h for h in history if "val_loss" in h][-1]
    record = {"arm": name, **ARMS[name], "steps": steps, "seed": seed,
              "train_s": round(sum(legs_s(history)), 1),
              "eval_s": round(time.perf_counter() - start, 1),
              "tokens": sum(h["tokens"] for h in history),
              "probes": {k: v for k, v in val_row.items() if k.startswith("probe_")},
              "results": results}
    done.write_text(json.dumps(record, indent=1))
    return record


def write_record(path: Path, steps: int, n: int, table: list[dict]):
    """Write the arms' figures to `path`; rows already recorded there at the same steps
    and n stay (a row of the same name is replaced), so arms can be run one at a time."""
    arms = {}
    if path.exists():
        old = json.loads(path.read_text())
        if (old["steps"], old["n"]) != (steps, n):
            raise ValueError(f"{path} holds arms of {old['steps']} steps and n={old['n']}, "
                             f"this run is {steps} steps and n={n}: record it elsewhere")
        arms = {r["row"]: r for r in old["arms"]}
    arms.update({r["row"]: r for r in table})
    path.write_text(json.dumps({"steps": steps, "n": n, "arms": list(arms.values())}, indent=1) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n", type=int, default=30, help="held-out scenarios per kind")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--out", default="out/ablation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0,
                   help="TrainConfig.seed: every arm's initial weights and batch order (use another --out)")
    p.add_argument("--name", default=None,
                   help="the row's name in the table and the record (one arm only; default: the arm's), "
                        "for an arm run again")
    p.add_argument("--record", default=None,
                   help="also write the table's figures here as JSON (data/ablation.json is the README's)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tc = TrainConfig()
    val = load_dataset(make_dataset("heldout", tc.val_dialogues, tc.data_seed))
    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; expected some of {list(ARMS)}")
    if args.name and len(arms) != 1:
        raise ValueError(f"--name names one arm's row, got {len(arms)} arms: {args.arms}")
    train = {}  # speakers -> the training dialogues (the same dialogues, other voices)
    records = []
    for a in arms:
        speakers = ARMS[a].get("speakers", TrainConfig.speakers)
        if speakers not in train:
            train[speakers] = load_dataset(make_dataset("train", tc.train_dialogues, tc.data_seed,
                                                        speakers=speakers))
        records.append({**run_arm(a, args.steps, args.n, Path(args.out), train[speakers], val, args.seed),
                        "row": args.name or a})
    print(f"{args.steps} steps per arm (batch {tc.batch_size}), {args.n} held-out scenarios per kind")
    head = ["arm", "train min", "probe value", "probe heard"] + [f"{k} {m}" for k, m in COLUMNS]
    print(" | ".join(head))
    for r in records:
        p_ = r["probes"]
        heard = f"{p_['probe_heard']:.2f}" if "probe_heard" in p_ else "-"
        heard += f" (known words {p_['probe_known']:.2f})" if "probe_known" in p_ else ""
        cells = [r["row"], f"{r['train_s'] / 60:.0f}", f"{p_['probe_value']:.2f} (n={p_['probe_value_n']})",
                 heard] + [cell(r["results"][k]["model"], m) for k, m in COLUMNS]
        print(" | ".join(cells))
    table = [{**{k: v for k, v in r.items() if k != "results"},
              "model": {f"{k}.{m}": r["results"][k]["model"].get(m) for k, m in COLUMNS},
              "counts": {f"{k}.{m}": cell(r["results"][k]["model"], m) for k, m in COLUMNS}}
             for r in records]
    if args.record:
        write_record(Path(args.record), args.steps, args.n, table)
    print(json.dumps([{k: v for k, v in r.items() if k != "results"} for r in records]))


if __name__ == "__main__":
    main()
