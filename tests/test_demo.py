"""The live demo's message protocol (minitml/demo/engine.py), its widget and the headless demo.

The browser side is tested in tests/test_browser.py; here the kernel side gets the
messages the front end sends, good and bad, and must answer each one and survive.
"""

import json
import wave as wavefile

import numpy as np
import pytest
import torch

from minitml.config import get_config
from minitml.demo import DemoEngine, DuplexDemo
from minitml.model import InteractionModel
from minitml.world.scenes import LIGHTS

N = 3200  # samples per 200 ms chunk


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InteractionModel(get_config("tiny")).eval()  # random weights: the protocol, not the talk


@pytest.fixture
def engine(model):
    engine = DemoEngine(model)
    yield engine
    engine.close()


def chunks_of(wave: torch.Tensor) -> list[np.ndarray]:
    wave = torch.nn.functional.pad(wave, (0, -wave.numel() % N))
    return [c.numpy().astype("<f4") for c in wave.view(-1, N)]


def send(engine, content, *buffers):
    return engine.handle(content, [memoryview(b) for b in buffers])


def kinds(replies):
    return [r["type"] for r, _ in replies]


def test_microphone_chunks_in_audio_and_events_out(engine, speech):
    (started, _), = send(engine, {"type": "start", "mode": "microphone"})
    assert started["type"] == "started" and started["frame_size"] == [80, 80] and started["budget_ms"] == 200
    chunks = chunks_of(torch.cat([speech.wave, torch.zeros(8000)]))
    assert len(chunks) >= 20
    for seq, chunk in enumerate(chunks):
        replies = send(engine, {"type": "chunk", "seq": seq, "dtype": "float32"}, chunk.tobytes())
        assert kinds(replies) == ["output"]
        out, buffers = replies[0]
        assert out["seq"] == seq and out["turn"] == seq
        assert out["buffers"][0] == "model" and len(buffers[0]) == 4 * N  # the next 200 ms, float32
        said = np.frombuffer(buffers[0], dtype="<f4")
        assert np.isfinite(said).all() and np.abs(said).max() <= 1.0
        assert 0 < out["compute_ms"] and len(out["user_levels"]) == len(out["model_levels"]) == 4
        assert "user" not in out["buffers"]  # the microphone's own audio is not sent back
        assert ("frame" in out["buffers"]) == (seq == 0)  # the toy scene, sent when it changes
        json.dumps(out)  # every reply travels as JSON
    assert engine.turn == len(chunks)
    timeline = engine.timeline()
    assert len(timeline.outputs) == len(chunks) and timeline.user_audio.numel() == len(chunks) * N
    (stopped, _), = send(engine, {"type": "stop"})
    assert stopped["turns"] == len(chunks) and stopped["compute_ms_p50"] > 0


@pytest.mark.parametrize("content, buffer, says", [
    ({"dtype": "float32"}, np.zeros(100, "<f4").tobytes(), "expected 3200 float32 samples (12800 bytes"),
    ({"dtype": "float32"}, np.zeros(N, "<f8").tobytes(), "got 25600 bytes"),
    ({"dtype": "int16"}, np.zeros(N, "<i2").tobytes(), "expected float32 samples, got dtype 'int16'"),
    ({"dtype": "float32"}, np.full(N, np.nan, "<f4").tobytes(), "NaN"),
    ({"dtype": "float32"}, np.full(N, 300.0, "<f4").tobytes(), "divide by 32768"),
    ({"dtype": "float32"}, None, "expected one audio buffer"),
    ({"dtype": "float32", "frame": [60, 60]}, np.zeros(N, "<f4").tobytes(), "expected a 80x80 frame"),
])
def test_a_bad_chunk_is_refused_with_a_message_and_the_session_goes_on(engine, content, buffer, says):
    send(engine, {"type": "start", "mode": "microphone"})
    good = np.zeros(N, "<f4").tobytes()
    assert kinds(send(engine, {"type": "chunk", "seq": 0}, good)) == ["output"]
    buffers = [buffer] if buffer is not None else []
    replies = send(engine, {"type": "chunk", "seq": 1, **content}, *buffers)
    assert kinds(replies) == ["error", "output"]  # said, and replaced by a silent step: the clock goes on
    error = replies[0][0]
    assert error["seq"] == 1 and says in error["message"], error["message"]
    assert replies[1][0]["turn"] == 1 and len(replies[1][1][0]) == 4 * N
    replies = send(engine, {"type": "chunk", "seq": 2}, good)
    assert kinds(replies) == ["output"] and replies[0][0]["turn"] == 2
    assert engine.timeline().user_audio.abs().max() == 0  # the bad chunk was heard as silence


