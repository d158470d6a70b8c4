"""The toy duplex world: every kind generates, reproducibly, with ground truth that matches the audio."""

import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

import espeakng_loader
import numpy as np
import pytest
import torch

from minitml.config import VisionConfig
from minitml.dmel import DMel
from minitml.patches import patchify
from minitml.stream import PAD, pack_conversation
from minitml.world import facts as F
from minitml.world import scenarios as S
from minitml.world import scenes
from minitml.world.vocab import (
    SPECIALS,
    VOCAB,
    ids,
    normalize,
    number_words,
    parse_number,
    tokenize,
    word_id,
)
from minitml.world.voices import (
    ASSISTANT_VOICE,
    HELDOUT_VARIANTS,
    MORE_TRAIN_VARIANTS,
    SILENCE_RMS,
    TRAIN_VARIANTS,
    Voice,
    active_spans,
    frame_rms,
    sample_user_voice,
    speak,
    user_voices,
)

SEEDS = range(6)
SPLITS = ("train", "heldout")
TOL = 0.02  # s: the 10 ms energy frames, both edges


@pytest.fixture(scope="module")
def world():
    """{(kind, seed, split): Scenario} for every kind, SEEDS and both splits (~2 s)."""
    return {(k, s, sp): S.make_scenario(k, s, sp) for k in S.KINDS for s in SEEDS for sp in SPLITS}


def of_kind(world, kind):
    return [sc for (k, _, _), sc in world.items() if k == kind]


def overlap(a, b):
    """Total seconds where a span of `a` and a span of `b` overlap."""
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def assistant_active(sc):
    return active_spans(sc.assistant_audio.numpy(), sc.sample_rate, min_gap=0.0)


def spoken_after(sc, t):
    """The assistant's words (not monologue specials) that start at or after t."""
    return [(w, s) for w, s in sc.assistant_words if s >= t and not w.startswith("<")]


# ----------------------------------------------------------------------------
# vocabulary
# ----------------------------------------------------------------------------
def test_vocabulary_layout(tiny):
    assert VOCAB[0] == "<pad>" and word_id("<pad>") == PAD == 0
    assert list(VOCAB[: len(SPECIALS)]) == list(SPECIALS)
    assert len(VOCAB) <= tiny.model.text_vocab_size
    assert len(set(VOCAB)) == len(VOCAB)
    assert all(normalize(w) == w for w in VOCAB)
    assert ids("It is Green, now.") == [word_id(w) for w in ("it", "is", "green", "now")]
    with pytest.raises(ValueError, match="'zebra'"):
        word_id("Zebra")


def test_number_words():
    assert number_words(0) == ["zero"]
    assert number_words(1813) == ["one", "thousand", "eight", "hundred", "thirteen"]
    assert number_words(40) == ["forty"] and number_words(9999)[-2:] == ["ninety", "nine"]
    assert number_words(1000) == ["one", "thousand"] and number_words(205) == ["two", "hundred", "five"]
    for n in range(10_000):
        words = number_words(n)
        assert parse_number(words) == n
        ids(words)  # every number word is in the vocabulary
    with pytest.raises(ValueError):
        number_words(10_000)


def test_every_template_word_is_in_the_vocabulary():
    fillers = [*F.NAMES, *F.PEOPLE, *F.THING_COLOURS, *F.THING_COLOURS.values(), *F.ANIMAL_LEGS,
               *F.STORY_COLOURS, *scenes.LIGHTS[1:], *scenes.SHAPES[1:], *scenes.OBJECTS[1:], "a", "an"]
    ids(fillers)
    texts = [t for g in F.TEMPLATES.values() for split in g.values() for t in split]
    texts += [t for lines in F.LINES.values() for t in lines]
    for text in texts:
        ids(tokenize(re.sub(r"\{\w+\}|\|", " ", text)))


