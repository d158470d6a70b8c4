"""Voices: who speaks in the toy world, and how a line of text becomes timed audio.

An eSpeak NG voice name is a *base* (an accent: "en-us", "en-gb-x-rp", ...)
optionally plus a *variant* (a speaker: "+m3", "+f1", "+robert", ...). On top
of that we vary the speaking rate, the pitch and its range, the loudness, and
the microphone's noise floor.

    v = sample_user_voice(rng, "train")
    u = speak("what is three plus four", v)
    u.wave                          # float32 tensor (T,) at 16 kHz, trimmed to the speech
    u.words                         # [("what", 0.0, 0.21), ("is", 0.21, 0.33), ...]

The split. Evaluation uses speakers the model never heard in training:

    train    = TRAIN_BASES x TRAIN_VARIANTS                         (6 x 11 = 66 voices)
    heldout  = every other combination of these bases and variants:
               HELDOUT_BASES x all variants + TRAIN_BASES x HELDOUT_VARIANTS  (2 x 15 + 6 x 4 = 54)

So a held-out voice has an accent or a speaker (or both) that no training voice
has; `user_voices("train")` and `user_voices("heldout")` never share a name.
The assistant speaks with one fixed voice that is in neither list.

More speakers. eSpeak NG ships about a hundred variants; the split above uses
fifteen. `speakers="many"` widens the training split only: TRAIN_BASES x
(TRAIN_VARIANTS + MORE_TRAIN_VARIANTS), 6 x 58 = 348 voices. The held-out list
stays the same 54 voices whatever `speakers` is, and MORE_TRAIN_VARIANTS leaves
out the variants that are near copies of a held-out one ("steph2", "m8", ...),
so more speakers in training is a fair test of whether listening carries over
to new speakers.

Loudness. eSpeak's voices differ about 3x in level, so every sentence is first
scaled to the same RMS over its speech (LEVEL_RMS), then multiplied by the
voice's `volume`: a bystander at volume 0.3 really is quieter than the user.

Word times. eSpeak reports when each word starts. A word ends where the audio
before the next word's start falls silent (so a comma's pause is not counted
as part of the word); the last word ends where the utterance's audio ends.
Leading and trailing silence is trimmed away, so `u.wave` starts and ends with
speech: a scenario that places it at time t knows the speech spans
[t, t + u.duration] exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from minitml.world.espeak import Speech, synthesize
from minitml.world.vocab import tokenize


@dataclass(frozen=True)
class Voice:
    name: str  # eSpeak NG voice: a base accent, optionally "+variant" ("en-gb-x-rp+m3")
    rate: int = 170  # speaking rate, words per minute
    pitch: int = 50  # eSpeak base pitch, 0..100
    pitch_range: int = 50  # how far the pitch moves, 0 (monotone) .. 100
    volume: float = 1.0  # the speaker's level, 0..1: gain on speech scaled to an RMS of LEVEL_RMS
    noise: float = 0.0  # standard deviation of the white noise of the microphone (0.003 ~ -50 dBFS)

    @property
    def base(self) -> str:
        return self.name.split("+")[0]

    @property
    def variant(self) -> str:
        return self.name.split("+")[1] if "+" in self.name else ""


TRAIN_BASES = ("en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-gb-scotland", "en-gb-x-gbclan")
HELDOUT_BASES = ("en-029", "en-gb-x-gbcwmd")  # Caribbean and West Midlands English
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m4", "m6", "f1", "f3", "f5", "robert", "linda")
HELDOUT_VARIANTS = ("m7", "f4", "paul", "steph")
# Heard in training with speakers="many" only, and only with TRAIN_BASES. Left out: the
# assistant's f2; near copies of a held-out variant (steph2/3, m8, Nguyen, the robosofts,
# max and the RicishayMaxes, aunty); and the unhuman ones (whisper, croak, Demonic, ...).
MORE_TRAIN_VARIANTS = (
    "m5", "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Henrique", "Hugo",
    "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Storm", "adam", "anika", "antonio",
    "belinda", "benjamin", "boris", "david", "ed", "edward", "grandma", "grandpa", "gustave", "iven",
    "john", "klatt", "klatt2", "klatt3", "marcelo", "michel", "miguel", "norbert", "pedro", "quincy",
    "rob", "sandro", "shelby", "travis", "victor", "zac",
)

# The assistant: one voice, in neither user list (variant f2 is nobody else's).
ASSISTANT_VOICE = Voice("en-us+f2", rate=175, pitch=50, pitch_range=50, volume=0.8, noise=0.0)

SPLITS = ("train", "heldout")
SPEAKERS = ("few", "many")  # how many speakers the training split has (66 or 348 voices)

# Ranges a user voice is drawn from (the same for both splits: the split is about who speaks).
RATE_RANGE = (140, 210)  # words per minute
PITCH_RANGE = (30, 70)
PITCH_RANGE_RANGE = (30, 80)
VOLUME_RANGE = (0.5, 1.0)
NOISE_RANGE = (0.001, 0.005)
OTHER_VOLUME_RATIO = (0.25, 0.5)  # a bystander's gain relative to the user's: farther from the microphone


def _name(base: str, variant: str) -> str:
    return f"{base}+{variant}" if variant else base


def user_voices(split: str, speakers: str = "few") -> list[str]:
    """The eSpeak voice names a user can have in `split` ("train" or "heldout").
    speakers "many" adds MORE_TRAIN_VARIANTS to the training split; held-out is always the same."""
    if speakers not in SPEAKERS:
        raise ValueError(f"speakers must be one of {SPEAKERS}, got {speakers!r}")
    if split == "train":
        variants = TRAIN_VARIANTS + (MORE_TRAIN_VARIANTS if speakers == "many" else ())
        return [_name(b, v) for b in TRAIN_BASES for v in variants]
    if split == "heldout":
        all_variants = TRAIN_VARIANTS + HELDOUT_VARIANTS
        return ([_name(b, v) for b in HELDOUT_BASES for v in all_variants]
                + [_name(b, v) for b in TRAIN_BASES for v in HELDOUT_VARIANTS])
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def sample_user_voice(rng: np.random.Generator, split: str, exclude: tuple[str, ...] = (),
                      volume: tuple[float, float] = VOLUME_RANGE, speakers: str = "few") -> Voice:
    """A random user voice of `split`: a name from `user_voices(split, speakers)` (not in
    `exclude`), rate, pitch..."""
    names = [n for n in user_voices(split, speakers) if n not in exclude]
    return Voice(
        name=names[int(rng.integers(len(names)))],
        rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
        pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        pitch_range=int(rng.integers(PITCH_RANGE_RANGE[0], PITCH_RANGE_RANGE[1] + 1)),
        volume=round(float(rng.uniform(*volume)), 3),
        noise=round(float(rng.uniform(*NOISE_RANGE)), 4),
    )


def sample_other_voice(rng: np.random.Generator, split: str, user: Voice, *others: Voice,
                       speakers: str = "few") -> Voice:
    """A bystander: a voice of the same split unlike the user's and `others`, OTHER_VOLUME_RATIO as loud."""
    v = sample_user_voice(rng, split, exclude=tuple(o.name for o in (user, *others)), speakers=speakers)
    return replace(v, volume=round(user.volume * float(rng.uniform(*OTHER_VOLUME_RATIO)), 3))