def test_messages_out_of_order_or_unknown_are_errors(engine):
    (reply, _), = send(engine, {"type": "chunk", "seq": 0}, np.zeros(N, "<f4").tobytes())
    assert reply["type"] == "error" and "start message first" in reply["message"]
    (reply, _), = send(engine, {"type": "dance"})
    assert reply["type"] == "error" and "unknown message type 'dance'" in reply["message"]
    (reply, _), = send(engine, {"type": "start", "mode": "telepathy"})
    assert reply["type"] == "error" and "'microphone' or 'scripted'" in reply["message"]
    (reply, _), = send(engine, {"type": "start", "mode": "scripted", "kind": "sonnet"})
    assert reply["type"] == "error" and "unknown scenario kind 'sonnet'" in reply["message"]
    send(engine, {"type": "start", "mode": "microphone"})
    (reply, _), = send(engine, {"type": "action", "name": "juggle"})
    assert reply["type"] == "error" and "unknown action 'juggle'" in reply["message"]


def test_scripted_mode_plays_the_scenario_through_the_same_path(engine):
    (started, _), = send(engine, {"type": "start", "mode": "scripted", "kind": "background", "seed": 1})
    n_turns = started["n_turns"]
    assert started["kind"] == "background" and started["transcript"]
    scenario = engine.scenario
    heard, events = [], []
    for seq in range(n_turns):
        (out, buffers), = send(engine, {"type": "chunk", "seq": seq})  # no audio: the script has it
        assert out["buffers"][:2] == ["model", "user"]
        heard.append(np.frombuffer(buffers[1], dtype="<f4"))
        events += out["events"]
        assert out["done"] == (seq == n_turns - 1)
    expected = torch.nn.functional.pad(scenario.user_audio, (0, n_turns * N - scenario.user_audio.numel()))
    assert np.array_equal(np.concatenate(heard), expected.numpy())
    assert any(e["kind"] == "background_result" for e in events)  # the scripted result, as text-in
    assert kinds(send(engine, {"type": "chunk", "seq": n_turns})) == ["done"]
    # the last output marks the reply that had to carry the product, right or wrong, where it was due
    (mark,) = [e for e in out["events"] if e["kind"].startswith("answer_")]
    assert f'asked "{" ".join(scenario.annotations["asked"][0]["value"])}"' in mark["detail"]
    assert mark["time"] == pytest.approx(scenario.annotations["asked"][0]["after"], abs=1e-3)


def test_buttons_change_the_light_and_make_the_user_speak(engine):
    send(engine, {"type": "start", "mode": "microphone"})
    silence = np.zeros(N, "<f4").tobytes()
    (out, buffers), = send(engine, {"type": "chunk", "seq": 0}, silence)
    first_frame = buffers[out["buffers"].index("frame")]
    (reply, _), = send(engine, {"type": "action", "name": "light"})
    assert reply["type"] == "event" and reply["event"]["kind"] == "light"
    assert reply["event"]["detail"] == LIGHTS[LIGHTS.index("red") + 1]
    (out, buffers), = send(engine, {"type": "chunk", "seq": 1}, silence)
    assert "frame" in out["buffers"] and buffers[out["buffers"].index("frame")] != first_frame
    assert any(e["kind"] == "light" for e in out["events"])

    (reply, _), = send(engine, {"type": "action", "name": "interrupt"})
    assert reply["event"]["kind"] == "you_said" and "wait" in reply["event"]["detail"]
    said, words = [], []
    for seq in range(2, 12):
        (out, buffers), = send(engine, {"type": "chunk", "seq": seq}, silence)
        if "user" in out["buffers"]:
            said.append(np.frombuffer(buffers[out["buffers"].index("user")], dtype="<f4"))
        words += [w for w, _ in out["user_words"]]
    assert said and np.abs(np.concatenate(said)).max() > 0.05  # the user's voice went into the model
    assert words[:2] == ["wait", "what"]
    (reply, _), = send(engine, {"type": "say", "text": "what is two plus two"})
    assert reply["event"]["detail"] == "what is two plus two"
    (reply, _), = send(engine, {"type": "say", "text": "  "})
    assert reply["type"] == "error" and "empty" in reply["message"]


def test_a_webcam_frame_of_the_right_size_is_what_the_model_sees(engine):
    send(engine, {"type": "start", "mode": "microphone"})
    frame = np.full((80, 80, 3), 200, dtype=np.uint8)
    (out, buffers), = send(engine, {"type": "chunk", "seq": 0, "frame": [80, 80]},
                           np.zeros(N, "<f4").tobytes(), frame.tobytes())
    assert buffers[out["buffers"].index("frame")] == frame.tobytes()
    (reply, _), (out, _) = send(engine, {"type": "chunk", "seq": 1, "frame": [80, 80]},
                                np.zeros(N, "<f4").tobytes(), frame.tobytes()[:-3])
    assert reply["type"] == "error" and "19200 bytes of RGB" in reply["message"]


