import numpy as np
import pytest
import torch

from minitml.config import get_config
from minitml.events import EventTracker
from minitml.model import InteractionModel
from minitml.protocol import Event
from minitml.session import Session
from minitml.stream import PAD


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InteractionModel(get_config("tiny")).eval()


def chunk(seed=0, scale=0.3):
    return scale * torch.randn(3200, generator=torch.Generator().manual_seed(seed))


def test_step_returns_the_next_200_ms(model):
    session = Session(model, overrun="ignore")
    out = session.step(chunk())
    assert out.turn == 0 and out.audio.shape == (3200,) and out.tokens.shape == (16, 80)
    assert out.text_ids.shape == (4,) and out.compute_ms > 0
    out = session.step(chunk(1))
    # output 1 is played from 400 ms on; its words sit on the 50 ms slots from there
    assert all(0.4 <= t < 0.6 for _, t in out.words)
    slots = [round((t - 0.4) / 0.05, 6) for _, t in out.words]
    assert all(s == int(s) for s in slots)


BAD_INPUTS = [
    (dict(audio=torch.zeros(3000)), "expected one micro-turn of audio: 3200 samples"),
    (dict(audio=torch.zeros(4410), sample_rate=22050), "expected audio at 16000 Hz, got 22050"),
    (dict(audio=torch.full((3200,), float("nan"))), "NaN"),
    (dict(audio=torch.zeros(2, 3200)), "mono"),
    (dict(audio=(torch.zeros(3200) * 100).to(torch.int16)), "int16"),
    (dict(audio=torch.zeros(3200), frame=torch.zeros(120, 160, 3)), "80x80x3 frame"),
    (dict(audio=torch.zeros(3200), frame=torch.zeros(80, 80, 4)), "RGBA|4 channels|alpha"),
    (dict(audio=torch.zeros(3200), frame=torch.zeros(80, 80)), "grayscale|2-D|channels"),
    (dict(audio=torch.zeros(3200), text_in=[3, 999]), r"word ids must lie in \[0, 256\)"),
    (dict(audio=torch.zeros(3200), text_in="hello"), "needs a vocabulary"),
    (dict(audio=torch.zeros(3200), text_in=["hello"]), "needs a vocabulary"),
]


