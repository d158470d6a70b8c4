"""Scenarios: two-channel conversations with exact ground truth for every behaviour.

`make_scenario(kind, seed, split)` writes one short dialogue (about 5-10 s):
what the microphone hears (the user, maybe a bystander, room noise), what an
ideal assistant says on the same clock (its audio and its inner-monologue
words), the video (one `SceneState` per 200 ms micro-turn), text arriving in
the text-in slots, and the ground truth a metric needs (`annotations`).

The nine kinds and what the scripted assistant does:

    smooth_turn    a question -> the answer after a gap ~ N(0.2, 0.08) s, clipped to [0.05, 0.5]
    pause          "so tell me, <0.6-1.5 s> what is ..." -> silent in the pause, answers after the end
    backchannel    a story of 3-4 phrases -> "uh-huh", "yeah" at some phrase ends, a reply at the end
    interruption   the assistant is talking, the user barges in -> it stops 0.15-0.3 s after the
                   barge-in starts, then answers the new request once it has ended
    hesitation     "um ... uh ..." then silence -> "do you need some help" after 1.0-2.0 s
    visual_cue     "tell me when the light turns green" -> speaks 0.2-0.4 s after the frame changes
    timer          "tell me when five seconds have passed" -> speaks 0.0-0.1 s after the target
    background     "what is thirty seven times forty nine" -> "let me check", a <call>, the result
                   arrives as text-in 0.8-2 s later, spoken once the user is not talking
    other_speaker  a quieter bystander talks to someone else -> silence (a user question after
                   it, in half the dialogues, is answered)

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

The train / held-out split. Every user line comes from a template group in
`TEMPLATES` with separate "train" and "heldout" phrasings (no phrasing is in
both), and user voices come from `voices.user_voices(split)`. The assistant's
lines (`LINES`) and voice are the same in both splits: held-out dialogues test
new speakers and new phrasings, not a new assistant. Slot fillers (numbers,
colours, names) are shared.

Randomness comes only from numpy Generators seeded with (kind, seed, split), so
a scenario is the same, bit for bit, on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from minitml.config import AudioConfig, Config, VisionConfig, get_config
from minitml.protocol import CALL, END_CALL, FAIL, RESULT
from minitml.world.scenes import COLOURS, LIGHTS, N_BACKDROPS, OBJECTS, SHAPES, SceneState, render_all
from minitml.world.vocab import number_words, spell, tokenize
from minitml.world.voices import (
    ASSISTANT_VOICE,
    SPLITS,
    Voice,
    sample_other_voice,
    sample_user_voice,
    speak,
)

KINDS = ("smooth_turn", "pause", "backchannel", "interruption", "hesitation", "visual_cue", "timer",
         "background", "other_speaker")

BACKCHANNEL_MAX_OVERLAP = 0.2  # s a backchannel may run on into the user's next phrase
STOP_DELAY = (0.15, 0.3)  # s from barge-in start to the assistant falling silent
BARGE_AFTER = (1.5, 2.5)  # s from the start of the long answer to the barge-in: a model that
                          # answers at all, up to a second late, is still speaking
PAUSE_RANGE = (0.6, 1.5)  # s of a mid-sentence pause
HELP_WAIT = (1.0, 2.0)  # s of silence before offering help after a hesitation
CUE_DELAY = (0.2, 0.4)  # s from a visual change to the assistant's first word
TIMER_DELAY = (0.0, 0.1)  # s from the timer target to the assistant's first word
RESULT_LATENCY = (0.8, 2.0)  # s from the call to the result's arrival
FAIL_RATE = 0.1  # share of background calls that fail ("<fail>" instead of a result)

# ----------------------------------------------------------------------------
# What people say: user templates, split into train and held-out phrasings
# ----------------------------------------------------------------------------
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    # questions (smooth_turn, pause, interruption, hesitation, other_speaker)
    "q_add": {"train": ("what is {a} plus {b}", "can you add {a} and {b}"),
              "heldout": ("how much is {a} plus {b}",)},
    "q_minus": {"train": ("what is {a} minus {b}",), "heldout": ("how much is {a} take away {b}",)},
    "q_after": {"train": ("what number comes after {n}",), "heldout": ("which number is after {n}",)},
    "q_colour": {"train": ("what colour is a {thing}", "tell me the colour of a {thing}"),
                 "heldout": ("which colour does a {thing} have",)},
    "q_legs": {"train": ("how many legs does a {animal} have",),
               "heldout": ("count the legs of a {animal} for me",)},
    "q_light": {"train": ("what colour is the light",), "heldout": ("which colour is the light now",)},
    "q_shape": {"train": ("what shape do you see",), "heldout": ("which shape can you see",)},
    "q_holding": {"train": ("what am i holding", "what do i have in my hand"),
                  "heldout": ("can you see what i am holding",)},
    # pause: the fragment before the pause (a comma is added: continuation intonation)
    "pause_lead": {"train": ("so tell me", "my question is", "okay so", "quick question"),
                   "heldout": ("let me think", "i want to know")},
    # backchannel: a story in phrases
    "story_open": {"train": ("yesterday i went to the park with my {person}",
                             "last week my {person} and i went to the shop",
                             "this morning i went to the city with my {person}"),
                   "heldout": ("on sunday i went to the lake with my {person}",
                               "this week i went to see my {person}")},
    "story_middle": {"train": ("we saw a big {colour} dog", "it was running after a {colour} ball",
                               "then it started to rain", "we bought {n} {colour} apples",
                               "there were so many people there", "i found a little {colour} bird"),
                     "heldout": ("the water was very cold", "we had some tea there",
                                 "i saw a {colour} duck")},
    "story_close": {"train": ("so we went back home", "and then we had dinner", "it was a really good day"),
                    "heldout": ("after that we went home", "that was a very good day")},
    # interruption: a request with a long answer, then the barge-in
    "req_count": {"train": ("can you count to {n}",), "heldout": ("please count up to {n}",)},
    "req_story": {"train": ("tell me a story",), "heldout": ("can you tell me a short story",)},
    "req_colours": {"train": ("name some colours",), "heldout": ("which colours do you know",)},
    "barge": {"train": ("wait, {q}", "stop, {q}", "sorry, {q}"), "heldout": ("hold on, {q}", "no wait, {q}")},
    # hesitation: chunks separated by "|" are spoken with a short silence between them
    "hesitation": {"train": ("um | uh", "so, um | uh", "well, um | i was | uh", "i want to, um | uh"),
                   "heldout": ("hmm | um", "okay, uh | um | so")},
    "hesitation_reply": {"train": ("yes, {q}", "yes please, {q}"), "heldout": ("oh yes, {q}",)},
    # visual_cue
    "cue_light": {"train": ("tell me when the light turns {colour}",
                            "say something when the light goes {colour}"),
                  "heldout": ("let me know when the light turns {colour}",)},
    "cue_shape": {"train": ("tell me when you see a {shape}",),
                  "heldout": ("let me know when you see a {shape}",)},
    "cue_object": {"train": ("tell me when i hold up {an_object}",),
                   "heldout": ("say something when i show you {an_object}",)},
    # timer
    "timer_tell": {"train": ("tell me when {n} seconds have passed", "tell me when {n} seconds are over"),
                   "heldout": ("let me know when {n} seconds are up",)},
    "timer_stop": {"train": ("say stop after {n} seconds",), "heldout": ("wait {n} seconds, then say stop",)},
    # background
    "bg_question": {"train": ("what is {a} times {b}", "can you work out {a} times {b}"),
                    "heldout": ("how much is {a} times {b}", "please multiply {a} by {b}")},
    "bg_aside": {"train": ("take your time", "no hurry, i am making tea"),
                 "heldout": ("that is fine, i can wait",)},
    # other_speaker: a bystander talking to someone else
    "other_line": {"train": ("hey {name}, did you see the game", "{name}, can you pass me the {thing}",
                             "are you coming to dinner, {name}"),
                   "heldout": ("{name}, where did you put my book", "hey {name}, it is time to go home")},
    "other_reply": {"train": ("yes, it was great", "sure, here you go", "no, not yet"),
                    "heldout": ("not now",)},
}

# What the assistant says (the same in both splits).
LINES: dict[str, tuple[str, ...]] = {
    "a_add": ("{a} plus {b} is {r}", "the answer is {r}", "so that makes {r}"),
    "a_minus": ("{a} minus {b} is {r}", "the answer is {r}"),
    "a_after": ("{m} comes after {n}", "the number is {m}"),
    "a_colour": ("a {thing} is {colour}", "the colour is {colour}"),
    "a_legs": ("a {animal} has {n} legs", "it has {n} legs"),
    "a_light": ("the light is {colour}", "it is {colour} now"),
    "a_shape": ("i see a {shape}", "it is a {colour} {shape}"),
    "a_holding": ("you are holding {an_object}", "that is {an_object}"),
    "a_count": ("sure, {numbers}",),
    "a_story": ("a little {colour} {animal} went to the park one day and saw a big dog",
                "there was a {colour} {animal} who lived in a big house with a cat"),
    "a_colours": ("sure, {colours}",),
    "backchannel": ("uh-huh", "yeah", "okay", "right", "i see"),
    "story_reply": ("that sounds nice", "that sounds like fun", "what a day", "oh, that is a good story"),
    "ack_cue": ("okay", "sure", "okay, i will watch", "i will tell you"),
    "ack_timer": ("okay", "sure", "okay, starting now"),
    "said_light": ("it is {colour} now", "the light is {colour} now", "now it is {colour}"),
    "said_shape": ("i see a {shape} now", "there is the {shape}"),
    "said_object": ("that is {an_object}", "now you are holding {an_object}"),
    "said_timer_tell": ("{n} seconds have passed", "time is up", "now"),
    "said_timer_stop": ("stop",),
    "help": ("do you need some help", "can i help you with something", "are you okay there"),
    "check": ("let me check", "okay, let me check", "let me work that out"),
    "bg_answer": ("it is {r}", "the answer is {r}"),
    "bg_fail": ("sorry, i could not work that out",),
}

# Slot fillers (shared by both splits).
NAMES = ("sam", "anna", "tom", "maria", "ben", "lucy")
PEOPLE = ("mum", "dad", "sister", "brother", "friend")
THING_COLOURS = {"banana": "yellow", "tomato": "red", "lemon": "yellow", "frog": "green",
                 "carrot": "orange", "cherry": "red"}
ANIMAL_LEGS = {"dog": 4, "cat": 4, "bird": 2, "spider": 8, "horse": 4, "duck": 2, "ant": 6}
STORY_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "pink", "black", "brown")
QUESTION_GROUPS = ("q_add", "q_minus", "q_after", "q_colour", "q_legs", "q_light", "q_shape", "q_holding")
# What answering takes: working a number out, or knowing / seeing a fact.
TOPICS = {"q_add": "arithmetic", "q_minus": "arithmetic", "q_after": "arithmetic", "q_colour": "lookup",
          "q_legs": "lookup", "q_light": "lookup", "q_shape": "lookup", "q_holding": "lookup"}


def _tidy(x):
    """Times rounded to the microsecond (keeps JSON readable: 5.8, not 5.800000000000001)."""
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, (list, tuple)):
        return type(x)(_tidy(v) for v in x)
    if isinstance(x, dict):
        return {k: _tidy(v) for k, v in x.items()}
    return x


def an(noun: str) -> str:
    """'an apple', 'a banana'."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


