"""How long is each kind of input vector? The mean length of a checkpoint's embeddings, by kind.

    .venv/bin/python bench/scales.py --checkpoint data/tiny.pt [--n 12]

Every position of a micro-turn enters the stack as a sum of embeddings: a patch's pixels, a
user-audio token's dMel frames, a text-in word, and in an output slot a word plus its frames.
This prints the mean length (L2 norm over d_model) of each kind on real dialogues, after
`InteractionModel.scaled` (which changes nothing unless the model has embed_norm). Where
one kind is far longer than another, the shorter one is a small part of any sum it is in.
The last line is JSON.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from minitml import checkpoint  # noqa: E402
from minitml.stream import Blocks  # noqa: E402
from minitml.world.dataset import load_dataset, make_dataset, to_blocks  # noqa: E402


def lengths(model, blocks: Blocks) -> dict[str, float]:
    """{kind: mean vector length} of one batch's embeddings, kind by kind."""
    grid = model.cfg.vision.grid
    kinds = {"patch": model.scaled("patch", model.patch_embedding(blocks.patches, grid)),
             "user dMel": model.scaled("audio", model.dmel_embedding(blocks.user_audio)),
             "model dMel": model.scaled("audio", model.dmel_embedding(blocks.out_audio)),
             "word": model.scaled("word", model.text_embedding.weight[1:])}  # every word but PAD
    return {kind: x.norm(dim=-1).mean().item() for kind, x in kinds.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=12, help="training-split dialogues (seed 1)")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = checkpoint.load(args.checkpoint).eval()
    examples = load_dataset(make_dataset("train", args.n, 1, progress=False))
    rows = []
    with torch.no_grad():
        for example in examples:
            rows.append(lengths(model, to_blocks(example, model.cfg)))
    mean = {kind: sum(r[kind] for r in rows) / len(rows) for kind in rows[0]}
    print(f"{args.checkpoint}: mean embedding length by kind ({len(rows)} dialogues)")
    for kind, value in mean.items():
        print(f"  {kind:10s} {value:9.2f}   x word {value / mean['word']:8.1f}")
    print(json.dumps(mean))


if __name__ == "__main__":
    main()