@pytest.mark.parametrize("kwargs, message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_refused_and_the_session_goes_on(model, kwargs, message):
    clean = Session(model, overrun="ignore", temperature=1.0, seed=3)
    session = Session(model, overrun="ignore", temperature=1.0, seed=3)
    first = [clean.step(chunk(0)), session.step(chunk(0))]
    with pytest.raises(ValueError, match=message):
        session.step(**kwargs)
    # nothing changed: the next step is exactly what a session that never saw it says
    a, b = clean.step(chunk(1)), session.step(chunk(1))
    assert a.turn == b.turn == 1 and first[0].turn == 0
    assert torch.equal(a.text_ids, b.text_ids) and torch.equal(a.tokens, b.tokens)


def test_same_seed_same_conversation(model):
    a = Session(model, overrun="ignore", temperature=1.0, mel_temperature=1.0, seed=11)
    b = Session(model, overrun="ignore", temperature=1.0, mel_temperature=1.0, seed=11)
    c = Session(model, overrun="ignore", temperature=1.0, mel_temperature=1.0, seed=12)
    outs = [(a.step(chunk(i)), b.step(chunk(i)), c.step(chunk(i))) for i in range(3)]
    assert all(torch.equal(x.tokens, y.tokens) for x, y, _ in outs)
    assert not all(torch.equal(x.tokens, z.tokens) for x, _, z in outs)


def test_overrun_then_catch_up_then_recover(model):
    session = Session(model, overrun="catch_up")
    session.budget_ms = 1e-6  # every step overruns
    first = session.step(chunk(0))
    assert not first.catch_up and first.late_ms > 0
    assert [e.kind for e in first.events].count("deadline_miss") == 1
    session.budget_ms = 1e6  # plenty of time from now on
    second = session.step(chunk(1))
    assert second.catch_up and "catch_up" in [e.kind for e in second.events]
    assert (second.text_ids == PAD).all() and (second.tokens == 0).all()  # silence
    assert second.late_ms == 0.0
    third = session.step(chunk(2))
    assert not third.catch_up and third.late_ms == 0.0


def test_ignore_policy_only_records_the_lag(model):
    session = Session(model, overrun="ignore", budget_ms=1e-6)
    outs = [session.step(chunk(i)) for i in range(3)]
    assert not any(o.catch_up for o in outs)
    assert outs[0].late_ms < outs[1].late_ms < outs[2].late_ms
    with pytest.raises(ValueError, match="'catch_up' or 'ignore'"):
        Session(model, overrun="skip")


def test_run_gives_a_timeline_and_survives_a_bad_frame(model):
    session = Session(model, overrun="ignore")
    audio = 0.2 * torch.randn(int(16000 * 1.05))  # 5.25 micro-turns: padded to 6
    frames = [np.zeros((80, 80, 3), np.uint8)] * 6
    frames[3] = np.zeros((80, 80, 4), np.uint8)  # an RGBA frame at micro-turn 3
    timeline = session.run(audio, frames=frames)
    assert len(timeline.outputs) == 6
    errors = [e for e in timeline.events if e.kind == "error"]
    assert len(errors) == 1 and abs(errors[0].time - 0.6) < 1e-9
    assert timeline.stereo().shape == (2, 6 * 3200)
    assert timeline.model_audio[:3200].abs().max() == 0  # nothing is played in the first 200 ms
    assert len(timeline.compute_ms) == 6


def test_text_in_is_queued_x_per_micro_turn(model):
    session = Session(model, overrun="ignore")
    session.step(chunk(0), text_in=[5, 6, 7])  # X = 2 slots: 5, 6 now, 7 next time
    assert list(session.text_queue) == [7]
    session.step(chunk(1), record=True)
    assert session.recorded[-1].text_in[0, 0].tolist() == [7, PAD]


def test_event_tracker_follows_full_duplex_bench_rules():
    slot = 0.05
    frames_on, frames_off = torch.full((4, 80), 9), torch.zeros(4, 80, dtype=torch.long)

    def play(pattern, user=False):
        tracker, events = EventTracker(), []
        for i, speaking in enumerate(pattern):
            tracker.update(i * slot, slot, False, frames_on if speaking else frames_off, user, events)
        return [e.kind for e in events], events

    kinds, _ = play([1] * 6 + [0] * 10)  # 0.3 s then silence: a backchannel
    assert kinds == ["speech_start", "backchannel"]
    kinds, events = play([1] * 24 + [0] * 10)  # 1.2 s: takes the turn at its start
    assert kinds == ["speech_start", "took_turn"] and events[1].time == 0.0
    kinds, _ = play([1] * 24 + [0] * 10, user=True)  # stops while the user talks: yields
    assert kinds == ["speech_start", "took_turn", "yielded"]
    tracker, events = EventTracker(), []
    for i in range(5):  # four words in 0.25 s: more than 3 words is a takeover too
        tracker.update(i * slot, slot, i < 4, frames_off, False, events)
    assert [e.kind for e in events] == ["speech_start", "took_turn"]
    assert isinstance(events[0], Event)


def test_cost_and_memory_are_flat_over_a_long_session(model):
    """150 micro-turns (30 s) with the 32-micro-turn window full long before the end."""
    session = Session(model, overrun="ignore", vocode=False)
    cache_bytes = []
    for i in range(150):
        session.step(chunk(i % 7, 0.1))
        if i % 30 == 29:
            cache_bytes.append(sum(c.nbytes() for c in session.generator.state.caches))
    assert len(set(cache_bytes)) == 1
    assert session.generator.state.next_position > 4 * get_config("tiny").window