# ----------------------------------------------------------------------------
# The scenario
# ----------------------------------------------------------------------------
@dataclass
class Scenario:
    kind: str  # one of KINDS
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


class _Timeline:
    """A dialogue being written: speech placed on two channels, scene changes, text-in."""

    def __init__(self, kind: str, seed: int, split: str, cfg: Config):
        self.kind, self.seed, self.split = kind, seed, split
        self.rng = np.random.default_rng([KINDS.index(kind), seed, SPLITS.index(split)])
        self.sr = cfg.audio.sample_rate
        self.turn_s = cfg.audio.micro_turn_ms / 1000
        self.slot_s = self.turn_s / cfg.audio.tokens_per_micro_turn  # 50 ms per output token
        self.x_slots = cfg.model.text_in_slots
        self.cfg = cfg
        self.user_voice = sample_user_voice(self.rng, split)
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


# ----------------------------------------------------------------------------
# The nine kinds: each writes its dialogue and returns the time its content ends
# ----------------------------------------------------------------------------
def _smooth_turn(tl: _Timeline) -> float:
    a_end = tl.u(0.0, 1.0)
    while not tl.ann["turn_ends"] or (len(tl.ann["turn_ends"]) < 2 and a_end < 5.0):  # 1 or 2 exchanges
        question, answer, value, topic = tl.question()
        _, e = tl.user(question, a_end + tl.u(0.5, 1.0))
        _, a_end = tl.assistant(answer, e + tl.gap())
        tl.ann["turn_ends"].append(e)
        tl.asked(e, value, topic)
        tl.ann["expected_words"] = tokenize(answer)  # the answer to the last turn
    return a_end


