"""The ceiling: the scripted ground truth scored with the project's metrics.

    .venv/bin/python bench/ceiling.py [N]

N held-out scenarios per kind (default 50). What the scripted assistant does is
the ideal a trained model aims at; the metrics are Full-Duplex-Bench v1's
definitions on the benchmark's clips (minitml.metrics), so every rate the script
should get right must print 1.00 and every rate it should avoid 0.00. Rates
print as "rate k/n", means as "mean n=runs"; right_chance is the shuffled
control beside right. The last line is JSON.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml.evaluate import cell  # noqa: E402
from minitml.metrics import ceiling  # noqa: E402
from minitml.world.scenarios import KINDS  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    table = ceiling(KINDS, n, split="heldout", seed=0)
    print(f"scripted ground truth, {n} held-out scenarios per kind")
    for kind, row in table.items():
        cells = [f"{k} {cell(row, k)}" for k in row if not k.endswith(("_n", "_k")) and k != "n"]
        print(f"{kind:14s} " + ", ".join(cells))
    print(json.dumps({"bench": "ceiling", "n_per_kind": n, "table": table}))


if __name__ == "__main__":
    main()