def test_the_widget_answers_through_its_comm_and_counts_turns(model, monkeypatch):
    demo = DuplexDemo(model, background=None)
    sent = []
    monkeypatch.setattr(demo, "send", lambda content, buffers=None: sent.append((content, buffers)))
    assert demo.kinds[0] == "smooth_turn" and demo.frame_size == [80, 80] and demo.device == "cpu"
    assert demo.micro_turn_ms == model.cfg.audio.micro_turn_ms  # the page times itself by it
    demo._on_message(demo, {"type": "start", "mode": "scripted", "kind": "timer"}, [])
    for seq in range(3):
        demo._on_message(demo, {"type": "chunk", "seq": seq}, [])
    assert [c["type"] for c, _ in sent] == ["started", "output", "output", "output"]
    assert demo.turns == 3 and len(demo.timeline().outputs) == 3

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(demo.engine, "handle", broken)
    demo._on_message(demo, {"type": "chunk", "seq": 3}, [])  # a bug is reported, not raised
    assert sent[-1][0] == {"type": "error", "seq": 3, "message": "RuntimeError: boom"}
    demo.close()


def test_the_python_playout_schedule_uses_the_pages_constants():
    """engine.playout_schedule re-states widget.js's scheduling in Python for notebook 10."""
    import re

    from minitml.demo import engine as demo_engine
    from minitml.demo.widget import DuplexDemo as Widget

    js = str(Widget._esm)
    for name in ("LEAD_S", "MARGIN_S"):
        value = float(re.search(rf"const {name} = ([0-9.]+);", js).group(1))
        assert value == getattr(demo_engine, name), name
    assert 'const STEP_S = STEP_MS / 1000' in js and 'model.get("micro_turn_ms")' in js  # no literal


def test_the_widget_front_end_is_shipped():
    from minitml.demo.widget import DuplexDemo as Widget

    js = str(Widget._esm)  # anywidget reads the file into its contents
    for needed in ("AudioWorkletProcessor", "getUserMedia", "isSecureContext", "msg:custom",
                   "export default"):
        assert needed in js


def test_demo_command_writes_stereo_wav_timeline_and_report(tmp_path, capsys):
    """`python -m minitml demo` (here two of the nine kinds) with the shipped checkpoint."""
    from minitml.__main__ import SHIPPED_CHECKPOINT, main

    if not SHIPPED_CHECKPOINT.exists():
        pytest.skip(f"no shipped checkpoint at {SHIPPED_CHECKPOINT}")
    assert main(["demo", "--out", str(tmp_path), "--kinds", "interruption,visual_cue"]) == 0
    out = capsys.readouterr().out
    for name in ("conversation.wav", "timeline.png", "report.md", "report.json"):
        assert (tmp_path / name).stat().st_size > 500 and str(tmp_path / name) in out
    with wavefile.open(str(tmp_path / "conversation.wav")) as f:
        assert f.getnchannels() == 2 and f.getframerate() == 16000  # user left, model right
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["kind"] for r in report["kinds"]] == ["interruption", "visual_cue"]
    (barge,), (cue,) = report["kinds"][0]["samples"], report["kinds"][1]["samples"]
    assert "speaking_at_barge_in" in barge and "on_time" in cue
    assert report["micro_turns"] > 40 and 0 < report["compute_ms"]["p50"] < report["budget_ms"]
    md = (tmp_path / "report.md").read_text()
    assert "## interruption" in md
    # each reply that must carry a value is marked, in the report and in the log
    for row in (barge, cue):
        mark = f"answer {'RIGHT' if row['right'] else 'WRONG'} ({row['clip']}): asked for \"{row['value']}\""
        assert mark in md and mark in out
    assert "compute per step p50" in out


def test_microphone_mode_with_the_tool_background_model(model):
    import time

    from minitml.background import script_monologue
    from minitml.world.tools import ToolExecutor

    engine = DemoEngine(model, background=ToolExecutor(latency_s=0.0))
    try:
        send(engine, {"type": "start", "mode": "microphone"})
        # the model's call words (scripted: the untrained model would not say them)
        script_monologue(engine.session, "<call> two times three </call>")
        for seq in range(20):
            replies = send(engine, {"type": "chunk", "seq": seq}, np.zeros(N, "<f4").tobytes())
            assert kinds(replies) == ["output"]
            time.sleep(0.05)  # the tool answers in its worker, beside the loop
        calls = engine.session.handoff.calls
        assert [c.words for c in calls] == [["two", "times", "three"]]
        assert calls[0].delivered == ["<result>", "six"]  # what the model heard as text-in
        send(engine, {"type": "start", "mode": "scripted", "kind": "background"})
        assert engine.session.handoff is None  # scripted results come as the scenario's text-in instead
    finally:
        engine.close()


def test_a_long_conversation_keeps_the_last_minutes(engine, monkeypatch):
    import minitml.demo.engine as demo_engine

    monkeypatch.setattr(demo_engine, "KEEP_TURNS", 5)
    send(engine, {"type": "start", "mode": "scripted", "kind": "smooth_turn"})
    for seq in range(12):
        send(engine, {"type": "chunk", "seq": seq})
    timeline = engine.timeline()
    assert len(timeline.outputs) == 5 and timeline.user_audio.numel() == 5 * N  # micro-turns 7..11
    assert all(0 <= t < 6 * 0.2 for _, t in timeline.words)  # on the kept stretch's own clock
