"""How fast the toy world makes conversations, and how big they are stored.

    .venv/bin/python bench/world.py

Measured in this run: scenarios of every kind generated in one process (eSpeak
synthesis, mixing, scene states), then an hour of dialogue (450 conversations)
written as token shards by `make_dataset` with two worker processes. Speeds are
seconds of dialogue per second of wall time (x real time). The last line is JSON.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml.world.dataset import make_dataset  # noqa: E402
from minitml.world.scenarios import KINDS, make_scenario  # noqa: E402
from minitml.world.vocab import VOCAB  # noqa: E402


def main():
    torch.set_num_threads(1)
    per_kind = {}
    start = time.perf_counter()
    for kind in KINDS:
        t = time.perf_counter()
        seconds = sum(make_scenario(kind, seed, "train").duration for seed in range(10))
        per_kind[kind] = (seconds, time.perf_counter() - t)
    total_s = sum(s for s, _ in per_kind.values())
    one_process = total_s / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = make_dataset("train", 450, seed=0, folder=Path(tmp) / "hour", workers=2,
                            progress=False)
        elapsed = time.perf_counter() - t
        index = json.loads((path / "index.json").read_text())
        size_mb = sum(f.stat().st_size for f in path.iterdir()) / 2**20

    print(f"{'kind':15s} {'s of dialogue':>14s} {'x real time':>12s}   (10 scenarios, one process)")
    for kind, (seconds, wall) in per_kind.items():
        print(f"{kind:15s} {seconds:14.1f} {seconds / wall:12.0f}")
    print(f"all kinds, one process: {one_process:.0f}x real time")
    print(f"make_dataset, 450 dialogues ({index['seconds'] / 60:.1f} min of audio), 2 workers: "
          f"{elapsed:.1f} s = {index['seconds'] / elapsed:.0f}x real time, {size_mb:.1f} MB "
          f"({size_mb * 1024 / (index['seconds'] / 60):.0f} KB per minute)")
    print(f"vocabulary: {len(VOCAB)} words")
    print(json.dumps({
        "bench": "world", "one_process_x_realtime": round(one_process, 1),
        "dataset_dialogues": 450, "dataset_seconds": index["seconds"],
        "dataset_wall_s": round(elapsed, 2), "dataset_x_realtime": round(index["seconds"] / elapsed, 1),
        "dataset_mb": round(size_mb, 2), "vocab_size": len(VOCAB),
    }))


if __name__ == "__main__":
    main()
