"""Solutions to the exercises of 06_toy_world (the tests run them through the notebook's checks)."""

import math

import numpy as np
import torch

from minitml.world import ASSISTANT_VOICE, TEMPLATES, SceneState, sample_user_voice, speak
from minitml.world.scenarios import Scenario

MICRO_TURN_S = 0.2


def my_micro_turn(t):
    # Micro-turn k covers [0.2k, 0.2(k+1)). A tiny epsilon absorbs floating-point error:
    # 0.6 / 0.2 = 2.9999999999999996 must give 3, as the package does it.
    return int(t / MICRO_TURN_S + 1e-9)


def my_turn_latencies(scenario):
    # The first spoken monologue word at or after each turn end (silent tokens like <call> skipped).
    spoken = [t for w, t in scenario.assistant_words if not w.startswith("<")]
    return [min(t for t in spoken if t >= end) - end for end in scenario.annotations["turn_ends"]]


def my_count_backchannels(scenario):
    # What you can hear: bursts of the assistant's audio that begin before the story is over.
    from minitml.world.voices import active_spans

    story_end = scenario.annotations["turn_ends"][-1]
    spans = active_spans(scenario.assistant_audio, scenario.sample_rate)
    return sum(start < story_end for start, _ in spans)


def my_counting_scenario(seed, split="train"):
    sr, spt = 16_000, 3200  # sample rate, samples per micro-turn
    rng = np.random.default_rng([9, seed, ("train", "heldout").index(split)])  # 9: the tenth kind
    voice = sample_user_voice(rng, split)
    phrasings = TEMPLATES["req_count"][split]
    text = phrasings[int(rng.integers(len(phrasings)))].format(n="five")

    # The user's request, placed on the sample grid.
    request = speak(text, voice, sample_rate=sr)
    i0 = round(float(rng.uniform(0.4, 1.0)) * sr)
    start = i0 / sr
    end = start + request.duration
    user_words = [(w, round(start + a, 6), round(start + b, 6)) for w, a, b in request.words]

    # The count: one number per second from a human-like gap after the end of the turn.
    gap = float(np.clip(rng.normal(0.2, 0.08), 0.05, 0.5))
    numbers = ["one", "two", "three", "four", "five"]
    first = round((end + gap) * sr)  # first sample of "one"
    placed = [(w, first + k * sr, speak(w, ASSISTANT_VOICE, sample_rate=sr)) for k, w in enumerate(numbers)]

    last_end = (placed[-1][1] + placed[-1][2].wave.numel()) / sr
    n_turns = math.ceil((last_end + float(rng.uniform(0.6, 1.2))) / MICRO_TURN_S)
    n = n_turns * spt
    mic, out = np.zeros(n, np.float32), np.zeros(n, np.float32)
    mic[i0:i0 + request.wave.numel()] += request.wave.numpy()
    mic += rng.standard_normal(n, dtype=np.float32) * np.float32(voice.noise)
    np.clip(mic, -1, 1, out=mic)
    speech = []
    for _, j, utt in placed:
        out[j:j + utt.wave.numel()] += utt.wave.numpy()
        speech.append((round(j / sr, 6), round((j + utt.wave.numel()) / sr, 6)))

    transcript = [("user", round(start, 6), round(end, 6), text)]
    transcript += [("assistant", a, b, w) for (w, _, _), (a, b) in zip(placed, speech)]
    annotations = {
        "turn_ends": [round(end, 6)], "expected_words": numbers,
        "user_speech": [(round(start, 6), round(end, 6))], "other_speech": [], "assistant_speech": speech,
        "noise_rms": voice.noise, "voices": [voice.name], "templates": [text], "transcript": transcript,
    }
    return Scenario(
        kind="counting", seed=seed, split=split, sample_rate=sr,
        user_audio=torch.from_numpy(mic), assistant_audio=torch.from_numpy(out),
        scene=[SceneState()] * n_turns, user_words=user_words,
        assistant_words=[(w, round(j / sr, 6)) for w, j, _ in placed], text_in={},
        annotations=annotations,
    )