# ----------------------------------------------------------------------------
# voices and speech
# ----------------------------------------------------------------------------
def test_voice_split_is_disjoint():
    train, heldout = set(user_voices("train")), set(user_voices("heldout"))
    assert len(train) == 66 and len(heldout) == 54
    assert not train & heldout
    assert ASSISTANT_VOICE.name not in train | heldout
    rng = np.random.default_rng(0)
    for split, names in (("train", train), ("heldout", heldout)):
        for _ in range(50):
            v = sample_user_voice(rng, split)
            assert v.name in names and 0.5 <= v.volume <= 1.0 and 140 <= v.rate <= 210
    with pytest.raises(ValueError, match="split"):
        user_voices("test")


def test_many_speakers_widen_the_training_split_only():
    few, many = set(user_voices("train")), set(user_voices("train", "many"))
    heldout = set(user_voices("heldout"))
    assert len(many) == 348 and few < many and not many & heldout
    assert set(user_voices("heldout", "many")) == heldout  # the evaluation's voices do not move
    assert not set(MORE_TRAIN_VARIANTS) & set(HELDOUT_VARIANTS + TRAIN_VARIANTS + ("f2",))  # f2: assistant
    # eSpeak falls back to the bare accent for a variant it does not know: every name must exist
    variants = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    named = MORE_TRAIN_VARIANTS + TRAIN_VARIANTS[1:] + HELDOUT_VARIANTS  # [0] is "": the bare accent
    assert all((variants / v).is_file() for v in named)
    a = S.make_scenario("other_speaker", 3, "train")
    b = S.make_scenario("other_speaker", 3, "train", speakers="many")
    assert [t[3] for t in a.annotations["transcript"]] == [t[3] for t in b.annotations["transcript"]]
    assert set(b.annotations["voices"]) <= many
    with pytest.raises(ValueError, match="speakers"):
        user_voices("train", "all")
    with pytest.raises(ValueError, match="speakers"):
        S.make_scenario("pause", 0, speakers="lots")


def test_every_voice_speaks():
    for name in user_voices("train") + user_voices("heldout") + [ASSISTANT_VOICE.name]:
        u = speak("yes", Voice(name))
        assert u.duration > 0.1 and u.words[0][0] == "yes"


def test_speak_gives_trimmed_audio_and_word_times():
    v = Voice("en-us", rate=170, volume=0.5, noise=0.003)
    u = speak("there were so many people there, tell me the colour of a frog", v)
    assert [w for w, _, _ in u.words] == tokenize(u.text)  # eSpeak merges "there were": still aligned
    starts = [s for _, s, _ in u.words]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert all(s <= e <= u.duration + 1e-9 for _, s, e in u.words)
    assert u.words[-1][2] == pytest.approx(u.duration, abs=0.011)
    rms = frame_rms(u.wave.numpy(), 16_000)
    assert rms[0] > SILENCE_RMS * 0.5 and rms[-1] > SILENCE_RMS * 0.5  # trimmed to the speech
    assert u.wave.abs().max() <= 0.5 + 1e-5  # the gain
    a, b = (speak(u.text, v, rng=np.random.default_rng(3)) for _ in range(2))
    assert torch.equal(a.wave, b.wave) and not torch.equal(a.wave, u.wave)
    two = speak("it is green. okay", v)  # sentences are synthesised one by one
    assert [w for w, _, _ in two.words] == ["it", "is", "green", "okay"]
    assert two.words[3][1] - two.words[2][2] >= 0.3 - 1e-5


# ----------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------
def test_scene_rendering(tiny):
    v = tiny.vision
    a = scenes.SceneState(light=1, shape=2, shape_colour=3, object=1)
    frame = scenes.render(a, v)
    assert frame.shape == (80, 80, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, scenes.render(a, v))
    # each thing lives in its own 40x40 patch: changing the light touches only patch 0
    patches, _ = patchify(frame)
    for field, value, changed in (("light", 2, {0}), ("shape", 3, {1}), ("object", 2, {2, 3})):
        other, _ = patchify(scenes.render(scenes.SceneState(**{**a.__dict__, field: value}), v))
        assert {i for i in range(4) if not torch.equal(patches[i], other[i])} == changed
    states = [scenes.SceneState(light=i % len(scenes.LIGHTS)) for i in range(12)]
    video = scenes.render_all(states, v)
    assert video.shape == (12, 80, 80, 3) and np.array_equal(video[9], scenes.render(states[9], v))
    big = scenes.render(a, VisionConfig(frame_height=160, frame_width=240))
    assert big.shape == (160, 240, 3)


