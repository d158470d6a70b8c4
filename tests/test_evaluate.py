import json

import pytest
import torch

from minitml.config import get_config
from minitml.evaluate import FRAME_S, evaluate, format_table, run_model, run_scenario, walkie_talkie
from minitml.metrics import ceiling, score
from minitml.model import InteractionModel
from minitml.protocol import PAD
from minitml.session import Session
from minitml.world.scenarios import make_scenario
from minitml.world.tools import ToolExecutor
from minitml.world.vocab import VOCAB

SEEDS = range(6)


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_walkie_talkie_waits_for_its_silence_threshold(threshold):
    for seed in SEEDS:
        s = make_scenario("smooth_turn", seed, "heldout")
        row = score(s, *walkie_talkie(s, threshold))[0]
        assert row["took_turn"]
        # never before the threshold, except for the quiet word tail the VAD cannot hear
        assert threshold - 0.15 <= row["latency"] <= threshold + 2 * FRAME_S


def test_walkie_talkie_talks_into_a_pause_longer_than_its_threshold():
    checked, takeovers = 0, 0
    for seed in range(12):
        s = make_scenario("pause", seed, "heldout")
        a, b = s.annotations["pauses"][0]
        if b - a < 0.5 + 0.1:
            continue
        words, audio = walkie_talkie(s, 0.5)
        assert any(a + 0.5 - 0.15 <= t < b for _, t in words), "it should answer inside the pause"
        takeovers += score(s, words, audio)[0]["took_turn"]  # >= 1 s or > 3 words inside the pause
        checked += 1
    assert checked >= 6 and takeovers >= 3


def test_walkie_talkie_cannot_backchannel_or_keep_time():
    for seed in range(3):
        s = make_scenario("backchannel", seed, "heldout")
        for threshold in (0.5, 0.8):
            words, _ = walkie_talkie(s, threshold)
            bc = [w for a, b in s.annotations["backchannels"] for w, t in s.assistant_words if a <= t < b]
            assert not set(bc) & {w for w, _ in words}  # never the "uh-huh"s
        s = make_scenario("timer", seed, "heldout")
        words, audio = walkie_talkie(s, 0.5)
        assert words == [] and not audio.any()
        assert score(s, words, audio)[0]["on_time"] is False


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InteractionModel(get_config("tiny")).eval()


def test_run_model_is_deterministic(model):
    s = make_scenario("pause", 0, "heldout")
    words, audio = run_model(model, s)
    again, audio2 = run_model(model, s)
    assert words == again and torch.equal(audio, audio2)
    assert audio.shape == s.user_audio.shape


def test_run_scenario_feeds_its_audio_frames_and_text_in(model):
    scenario = make_scenario("background", 0)
    session = Session(model, overrun="ignore", vocode=False, vocab=list(VOCAB))
    timeline = run_scenario(session, scenario, record=True)
    assert len(timeline.outputs) == scenario.n_turns
    assert not [e for e in timeline.events if e.kind == "error"]
    turn = min(scenario.text_in)  # the tool result arrived as text-in words
    assert session.recorded[turn].text_in[0, 0, 0] == VOCAB.index(scenario.text_in[turn][0])
    # word ids beyond the named vocabulary render as placeholders instead of failing
    assert all(isinstance(w, str) for w, _ in timeline.words)


def test_an_attached_background_model_replaces_the_scripted_result(model):
    """A background scenario carries its tool result as scripted text-in; with a background
    model attached, the session must not feed that as well (the model answers, or not)."""
    scenario = make_scenario("background", 0)
    first, last = scenario.annotations["call"]["result_turns"]
    assert set(scenario.text_in) == set(range(first, last + 1))  # the result is its only text-in

    def words_fed(background):
        session = Session(model, overrun="ignore", vocode=False, vocab=list(VOCAB), background=background)
        try:
            run_scenario(session, scenario, record=True)
        finally:
            session.close()
        return [VOCAB[i] for step in session.recorded for i in step.text_in.flatten().tolist() if i != PAD]

    assert words_fed(None) == [w for t in sorted(scenario.text_in) for w in scenario.text_in[t]]
    # The untrained model never says <call>, so the executor never answers: nothing at all is fed.
    assert words_fed(ToolExecutor()) == []


def test_evaluate_writes_results_and_fdb_folders(model, tmp_path):
    kinds = ["smooth_turn", "pause"]
    results = evaluate(model, kinds, n=2, out=tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    systems = ["model", "ground_truth", "walkie_talkie_0.5", "walkie_talkie_0.8"]
    truth = ceiling(kinds, 2)
    assert list(results) == kinds + ["all"]
    for kind in kinds:
        assert list(results[kind]) == systems
        assert results[kind]["ground_truth"] == truth[kind]
    assert all(results["pause"][s]["took_turn_n"] == 2 for s in systems)  # one pause per dialogue
    rows = json.loads((tmp_path / "rows.json").read_text())
    folders = sorted((tmp_path / "fdb").glob("*/*/output.json"))
    assert len(folders) == len(rows["model"]) == results["smooth_turn"]["model"]["n"] + 2 * 2
    for row in rows["model"]:  # the model was scored from its folders
        assert (tmp_path / "fdb" / row["clip"] / "output.wav").exists()
    table = format_table(results)
    assert "## smooth_turn" in table and "walkie_talkie_0.8" in table
    took = results["pause"]["ground_truth"]
    assert "took_turn_k" in took and f"{took['took_turn']:.2f} 0/2" in table  # rates carry k/n


def test_targets_are_judged_against_their_goals():
    from minitml.evaluate import check_targets, format_targets

    results = {
        "smooth_turn": {"model": {"took_turn": 0.95, "latency": 0.5},
                        "ground_truth": {"took_turn": 1.0, "latency": 0.2}},
        "pause": {"model": {"took_turn": 0.1}, "ground_truth": {"took_turn": 0.0}},
        "backchannel": {"model": {"took_turn": 0.0, "n_backchannels": 0.7},
                        "ground_truth": {"took_turn": 0.0, "n_backchannels": 1.6}},
        "hesitation": {"model": {"offered_help": None}, "ground_truth": {"offered_help": 1.0}},
        "all": {"model": {"right": 0.75, "right_lookup": 0.85, "right_arithmetic": 0.4},
                "ground_truth": {"right": 1.0, "right_lookup": 1.0, "right_arithmetic": 1.0}},
    }
    met = {(r["kind"], r["metric"]): r["met"] for r in check_targets(results)}
    assert met == {("smooth_turn", "took_turn"): True, ("smooth_turn", "latency"): False,
                   ("pause", "took_turn"): True, ("backchannel", "took_turn"): True,
                   ("backchannel", "n_backchannels"): False,  # 0.7 is 56% below 1.6
                   ("hesitation", "offered_help"): False,  # no value: not met
                   ("smooth_turn", "no_reply"): False, ("all", "right"): True,
                   ("all", "right_lookup"): True, ("all", "right_arithmetic"): False}
    assert "NO" in format_targets(check_targets(results))


def test_plot_run_draws_every_kind():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minitml.evaluate import plot_run
    from minitml.world.scenarios import KINDS

    for kind in KINDS:
        s = make_scenario(kind, 0, "heldout")
        ax = plot_run(s, s.assistant_words, s.assistant_audio)
        assert ax.get_xlim()[1] == pytest.approx(s.duration)
        plt.close("all")
