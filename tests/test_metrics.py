"""The scoring module: hand-made runs with known answers, and the scripted ground truth at the ceiling."""

import math
from types import SimpleNamespace

import pytest
import torch

from minitml import metrics as M
from minitml.world.scenarios import KINDS, make_scenario

SR = 16000


def fake(kind, duration=8.0, **ann):
    ann.setdefault("turn_ends", [])
    ann.setdefault("user_speech", [])
    return SimpleNamespace(kind=kind, seed=0, sample_rate=SR, duration=duration, annotations=ann)


def talk(first, n, step=0.2, word="la"):
    return [(word, first + i * step) for i in range(n)]


def tone(spans, duration=8.0):
    """Output audio that is loud exactly inside the (start, end) spans."""
    audio = torch.zeros(int(duration * SR))
    t = torch.arange(audio.numel()) / SR
    for a, b in spans:
        audio[int(a * SR):int(b * SR)] = 0.5 * torch.sin(2 * math.pi * 200 * t[int(a * SR):int(b * SR)])
    return audio


def one(s, words, audio=None, k=0):
    """The row of clip k of a run."""
    return M.score(s, words, audio)[k]


def test_smooth_turn_latency_and_takeover():
    s = fake("smooth_turn", turn_ends=[2.0], user_speech=[(0.5, 2.0)], asked=[])
    row = one(s, talk(2.3, 5))
    assert row["took_turn"] and row["latency"] == pytest.approx(0.3) and not row["no_reply"]
    over = one(s, talk(1.5, 10))  # talks over the turn end: the benchmark judges the whole clip
    assert over["took_turn"] and over["latency"] == 0.0
    silent = one(s, [])
    assert silent["took_turn"] is False and silent["latency"] is None and silent["no_reply"]


def test_two_questions_are_two_samples():
    """The reply to the second question does not count as taking the turn after the first."""
    s = fake("smooth_turn", turn_ends=[2.0, 5.0], user_speech=[(0.5, 2.0), (4.0, 5.0)], asked=[])
    first, second = M.score(s, [("six", 2.2)] + talk(5.2, 5))
    assert (first["clip"], second["clip"]) == ("smooth_turn/0_0", "smooth_turn/0_1")
    assert not first["took_turn"] and first["latency"] is None  # one word, then the next question
    assert second["took_turn"] and second["latency"] == pytest.approx(0.2)


def test_three_words_is_not_a_takeover_four_is():
    s = fake("smooth_turn", turn_ends=[2.0], user_speech=[(0.5, 2.0)], asked=[])
    three = one(s, talk(2.2, 3, step=0.2))  # 0.4 s of starts + one word: 0.7 s < 1 s
    assert not three["took_turn"] and three["latency"] is None
    assert one(s, talk(2.2, 4, step=0.15))["took_turn"]
    # one long utterance of 3 words lasting >= 1 s is a takeover (audio says how long)
    assert one(s, talk(2.2, 3, step=0.4), tone([(2.2, 3.4)]))["took_turn"]
    assert one(s, [("<call>", 2.1), ("<pad>", 2.2)])["took_turn"] is False  # silent tokens


def test_the_pause_sample_ends_with_the_pause():
    s = fake("pause", pauses=[(1.0, 2.5)], turn_ends=[4.0], user_speech=[(0.3, 1.0), (2.5, 4.0)],
             asked=[{"after": 4.0, "value": ["six"]}])
    row, answer = M.score(s, talk(1.2, 5))
    assert row["took_turn"] and row["spoke_in_pause_s"] == pytest.approx(1.1)
    assert not answer["answered"] and answer["no_reply"] and not answer["right"]
    quiet, answer = M.score(s, [(w, 4.2 + 0.2 * i) for i, w in enumerate("one plus five is six".split())])
    assert not quiet["took_turn"] and quiet["spoke_in_pause_s"] == 0.0  # nothing inside the pause
    assert answer["answered"] and answer["latency"] == pytest.approx(0.2) and answer["right"]
    mm = one(s, [("mm-hm", 1.6)])
    assert not mm["took_turn"] and mm["spoke_in_pause_s"] == pytest.approx(0.3)


