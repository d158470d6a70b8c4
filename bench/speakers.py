"""Does listening carry over to new voices better when training has more speakers?

    .venv/bin/python bench/speakers.py [--steps 1000] [--record data/speakers_history.json]
    .venv/bin/python bench/speakers.py --heard-feedback --out out/feedback --record data/feedback_history.json

Two runs of `make train`'s recipe as it was before embed_norm (TrainConfig's defaults with
`--embed-norm 0`, one thread each), the same
in everything but the voices of the training users: `speakers="few"` (66 voices) and
`speakers="many"` (348 voices: the same dialogues, line for line, spoken by more people;
world/voices.py). The held-out validation set is the same for both, so their probes
(teacher-forced, every `eval_every` steps) compare directly:

    heard    the heard head naming every held-out user word where it ends
    known    the same, on the words that training users say too (the held-out phrasings'
             own words, "which", "much", were never a target; the new sentences stay)
    value    the asked-for value words of a reply;  reply: a reply's first word

Each run goes to <out>/<speakers> (`python -m minitml train ... --out` there); a run that
has finished is read, not trained again, and one with a last.pt resumes from it. Run the
two at once, one per core: `--only few` in one shell, `--only many` in the other.
`--heard-feedback` trains both with the model reading back its own transcript
(`--heard-feedback 1`: ModelConfig.heard_feedback, train.mishear); their probes then
read back what the heard head named, as a conversation does, not the true words.
`--record` writes each run's validation rows (probes, losses, the tokens trained on since
the row before) to a small JSON file that notebook 07 plots. The last line is JSON.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minitml.train import PROBES  # noqa: E402
from minitml.world.voices import SPEAKERS  # noqa: E402


def run(speakers: str, steps: int, out: Path, threads: int, seed: int = 0,
        heard_feedback: bool = False) -> list[dict]:
    """The history of the run with `speakers` (trained or resumed here when it is not finished)."""
    folder = out / speakers
    history = folder / "history.json"
    if not (history.exists() and json.loads(history.read_text())[-1]["step"] >= steps):
        cmd = [sys.executable, "-m", "minitml", "train", "--threads", str(threads), "--steps", str(steps),
               "--speakers", speakers, "--seed", str(seed), "--out", str(folder),
               "--embed-norm", "0"]  # the recipe these records were made with
        if heard_feedback:
            cmd += ["--heard-feedback", "1"]
        if (folder / "last.pt").exists():
            cmd += ["--resume", str(folder / "last.pt")]
        subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(history.read_text())


def validation_rows(history: list[dict]) -> list[dict]:
    """The rows with probes; each row's "tokens" is what was trained on since the row before,
    so `train.plot_probes(ax, rows, x="tokens")` draws them as it draws a whole history."""
    rows, since = [], 0
    for h in history:
        since += h.get("tokens", 0)
        if "val_loss" in h:
            rows.append({**{k: v for k, v in h.items() if k in ("step", "lr", "elapsed_s")
                            or k.startswith(("val_", "probe_"))}, "tokens": since})
            since = 0
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--out", default="out/speakers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0,
                   help="TrainConfig.seed: initial weights and batch order of both runs (use another --out)")
    p.add_argument("--heard-feedback", action="store_true",
                   help="both runs read back their own transcript (use another --out)")
    p.add_argument("--only", choices=SPEAKERS, default=None, help="train (or read) one run only")
    p.add_argument("--record", default=None, help="write both runs' validation rows here as JSON")
    args = p.parse_args()
    names = [args.only] if args.only else list(SPEAKERS)
    rows = {s: validation_rows(run(s, args.steps, ROOT / args.out, args.threads, args.seed,
                                   args.heard_feedback)) for s in names}
    recipe = "make train's recipe" + (" reading back what it heard" if args.heard_feedback else "")
    print(f"held-out probes, teacher-forced, every {rows[names[0]][1]['step'] - rows[names[0]][0]['step']} "
          f"steps ({args.steps} steps, {recipe}, seed {args.seed})")
    for s in names:
        print(f"speakers={s}")
        for r in rows[s]:
            print(f"  step {r['step']:5d}: " + ", ".join(
                f"{k[6:]} {r[k]:.3f}" for k in PROBES if k in r))
        last = rows[s][-1]
        print("  control (always the commonest): " + ", ".join(
            f"{k[6:]} {last[k + '_chance']:.2f} of {last[k + '_n']}" for k in PROBES if k in last))
    if args.record:
        if names != list(SPEAKERS):
            raise SystemExit("--record needs both runs: run once without --only")
        record = {"steps": args.steps, "seed": args.seed, "heard_feedback": args.heard_feedback, "runs": rows}
        Path(args.record).write_text(json.dumps(record) + "\n")
    print(json.dumps({s: {k: rows[s][-1].get(k) for k in PROBES} for s in names}))


if __name__ == "__main__":
    main()
