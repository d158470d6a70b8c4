"""Keep the held-out probes of finished training runs, for notebook 07 to plot.

    .venv/bin/python bench/histories.py --run embed_norm=out/norm1500 --run seen_800=out/seen800 \
        --record data/norm_history.json

Each --run NAME=FOLDER names a folder that `python -m minitml train --out FOLDER` wrote: its
history.json (or, while the run goes on, the history inside last.pt). The record keeps each
run's validation rows (`speakers.validation_rows`: losses, probes, the tokens trained on
since the row before) and the TrainConfig fields in which it differs from the defaults, so
the file says how each run was made. It prints each run's last probes beside their controls.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from speakers import validation_rows  # noqa: E402

from minitml.train import PROBES, TrainConfig  # noqa: E402


def read_run(folder: Path) -> tuple[list[dict], dict]:
    """(history, the TrainConfig fields that differ from the defaults) of one run's folder."""
    if not (folder / "last.pt").exists():
        raise SystemExit(f"{folder} holds no run: expected the last.pt of `python -m minitml train`")
    extra = torch.load(folder / "last.pt", map_location="cpu", weights_only=False)["extra"]
    history, tc = json.loads(extra["history"]), extra["train_config"]
    if (folder / "history.json").exists():  # the finished run's own file
        history = json.loads((folder / "history.json").read_text())
    defaults = dataclasses.asdict(TrainConfig())
    changed = {k: v for k, v in tc.items() if k in defaults and v != defaults[k] and k != "out"}
    return history, changed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, metavar="NAME=FOLDER",
                   help="a finished run: its name in the record, and its --out folder")
    p.add_argument("--record", default=None, help="write the runs' validation rows here as JSON")
    args = p.parse_args()
    record = {"runs": {}, "changed": {}}
    for item in args.run:
        if "=" not in item:
            raise SystemExit(f"--run takes NAME=FOLDER, got {item!r}")
        name, folder = item.split("=", 1)
        history, changed = read_run(ROOT / folder)
        record["runs"][name], record["changed"][name] = validation_rows(history), changed
        last = record["runs"][name][-1]
        print(f"{name} (step {last['step']}; changed: {changed or 'nothing'}): " + ", ".join(
            f"{k[6:]} {last[k]:.3f} of {last[k + '_n']} (control {last[k + '_chance']:.2f})"
            for k in PROBES if k in last))
    if args.record:
        Path(args.record).write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