def test_seen_names_name_the_patch_each_thing_is_drawn_in(tiny):
    a = scenes.SceneState(light=1, shape=2, shape_colour=3, object=1)
    assert scenes.seen_names(a, tiny.vision) == ["red", "square", None, "apple"]
    assert scenes.seen_names(scenes.SceneState(), tiny.vision) == ["off", None, None, None]
    # each name sits in a patch that changes when that thing does (test_scene_rendering)
    v = VisionConfig(frame_height=160, frame_width=240)  # 4 x 6 patches
    names = scenes.seen_names(a, v)
    assert len(names) == v.n_patches and sum(n is not None for n in names) == 3
    patches, _ = patchify(scenes.render(a, v))
    for field, value, name in (("light", 2, "red"), ("shape", 3, "square"), ("object", 2, "apple")):
        other, _ = patchify(scenes.render(scenes.SceneState(**{**a.__dict__, field: value}), v))
        assert not torch.equal(patches[names.index(name)], other[names.index(name)])


# ----------------------------------------------------------------------------
# scenarios: shape, reproducibility, split
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", S.KINDS)
def test_kind_generates(world, kind, tiny):
    spt = tiny.audio.samples_per_micro_turn
    for sc in of_kind(world, kind):
        N = sc.user_audio.numel()
        assert sc.user_audio.dtype == sc.assistant_audio.dtype == torch.float32
        assert sc.assistant_audio.shape == (N,) and N % spt == 0
        assert sc.n_turns == N // spt == len(sc.scene)
        assert 4.0 <= sc.duration <= 15.0, (kind, sc.duration)
        assert sc.stereo().shape == (2, N)
        assert sc.frames(tiny.vision).shape == (sc.n_turns, 80, 80, 3)
        assert sc.user_audio.abs().max() <= 1.0 and sc.assistant_audio.abs().max() <= 1.0
        # every word is in the vocabulary; text-in fits the layout
        ids([w for w, _, _ in sc.user_words])
        ids([w for w, _ in sc.assistant_words])
        for turn, words in sc.text_in.items():
            assert 0 < len(words) <= tiny.model.text_in_slots and 0 <= turn < sc.n_turns
            ids(words)
        # monologue words: in time order, one per 50 ms output slot
        slots = [int(t / 0.05 + 1e-9) for _, t in sc.assistant_words]
        assert slots == sorted(slots) and len(set(slots)) == len(slots)
        assert all(s < e for _, s, e in sc.user_words)
        assert all(0 <= t <= sc.duration for end in sc.annotations["turn_ends"] for t in [end])
        ids(sc.annotations["expected_words"])
        assert kind in repr(sc)


def test_same_seed_same_bytes(world):
    for kind in S.KINDS:
        a = world[(kind, 3, "heldout")]
        S.make_scenario("timer", 11)  # something else in between: no hidden state
        b = S.make_scenario(kind, 3, "heldout")
        assert a.user_audio.numpy().tobytes() == b.user_audio.numpy().tobytes()
        assert a.assistant_audio.numpy().tobytes() == b.assistant_audio.numpy().tobytes()
        assert (a.scene, a.user_words, a.assistant_words, a.text_in, a.annotations) == \
               (b.scene, b.user_words, b.assistant_words, b.text_in, b.annotations)
        assert not torch.equal(a.user_audio[:1000], world[(kind, 4, "heldout")].user_audio[:1000])
        assert not torch.equal(a.user_audio[:1000], world[(kind, 3, "train")].user_audio[:1000])


