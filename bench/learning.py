"""The learning test's small model, trained and scored for several data seeds.

    .venv/bin/python bench/learning.py [--kinds smooth_turn,pause] [--seeds 7,8,9]

`tests/test_train.py::test_a_small_model_learns_to_take_turns` trains this model
once (data seed 7, both kinds) and asserts what it learned. Here the same recipe
runs for each seed, to show how much of that is the recipe and how much the draw:
a narrow 2-layer model, 500 steps on 1000 dialogues of the given kinds, on one
thread, then scored on 8 held-out `smooth_turn` and 8 `pause` dialogues (the
benchmark's clips, greedy, closed loop) beside the walkie-talkie that waits for
0.8 s of silence. A run is deterministic on one processor, not across processors.
The last line is JSON.
"""

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from minitml.config import get_config  # noqa: E402
from minitml.evaluate import cell, evaluate  # noqa: E402
from minitml.train import TrainConfig, Trainer  # noqa: E402
from minitml.world.dataset import load_dataset, make_dataset  # noqa: E402
from minitml.world.vocab import VOCAB  # noqa: E402


def train_and_score(kinds: list[str], seed: int, folder: Path) -> tuple[list[dict], dict]:
    """The learning test's run -> (its history, evaluate's results on smooth_turn and pause)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = load_dataset(make_dataset("train", 1000, seed, kinds=kinds, folder=folder / "t",
                                          progress=False))
        val = load_dataset(make_dataset("heldout", 16, seed, kinds=kinds, folder=folder / "v",
                                        progress=False))
        base = get_config("tiny")
        cfg = base.replace(model=replace(base.model, d_model=64, n_layers=2, d_ff=256),
                           moe=replace(base.moe, d_expert=128))
        tc = TrainConfig(steps=500, batch_size=8, max_turns=40, warmup=20, lr=6e-3, word_weight=10.0,
                         reply_weight=1.0, heard_weight=1.0, schedule="cosine", eval_every=250,
                         own_speech=0.0, out=str(folder / "run"))
        trainer = Trainer(tc, train, val, cfg=cfg, vocab=list(VOCAB))
        history = trainer.fit(progress=False)
        results = evaluate(trainer.model, ["smooth_turn", "pause"], n=8, vocab=list(VOCAB),
                           thresholds=(0.8,), progress=False)
    finally:
        torch.set_num_threads(threads)
    return history, results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kinds", default="smooth_turn,pause", help="the kinds it trains on")
    p.add_argument("--seeds", default="7,8,9", help="data seeds, one run each")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    rows = []
    print(f"trained on {kinds}; seed | turns taken | latency | pauses taken | heard (control) | "
          f"walkie-talkie 0.8 s: turns, latency, pauses")
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            history, results = train_and_score(kinds, seed, Path(tmp))
        last, turn, pause = history[-1], results["smooth_turn"], results["pause"]
        walkie = "walkie_talkie_0.8"
        print(f"{seed} | {cell(turn['model'], 'took_turn')} | {cell(turn['model'], 'latency')} | "
              f"{cell(pause['model'], 'took_turn')} | {last['probe_heard']:.2f} of {last['probe_heard_n']} "
              f"({last['probe_heard_chance']:.2f}) | {cell(turn[walkie], 'took_turn')}, "
              f"{cell(turn[walkie], 'latency')}, {cell(pause[walkie], 'took_turn')}", flush=True)
        rows.append({"seed": seed, "kinds": kinds, "turns": turn["model"]["took_turn"],
                     "latency": turn["model"]["latency"], "pauses": pause["model"]["took_turn"],
                     "heard": last["probe_heard"], "heard_chance": last["probe_heard_chance"]})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
