"""What a model that reads back what it hears wrote down: its transcript against the script.

    .venv/bin/python bench/transcript.py --checkpoint out/feedback/few/model.pt [--n 20]

A model trained with `--heard-feedback 1` names, at every user-audio token, the user word
that ends there, and reads that word back (ModelConfig.heard_feedback). In a conversation
those words are its transcript of the user (`Timeline.heard`). Here it runs closed loop on n
held-out scenarios per kind (`--split train`: the training voices and phrasings) and its
transcript is scored against the words the user said (`Scenario.user_words`):

    wer       word error rate of the transcript, pooled over the scenarios (an empty
              transcript scores 1.00: the control)
    found     the share of the user's words that the transcript holds somewhere in the
              same scenario (order and time aside: what a reply could use)
    kept      the share of the transcript's words that the user said in that scenario:
              naming a word at every token would find much and keep little

Three scenarios are printed whole: what was said, what was heard, what the model replied.
The last line is JSON.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minitml import checkpoint  # noqa: E402
from minitml.evaluate import run_scenario  # noqa: E402
from minitml.metrics import word_errors  # noqa: E402
from minitml.session import Session  # noqa: E402
from minitml.world.scenarios import make_scenario  # noqa: E402


def transcript_scores(model, kinds: list[str], n: int, split: str = "heldout", show: int = 3) -> dict:
    """Closed-loop runs -> {kind: {"wer", "words", "found", "heard", "kept", "examples"}} and
    "all" pooled."""
    results, pooled = {}, Counter()
    for kind in kinds:
        errors = total = found = n_heard = 0
        examples = []
        for seed in range(n):
            scenario = make_scenario(kind, seed, split)
            timeline = run_scenario(Session(model, overrun="ignore"), scenario)
            said = [w for w, _, _ in scenario.user_words]
            heard = [w for w, _ in timeline.heard]
            e, m = word_errors(said, heard)
            errors, total, n_heard = errors + e, total + m, n_heard + len(heard)
            left = Counter(heard)
            for w in said:  # each heard word accounts for one said word at most
                if left[w] > 0:
                    left[w] -= 1
                    found += 1
            if len(examples) < show:
                examples.append({"said": " ".join(said), "heard": " ".join(heard),
                                 "replied": " ".join(w for w, _ in timeline.words)})
        results[kind] = {"wer": errors / max(1, total), "words": total, "found": found / max(1, total),
                         "heard": n_heard, "kept": found / max(1, n_heard), "examples": examples}
        pooled.update(errors=errors, words=total, found=found, heard=n_heard)
    results["all"] = {"wer": pooled["errors"] / max(1, pooled["words"]), "words": pooled["words"],
                      "found": pooled["found"] / max(1, pooled["words"]), "heard": pooled["heard"],
                      "kept": pooled["found"] / max(1, pooled["heard"])}
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--n", type=int, default=20, help="scenarios per kind")
    p.add_argument("--kinds", default="smooth_turn,visual_cue,background")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"])
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    model = checkpoint.load(args.checkpoint).eval()
    if model.heard_embedding is None:
        raise SystemExit(f"{args.checkpoint} does not read back what it hears (trained without "
                         "--heard-feedback 1): it has no transcript to score")
    results = transcript_scores(model, args.kinds.split(","), args.n, args.split)
    print(f"{args.checkpoint}, {args.n} {args.split} scenarios per kind, closed loop, greedy")
    for kind, r in results.items():
        print(f"  {kind:14s} wer {r['wer']:.2f}  found {r['found']:.2f} of {r['words']} words said  "
              f"kept {r['kept']:.2f} of {r['heard']} heard  (an empty transcript: wer 1.00, found 0.00)")
        for ex in r.get("examples", []):
            for name in ("said", "heard", "replied"):
                print(f"      {name + ':':8s} {ex[name]}")
    print(json.dumps({k: {m: round(v[m], 3) for m in ("wer", "found", "kept")}
                      | {"words": v["words"], "heard": v["heard"]} for k, v in results.items()}))


if __name__ == "__main__":
    main()