def test_same_bytes_in_a_fresh_process(world):
    """eSpeak NG keeps state between calls; voices.py isolates each utterance, so a new process agrees."""
    code = ("import hashlib; from minitml.world import make_scenario as m; s = m('background', 2, 'train'); "
            "print(hashlib.sha256(s.stereo().numpy().tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    here = world[("background", 2, "train")].stereo().numpy().tobytes()
    assert out.strip() == hashlib.sha256(here).hexdigest()


def test_split_of_voices_and_templates(world):
    train_t = {t for g in F.TEMPLATES.values() for t in g["train"]}
    heldout_t = {t for g in F.TEMPLATES.values() for t in g["heldout"]}
    assert not train_t & heldout_t
    voices = {sp: set(user_voices(sp)) for sp in SPLITS}
    for (_, _, split), sc in world.items():
        assert set(sc.annotations["voices"]) <= voices[split]
        assert sc.annotations["templates"]
        assert set(sc.annotations["templates"]) <= (train_t if split == "train" else heldout_t)


def test_every_question_is_named_by_its_group(world):
    """facts.question_group names each asking line's template group, in both splits, also
    after a barge-in's lead; the answers' topics agree with it; other lines get None."""
    from minitml.train import ask_group

    asks = 0
    for (kind, _, _), sc in world.items():
        for ask in sc.annotations["asked"]:
            group = ask_group(ask, sc.annotations["transcript"])
            asks += 1
            if ask["topic"] == "tool":
                assert group == "tool"
            elif kind == "visual_cue":
                assert group == "cue"
            else:
                assert F.TOPICS[group] == ask["topic"], (kind, group, ask)
    assert asks > 60
    assert F.question_group("wait, how much is seven take away six") == "q_minus"
    for line in ("hey sam, did you see the game", "what is two times three", "so tell me",
                 "let me know when the light turns red"):
        assert F.question_group(line) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        S.make_scenario("karaoke", 0)
    with pytest.raises(ValueError, match="split"):
        S.make_scenario("pause", 0, "test")


# ----------------------------------------------------------------------------
# ground truth agrees with the audio
# ----------------------------------------------------------------------------
def test_microphone_is_silent_outside_labelled_speech(world):
    """Outside user and bystander speech the microphone holds only the room noise."""
    for sc in world.values():
        a = sc.annotations
        rms = frame_rms(sc.user_audio.numpy(), sc.sample_rate)
        t = (np.arange(len(rms)) + 0.5) * 0.01
        speech = a["user_speech"] + a["other_speech"]
        quiet = np.ones(len(rms), bool)
        for s, e in speech:
            quiet &= (t < s - TOL) | (t > e + TOL)
            assert rms[(t > s) & (t < e)].max() > 3 * a["noise_rms"]  # speech is there
        assert rms[quiet].max() <= 1.5 * a["noise_rms"] + SILENCE_RMS, sc


def test_no_user_speech_inside_pauses(world):
    n = 0
    for kind in ("pause", "hesitation"):
        for sc in of_kind(world, kind):
            rms = frame_rms(sc.user_audio.numpy(), sc.sample_rate)
            t = (np.arange(len(rms)) + 0.5) * 0.01
            for s, e in sc.annotations["pauses"]:
                n += 1
                inside = (t > s + TOL) & (t < e - TOL)
                assert rms[inside].max() <= 1.5 * sc.annotations["noise_rms"] + SILENCE_RMS
                assert overlap([(s, e)], assistant_active(sc)) == 0  # and the assistant holds back
                if kind == "pause":
                    assert 0.6 - 1e-3 <= e - s <= 1.5 + 1e-3
    assert n >= len(SEEDS) * 2


def test_assistant_never_talks_over_the_user(world):
    """Zero overlap, except a barge-in (<= 0.3 s) and backchannels running on <= 0.2 s."""
    for (kind, _, _), sc in world.items():
        a = sc.annotations
        heard = a["user_speech"] + a["other_speech"]
        talk = overlap(assistant_active(sc), heard)
        if kind == "interruption":
            bs, _ = a["barge_in"]
            assert 0.15 - 1e-5 <= a["assistant_stop"] - bs <= 0.3 + 1e-5
            assert talk <= a["assistant_stop"] - bs + TOL
        elif kind == "backchannel":
            for bc in a["backchannels"]:
                assert overlap([bc], heard) <= S.BACKCHANNEL_MAX_OVERLAP + 1e-5
            assert talk <= len(a["backchannels"]) * (S.BACKCHANNEL_MAX_OVERLAP + TOL)
        else:
            assert talk <= TOL, (kind, talk)


def test_turn_ends_are_answered_soon(world):
    for kind in ("smooth_turn", "pause", "other_speaker"):
        for sc in of_kind(world, kind):
            for end in sc.annotations["turn_ends"]:
                first = spoken_after(sc, end)[0][1]
                assert 0.05 - 1e-5 <= first - end <= 0.5 + 1e-5
            if sc.annotations["turn_ends"]:  # the reply to the last turn
                last = sc.annotations["turn_ends"][-1]
                assert sc.annotations["expected_words"] == [w for w, _ in spoken_after(sc, last)]


def test_backchannels_at_phrase_ends(world):
    for sc in of_kind(world, "backchannel"):
        a = sc.annotations
        assert a["backchannels"] and len(a["phrase_ends"]) >= 3
        for s, _ in a["backchannels"]:
            assert any(0.1 - 1e-5 <= s - pe <= 0.3 + 1e-5 for pe in a["phrase_ends"][:-1])


def test_interruption(world):
    for sc in of_kind(world, "interruption"):
        a = sc.annotations
        bs, be = a["barge_in"]
        spans = assistant_active(sc)
        # it was in the middle of an utterance when the user barged in
        assert any(s < bs < e for s, e in a["assistant_speech"])
        assert overlap(spans, [(a["assistant_stop"] + TOL, be)]) == 0  # then silent
        answer = spoken_after(sc, be)
        assert [w for w, _ in answer] == a["expected_words"] and answer[0][1] > be
        assert not [w for w, t in sc.assistant_words if a["assistant_stop"] <= t < be]


def test_hesitation_help_after_a_natural_wait(world):
    for sc in of_kind(world, "hesitation"):
        a = sc.annotations
        end = a["hesitations"][-1][1]
        first = spoken_after(sc, end)[0][1]
        assert 1.0 - 1e-5 <= first - end <= 2.0 + 1e-5
        assert first - end == pytest.approx(a["help_wait"], abs=1e-3)


def test_visual_cue_changes_the_scene_at_cue_time(world):
    for sc in of_kind(world, "visual_cue"):
        a = sc.annotations
        k, cue = a["cue_turn"], a["cue"]
        assert a["cue_time"] == pytest.approx(k * 0.2)
        names = {"light": scenes.LIGHTS, "shape": scenes.SHAPES, "object": scenes.OBJECTS}[cue["what"]]
        value = names.index(cue["value"])
        seen = [getattr(s, cue["what"]) for s in sc.scene]
        assert seen[k] == value and value not in seen[:k]  # first visible in frame k
        for d in a["distractors"]:
            j = round(d / 0.2)
            assert seen[j] != seen[j - 1] and j < k
        first = spoken_after(sc, a["cue_time"])
        assert 0.2 - 1e-5 <= first[0][1] - a["cue_time"] <= 0.4 + 1e-5
        assert [w for w, _ in first] == a["expected_words"]
        # silent from the end of the acknowledgement to the response
        ack_end = a["assistant_speech"][0][1]
        assert overlap(assistant_active(sc), [(ack_end + TOL, a["cue_time"] + 0.2)]) == 0


def test_timer_speaks_at_the_target(world):
    for sc in of_kind(world, "timer"):
        a = sc.annotations
        assert a["timer_target"] == pytest.approx(a["turn_ends"][0] + a["timer_seconds"])
        first = spoken_after(sc, a["timer_target"] - 0.5)[0][1]
        assert 0 <= first - a["timer_target"] <= 0.15


def test_background_call_result_and_answer(world):
    asides = 0
    for sc in of_kind(world, "background"):
        call = sc.annotations["call"]
        x, y = call["operands"]
        words = [w for w, _ in sc.assistant_words]
        i, j = words.index("<call>"), words.index("</call>")
        assert words[i + 1: j] == call["text"] == [*number_words(x), "times", *number_words(y)]
        assert sc.assistant_words[j][1] == pytest.approx(call["issued"])
        # the result arrives as text-in after the call, at most X words per micro-turn
        turns = sorted(sc.text_in)
        arrived = [w for t in turns for w in sc.text_in[t]]
        assert arrived == ["<result>", *call["result"]]
        assert turns[0] * 0.2 >= call["issued"] + 0.8 - 0.2 and turns == list(range(turns[0], turns[-1] + 1))
        assert 0.8 - 0.2 <= call["arrived"] - call["issued"] <= 2.0
        # the spoken answer comes after the result is in, when nobody is talking, and is right
        answer = spoken_after(sc, call["delivered"])
        assert answer[0][1] > call["delivered"]
        spoken = [w for w, _ in answer]
        if call["result"] == ["<fail>"]:
            assert "sorry" in spoken
        else:
            assert call["result"] == number_words(x * y)
            assert parse_number(spoken[-len(call["result"]):]) == x * y
        if len(sc.annotations["turn_ends"]) == 2:  # the user spoke meanwhile: wait for them
            asides += 1
            assert answer[0][1] > sc.annotations["turn_ends"][1]
    assert asides >= 1


def test_background_waits_for_a_talking_user():
    """Across seeds, some results arrive while the user is still talking, and the answer waits."""
    waited = 0
    for seed in range(20):
        sc = S.make_scenario("background", seed)
        call, ends = sc.annotations["call"], sc.annotations["turn_ends"]
        if len(ends) == 2 and ends[1] > call["delivered"]:
            waited += 1
            assert spoken_after(sc, call["delivered"])[0][1] >= ends[1] + 0.05 - 1e-5
    assert waited >= 3


def test_other_speaker_is_not_answered(world):
    for sc in of_kind(world, "other_speaker"):
        a = sc.annotations
        assert a["other_speech"] and len(a["voices"]) == 1 + len(a["other_speech"])  # all different
        spans = assistant_active(sc)
        last_other = a["other_speech"][-1][1]
        assert overlap(spans, [(0, last_other + 0.3)]) == 0
        if not a["turn_ends"]:  # nobody addressed the assistant
            assert sc.assistant_audio.abs().max() == 0 and a["expected_words"] == []
        # the bystander is quieter than the user (gain ratio 0.25-0.5)
        rms = frame_rms(sc.user_audio.numpy(), sc.sample_rate)
        t = (np.arange(len(rms)) + 0.5) * 0.01
        loudness = {k: np.mean([rms[(t > s) & (t < e)].mean() for s, e in a[k]])
                    for k in ("user_speech", "other_speech") if a[k]}
        if "user_speech" in loudness:
            assert loudness["other_speech"] < 0.7 * loudness["user_speech"]


# ----------------------------------------------------------------------------
# into the model's blocks
# ----------------------------------------------------------------------------
def test_scenarios_pack_into_blocks(world, tiny):
    dmel = DMel(tiny.audio)
    for kind in S.KINDS:
        sc = world[(kind, 0, "train")]
        user = dmel.encode(sc.user_audio, causal=True)
        model = dmel.encode(sc.assistant_audio, causal=True)
        words = [(word_id(w), t) for w, t in sc.assistant_words]
        patches, grid = patchify(sc.frames(tiny.vision))
        text_in = {t: ids(w) for t, w in sc.text_in.items()}
        b = pack_conversation(tiny, user, model, words, frames=patches, text_in=text_in)
        T = sc.n_turns
        assert b.user_audio.shape == (1, T, 4, 4, 80) and b.patches.shape == (1, T, 4, 4800)
        assert grid == (2, 2)
        # no monologue word is lost to a shared slot (all start after the first 200 ms)
        assert all(t >= 0.2 for _, t in words)
        assert int((b.out_text != PAD).sum()) == len(words)
        assert int((b.text_in != PAD).sum()) == sum(len(w) for w in sc.text_in.values())
        # the assistant's silence is silence in dMel too
        silent = model.eq(0).all(-1)  # bin 0 = log10-mel clamped at -7
        assert silent.float().mean() > 0.3


def test_generation_is_fast():
    start = time.perf_counter()
    total = sum(S.make_scenario(k, 100 + i).duration for i in range(2) for k in S.KINDS)
    elapsed = time.perf_counter() - start
    assert total / elapsed > 20, f"{total / elapsed:.0f} s of dialogue per second"
