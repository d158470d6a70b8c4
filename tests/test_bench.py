"""The benchmark scripts run (tiny sizes) and report what they say they report."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from minitml.config import get_config
from minitml.scale import flops_per_micro_turn

ROOT = Path(__file__).resolve().parents[1]


def test_mfu_bench_runs_on_the_cpu():
    result = subprocess.run(
        [sys.executable, "bench/mfu.py", "--preset", "tiny", "--device", "cpu", "--batch-size", "1",
         "--turns", "4", "--steps", "2", "--warmup", "1", "--datasheet-tflops", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["tokens_per_step"] == 1 * 4 * 14  # 4 patches + 4 audio + 2 text-in + 4 output positions
    # The counted FLOPs of forward + backward against the planner: 3 x the forward of 4
    # micro-turns whose 56 positions each score all 56 keys (SDPA computes the whole
    # masked square). The planner is a little above the count: its 3x assumes every layer
    # computes an input gradient, and the first ones (the patch stem, for one) do not.
    cfg = get_config("tiny")
    planned = 3 * 4 * flops_per_micro_turn(cfg, keys=56)["total"]
    counted = row["counted_tflop_per_step"] * 1e12
    assert 0.85 * planned < counted <= planned
    assert row["mfu_vs_datasheet"] == pytest.approx(counted / row["step_s_median"] / 1e12)


def test_background_bench_reports_both_phases():
    """bench/background.py at toy sizes: every step is timed, and the flooded worker really worked."""
    result = subprocess.run(
        [sys.executable, "bench/background.py", "--worker", "thread", "--steps", "4", "--block", "2",
         "--samples", "8"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["worker"] == "thread" and row["steps"] == 4
    for phase in ("idle", "busy"):
        assert 0 < row[f"median_ms_{phase}"] <= row[f"p99_ms_{phase}"]
    assert row["ratio"] == pytest.approx(row["p99_ms_busy"] / row["p99_ms_idle"], rel=1e-2)
    assert row["worker_cpu_share_idle"] < row["worker_cpu_share_busy"]  # it computed only when sent calls


def test_shapes_bench_measures_each_shape_against_the_old_recipe(tmp_path):
    """bench/shapes.py at toy sizes: both phases run, and the rows are the shapes asked for."""
    result = subprocess.run(
        [sys.executable, "bench/shapes.py", "--shapes", "old,tiny", "--train-dialogues", "6",
         "--val-dialogues", "3", "--batch-size", "2", "--rounds", "1", "--steps", "1",
         "--minutes", "0.02", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    old, tiny = json.loads(result.stdout.strip().splitlines()[-1])
    cfg = get_config("tiny").model
    assert tiny["params"] - old["params"] == cfg.d_model * cfg.text_vocab_size  # the heard head
    for row in (old, tiny):
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1 and row["steps"] >= 1
        assert "probe_value" in row and "val_loss" in row
    assert "probe_heard" in tiny and "probe_heard" not in old


def test_probes_bench_reports_both_sets_of_voices(tmp_path):
    """bench/probes.py on an untrained checkpoint: one row per set (and the held-out set
    hearing its own voice), each probe with its control."""
    import torch

    from minitml import checkpoint
    from minitml.model import InteractionModel
    from minitml.world.vocab import VOCAB

    torch.manual_seed(0)
    path = checkpoint.save(InteractionModel(get_config("tiny")), tmp_path / "random.pt", vocab=list(VOCAB))
    result = subprocess.run([sys.executable, "bench/probes.py", "--checkpoint", str(path), "--n", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(rows) == ["held-out voices", "training voices", "held-out, own voice"]
    assert rows["held-out, own voice"]["probe_words_n"] == rows["held-out voices"]["probe_words_n"]
    for row in rows.values():
        for probe in ("probe_value", "probe_words", "probe_heard"):
            assert 0 <= row[probe] <= 1 and row[probe + "_n"] > 0 and probe + "_chance" in row


def test_values_bench_splits_the_value_words_by_question(tmp_path):
    """bench/values.py on an untrained checkpoint: both sets, every question group with
    right <= targets and a control (test_train checks that the groups split the value mask)."""
    import torch

    from minitml import checkpoint
    from minitml.model import InteractionModel
    from minitml.train import ASK_GROUPS
    from minitml.world.vocab import VOCAB

    torch.manual_seed(0)
    path = checkpoint.save(InteractionModel(get_config("tiny")), tmp_path / "random.pt", vocab=list(VOCAB))
    result = subprocess.run([sys.executable, "bench/values.py", "--checkpoint", str(path), "--n", "6",
                             "--confusions", "q_colour"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| q_add |" in result.stdout and "control" in result.stdout
    said = next(line for line in result.stdout.splitlines() if line.startswith("q_colour, both sets"))
    assert int(said.split()[3]) == sum(json.loads(result.stdout.strip().splitlines()[-1])[s]["q_colour"]["n"]
                                       for s in ("held-out voices", "training voices"))
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(rows) == ["held-out voices", "training voices"]
    for row in rows.values():
        assert list(row) == list(ASK_GROUPS)
        assert sum(cell["n"] for cell in row.values()) > 0
        for cell in row.values():
            assert 0 <= cell["right"] <= cell["n"] and 0 <= cell["chance"] <= 1


def test_scales_bench_measures_each_kind_of_embedding(tmp_path):
    """bench/scales.py: untrained, the patches' vectors are far longer than the words'; with
    embed_norm every kind is about sqrt(d_model) long."""
    import math

    import torch

    from minitml import checkpoint
    from minitml.model import InteractionModel
    from minitml.world.vocab import VOCAB

    cfg = get_config("tiny")
    for norm in (False, True):
        torch.manual_seed(0)
        model = InteractionModel(cfg.replace(model=replace(cfg.model, embed_norm=norm)))
        path = checkpoint.save(model, tmp_path / f"norm{norm}.pt", vocab=list(VOCAB))
        result = subprocess.run([sys.executable, "bench/scales.py", "--checkpoint", str(path), "--n", "2"],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        mean = json.loads(result.stdout.strip().splitlines()[-1])
        assert list(mean) == ["patch", "user dMel", "model dMel", "word"]
        if norm:
            assert all(abs(v / math.sqrt(128) - 1) < 0.05 for v in mean.values()), mean
        else:
            assert mean["patch"] > 20 * mean["word"], mean


def test_ablation_record_keeps_the_arms_run_before(tmp_path):
    """Arms run one at a time add up in one record; a record of other steps or n is refused."""
    sys.path.insert(0, str(ROOT / "bench"))
    from ablation import write_record

    path = tmp_path / "ablation.json"
    write_record(path, 300, 30, [{"arm": "old", "row": "old", "x": 1}, {"arm": "all", "row": "all", "x": 2}])
    write_record(path, 300, 30, [{"arm": "own", "row": "own", "x": 3}, {"arm": "all", "row": "all", "x": 4},
                                 {"arm": "all", "row": "all, again", "x": 5}])
    record = json.loads(path.read_text())
    rows = [(r["row"], r["x"]) for r in record["arms"]]
    assert rows == [("old", 1), ("all", 4), ("own", 3), ("all, again", 5)]
    with pytest.raises(ValueError, match="300 steps and n=30"):
        write_record(path, 100, 30, [{"arm": "own", "row": "own", "x": 6}])


def test_speakers_record_keeps_the_tokens_between_validations():
    """bench/speakers.py keeps the validation rows; their tokens add up to the run's."""
    sys.path.insert(0, str(ROOT / "bench"))
    from speakers import validation_rows

    from minitml.train import plot_probes

    history = [{"step": s, "tokens": 100, "loss": 1.0, "elapsed_s": s} for s in range(1, 7)]
    for h in history[1::2]:
        h.update(val_loss=0.5, probe_heard=h["step"] / 10, probe_heard_n=9, probe_heard_chance=0.1)
    rows = validation_rows(history)
    assert [r["step"] for r in rows] == [2, 4, 6] and [r["tokens"] for r in rows] == [200, 200, 200]
    assert "loss" not in rows[0] and rows[-1]["probe_heard"] == 0.6
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    plot_probes(ax, rows, x="tokens")
    assert list(ax.lines[0].get_xdata()) == [0.0002, 0.0004, 0.0006]
    plt.close(fig)


