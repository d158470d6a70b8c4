"""The scoreboard against training tokens: every checkpoint a run kept, scored closed loop.

    .venv/bin/python bench/curves.py --run out/train --n 50 --record data/curves.json
    .venv/bin/python bench/curves.py --run out/train --steps 1200,1500 --record data/curves.json


`python -m minitml train` copies its checkpoint to step<N>.pt every `keep_every` steps (300
in TrainConfig's defaults). Each of them is scored as `make eval` scores the shipped file:
`evaluate` on n held-out scenarios per kind (seeds 0..n-1), the model scored from the
folders it exports (written to a temporary folder and dropped). Each target of
`evaluate.TARGETS` is kept at the tokens trained on by that step, beside the scripted
ground truth's and the two walkie-talkies' (no step changes those: they are scored with
the first checkpoint of a call). `--steps` scores some of the checkpoints, and a record
already there for the same run, n and kinds keeps the points of the other steps, so the
work can be split across calls (run one after the other: each rewrites the record). A
target a model of this size cannot reach shows as a curve that flattens below its goal;
one still rising says the run is short.

Read the last point apart from the others: under the `wsd` schedule every checkpoint but
the last is the stable phase, at the full learning rate; the last has decayed, and the
decay (and the own speech it brings) is a step up, not a point on the same trend.
"""

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from minitml import checkpoint  # noqa: E402
from minitml.evaluate import THRESHOLDS, check_targets, evaluate  # noqa: E402
from minitml.world.scenarios import KINDS  # noqa: E402


def kept_checkpoints(run: Path) -> list[tuple[int, Path]]:
    """[(step, path)] of a run's step<N>.pt files, in order of step."""
    found = sorted((int(m.group(1)), p) for p in run.glob("step*.pt")
                   if (m := re.fullmatch(r"step(\d+)\.pt", p.name)))
    if not found:
        raise SystemExit(f"{run} keeps no step<N>.pt: expected the --out folder of a "
                         f"`python -m minitml train` run with keep_every > 0")
    return found


def tokens_at(path: Path, step: int) -> int:
    """Training tokens up to `step`, summed from the history a kept checkpoint carries."""
    extra = torch.load(path, map_location="cpu", weights_only=False).get("extra", {})
    history = json.loads(extra.get("history", "[]"))
    return sum(row["tokens"] for row in history if row["step"] <= step)


def target_cells(results: dict, system: str) -> list[dict]:
    """check_targets' rows, each with the count behind its rate (k of n) where it has one."""
    rows = []
    for row in check_targets(results, system):
        summary = results[row["kind"]][system]
        k, n = summary.get(row["metric"] + "_k"), summary.get(row["metric"] + "_n")
        rows.append({**row, "k": k, "n": n})
    return rows


def merged(path: Path, record: dict) -> dict:
    """`record` with the points of other steps that the record at `path` holds, if that one
    scored the same run, n and kinds."""
    if not path.exists():
        return record
    old = json.loads(path.read_text())
    if (old["run"], old["n"], old["kinds"]) != (record["run"], record["n"], record["kinds"]):
        return record
    steps = {p["step"] for p in record["points"]}
    points = sorted(record["points"] + [p for p in old["points"] if p["step"] not in steps],
                    key=lambda p: p["step"])
    return {**record, "points": points}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the --out folder of a training run")
    p.add_argument("--n", type=int, default=50, help="held-out scenarios per kind")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds (default all)")
    p.add_argument("--steps", default=None, help="comma-separated steps to score (default every one kept)")
    p.add_argument("--record", default=None, help="write the curves here as JSON (keeping the points "
                   "of other steps that a record of the same run and n holds)")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"--kinds: unknown {unknown}; the kinds are {', '.join(KINDS)}")
    torch.set_num_threads(1)
    run = ROOT / args.run if not Path(args.run).is_absolute() else Path(args.run)
    kept = kept_checkpoints(run)
    if args.steps:
        wanted = [int(s) for s in args.steps.split(",")]
        missing = sorted(set(wanted) - {step for step, _ in kept})
        if missing:
            raise SystemExit(f"--steps: {run} keeps no step{missing[0]}.pt; it keeps steps "
                             f"{', '.join(str(step) for step, _ in kept)}")
        kept = [(step, path) for step, path in kept if step in wanted]
    points, controls = [], {}
    for step, path in kept:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            results = evaluate(checkpoint.load(path), kinds, args.n, out=out, progress=False,
                               thresholds=() if controls else THRESHOLDS)
        if not controls:  # the systems no checkpoint changes
            controls = {"ground_truth": target_cells(results, "ground_truth")}
            for t in THRESHOLDS:
                controls[f"walkie_talkie_{t}"] = target_cells(results, f"walkie_talkie_{t}")
        chance = results.get("all", {}).get("model", {}).get("right_chance")
        points.append({"step": step, "tokens": tokens_at(path, step), "right_chance": chance,
                       "targets": target_cells(results, "model")})
        met = sum(r["met"] for r in points[-1]["targets"])
        print(f"step {step} ({points[-1]['tokens'] / 1e6:.1f}M tokens): {met} of "
              f"{len(points[-1]['targets'])} targets met, {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    print(f"{'kind':14s} {'metric':21s} {'goal':10s} " + " ".join(f"{'step ' + str(p['step']):>13s}"
                                                             for p in points))
    for i, row in enumerate(points[0]["targets"]):
        cells = []
        for point in points:
            r = point["targets"][i]
            v = "-" if r["value"] is None else f"{r['value']:.2f}"
            cells.append(f"{v} {r['k']}/{r['n']}" if r["k"] is not None else v)
        print(f"{row['kind']:14s} {row['metric']:21s} {row['goal'][:10]:10s} "
              + " ".join(f"{c:>13s}" for c in cells))
    record = {"run": args.run, "n": args.n, "kinds": kinds, "points": points, "controls": controls}
    if args.record:
        record = merged(Path(args.record), record)
        Path(args.record).write_text(json.dumps(record) + "\n")
    print(json.dumps({"steps": [p["step"] for p in points],
                      "met": [sum(r["met"] for r in p["targets"]) for p in points]}))


if __name__ == "__main__":
    main()
