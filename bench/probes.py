"""Does what a checkpoint learned carry over to new voices? Its probes on two sets of dialogues.

    .venv/bin/python bench/probes.py --checkpoint out/train/model.pt [--n 180]

The probes of `Trainer.validate` (teacher-forced: the asked-for value words, a reply's
first word, every monologue word, and the heard head naming each user word, each
beside its control, always the commonest target), on
- held-out dialogues: held-out voices and phrasings (the validation set of training);
- fresh training-split dialogues: the training voices and phrasings, in dialogues drawn
  with another seed, so none of them was trained on.
The value words are also split by question: value_lookup (a fact known or seen: a
colour, legs, the light, a shape, an object) and value_arithmetic (a sum, a difference,
the next number). The gap between the two rows is what the model learned about its training voices
and phrasings rather than about speech; `known` (the heard head on the words that
training users say too) leaves out the held-out phrasings' own words, though not the
new sentences the other words come in. A third row feeds the held-out set the model's own dMel
frames in place of the recorded assistant audio (`train.own_speech`), as a
conversation does: the gap to the first row is exposure bias. The last line is JSON.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from minitml import checkpoint  # noqa: E402
from minitml.train import PROBES, TOPICS, TrainConfig, Trainer  # noqa: E402
from minitml.world.dataset import load_dataset, make_dataset  # noqa: E402
from minitml.world.voices import SPEAKERS  # noqa: E402


def set_options(p: argparse.ArgumentParser, n: int) -> None:
    """The options of a bench that probes a checkpoint on the two sets of voices."""
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=n, help="dialogues per set")
    p.add_argument("--seed", type=int, default=1, help="seed of the fresh training-split dialogues "
                   "(training used seed 0)")
    p.add_argument("--speakers", default=TrainConfig.speakers, choices=SPEAKERS,
                   help="the training voices the checkpoint was trained on (TrainConfig.speakers)")
    p.add_argument("--threads", type=int, default=1)


def two_sets(args, kinds: list[str] | None = None) -> dict[str, list]:
    """{'held-out voices': ..., 'training voices': ...}: args.n dialogues of each (kinds: all)."""
    return {"held-out voices": load_dataset(make_dataset("heldout", args.n, 0, kinds, progress=False)),
            "training voices": load_dataset(make_dataset("train", args.n, args.seed, kinds, progress=False,
                                                         speakers=args.speakers))}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    set_options(p, TrainConfig.val_dialogues)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = checkpoint.load(args.checkpoint)
    sets = two_sets(args)
    tc = TrainConfig(heard_weight=1.0 if model.cfg.model.heard_head else 0.0)
    # the fresh training dialogues say the training phrasings' words: probe_known counts those
    trainer = Trainer(tc, sets["training voices"], [], cfg=model.cfg, vocab=model.vocab)
    trainer.model.load_state_dict(model.state_dict())
    rows = {}
    print(f"{args.checkpoint}: teacher-forced probes (control: always the commonest target)")
    runs = [(name, examples, False) for name, examples in sets.items()]
    runs.append(("held-out, own voice", sets["held-out voices"], True))
    shown = [*PROBES, *(f"probe_value_{topic}" for topic in TOPICS)]
    for name, examples, own in runs:
        trainer.val_examples = examples
        rows[name] = trainer.validate(own=own)
        cells = [f"{p.removeprefix('probe_')} {rows[name][p]:.2f} (control {rows[name][p + '_chance']:.2f}, "
                 f"n={rows[name][p + '_n']})" for p in shown if p in rows[name]]
        print(f"  {name:19s} " + "; ".join(cells))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