@dataclass
class Utterance:
    """Speech-like: a spoken line, trimmed to its audio, with word start and end times."""

    text: str
    wave: torch.Tensor  # (T,) float32 at sample_rate
    sample_rate: int
    words: list[tuple[str, float, float]]  # (word, start s, end s) from the start of `wave`

    @property
    def duration(self) -> float:
        return self.wave.numel() / self.sample_rate


# -- finding the speech in a waveform ------------------------------------------
FRAME_S = 0.01  # energy frames of 10 ms
SILENCE_RMS = 0.002  # a frame below this RMS (about -54 dBFS) counts as silent
LEVEL_RMS = 0.08  # every sentence is scaled to this RMS over its speech, then the voice's gain applies


def frame_rms(wave, sample_rate: int, frame_s: float = FRAME_S) -> np.ndarray:
    """(n_frames,) RMS of consecutive frames of `frame_s` seconds (the last partial one included)."""
    w = np.asarray(wave, dtype=np.float32)
    n = max(1, round(frame_s * sample_rate))
    pad = (-len(w)) % n
    w = np.pad(w, (0, pad))
    return np.sqrt((w.reshape(-1, n).astype(np.float64) ** 2).mean(1))


def active_spans(wave, sample_rate: int, threshold: float = SILENCE_RMS, min_gap: float = 0.1,
                 frame_s: float = FRAME_S) -> list[tuple[float, float]]:
    """[(start, end)] seconds where the RMS is above `threshold`; gaps under `min_gap` are bridged."""
    active = frame_rms(wave, sample_rate, frame_s) > threshold
    spans: list[tuple[float, float]] = []
    i, n = 0, len(active)
    while i < n:
        if not active[i]:
            i += 1
            continue
        j = i
        while j < n and active[j]:
            j += 1
        start, end = i * frame_s, min(j * frame_s, len(wave) / sample_rate)
        if spans and start - spans[-1][1] < min_gap:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        i = j
    return spans


# -- reproducible synthesis ----------------------------------------------------
def synthesize_pure(text: str, voice: str = "en-us", rate: int = 170, pitch: int = 50,
                    pitch_range: int = 50, volume: int = 100, sample_rate: int = 16_000) -> Speech:
    """`espeak.synthesize` from a freshly loaded library: a pure function of its arguments.

    eSpeak NG keeps synthesis state between calls (oscillator phase, pitch flutter,
    echo buffers), so the same text spoken twice in one process would differ by a
    few samples depending on everything spoken before; `synthesize(fresh=True)`
    reloads the library for each utterance, so the data is the same bit for bit
    from a seed.
    """
    return synthesize(text, voice, rate, pitch, pitch_range, volume, sample_rate, fresh=True)