def _pause(tl: _Timeline) -> float:
    lead = tl.template("pause_lead")
    question, answer, value, topic = tl.question()
    _, e1 = tl.user(lead + ",", tl.u(0.4, 1.0))  # the comma gives continuation intonation
    s2, e2 = tl.user(question, e1 + tl.u(*PAUSE_RANGE))
    _, a_end = tl.assistant(answer, e2 + tl.gap())
    tl.asked(e2, value, topic)
    tl.ann.update(pauses=[(e1, s2)], turn_ends=[e2], expected_words=tokenize(answer))
    return a_end


def _story_slots(tl: _Timeline) -> dict:
    return dict(person=tl.choice(PEOPLE), colour=tl.choice(STORY_COLOURS),
                n=spell(int(tl.rng.integers(2, 10))))


def _backchannel(tl: _Timeline) -> float:
    middles = [tl.template("story_middle", **_story_slots(tl)) for _ in range(2 if tl.chance(0.3) else 1)]
    opening = tl.template("story_open", **_story_slots(tl))
    phrases = [opening, *dict.fromkeys(middles), tl.template("story_close")]  # no phrase twice
    ends = list(range(len(phrases) - 1))
    with_bc = [i for i in ends if tl.chance(0.6)] or [tl.choice(ends)]  # at least one backchannel
    t, backchannels, phrase_ends = tl.u(0.4, 1.0), [], []
    for i, phrase in enumerate(phrases):
        last = i == len(phrases) - 1
        _, e = tl.user(phrase + ("" if last else ","), t)
        phrase_ends.append(e)
        if last:
            break
        t = e + tl.u(0.45, 0.8)  # the user's breath between phrases
        if i in with_bc:
            span = tl.assistant(tl.line("backchannel"), e + tl.u(0.1, 0.3))
            backchannels.append(span)
            t = max(t, span[1] - BACKCHANNEL_MAX_OVERLAP + 0.001)  # run on into the next phrase a little
    reply = tl.line("story_reply")
    _, a_end = tl.assistant(reply, phrase_ends[-1] + tl.gap())
    tl.ann.update(backchannels=backchannels, phrase_ends=phrase_ends, turn_ends=[phrase_ends[-1]],
                  expected_words=tokenize(reply))
    return a_end


