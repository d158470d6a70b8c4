"""The kernel side of the live demo: messages in, one `Session.step` per chunk, messages out.

The widget (minitml/demo/widget.py) is only a pipe between the browser and a
`DemoEngine`. Everything the demo does is here, in plain Python, so it can be
tested without a browser and reused by the headless demo:

    engine = DemoEngine(model)
    engine.handle({"type": "start", "mode": "scripted", "kind": "interruption"})
    for reply, buffers in engine.handle({"type": "chunk", "seq": 0}):
        ...   # an "output" message with the model's next 200 ms as float32 bytes

The protocol. Every message is a JSON dict with a "type", plus binary buffers
(raw little-endian arrays: audio never travels as JSON text).

front end -> kernel
    start   {mode: "microphone" | "scripted", kind, seed}   a new conversation
    chunk   {seq, dtype: "float32", frame: [H, W] (optional)}
            buffers: [audio (3200,) float32, frame (H, W, 3) uint8 RGB (optional)]
            microphone mode: the 200 ms the microphone heard (and a webcam frame);
            scripted mode: no buffers, the engine takes the scenario's next 200 ms.
            Either way the front end's audio clock sends one chunk every 200 ms.
    action  {name: "interrupt" | "light" | "timer"}  the user barges in / the light
            changes colour / the user asks for a five-second timer
    say     {text}      the toy world's user voice says `text` into the microphone
    stop    {}

kernel -> front end
    started {mode, kind, seed, n_turns, transcript, device, budget_ms, frame_size}
    output  {seq, turn, compute_ms, late_ms, budget_ms, catch_up, words [[w, t]],
             events [{kind, time, detail}], user_words [[w, t]], user_levels [4],
             model_levels [4], buffers: ["model", "user"?, "frame"?], done}
            buffers: the model's next 200 ms (float32, played during
            [200(t+1), 200(t+2)) ms); in scripted mode (or while a button's speech is
            being said) the user's 200 ms too, so the page can play both; the frame the
            model saw, whenever it changed.
    done    {seq, turns}     a chunk after the scenario's end (scripted mode)
    event   {event}          a button's effect, as it is logged
    error   {seq, message}   a bad message; the session goes on (a bad chunk is
            replaced by silence, `Session.step_or_silence`, so the clock never stops)
    stopped {turns, compute_ms_p50, compute_ms_max, deadline_misses}
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from minitml.clips import cut
from minitml.config import AudioConfig
from minitml.metrics import score
from minitml.protocol import RESULT, Event
from minitml.session import Session
from minitml.timeline import Timeline
from minitml.world.scenarios import KINDS, make_scenario
from minitml.world.scenes import LIGHTS, SceneState, render
from minitml.world.vocab import VOCAB
from minitml.world.voices import Voice, speak

DATA = Path(__file__).resolve().parents[2] / "data"
USER_VOICE = Voice("en-gb-x-gbcwmd+m7", rate=175, pitch=45, volume=0.8)  # a held-out voice
LINES = {  # what the buttons make the user say (toy-world phrasings)
    "interrupt": "wait, what colour is the light",
    "timer": "tell me when five seconds have passed",
}
KEEP_TURNS = 3000  # micro-turns of history kept for `timeline()` (10 minutes)
LEAD_S = 0.15  # the page's jitter buffer: the first reply is played this long after it arrives
MARGIN_S = 0.02  # a reply needs at least this much time before its slot, or the page re-anchors
STEP_S = AudioConfig().micro_turn_ms / 1000  # one micro-turn (the page is told the model's own)


# -- the model --------------------------------------------------------------------------
def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_demo_model(checkpoint=None, device: str | None = None):
    """The shipped checkpoint on the best device: data/small.pt on a GPU if it exists, else data/tiny.pt."""
    from minitml.checkpoint import load

    device = device or pick_device()
    if checkpoint is None:
        small = DATA / "small.pt"
        checkpoint = small if device.startswith("cuda") and small.exists() else DATA / "tiny.pt"
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}; train one with `python -m minitml train` "
                                f"and copy out/train/model.pt there")
    model = load(checkpoint, map_location=device).to(device)
    model.checkpoint = str(checkpoint)
    return model


def level_db(x: np.ndarray, parts: int) -> list[float]:
    """RMS level in dBFS of `parts` equal pieces of x (digital silence: -100)."""
    pieces = x.reshape(parts, -1).astype(np.float64)
    return [round(float(20 * np.log10(np.sqrt((p ** 2).mean()) + 1e-5)), 1) for p in pieces]


def playout_schedule(arrivals, with_user: bool = False, step_s: float = STEP_S, lead_s: float = LEAD_S,
                     margin_s: float = MARGIN_S) -> tuple[list[float], int]:
    """When the page plays each reply, as widget.js does it -> (model audio start times, gaps).

    arrivals[t]: when reply t reached the page, on the audio clock (s). Output t belongs in
    [200(t+1), 200(t+2)) ms of the conversation, the user's chunk t in [200t, 200(t+1));
    clock0 maps the conversation's clock onto the audio clock. The first reply sets it so that
    the first thing it plays starts `lead_s` after the reply arrived: the model's audio in
    microphone mode, the user's chunk (200 ms earlier) when the page plays both sides
    (`with_user`, scripted mode). A reply that arrives less than `margin_s` before that slot
    re-anchors clock0 to itself: playback slips, and the listener hears a gap.
    """
    first = 0 if with_user else 1  # the first slot a reply fills: the user's chunk, or the model's audio
    clock0, starts, gaps = None, [], 0
    for t, now in enumerate(arrivals):
        if clock0 is None or clock0 + step_s * (t + first) < now + margin_s:
            gaps += clock0 is not None
            clock0 = now + lead_s - step_s * (t + first)
        starts.append(clock0 + step_s * (t + 1))
    return starts, gaps


def event_dict(e: Event) -> dict:
    return {"kind": e.kind, "time": round(e.time, 3), "detail": e.detail}


class DemoEngine:
    """One live conversation at a time, driven by messages (see the module docstring)."""

    def __init__(self, model, *, background=None, overrun: str = "catch_up", user_voice: Voice = USER_VOICE):
        self.model = model
        self.cfg = model.cfg
        self.n = self.cfg.audio.samples_per_micro_turn  # 3200 samples per chunk
        self.A = self.cfg.audio.tokens_per_micro_turn  # 4 slots of 50 ms
        self.vision = self.cfg.vision
        # (the Session names ids past the vocabulary itself: an untrained model may say them)
        self.vocab = list(model.vocab if model.vocab is not None else VOCAB)
        self.device = str(model.text_head.weight.device)
        self.checkpoint = getattr(model, "checkpoint", "")
        self.overrun, self.user_voice = overrun, user_voice
        self.background = background  # used in microphone mode only: scripted results come as text-in
        self.sessions: dict[str, Session] = {}
        self.session: Session | None = None
        self.mode: str | None = None
        self._spoken: dict[str, tuple[np.ndarray, list]] = {}  # text -> (wave, words): eSpeak once
        self._clear()

    def _clear(self):
        self.scenario = None
        self.frames = None  # (n_turns, H, W, 3) the scenario's video
        self.text_in: dict[int, list[str]] = {}  # scripted: the scenario's text-in words
        self.scene = SceneState(light=LIGHTS.index("red"))  # what the camera sees without a webcam
        self.light: int | None = None  # a light the "light" button set (overrides the scenario's)
        self.inject = np.zeros(0, dtype=np.float32)  # user speech still to be mixed into the input
        self.inject_words: list[tuple[str, float]] = []  # (word, offset s into self.inject)
        self.last_frame: np.ndarray | None = None
        self.heard: deque[torch.Tensor] = deque(maxlen=KEEP_TURNS)  # what the model heard, per turn
        self.outputs = deque(maxlen=KEEP_TURNS)
        self.extra_events: list[Event] = []  # button presses, scripted results
        self.compute_ms: list[float] = []

    # -- the entry point -----------------------------------------------------------------
    def handle(self, content: dict, buffers=()) -> list[tuple[dict, list[bytes]]]:
        """One message from the front end -> the replies, each (content, buffers)."""
        kind = content.get("type") if isinstance(content, dict) else None
        handlers = {"start": self._start, "chunk": self._chunk, "action": self._action,
                    "say": self._say, "stop": self._stop}
        if kind not in handlers:
            return [self._error(content.get("seq") if isinstance(content, dict) else None,
                                f"unknown message type {kind!r}; expected one of {sorted(handlers)}")]
        try:
            return handlers[kind](content, list(buffers or []))
        except (ValueError, KeyError, TypeError) as err:  # a bad message, never a dead demo
            return [self._error(content.get("seq"), f"{kind}: {err}")]

    @staticmethod
    def _error(seq, message: str):
        return {"type": "error", "seq": seq, "message": message}, []

    @property
    def turn(self) -> int:
        return self.session.turn if self.session is not None else 0

    # -- start / stop ------------------------------------------------------------------------
    def _start(self, content, buffers):
        mode = content.get("mode", "microphone")
        if mode not in ("microphone", "scripted"):
            raise ValueError(f"mode must be 'microphone' or 'scripted', got {mode!r}")
        if mode not in self.sessions:  # one Session per mode, made once (it warms up on creation)
            background = self.background if mode == "microphone" else None
            self.sessions[mode] = Session(self.model, overrun=self.overrun, temperature=0.0,
                                          vocab=self.vocab, background=background)
        self.session, self.mode = self.sessions[mode], mode
        self.session.reset()
        self._clear()
        kind, seed, transcript, n_turns = None, None, [], None
        if mode == "scripted":
            kind, seed = content.get("kind", "smooth_turn"), int(content.get("seed", 0))
            if kind not in KINDS:
                raise ValueError(f"unknown scenario kind {kind!r}; expected one of {KINDS}")
            self.scenario = make_scenario(kind, seed, "heldout", self.cfg)
            self.frames = self.scenario.frames(self.vision)
            self.text_in = self.scenario.text_in  # words: the session maps them to ids
            transcript = [list(row) for row in self.scenario.annotations["transcript"]]
            n_turns = self.scenario.n_turns
        return [({"type": "started", "mode": mode, "kind": kind, "seed": seed, "n_turns": n_turns,
                  "transcript": transcript, "device": self.device, "checkpoint": Path(self.checkpoint).name,
                  "budget_ms": self.session.budget_ms,
                  "frame_size": [self.vision.frame_height, self.vision.frame_width]}, [])]

    def _stop(self, content, buffers):
        misses = sum(e.kind == "deadline_miss" for o in self.outputs for e in o.events)
        c = self.compute_ms or [0.0]
        return [({"type": "stopped", "turns": self.turn, "compute_ms_p50": round(statistics.median(c), 2),
                  "compute_ms_max": round(max(c), 2), "deadline_misses": misses}, [])]

    # -- buttons ---------------------------------------------------------------------------
    def _say(self, content, buffers):
        text = str(content.get("text", "")).strip()
        if not text:
            raise ValueError("say needs some text, got an empty string")
        self._inject(text)
        return [({"type": "event", "event": event_dict(self.extra_events[-1])}, [])]

    def _action(self, content, buffers):
        name = content.get("name")
        if name == "light":
            now = self.light if self.light is not None else self._scene(self.turn).light
            self.light = 1 + now % (len(LIGHTS) - 1)  # the next colour, never "off"
            self.extra_events.append(Event("light", self.turn * self.n / self.cfg.audio.sample_rate,
                                           LIGHTS[self.light]))
        elif name in LINES:
            self._inject(LINES[name])
        else:
            raise ValueError(f"unknown action {name!r}; expected 'interrupt', 'light' or 'timer'")
        return [({"type": "event", "event": event_dict(self.extra_events[-1])}, [])]

    def _inject(self, text: str):
        """Queue `text`, said by the toy world's user voice, to be mixed into the next chunks."""
        if self.session is None:
            raise ValueError("send a start message first")
        if text not in self._spoken:
            said = speak(text, self.user_voice, sample_rate=self.cfg.audio.sample_rate)
            self._spoken[text] = (said.wave.numpy().astype(np.float32), [(w, a) for w, a, _ in said.words])
        wave, words = self._spoken[text]
        start = len(self.inject) / self.cfg.audio.sample_rate
        self.inject = np.concatenate([self.inject, wave])
        self.inject_words += [(w, start + a) for w, a in words]
        self.extra_events.append(Event("you_said", self.turn * self.n / self.cfg.audio.sample_rate, text))

    # -- one micro-turn ------------------------------------------------------------------------
    def _scene(self, t: int) -> SceneState:
        if self.scenario is not None:
            return self.scenario.scene[min(t, len(self.scenario.scene) - 1)]
        return self.scene

    def _frame(self, t: int) -> np.ndarray:
        """The frame the model sees in micro-turn t without a webcam: the toy scene, and the light button."""
        if self.light is None and self.frames is not None and t < len(self.frames):
            return self.frames[t]
        state = self._scene(t)
        return render(state if self.light is None else replace(state, light=self.light), self.vision)

    def _decode_audio(self, content, buffers) -> np.ndarray:
        dtype = content.get("dtype", "float32")
        if dtype != "float32":
            raise ValueError(f"expected float32 samples, got dtype {dtype!r}; convert in the front end")
        if not buffers:
            raise ValueError(f"expected one audio buffer of {self.n} float32 samples, got none")
        raw = bytes(buffers[0])
        if len(raw) != 4 * self.n:
            raise ValueError(f"expected {self.n} float32 samples ({4 * self.n} bytes, "
                             f"{self.cfg.audio.micro_turn_ms} ms at {self.cfg.audio.sample_rate} Hz), "
                             f"got {len(raw)} bytes")
        return np.frombuffer(raw, dtype="<f4").copy()

    def _decode_frame(self, content, buffers) -> np.ndarray | None:
        if "frame" not in content:
            return None
        h, w = (int(x) for x in content["frame"])
        want = (self.vision.frame_height, self.vision.frame_width)
        if (h, w) != want:
            raise ValueError(f"expected a {want[0]}x{want[1]} frame (the preset's size), got {h}x{w}")
        if len(buffers) < 2 or len(bytes(buffers[1])) != h * w * 3:
            got = len(bytes(buffers[1])) if len(buffers) > 1 else 0
            raise ValueError(f"expected {h * w * 3} bytes of RGB frame, got {got}")
        return np.frombuffer(bytes(buffers[1]), dtype=np.uint8).reshape(h, w, 3).copy()

    def _chunk(self, content, buffers):
        if self.session is None:
            raise ValueError("send a start message first")
        seq, t, n = content.get("seq"), self.turn, self.n
        sr = self.cfg.audio.sample_rate
        replies = []
        if self.scenario is not None and t >= self.scenario.n_turns:
            return [({"type": "done", "seq": seq, "turns": t}, [])]
        # 1. what the microphone heard: the front end's chunk, or the scenario's next 200 ms
        frame = None
        try:
            if self.scenario is not None:
                audio = self.scenario.user_audio[t * n:(t + 1) * n].numpy()
                audio = np.pad(audio, (0, n - len(audio)))
            else:
                audio = self._decode_audio(content, buffers)
                frame = self._decode_frame(content, buffers)
        except ValueError as err:
            replies.append(self._error(seq, str(err)))
            audio, frame = np.zeros(n, dtype=np.float32), None
        # 2. plus what a button made the user say
        injected = len(self.inject) > 0
        user_words = [(w, t * n / sr + a) for w, a in self.inject_words if a < n / sr]
        if injected:
            piece = self.inject[:n]
            audio = np.clip(audio + np.pad(piece, (0, n - len(piece))), -1.0, 1.0).astype(np.float32)
            self.inject = self.inject[n:]
            self.inject_words = [(w, a - n / sr) for w, a in self.inject_words if a >= n / sr]
        if self.scenario is not None:
            heard_from, heard_to = t * n / sr, (t + 1) * n / sr
            user_words += [(w, a) for w, a, _ in self.scenario.user_words if heard_from <= a < heard_to]
        if frame is None:
            frame = self._frame(t)
        text_in = self.text_in.get(t)
        if text_in and text_in[0] == RESULT:
            self.extra_events.append(Event("background_result", t * n / sr, "scripted: " + " ".join(text_in)))
        # 3. one micro-turn; a refused chunk (NaN, too loud...) is reported and replaced by silence
        out, error = self.session.step_or_silence(torch.from_numpy(audio), frame, text_in)
        if error is not None:  # the model heard silence and saw darkness instead
            replies.append(self._error(seq, error.detail))
            audio, frame = np.zeros(n, dtype=np.float32), np.zeros_like(frame)
        # 4. the reply
        self.heard.append(torch.from_numpy(audio))
        events = self.extra_events + out.events
        self.extra_events = []
        out.events = events
        self.outputs.append(out)
        self.compute_ms.append(out.compute_ms)
        said = np.clip(out.audio.numpy(), -1.0, 1.0).astype("<f4")
        names, bufs = ["model"], [said.tobytes()]
        if self.mode == "scripted" or injected:
            names.append("user")
            bufs.append(audio.astype("<f4").tobytes())
        if self.last_frame is None or not np.array_equal(frame, self.last_frame):
            names.append("frame")
            bufs.append(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            self.last_frame = np.array(frame, dtype=np.uint8)
        done = self.scenario is not None and self.turn >= self.scenario.n_turns
        if done:  # the script is over: mark each reply that had to carry a value
            events += self._answers()
        replies.append(({
            "type": "output", "seq": seq, "turn": out.turn, "compute_ms": round(out.compute_ms, 2),
            "late_ms": round(out.late_ms, 2), "budget_ms": self.session.budget_ms, "catch_up": out.catch_up,
            "words": [[w, round(a, 3)] for w, a in out.words],
            "events": [event_dict(e) for e in events if e.kind != "speech_start"],
            "user_words": [[w, round(a, 3)] for w, a in user_words],
            "user_levels": level_db(audio, self.A), "model_levels": level_db(said, self.A),
            "buffers": names, "frame_size": list(frame.shape[:2]), "done": done}, bufs))
        return replies

    # -- afterwards ------------------------------------------------------------------------------
    def _answers(self) -> list[Event]:
        """An answer_right / answer_wrong event for each reply of the scripted run that had to
        carry a value (`metrics.score`), at the time the reply was due."""
        timeline, marks = self.timeline(), []
        for clip, row in zip(cut(self.scenario), score(self.scenario, timeline.words, timeline.model_audio)):
            if "right" in row:
                marks.append(Event("answer_right" if row["right"] else "answer_wrong",
                                   clip.start + clip.marks["reply_from"],
                                   f'asked "{row["value"]}", said "{row["reply"] or "nothing"}"'))
        return marks

    def timeline(self) -> Timeline:
        """The conversation so far as a session Timeline.

        Only the last KEEP_TURNS micro-turns are kept; when older ones were dropped, the
        timeline starts at the first one kept (its words and events are shifted to match)."""
        sr, ms = self.cfg.audio.sample_rate, self.cfg.audio.micro_turn_ms
        heard = torch.cat(list(self.heard)) if self.heard else torch.zeros(0)
        timeline = Timeline(sr, ms, heard)
        shift = self.outputs[0].turn * ms / 1000 if self.outputs else 0.0  # 0 unless turns were dropped
        for out in self.outputs:
            if shift:
                out = replace(out, words=[(w, t - shift) for w, t in out.words],
                              events=[replace(e, time=e.time - shift) for e in out.events])
            timeline.add(out)
        return timeline

    def close(self):
        for session in self.sessions.values():
            session.close()
