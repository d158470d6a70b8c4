"""Writing one dialogue on the clock: `DialogueBuilder` places speech, scene changes and text-in,
and `build` returns the finished `Scenario` (the writers of scenarios.py drive it).

Timing conventions (all times in seconds from the start of the dialogue):

- Speech is placed on the sample grid; every time in the ground truth is the
  placed sample / sample_rate, so annotations and audio agree to the sample.
  User speech spans are the trimmed eSpeak audio (see voices.py): silence
  inside a labelled pause is exactly the room noise.
- The assistant's monologue gives each word at the time its audio starts. Two
  words never share a 50 ms output slot (`pack_conversation` holds one word per
  slot): a word that would is moved to the start of the next free slot.
  Silent monologue tokens (the "<call> ... </call>" of a background call) take
  one slot each, in the middle of the slot.
- Scene changes happen on micro-turn boundaries: a change at cue_time = 200k ms
  is first visible in frame k (input block k).
- Text-in: at most `text_in_slots` (X = 2) words per micro-turn; a longer
  result fills consecutive micro-turns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from minitml.config import AudioConfig, Config, VisionConfig
from minitml.world.facts import ANIMAL_LEGS, LINES, QUESTION_GROUPS, TEMPLATES, THING_COLOURS, TOPICS, an
from minitml.world.scenes import COLOURS, LIGHTS, N_BACKDROPS, OBJECTS, SHAPES, SceneState, render_all
from minitml.world.vocab import spell, tokenize
from minitml.world.voices import ASSISTANT_VOICE, Voice, sample_user_voice, speak


def _tidy(x):
    """Times rounded to the microsecond (keeps JSON readable: 5.8, not 5.800000000000001)."""
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, (list, tuple)):
        return type(x)(_tidy(v) for v in x)
    if isinstance(x, dict):
        return {k: _tidy(v) for k, v in x.items()}
    return x



# ----------------------------------------------------------------------------
# The scenario
# ----------------------------------------------------------------------------
@dataclass
class Scenario:
    kind: str  # one of scenarios.KINDS
    seed: int
    split: str  # "train" or "heldout"
    sample_rate: int  # Hz of both audio channels
    user_audio: torch.Tensor  # (N,) float32: everything the microphone hears (user, bystanders, noise)
    assistant_audio: torch.Tensor  # (N,) float32: the ideal assistant, silence elsewhere
    scene: list[SceneState]  # one per micro-turn
    user_words: list[tuple[str, float, float]]  # (word, start s, end s) of the user
    assistant_words: list[tuple[str, float]]  # the monologue: (word, start s), incl. <call> ... </call>
    text_in: dict[int, list[str]]  # micro-turn -> words arriving as text (at most X per micro-turn)
    annotations: dict  # the ground truth (see make_scenario)
    micro_turn_ms: int = AudioConfig.micro_turn_ms  # the micro-turn of the config it was made for

    @property
    def duration(self) -> float:
        return self.user_audio.numel() / self.sample_rate

    @property
    def n_turns(self) -> int:
        return math.ceil(self.user_audio.numel() / (self.sample_rate * self.micro_turn_ms // 1000))

    def frames(self, vision_cfg: VisionConfig | None = None) -> np.ndarray:
        """(n_turns, H, W, 3) uint8 video, one frame per micro-turn."""
        return render_all(self.scene, vision_cfg)

    def stereo(self) -> torch.Tensor:
        """(2, N): channel 0 the microphone (user), channel 1 the assistant."""
        return torch.stack([self.user_audio, self.assistant_audio])

    def export_fdb(self, root, output_audio=None, output_words=None, recognizer=None):
        """Write this scenario (or a model's run on it) as Full-Duplex-Bench v1 folders, one per sample."""
        from minitml.world.export import export_fdb

        return export_fdb(self, root, output_audio, output_words, recognizer)

    def transcript(self) -> str:
        """The dialogue as text, one line per utterance with its time span."""
        return "\n".join(f"{a:5.2f}-{b:5.2f} {who:>9}: {text}"
                         for who, a, b, text in self.annotations["transcript"])

    def __repr__(self) -> str:
        return (f"Scenario(kind={self.kind!r}, seed={self.seed}, split={self.split!r}, "
                f"{self.duration:.2f} s, {self.n_turns} micro-turns, "
                f"{len(self.user_words)} user words, {len(self.assistant_words)} assistant words)")


class DialogueBuilder:
    """A dialogue being written: speech placed on two channels, scene changes, text-in.
    rng: the dialogue's only source of randomness (make_scenario seeds it from (kind, seed, split)).
    speakers: "few" or "many" voices in the training split (voices.user_voices)."""

    def __init__(self, kind: str, seed: int, split: str, cfg: Config, rng: np.random.Generator,
                 speakers: str = "few"):
        self.kind, self.seed, self.split, self.speakers = kind, seed, split, speakers
        self.rng = rng
        self.sr = cfg.audio.sample_rate
        self.turn_s = cfg.audio.micro_turn_ms / 1000
        self.slot_s = self.turn_s / cfg.audio.tokens_per_micro_turn  # 50 ms per output token
        self.x_slots = cfg.model.text_in_slots
        self.cfg = cfg
        self.user_voice = sample_user_voice(self.rng, split, speakers=speakers)
        self.voices = [self.user_voice.name]
        self.mic: list[tuple[int, np.ndarray]] = []  # (first sample, wave)
        self.out: list[tuple[int, np.ndarray]] = []
        self.user_words: list[tuple[str, float, float]] = []
        self.assistant_words: list[tuple[str, float]] = []
        self.last_slot = -1
        self.text_in: dict[int, list[str]] = {}
        self.transcript: list[tuple[str, float, float, str]] = []
        self.user_speech: list[tuple[float, float]] = []
        self.other_speech: list[tuple[float, float]] = []
        self.assistant_speech: list[tuple[float, float]] = []
        self.templates: list[str] = []
        self.ann: dict = {"turn_ends": [], "asked": []}
        r = self.rng
        self.scene = SceneState(light=int(r.integers(len(LIGHTS))), backdrop=int(r.integers(N_BACKDROPS)),
                                shape=int(r.integers(1, len(SHAPES))) if r.random() < 0.4 else 0,
                                shape_colour=int(r.integers(len(COLOURS))),
                                object=int(r.integers(1, len(OBJECTS))) if r.random() < 0.2 else 0)
        self.changes: list[tuple[int, dict]] = []  # (micro-turn, fields that change)
        self.scene_locked = False  # the dialogue talks about the scene: no random changes

    # -- random draws --------------------------------------------------------
    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def gap(self) -> float:
        """A turn-taking gap: N(0.2, 0.08) s clipped to [0.05, 0.5] (human floor transfer offsets)."""
        return float(np.clip(self.rng.normal(0.2, 0.08), 0.05, 0.5))

    def template(self, group: str, **slots) -> str:
        text = self.choice(TEMPLATES[group][self.split])
        self.templates.append(text)
        return text.format(**slots)

    def line(self, group: str, **slots) -> str:
        return self.choice(LINES[group]).format(**slots)

    # -- placing things on the clock ------------------------------------------
    def _place(self, t: float) -> tuple[int, float]:
        i0 = round(t * self.sr)
        return i0, i0 / self.sr

    def user(self, text: str, t: float, voice: Voice | None = None) -> tuple[float, float]:
        """The user (or, with `voice`, a bystander) says `text` from time t; returns (start, end)."""
        who = "user" if voice is None else "other"
        utt = speak(text, voice or self.user_voice, sample_rate=self.sr)
        i0, start = self._place(t)
        self.mic.append((i0, utt.wave.numpy()))
        end = start + utt.duration
        if who == "user":
            self.user_words += [(w, start + a, start + b) for w, a, b in utt.words]
            self.user_speech.append((start, end))
        else:
            self.other_speech.append((start, end))
            if voice.name not in self.voices:
                self.voices.append(voice.name)
        self.transcript.append((who, start, end, text))
        return start, end

    def assistant_duration(self, text: str) -> float:
        return speak(text, ASSISTANT_VOICE, sample_rate=self.sr).duration

    def assistant(self, text: str, t: float, stop: float | None = None) -> tuple[float, float]:
        """The assistant says `text` from time t, cut off (10 ms fade) at `stop`; returns (start, end)."""
        utt = speak(text, ASSISTANT_VOICE, sample_rate=self.sr)
        i0, start = self._place(t)
        wave = utt.wave.numpy()
        if stop is not None and stop < start + utt.duration:
            n = round(stop * self.sr) - i0
            wave = wave[:n].copy()
            fade = min(n, round(0.01 * self.sr))
            wave[n - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
        self.out.append((i0, wave))
        end = start + len(wave) / self.sr
        for w, a, _ in utt.words:
            if start + a >= end:
                break
            self._monologue_word(w, start + a)
        self.assistant_speech.append((start, end))
        spoken = " ".join(w for w, a, _ in utt.words if start + a < end)
        self.transcript.append(("assistant", start, end, spoken))
        return start, end

    def _monologue_word(self, word: str, t: float, silent: bool = False) -> float:
        slot = int(t / self.slot_s + 1e-9)
        if slot <= self.last_slot:  # the slot is taken: the next free one
            slot = self.last_slot + 1
            t = (slot + 0.1) * self.slot_s
        if silent:
            t = (slot + 0.5) * self.slot_s
        self.last_slot = slot
        self.assistant_words.append((word, t))
        return t

    def monologue(self, words: list[str], t: float) -> float:
        """Silent monologue tokens (a call), one 50 ms slot each from time t; returns the last one's time."""
        for w in words:
            t = self._monologue_word(w, t, silent=True)
        return t

    def text_input(self, words: list[str], t: float) -> tuple[int, int]:
        """Words arriving as text from the micro-turn holding t, X per micro-turn; (first, last) turn."""
        first = int(t / self.turn_s + 1e-9)
        for i in range(0, len(words), self.x_slots):
            self.text_in.setdefault(first + i // self.x_slots, []).extend(words[i:i + self.x_slots])
        return first, first + (len(words) - 1) // self.x_slots

    def next_turn_time(self, t: float) -> float:
        """The first micro-turn boundary at or after t."""
        return math.ceil(t / self.turn_s - 1e-9) * self.turn_s

    def show(self, t: float, **fields) -> float:
        """Change the scene from the micro-turn boundary at or after t; returns the change time."""
        turn = math.ceil(t / self.turn_s - 1e-9)
        self.changes.append((turn, fields))
        return turn * self.turn_s

    # -- dialogue building blocks ---------------------------------------------
    def question(self) -> tuple[str, str, list[str], str]:
        """A question the user can ask, the assistant's answer (setting the scene it needs),
        the asked-for value in that answer as words (the sum, the colour, the shape, the
        object) and its topic (TOPICS: "arithmetic" or "lookup")."""
        group = self.choice(QUESTION_GROUPS)
        r = self.rng
        if group == "q_add":
            a, b = (int(x) for x in r.integers(1, 13, 2))
            s = dict(a=spell(a), b=spell(b), r=spell(a + b))
            value = s["r"]
        elif group == "q_minus":
            a = int(r.integers(5, 21))
            b = int(r.integers(1, a + 1))
            s = dict(a=spell(a), b=spell(b), r=spell(a - b))
            value = s["r"]
        elif group == "q_after":
            n = int(r.integers(1, 30))
            s = dict(n=spell(n), m=spell(n + 1))
            value = s["m"]
        elif group == "q_colour":
            thing = self.choice(list(THING_COLOURS))
            s = dict(thing=thing, colour=THING_COLOURS[thing])
            value = s["colour"]
        elif group == "q_legs":
            animal = self.choice(list(ANIMAL_LEGS))
            s = dict(animal=animal, n=spell(ANIMAL_LEGS[animal]))
            value = s["n"]
        elif group == "q_light":
            light = int(r.integers(1, len(LIGHTS)))
            self.scene, self.scene_locked = replace(self.scene, light=light), True
            s = dict(colour=LIGHTS[light])
            value = s["colour"]
        elif group == "q_shape":
            shape, colour = int(r.integers(1, len(SHAPES))), int(r.integers(len(COLOURS)))
            self.scene = replace(self.scene, shape=shape, shape_colour=colour)
            self.scene_locked = True
            s = dict(shape=SHAPES[shape], colour=COLOURS[colour])
            value = SHAPES[shape]
        else:  # q_holding
            obj = int(r.integers(1, len(OBJECTS)))
            self.scene, self.scene_locked = replace(self.scene, object=obj), True
            s = dict(an_object=an(OBJECTS[obj]))
            value = OBJECTS[obj]
        return self.template(group, **s), self.line("a" + group[1:], **s), tokenize(value), TOPICS[group]

    def asked(self, after: float, value: list[str], topic: str) -> None:
        """Note a reply that must carry `value`: the words the assistant says from `after` on.
        topic: "arithmetic" (worked out), "lookup" (known or seen) or "tool" (a delivered result)."""
        self.ann["asked"].append({"after": after, "value": list(value), "topic": topic})

    # -- the finished dialogue ------------------------------------------------
    def build(self, end: float) -> Scenario:
        spt = self.cfg.audio.samples_per_micro_turn
        n_turns = math.ceil(end / self.turn_s - 1e-9)
        N = n_turns * spt
        mic, out = np.zeros(N, np.float32), np.zeros(N, np.float32)
        for track, pieces in ((mic, self.mic), (out, self.out)):
            for i0, w in pieces:
                if i0 + len(w) > N:
                    raise AssertionError(f"speech runs past the end of the {self.kind} dialogue")
                track[i0:i0 + len(w)] += w
        noise = self.user_voice.noise
        mic += self.rng.standard_normal(N, dtype=np.float32) * np.float32(noise)
        np.clip(mic, -1, 1, out=mic)

        if not self.scene_locked and self.chance(0.3):  # a change that means nothing
            light = (self.scene.light + int(self.rng.integers(1, len(LIGHTS)))) % len(LIGHTS)
            self.changes.append((int(self.rng.integers(1, n_turns)), {"light": light}))
        states, state, changes = [], self.scene, sorted(self.changes, key=lambda c: c[0])
        for t in range(n_turns):
            while changes and changes[0][0] <= t:
                state = replace(state, **changes.pop(0)[1])
            states.append(state)

        words = _tidy(sorted(self.assistant_words, key=lambda w: w[1]))
        ann = dict(self.ann)
        ann.update(
            user_speech=self.user_speech, other_speech=self.other_speech,
            assistant_speech=self.assistant_speech, noise_rms=noise, voices=self.voices,
            templates=self.templates, transcript=sorted(self.transcript, key=lambda x: x[1]),
        )
        ann = _tidy(ann)
        return Scenario(
            kind=self.kind, seed=self.seed, split=self.split, sample_rate=self.sr,
            user_audio=torch.from_numpy(mic), assistant_audio=torch.from_numpy(out), scene=states,
            user_words=_tidy(self.user_words), assistant_words=words,
            text_in={k: self.text_in[k] for k in sorted(self.text_in)}, annotations=ann,
            micro_turn_ms=self.cfg.audio.micro_turn_ms,
        )