def _interruption(tl: _Timeline) -> float:
    kind = tl.choice(("req_count", "req_story", "req_colours"))
    if kind == "req_count":
        n = int(tl.rng.integers(10, 21))
        request = tl.template(kind, n=spell(n))
        long_answer = tl.line("a_count", numbers=" ".join(spell(i) for i in range(1, n + 1)))
    elif kind == "req_story":
        request = tl.template(kind)
        long_answer = tl.line("a_story", colour=tl.choice(STORY_COLOURS), animal=tl.choice(list(ANIMAL_LEGS)))
    else:
        request = tl.template(kind)
        order = tl.rng.permutation(len(STORY_COLOURS))[:8]
        long_answer = tl.line("a_colours", colours=" ".join(STORY_COLOURS[i] for i in order))
    _, e = tl.user(request, tl.u(0.4, 1.0))
    a_start = e + tl.gap()
    length = tl.assistant_duration(long_answer)
    question, answer, value, topic = tl.question()
    bs, be = tl.user(tl.template("barge", q=question), a_start + min(tl.u(*BARGE_AFTER), length - 0.6))
    stop = bs + tl.u(*STOP_DELAY)
    tl.assistant(long_answer, a_start, stop=stop)
    _, a_end = tl.assistant(answer, be + tl.gap())
    tl.asked(be, value, topic)
    tl.ann.update(barge_in=(bs, be), assistant_stop=stop, turn_ends=[e, be], expected_words=tokenize(answer))
    return a_end