def test_transcript_bench_scores_what_a_reading_model_heard(tmp_path):
    """bench/transcript.py: an untrained model that reads back a word at every user-audio
    token writes a long wrong transcript (wer far above the empty one's 1.00); a model that
    does not read back is refused, saying why."""
    from dataclasses import replace

    import torch

    from minitml import checkpoint
    from minitml.model import InteractionModel
    from minitml.world.vocab import VOCAB

    sys.path.insert(0, str(ROOT / "bench"))
    from transcript import transcript_scores

    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = InteractionModel(cfg.replace(model=replace(cfg.model, heard_feedback=True))).eval()
    model.vocab, model.heard_pad_weight = list(VOCAB), 1e6  # a word at every token
    from minitml.world.scenarios import make_scenario

    scores = transcript_scores(model, ["pause"], 1, show=1)
    said = [w for w, _, _ in make_scenario("pause", 0, "heldout").user_words]
    assert scores["pause"]["examples"][0]["said"] == " ".join(said)
    assert scores["all"]["words"] == scores["pause"]["words"] == len(said)
    assert scores["pause"]["heard"] > 3 * len(said)  # a word at every token: a long transcript
    assert scores["pause"]["wer"] > 2 and scores["pause"]["kept"] < 0.2  # that keeps little
    path = checkpoint.save(InteractionModel(cfg), tmp_path / "plain.pt", vocab=list(VOCAB))
    result = subprocess.run([sys.executable, "bench/transcript.py", "--checkpoint", str(path), "--n", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "does not read back" in result.stderr


def test_histories_record_keeps_each_runs_probes_and_recipe(tmp_path):
    """bench/histories.py reads a run's folder (last.pt while it goes on, history.json once
    it is done) and records its validation rows and what it changed from TrainConfig."""
    import dataclasses

    import torch

    from minitml.train import TrainConfig

    history = [{"step": s, "tokens": 10, "loss": 1.0} for s in (1, 2)]
    history[1].update(val_loss=0.5, probe_seen=0.4, probe_seen_n=8, probe_seen_chance=0.25)
    tc = dataclasses.asdict(TrainConfig(steps=2, seen_weight=1.0, out=str(tmp_path / "run")))
    (tmp_path / "run").mkdir()
    extra = {"history": json.dumps(history[:1]), "train_config": tc}  # mid-run, last.pt holds the rows so far
    torch.save({"extra": extra}, tmp_path / "run" / "last.pt")
    (tmp_path / "run" / "history.json").write_text(json.dumps(history))
    record = tmp_path / "record.json"
    result = subprocess.run([sys.executable, "bench/histories.py", "--run", f"seen={tmp_path / 'run'}",
                             "--record", str(record)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "seen 0.400 of 8 (control 0.25)" in result.stdout
    saved = json.loads(record.read_text())
    assert saved["changed"]["seen"] == {"steps": 2, "seen_weight": 1.0}
    assert saved["runs"]["seen"] == [{"step": 2, "val_loss": 0.5, "probe_seen": 0.4, "probe_seen_n": 8,
                                      "probe_seen_chance": 0.25, "tokens": 20}]
    bad = subprocess.run([sys.executable, "bench/histories.py", "--run", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "NAME=FOLDER" in bad.stderr


def test_curves_bench_scores_each_kept_checkpoint_as_eval_does(tmp_path):
    """bench/curves.py on two kept checkpoints, scored by two calls into one record: one
    point per step, in order, its tokens summed from the history the file carries, its
    targets those `evaluate` scores for the same file."""
    import torch

    from minitml import checkpoint
    from minitml.evaluate import check_targets, evaluate
    from minitml.model import InteractionModel
    from minitml.world.vocab import VOCAB

    history = [{"step": s, "tokens": 100 * s} for s in (1, 2, 3, 4)]
    for step in (4, 2):  # written out of order: the bench sorts by step
        torch.manual_seed(step)
        checkpoint.save(InteractionModel(get_config("tiny")), tmp_path / f"step{step}.pt", vocab=list(VOCAB),
                        step=step, extra={"history": json.dumps(history[:step])})
    record = tmp_path / "curves.json"
    for steps in ("4", "2"):  # the second call keeps the first one's point
        result = subprocess.run([sys.executable, "bench/curves.py", "--run", str(tmp_path), "--n", "1",
                                 "--kinds", "smooth_turn,pause", "--steps", steps, "--record", str(record)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(record.read_text())
    assert [p["step"] for p in saved["points"]] == [2, 4]
    assert [p["tokens"] for p in saved["points"]] == [100 + 200, 100 + 200 + 300 + 400]
    torch.set_num_threads(1)
    direct = evaluate(checkpoint.load(tmp_path / "step4.pt"), ["smooth_turn", "pause"], 1,
                      out=tmp_path / "eval", progress=False)
    assert [(r["metric"], r["value"]) for r in saved["points"][1]["targets"]] == \
        [(r["metric"], r["value"]) for r in check_targets(direct)]
    assert [r["value"] for r in saved["controls"]["ground_truth"]] == \
        [r["value"] for r in check_targets(direct, "ground_truth")]
    empty = subprocess.run([sys.executable, "bench/curves.py", "--run", str(tmp_path / "eval")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode != 0 and "keeps no step<N>.pt" in empty.stderr
    absent = subprocess.run([sys.executable, "bench/curves.py", "--run", str(tmp_path), "--steps", "3"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert absent.returncode != 0 and "keeps no step3.pt; it keeps steps 2, 4" in absent.stderr
