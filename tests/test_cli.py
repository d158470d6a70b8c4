import wave as wavefile

from minitml.__main__ import main
from minitml.config import get_config
from minitml.dmel import read_wav


def test_demo_writes_audio_and_plot(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--text", "Hello there."]) == 0
    out = capsys.readouterr().out
    for name in ("original.wav", "vocoded.wav", "dmel.png"):
        assert (tmp_path / name).stat().st_size > 1000
        assert str(tmp_path / name) in out
    original, rate = read_wav(tmp_path / "original.wav")
    vocoded, _ = read_wav(tmp_path / "vocoded.wav")
    assert rate == 16000 and abs(original.numel() - vocoded.numel()) < 200
    assert vocoded.abs().max() > 0.01  # not silence
    with wavefile.open(str(tmp_path / "vocoded.wav")) as f:
        assert f.getnchannels() == 1 and f.getsampwidth() == 2
    assert "tokens kept after vocode -> encode" in out


def test_presets_table(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    total = get_config("tml_small").param_counts()["total"]
    assert "tml_small" in out and f"{total:,d}" in out


def test_eval_without_a_checkpoint_scores_ground_truth_and_baselines(tmp_path, capsys):
    import json

    assert main(["eval", "--n", "1", "--kinds", "smooth_turn", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["smooth_turn"]) == {"ground_truth", "walkie_talkie_0.5", "walkie_talkie_0.8"}
    assert "walkie_talkie_0.8" in capsys.readouterr().out
