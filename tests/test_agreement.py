"""The project's figures are the benchmark's: runs are written to folders and scored again from the files.

Two checks on the same exported folders:
1. `metrics.score_folder` (the folder's own files) gives the same row as `metrics.score` (the run),
   for every metric of every kind, to the last digit;
2. a reader written here from Full-Duplex-Bench v1's published rules alone (it knows output.json
   and the task files, nothing of the project) gives the same takeover rates and latencies.
"""

import json
import statistics

import pytest
import torch

from minitml import metrics as M
from minitml.evaluate import walkie_talkie
from minitml.world.export import export_fdb
from minitml.world.scenarios import KINDS, make_scenario

SEEDS = range(3)


def benchmark_reader(folder):
    """(takes the turn, latency or None) by the benchmark's rules, from the folder's files alone."""
    chunks = json.loads((folder / "output.json").read_text())["chunks"]
    if (folder / "turn_taking.json").exists():
        cue = json.loads((folder / "turn_taking.json").read_text())[0]["timestamp"][0]
    elif (folder / "interrupt.json").exists():
        cue = json.loads((folder / "interrupt.json").read_text())[0]["timestamp"][1]
    else:
        cue = None  # pause.json: a takeover rate only
    if not chunks:
        return 0, None
    duration = chunks[-1]["timestamp"][-1] - chunks[0]["timestamp"][0]
    if duration < 1 and len(chunks) <= 3:
        return 0, None
    return 1, (None if cue is None else max(0.0, chunks[0]["timestamp"][0] - cue))


def jittered(s, seed):
    """A run unlike the script: its words moved by up to +-0.6 s, some dropped, and no audio
    (so word ends come from the next word or the default length)."""
    g = torch.Generator().manual_seed(seed)
    words = []
    for w, t in s.assistant_words:
        if torch.rand(1, generator=g).item() < 0.3:
            continue
        words.append((w, max(0.0, t + (torch.rand(1, generator=g).item() - 0.5) * 1.2)))
    return words, torch.zeros_like(s.assistant_audio)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(system, rows from the run, folders) for three systems on every kind."""
    out = []
    root = tmp_path_factory.mktemp("fdb")
    for kind in KINDS:
        for seed in SEEDS:
            s = make_scenario(kind, seed, "heldout")
            runs = {"truth": (s.assistant_words, s.assistant_audio), "walkie": walkie_talkie(s, 0.5),
                    "jitter": jittered(s, seed)}
            for system, (words, audio) in runs.items():
                rows = M.score(s, words, audio)
                folders = export_fdb(s, root / system, audio, words)
                out.append((system, rows, folders))
    return out


def test_a_folder_scores_as_its_run(exported):
    for _, rows, folders in exported:
        assert len(rows) == len(folders)
        for row, folder in zip(rows, folders):
            assert M.score_folder(folder) == row, folder


def test_the_benchmark_rules_on_the_files_agree(exported):
    checked = {"turn_taking": 0, "answer": 0, "pause": 0, "interruption": 0}
    by_task: dict = {}
    for system, rows, folders in exported:
        for row, folder in zip(rows, folders):
            task = json.loads((folder / "minitml.json").read_text())["clip"]["task"]
            if task not in checked:
                continue
            tor, lat = benchmark_reader(folder)
            took = row["took_turn"] if task in ("turn_taking", "pause") else row["answered"]
            assert took == bool(tor), folder
            if task != "pause":
                assert row["latency"] == lat, folder  # the same float, not just close
            checked[task] += 1
            by_task.setdefault((system, task), []).append((tor, lat, took, row.get("latency")))
    assert all(n >= 3 for n in checked.values()), checked
    # both outcomes occur, so the agreement is not that of two constant answers
    tors = [t for v in by_task.values() for t, *_ in v]
    assert 0 < sum(tors) < len(tors)
    # and the summaries: the benchmark's averages, as its scripts print them, to 6 digits
    for (_, task), v in by_task.items():
        rate = sum(t for t, *_ in v) / len(v)
        lats = [lat for t, lat, *_ in v if t and lat is not None]
        rows = [{"kind": task, "seed": 0, "t": took, "latency": la} for _, _, took, la in v]
        ours = M.summarize(rows)[task]
        assert ours["t"] == round(rate, 6)
        if lats:
            assert ours["latency"] == round(statistics.mean(lats), 6)