def test_backchannels_are_counted_takeovers_are_not():
    s = fake("backchannel", user_speech=[(0.5, 2.0), (2.6, 4.0), (4.6, 6.0)], phrase_ends=[2.0, 4.0, 6.0])
    row = one(s, [("yeah", 2.1), ("uh-huh", 4.1), ("that", 6.2), ("is", 6.3), ("nice", 6.4), ("ok", 6.5)])
    assert row == {"kind": "backchannel", "seed": 0, "clip": "backchannel/0", "took_turn": False,
                   "n_backchannels": 2}
    assert one(s, talk(2.1, 6))["took_turn"]


def test_stop_latency_only_where_the_model_was_speaking():
    s = fake("interruption", barge_in=(2.0, 3.0), turn_ends=[0.8, 3.0],
             asked=[{"after": 3.0, "value": ["red"]}])
    words = talk(1.0, 7)  # its last word starts at 2.2 ...
    row = one(s, words, tone([(1.0, 2.5)]))  # ... and its audio runs to 2.5
    assert row["speaking_at_barge_in"] and not row["stopped_within_0_4"]
    assert row["stop_latency"] == pytest.approx(0.5, abs=0.021)
    assert one(s, words)["stop_latency"] == pytest.approx(0.5)  # no audio: a word lasts 0.3 s
    quick = one(s, talk(1.0, 6) + talk(3.3, 5, word="red"), tone([(1.0, 2.2), (3.3, 4.3)]))
    assert quick["stop_latency"] == pytest.approx(0.2, abs=0.021) and quick["stopped_within_0_4"]
    assert quick["answered"] and quick["latency"] == pytest.approx(0.3) and quick["right"]
    late = one(s, talk(3.3, 5))  # silent at the barge-in: no stop latency to speak of
    assert not late["speaking_at_barge_in"] and late["stop_latency"] is None
    assert late["stopped_within_0_4"] is None and late["answered"]


def test_interruption_answer_is_judged_from_the_end_of_the_barge_in():
    """The benchmark crops the output there: speech before it is not the answer."""
    s = fake("interruption", barge_in=(2.0, 3.0), turn_ends=[0.8, 3.0], asked=[])
    row = one(s, talk(1.0, 12, step=0.15))  # talks on to 2.65 + 0.3, never after 3.0
    assert row["speaking_at_barge_in"] and not row["answered"] and row["no_reply"]


def test_timer_early_and_late():
    s = fake("timer", turn_ends=[1.0], timer_target=5.0)
    ack = [("okay", 1.2)]
    on = one(s, ack + [("now", 5.2)])
    assert on["error"] == pytest.approx(0.2) and on["on_time"] and not on["early"]
    early = one(s, ack + [("now", 4.5)])
    assert early["early"] and not early["on_time"] and early["error"] == pytest.approx(-0.5)
    late = one(s, ack + [("now", 5.7)])
    assert not late["early"] and not late["on_time"]
    silent = one(s, ack)
    assert silent["error"] is None and not silent["on_time"] and not silent["early"]
    cue = fake("visual_cue", turn_ends=[1.0], cue_time=5.0, asked=[{"after": 5.0, "value": ["green"]}])
    row = one(cue, ack + [("green", 5.55)])
    assert row["on_time"] and row["right"]  # 0.6 s for a visual cue, and it said the colour


def test_background_result_and_talking_over_the_user():
    call = {"issued": 2.0, "arrived": 3.0, "result": ["two", "thousand", "forty"]}
    s = fake("background", call=call, user_speech=[(0.2, 1.5), (3.5, 4.5)], turn_ends=[1.5, 4.5],
             asked=[{"after": 3.2, "value": ["two", "thousand", "forty"]}])
    check = [("let", 1.6), ("me", 1.7), ("check", 1.8), ("<call>", 1.95), ("</call>", 2.0)]
    answer = [(w, 4.8 + 0.2 * i) for i, w in enumerate("it is two thousand forty".split())]
    row = one(s, check + answer)
    assert row["called"] and row["right"] and row["over_user"] == 0.0
    wrong = [(w, 4.8 + 0.2 * i) for i, w in enumerate("it is two thousand forty one".split())]
    assert not one(s, check + wrong)["right"]  # forty is not forty one
    assert not one(s, answer)["called"]
    too_soon = [(w, 2.2 + 0.2 * i) for i, w in enumerate("two thousand forty".split())]  # before it came
    assert not one(s, check + too_soon)["right"]
    over = one(s, check + [(w, t - 1.2) for w, t in answer])  # from 3.6: over the user
    assert over["right"] and over["over_user"] == pytest.approx(0.9)