def _hesitation(tl: _Timeline) -> float:
    chunks = [c.strip() for c in tl.template("hesitation").split("|")]
    t, spans = tl.u(0.4, 1.0), []
    for chunk in chunks:
        spans.append(tl.user(chunk, t))
        t = spans[-1][1] + tl.u(0.4, 0.9)
    wait = tl.u(*HELP_WAIT)
    help_line = tl.line("help")
    _, a_end = tl.assistant(help_line, spans[-1][1] + wait)
    turn_ends = [spans[-1][1]]
    expected = tokenize(help_line)
    if tl.chance(0.5):  # the user takes the offer
        question, answer, value, topic = tl.question()
        _, e = tl.user(tl.template("hesitation_reply", q=question), a_end + tl.gap())
        _, a_end = tl.assistant(answer, e + tl.gap())
        tl.asked(e, value, topic)
        turn_ends.append(e)
        expected = tokenize(answer)
    tl.ann.update(hesitations=spans, pauses=[(a[1], b[0]) for a, b in zip(spans, spans[1:])],
                  help_wait=wait, turn_ends=turn_ends, expected_words=expected)
    return a_end


def _visual_cue(tl: _Timeline) -> float:
    tl.scene_locked = True
    what = tl.choice(("light", "shape", "object"))
    r = tl.rng
    if what == "light":
        target = int(r.integers(1, len(LIGHTS)))
        others = [i for i in range(len(LIGHTS)) if i != target]
        tl.scene = replace(tl.scene, light=tl.choice(others))
        change = {"light": target}
        decoy = {"light": tl.choice([i for i in others if i != tl.scene.light])}
        slots = dict(colour=LIGHTS[target])
    elif what == "shape":
        target = int(r.integers(1, len(SHAPES)))
        tl.scene = replace(tl.scene, shape=0)
        change = {"shape": target, "shape_colour": int(r.integers(len(COLOURS)))}
        decoy = {"shape": tl.choice([i for i in range(1, len(SHAPES)) if i != target]),
                 "shape_colour": int(r.integers(len(COLOURS)))}
        slots = dict(shape=SHAPES[target])
    else:
        target = int(r.integers(1, len(OBJECTS)))
        tl.scene = replace(tl.scene, object=0)
        change = {"object": target}
        decoy = {"object": tl.choice([i for i in range(1, len(OBJECTS)) if i != target])}
        slots = dict(an_object=an(OBJECTS[target]))
    _, e = tl.user(tl.template("cue_" + what, **slots), tl.u(0.4, 1.0))
    _, ack_end = tl.assistant(tl.line("ack_cue"), e + tl.gap())
    cue = tl.show(ack_end + tl.u(1.2, 3.0), **change)
    distractors = []
    if tl.chance(0.5) and cue - 0.6 > ack_end + 0.2:  # something else changes first: stay silent
        distractors.append(tl.show(tl.u(ack_end + 0.2, cue - 0.6), **decoy))
    said = tl.line("said_" + what, **slots)
    _, a_end = tl.assistant(said, cue + tl.u(*CUE_DELAY))
    names = {"light": LIGHTS, "shape": SHAPES, "object": OBJECTS}[what]
    tl.asked(cue, tokenize(names[target]), "lookup")
    tl.ann.update(cue_time=cue, cue_turn=round(cue / tl.turn_s), cue={"what": what, "value": names[target]},
                  distractors=distractors, turn_ends=[e], expected_words=tokenize(said))
    return a_end


def _timer(tl: _Timeline) -> float:
    n = int(tl.rng.integers(2, 7))
    group = tl.choice(("timer_tell", "timer_stop"))
    _, e = tl.user(tl.template(group, n=spell(n)), tl.u(0.4, 1.0))
    tl.assistant(tl.line("ack_timer"), e + tl.gap())
    target = e + n
    said = tl.line("said_" + group, n=spell(n))
    _, a_end = tl.assistant(said, target + tl.u(*TIMER_DELAY))
    tl.ann.update(timer_target=target, timer_seconds=n, turn_ends=[e], expected_words=tokenize(said))
    return a_end


