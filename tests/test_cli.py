import pytest

from minitml.__main__ import SHIPPED_CHECKPOINT, main
from minitml.config import get_config


def test_presets_table(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    total = get_config("tml_small").param_counts()["total"]
    assert "tml_small" in out and f"{total:,d}" in out


def test_data_with_many_speakers(tmp_path, capsys):
    import json

    assert main(["data", "--n", "2", "--speakers", "many", "--workers", "1", "--out", str(tmp_path)]) == 0
    assert "2 train dialogues" in capsys.readouterr().out
    assert json.loads((tmp_path / "index.json").read_text())["speakers"] == "many"
    with pytest.raises(SystemExit):
        main(["data", "--speakers", "everyone"])


def test_eval_scores_the_shipped_checkpoint_beside_truth_and_baselines(tmp_path, capsys):
    import json

    assert SHIPPED_CHECKPOINT.exists(), "data/tiny.pt is part of the repository"
    assert main(["eval", "--n", "1", "--kinds", "smooth_turn", "--out", str(tmp_path), "--transcribe"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["smooth_turn"]) == {"model", "ground_truth", "walkie_talkie_0.5", "walkie_talkie_0.8",
                                           "model_heard", "ground_truth_heard"}
    out = capsys.readouterr().out
    assert "walkie_talkie_0.8" in out and "## targets" in out and "wer" in out
    assert results["smooth_turn"]["ground_truth_heard"]["wer"] < 0.3  # the scripted voice is heard
    # with --transcribe, output.json holds what the recognizer heard, as the benchmark's pipeline writes it
    folder = tmp_path / "fdb" / "smooth_turn" / "0_0"
    meta = json.loads((folder / "minitml.json").read_text())
    assert json.loads((folder / "output.json").read_text())["chunks"] == meta["views"]["heard"]["chunks"]


def test_eval_refuses_a_missing_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint"):
        main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="number in \\[0, 1\\) or 'calibrated', got 'high'"):
        main(["eval", "--speak-threshold", "high", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="got '1.5'"):
        main(["eval", "--speak-threshold", "1.5", "--out", str(tmp_path)])


def test_plan_table(capsys):
    from minitml.scale import plan

    assert main(["plan", "--presets", "tiny,tml_small", "--gpu", "H200", "--sessions", "10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["tiny", "tml_small"]  # one column per preset asked for
    assert "H200 SXM 141GB" in out and "GPUs for 10 sessions" in out
    holds = plan("tml_small", gpu="H200", sessions=10)["serve"]["hold_weights"]
    assert f"GPUs to hold the weights{'':<10}" in out and f"{holds:>24}" in out


BADGES = (r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/",  # Open in Colab
          r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/",  # Binder
          r"git clone -q --depth 1 https://github\.com/([\w.-]+/[\w.-]+)")  # the Colab install cell


def addresses(root):
    import re

    from minitml.__main__ import linked_files

    found = {}
    for path in linked_files(root):
        for pattern in BADGES:
            for m in re.finditer(pattern, path.read_text()):
                found.setdefault(m.group(1), set()).add(path.name)
    return found


def test_every_badge_points_at_the_one_repository_address():
    from minitml.__main__ import ROOT, repository

    found = addresses(ROOT)
    assert set(found) == {repository()}, found
    assert len(found[repository()]) >= 14  # the README and the thirteen notebooks (.py and .ipynb)


def test_repo_repoints_every_badge(tmp_path, capsys):
    import shutil

    from minitml.__main__ import ROOT, repoint, repository

    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "README.md", tmp_path)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".*"))
    changed = repoint("someone/fork", tmp_path)
    assert repository(tmp_path) == "someone/fork"
    assert set(addresses(tmp_path)) == {"someone/fork"}
    assert len(changed) >= 27  # pyproject, README, 13 notebooks twice
    assert "Full-Duplex-Bench" in (tmp_path / "README.md").read_text()  # other links stay
    with pytest.raises(SystemExit, match="OWNER/NAME"):
        repoint("not an address", tmp_path)
