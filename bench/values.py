"""Which questions does a checkpoint answer? Its value words, question by question.

    .venv/bin/python bench/values.py --checkpoint data/tiny.pt [--n 180]

The value probe of training (`Trainer.validate`'s probe_value: teacher-forced, greedy,
given the true past) split by what was asked, on the two sets of bench/probes.py
(held-out voices and phrasings; fresh training-split dialogues), made of the kinds
that ask something:

    q_add, q_minus, q_after          a sum, a difference, the next number (worked out)
    q_colour, q_legs                 a fact about a thing or an animal (known)
    q_light, q_shape, q_holding      what the camera shows (seen)
    cue, tool                        a reply to a change seen, a background result read out

Each cell is right / targets beside its control, always the group's commonest value
word. A group at its control has learned the reply's template and not the value: the
tiny model knows where a sum goes long before it knows the sum. `--confusions q_light`
also prints, for one group, the commonest (asked-for value, word said instead) pairs and
the words said most often there. The last line is JSON.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/probes.py

import torch  # noqa: E402
from probes import set_options, two_sets  # noqa: E402

from minitml import checkpoint  # noqa: E402
from minitml.stream import PAD  # noqa: E402
from minitml.train import ASK_GROUPS, TrainConfig, Trainer, ask_group, value_targets  # noqa: E402

ASKING = ("smooth_turn", "pause", "interruption", "hesitation", "visual_cue", "background")  # kinds that ask


def group_scores(trainer: Trainer, examples: list,
                 pairs: dict[str, Counter] | None = None) -> dict[str, dict]:
    """{group: {right, n, chance}} of the value words over `examples`, one dialogue at a time.
    pairs: {group: Counter}, filled with the (target id, guessed id) pairs of those groups."""
    right, counts = Counter(), {g: Counter() for g in ASK_GROUPS}
    trainer.model.eval()
    with torch.no_grad():
        for i, example in enumerate(examples):
            blocks = trainer.batch(examples, [i])
            guess = trainer.model(blocks, heard=trainer.own_heard(blocks)).text_logits.argmax(-1)  # (1, T, A)
            asked = json.loads(example["annotations"])
            for group in {ask_group(ask, asked["transcript"]) for ask in asked["asked"]}:
                mask = value_targets(example, trainer.cfg, blocks.n_turns, group=group)[None]
                mask &= blocks.out_text != PAD
                right[group] += int((guess == blocks.out_text)[mask].sum())
                counts[group].update(blocks.out_text[mask].tolist())
                if pairs is not None and group in pairs:
                    pairs[group].update(zip(blocks.out_text[mask].tolist(), guess[mask].tolist()))
    return {g: {"right": right[g], "n": sum(counts[g].values()),
                "chance": max(counts[g].values()) / sum(counts[g].values()) if counts[g] else 0.0}
            for g in ASK_GROUPS}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    set_options(p, 300)
    p.add_argument("--kinds", default=",".join(ASKING), help="comma-separated (default: the kinds that ask)")
    p.add_argument("--confusions", default=None, choices=ASK_GROUPS,
                   help="also print what the model said in place of this group's values")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = checkpoint.load(args.checkpoint)
    sets = two_sets(args, args.kinds.split(","))
    tc = TrainConfig(heard_weight=1.0 if model.cfg.model.heard_head else 0.0)
    trainer = Trainer(tc, sets["training voices"], [], cfg=model.cfg, vocab=model.vocab)
    trainer.model.load_state_dict(model.state_dict())
    pairs = {args.confusions: Counter()} if args.confusions else None
    rows = {name: group_scores(trainer, examples, pairs) for name, examples in sets.items()}
    print(f"{args.checkpoint}: teacher-forced value words by question (control: the group's commonest value)")
    print(f"| question | {' | '.join(rows)} |")
    print("| --- |" + " ---: |" * len(rows))
    for g in ASK_GROUPS:
        cells = [f"{r[g]['right']}/{r[g]['n']} (control {r[g]['chance']:.2f})" if r[g]["n"] else "-"
                 for r in rows.values()]
        print(f"| {g} | {' | '.join(cells)} |")
    if pairs:
        said = pairs[args.confusions]
        vocab = model.vocab
        print(f"{args.confusions}, both sets, {sum(said.values())} value words: (asked, said) "
              + ", ".join(f"({vocab[t]}, {vocab[g]}) {c}" for (t, g), c in said.most_common(8)))
        words = Counter()
        for (_, g), c in said.items():
            words[g] += c
        print("  said most: " + ", ".join(f"{vocab[g]} {c}" for g, c in words.most_common(5)))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