def _background(tl: _Timeline) -> float:
    a, b = (int(x) for x in tl.rng.integers(11, 100, 2))
    _, e = tl.user(tl.template("bg_question", a=spell(a), b=spell(b)), tl.u(0.4, 1.0))
    _, check_end = tl.assistant(tl.line("check"), e + tl.gap())
    request = tokenize(f"{spell(a)} times {spell(b)}")
    issued = tl.monologue([CALL, *request, END_CALL], check_end + 0.05)
    failed = tl.chance(FAIL_RATE)
    result = [FAIL] if failed else number_words(a * b)
    first, last = tl.text_input([RESULT, *result], issued + tl.u(*RESULT_LATENCY))
    delivered = (last + 1) * tl.turn_s  # the whole result is in once input block `last` is
    speak_at = delivered + tl.u(0.05, 0.2)
    turn_ends = [e]
    if tl.chance(0.5):  # the user says something meanwhile: wait until they are done
        _, aside_end = tl.user(tl.template("bg_aside"), max(check_end + 0.3, delivered - tl.u(0.2, 0.9)))
        speak_at = max(speak_at, aside_end + tl.gap())
        turn_ends.append(aside_end)
    answer = (tl.line("bg_fail") if failed
              else tl.line("bg_answer", a=spell(a), b=spell(b), r=spell(a * b)))
    _, a_end = tl.assistant(answer, speak_at)
    if not failed:
        tl.asked(delivered, result, "tool")
    tl.ann.update(call={"text": request, "issued": issued, "result": result,
                        "arrived": first * tl.turn_s, "delivered": delivered, "operands": (a, b),
                        "result_turns": (first, last)},
                  turn_ends=turn_ends, expected_words=tokenize(answer))
    return a_end


def _other_speaker(tl: _Timeline) -> float:
    other = sample_other_voice(tl.rng, tl.split, tl.user_voice)
    line = tl.template("other_line", name=tl.choice(NAMES), thing=tl.choice(list(THING_COLOURS)))
    _, end = tl.user(line, tl.u(0.4, 1.0), voice=other)
    if tl.chance(0.5):  # a second bystander answers
        second = sample_other_voice(tl.rng, tl.split, tl.user_voice, other)
        _, end = tl.user(tl.template("other_reply"), end + tl.u(0.3, 0.7), voice=second)
    expected: list[str] = []
    if tl.chance(0.5):  # then the user asks the assistant something
        question, answer, value, topic = tl.question()
        _, e = tl.user(question, end + tl.u(0.6, 1.2))
        _, end = tl.assistant(answer, e + tl.gap())
        tl.asked(e, value, topic)
        tl.ann["turn_ends"] = [e]
        expected = tokenize(answer)
    else:
        end += tl.u(1.5, 2.5)  # a stretch of silence in which the assistant stays quiet
    tl.ann["expected_words"] = expected
    return end


_WRITERS = {
    "smooth_turn": _smooth_turn, "pause": _pause, "backchannel": _backchannel,
    "interruption": _interruption, "hesitation": _hesitation, "visual_cue": _visual_cue,
    "timer": _timer, "background": _background, "other_speaker": _other_speaker,
}


def make_scenario(kind: str, seed: int, split: str = "train", cfg: Config | None = None) -> Scenario:
    """One dialogue of `kind`, a pure function of (kind, seed, split) and the audio/layout config.

    annotations (times in s; keys present where they apply):
      turn_ends [t]                 end of each user turn the assistant answers
      expected_words [w]            the words of the key reply (the answer; [] when it should stay silent)
      asked [{after, value, topic}] each reply that must carry a value: the words said from `after` on
                                    (to the next user turn) must hold `value` (metrics.holds)
      pauses [(start, end)]         silences inside a user turn (pause, hesitation): hold the floor
      barge_in (start, end)         the interrupting utterance;  assistant_stop: when it falls silent
      backchannels [(start, end)]   the assistant's "uh-huh"s;  phrase_ends [t] of the story
      hesitations [(start, end)]    the fillers;  help_wait: silence before the offer of help
      cue_time, cue {what, value}   the frame change to report;  distractors [t]: changes to ignore
      timer_target, timer_seconds   when to speak
      call {text, issued, result, arrived, delivered, operands}   the background call
      user_speech, other_speech, assistant_speech [(start, end)]  speech spans (trimmed audio)
      noise_rms, voices, templates, transcript [(who, start, end, text)]
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}; expected one of {KINDS}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    tl = _Timeline(kind, int(seed), split, cfg or get_config("tiny"))
    end = _WRITERS[kind](tl)
    return tl.build(end + tl.u(0.6, 1.2))