# -- synthesis ---------------------------------------------------------------
def align_word_times(words: list[str], events: list[tuple[str, float]], duration: float) -> list[float]:
    """Start times for our own word list, from eSpeak's word events.

    eSpeak does not always report one event per word: it runs an unstressed
    "a" into the next word ("of a cat" -> events "of", "cat"). Each event is
    matched to the next word it spells the start of; a word left without an
    event gets a time between its neighbours' in proportion to letters (the
    best guess without phoneme timing).
    """
    starts: list[float | None] = [None] * len(words)
    j = 0
    for text, t in events:
        e = text.strip().lower().strip("'-.,?!")
        window = range(j, min(j + 3, len(words)))
        match = ([k for k in window if words[k] == e]
                 or [k for k in window if e and words[k].startswith(e)] or [j])[0]
        if match < len(words):
            starts[match], j = t, match + 1
    if starts and starts[0] is None:
        starts[0] = 0.0
    known = [i for i, s in enumerate(starts) if s is not None]
    for a, b in zip(known, known[1:] + [len(words)]):
        if b - a < 2:
            continue
        t0 = starts[a]
        t1 = starts[b] if b < len(words) else max(duration, t0)
        letters = [len(w) for w in words[a:b]]
        for i in range(a + 1, b):  # the gap split in proportion to letters
            starts[i] = t0 + (t1 - t0) * sum(letters[: i - a]) / sum(letters)
    return [float(s) for s in starts]


@lru_cache(maxsize=512)
def _sentence(text: str, name: str, rate: int, pitch: int, pitch_range: int, sample_rate: int):
    """One sentence, trimmed: (wave float32 array, ((word, start, end), ...)). Cached: eSpeak is pure."""
    speech = synthesize_pure(text, voice=name, rate=rate, pitch=pitch, pitch_range=pitch_range,
                             volume=100, sample_rate=sample_rate)
    words = tokenize(text)
    times = align_word_times(words, speech.words, speech.duration)
    wave = speech.wave.numpy()
    rms = frame_rms(wave, sample_rate)
    if not (rms > SILENCE_RMS).any():
        raise RuntimeError(f"eSpeak produced only silence for {text!r} with voice {name!r}")
    loud = rms[rms > 0.01 * rms.max()]  # eSpeak's voices differ 3x in level: bring speech to LEVEL_RMS
    scale = LEVEL_RMS / float(np.sqrt(np.mean(loud**2)))
    wave = wave * np.float32(scale)
    active = rms * scale > SILENCE_RMS
    hop = round(FRAME_S * sample_rate)
    first, last = int(np.argmax(active)), len(active) - int(np.argmax(active[::-1]))
    a, b = first * hop, min(last * hop, len(wave))
    wave = np.ascontiguousarray(wave[a:b])
    offset, duration = a / sample_rate, (b - a) / sample_rate
    starts = [min(max(0.0, t - offset), duration) for t in times]
    active = active[first:last]
    timed = []
    for i, w in enumerate(words):
        nxt = starts[i + 1] if i + 1 < len(words) else duration
        # the end of the last active frame before the next word begins
        lo, hi = int(starts[i] / FRAME_S), max(int(round(nxt / FRAME_S)), int(starts[i] / FRAME_S) + 1)
        on = np.flatnonzero(active[lo:hi])
        end = float(min((lo + on[-1] + 1) * FRAME_S, nxt)) if len(on) else float(nxt)
        timed.append((w, round(starts[i], 4), round(max(end, starts[i]), 4)))
    wave.setflags(write=False)
    return wave, tuple(timed)


SENTENCE_GAP_S = 0.3  # silence between two sentences of one utterance


def speak(text: str, voice: Voice, rng: np.random.Generator | None = None,
          sample_rate: int = 16_000) -> Utterance:
    """Say `text` in `voice`: trimmed audio with the voice's gain, and (word, start, end) times.

    Sentences (split at . ? !) are synthesised one by one and joined with
    SENTENCE_GAP_S of silence, because eSpeak's word times drift across
    sentence ends. With `rng`, white noise of std `voice.noise` is added (for a
    stand-alone clip; scenarios add the room noise over the whole microphone
    channel instead, so that noise alone never tells where speech is).
    """
    sentences = [s.strip() for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s.strip()]
    if not sentences:
        raise ValueError("speak needs some text, got an empty string")
    pieces, words, t = [], [], 0.0
    gap = np.zeros(round(SENTENCE_GAP_S * sample_rate), dtype=np.float32)
    for i, s in enumerate(sentences):
        if i:
            pieces.append(gap)
            t += len(gap) / sample_rate
        wave, timed = _sentence(s, voice.name, voice.rate, voice.pitch, voice.pitch_range, sample_rate)
        pieces.append(wave)
        words += [(w, round(t + a, 4), round(t + b, 4)) for w, a, b in timed]
        t += len(wave) / sample_rate
    wave = np.concatenate(pieces) * np.float32(voice.volume)
    if rng is not None and voice.noise > 0:
        wave = wave + rng.standard_normal(len(wave), dtype=np.float32) * np.float32(voice.noise)
    return Utterance(text=text, wave=torch.from_numpy(wave.astype(np.float32)), sample_rate=sample_rate,
                     words=words)