def test_other_speaker_and_hesitation():
    s = fake("other_speaker", other_speech=[(0.5, 2.0)])
    assert not one(s, [("hm", 2.3)])["took_turn"]
    assert one(s, talk(2.3, 5))["took_turn"]
    h = fake("hesitation", hesitations=[(0.5, 1.0), (1.6, 2.0)], user_speech=[(0.5, 1.0), (1.6, 2.0), (5, 6)])
    row = one(h, [("are", 3.5), ("you", 3.6), ("okay", 3.7)])
    assert row["offered_help"] and row["latency"] == pytest.approx(1.5) and not row["took_turn"]
    assert not one(h, [("hm", 1.2), ("so", 6.2)])["offered_help"]  # in a pause / after the user


def test_holds_takes_whole_words():
    assert M.holds("it is two".split(), ["two"])
    assert not M.holds("it is twenty two".split(), ["two"])
    assert not M.holds("it is two hundred".split(), ["two"])
    assert M.holds("it is twenty two".split(), ["twenty", "two"])
    assert not M.holds("two thousand forty one".split(), ["two", "thousand", "forty"])
    assert M.holds("a banana is yellow".split(), ["yellow"]) and not M.holds(["yellowish"], ["yellow"])
    assert not M.holds("it is".split(), []) and not M.holds([], ["red"])


def test_summarize_counts_and_chance():
    rows = [{"kind": "smooth_turn", "seed": 0, "took_turn": True, "latency": 0.2},
            {"kind": "smooth_turn", "seed": 1, "took_turn": False, "latency": None},
            {"kind": "smooth_turn", "seed": 2, "took_turn": True, "latency": 0.4},
            {"kind": "pause", "seed": 0, "took_turn": False, "spoke_in_pause_s": 0.0}]
    out = M.summarize(rows)
    assert out["smooth_turn"] == {"n": 3, "took_turn": pytest.approx(2 / 3), "took_turn_n": 3,
                                  "took_turn_k": 2,
                                  "latency": pytest.approx(0.3), "latency_n": 2,
                                  "latency_median": pytest.approx(0.3)}
    assert out["pause"]["took_turn"] == 0.0 and out["pause"]["took_turn_k"] == 0 and out["pause"]["n"] == 1
    # a constant reply ("it is red") to three different questions: right once, chance 1/3
    asked = [{"kind": "smooth_turn", "seed": i, "reply": "it is red", "value": v, "right": v == "red"}
             for i, v in enumerate(["red", "blue", "green"])]
    out = M.summarize(asked)["smooth_turn"]
    assert out["right_k"] == 1 and out["right_n"] == 3
    assert out["right_chance"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)


TOL = 0.05  # s: how far word-end estimates may let the ground truth run over the user


def test_ground_truth_meets_the_ideal():
    c = M.ceiling(KINDS, 3, split="heldout", seed=5)
    assert set(c) == set(KINDS) | {"all"}
    assert all(c[k]["n"] == 3 for k in KINDS if k not in ("smooth_turn", "pause"))
    assert c["smooth_turn"]["took_turn"] == 1.0 and c["smooth_turn"]["latency"] < 0.6
    assert c["smooth_turn"]["no_reply"] == 0.0 and c["pause"]["answered"] == 1.0
    assert c["pause"]["took_turn"] == 0.0 and c["pause"]["spoke_in_pause_s"] == 0.0
    assert c["other_speaker"]["took_turn"] == 0.0
    assert c["backchannel"]["took_turn"] == 0.0 and c["backchannel"]["n_backchannels"] >= 1
    assert c["interruption"]["stopped_within_0_4"] == 1.0
    assert 0.1 < c["interruption"]["stop_latency"] < 0.35  # the script stops 0.15-0.3 s after
    assert c["hesitation"]["offered_help"] == 1.0
    assert c["visual_cue"]["on_time"] == 1.0 and c["timer"]["on_time"] == 1.0
    assert c["visual_cue"]["early"] == 0.0 and c["timer"]["early"] == 0.0
    assert c["background"]["right"] == 1.0 and c["background"]["called"] == 1.0
    assert c["interruption"]["speaking_at_barge_in"] == 1.0 and c["interruption"]["answered"] == 1.0
    assert c["all"]["right"] == 1.0 and c["all"]["right_chance"] < 0.2
    for seed in range(3):
        s = make_scenario("background", seed, "heldout")
        assert one(s, s.assistant_words, s.assistant_audio)["over_user"] <= TOL
