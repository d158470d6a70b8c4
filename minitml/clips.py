"""Cutting a dialogue into benchmark samples: the clips that are exported and scored.

Full-Duplex-Bench v1 scores *clips*: one user turn (with its context) and what the
model said in it, as a folder of input.wav, output.wav and output.json (the words
it heard, with times). Its scripts judge every word in output.json. So whatever the
project reports about a run must be judged on the same clip, or the project's
figures and the benchmark's disagree. This module is the one place that says
where each clip begins and ends; `world/export.py` writes clips and
`metrics.py` scores them, both from what `cut` and `monologue_view` return.

    clips = cut(scenario)                          # [Clip]: where each sample lies
    view = monologue_view(clips[0], words, audio)  # its words on the clip's clock

How a dialogue is cut (every time on the clip is seconds from the clip's start):

    smooth_turn    one clip per question: from the end of the clip before (0 for the
                   first) to the next user utterance after the question ends, or the end
                   of the dialogue. A dialogue with two questions is two samples.
    pause          the pause sample ends at the end of the pause, before the user
                   resumes (only what is said by then counts); a second clip, task
                   "answer", runs from there to the end: the reply to the question.
    interruption   the whole dialogue; the benchmark crops the output at the end of the
                   interrupting utterance before it transcribes, so its chunks (what
                   output.json holds) are the words from then on.
    the others     (backchannel, hesitation, visual_cue, timer, background,
                   other_speaker): the whole dialogue, scored by the project's own rules.

A View is a clip's words three ways: `spans` every spoken word with its end time,
`tokens` the silent monologue tokens ("<call>" ...), `chunks` what output.json holds
and the benchmark judges. From the model's monologue a word ends where the next
begins or where its audio falls silent (`word_chunks`); from a speech recognizer
(`minitml.listen`), where the recognizer says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from minitml.protocol import CALL, END_CALL

DEFAULT_WORD_S = 0.3  # how long a word lasts when there is no audio to tell
MAX_WORD_S = 0.8  # a word runs on to the next one if that starts within this


@dataclass
class Clip:
    kind: str  # the scenario kind it was cut from
    seed: int
    task: str  # "turn_taking", "pause", "answer", "interruption", or the kind itself
    folder: str  # its Full-Duplex-Bench folder, relative to the export root: "smooth_turn/3_1"
    start: float  # s on the dialogue's clock (first sample / sample_rate) ...
    end: float  # ... and the end (exclusive)
    sample_rate: int
    marks: dict  # the times that score it, on the clip's clock (see `cut`)
    value: list[str] | None = None  # the asked-for words a reply here must hold (None: nothing asked)
    topic: str | None = None  # what the value takes: "arithmetic", "lookup" or "tool"

    @property
    def duration(self) -> float:
        return round(self.end - self.start, 6)

    def samples(self) -> slice:
        """The clip's samples in the dialogue's audio."""
        return slice(round(self.start * self.sample_rate), round(self.end * self.sample_rate))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class View:
    spans: list[tuple[str, float, float]]  # (word, start, end) of every spoken word in the clip
    tokens: list[tuple[str, float]] | None  # the silent monologue tokens (<call>, </call>, ...);
    #                                         None where they cannot be known (what a recognizer heard)
    chunks: list[dict]  # output.json's chunks: [{"text", "timestamp": [start, end]}]

    def to_json(self) -> dict:
        tokens = None if self.tokens is None else [list(t) for t in self.tokens]
        return {"spans": [list(s) for s in self.spans], "tokens": tokens, "chunks": self.chunks}

    @classmethod
    def from_json(cls, d: dict) -> View:
        tokens = None if d["tokens"] is None else [tuple(t) for t in d["tokens"]]
        return cls([tuple(s) for s in d["spans"]], tokens, d["chunks"])


def _local(t: float, start: float) -> float:
    return round(t - start, 6)


def _next_user_start(ann: dict, t: float, end: float) -> float:
    return min([a for a, _ in ann.get("user_speech", []) if a > t + 1e-6] + [end])


def cut(scenario) -> list[Clip]:
    """The benchmark samples of one dialogue, in order (see the module docstring)."""
    ann, kind, seed = scenario.annotations, scenario.kind, scenario.seed
    sr, end = scenario.sample_rate, round(scenario.duration, 6)
    asked = ann.get("asked", [])

    def clip(task, folder, a, b, marks, question=None):
        a, b = round(round(a * sr) / sr, 6), round(round(b * sr) / sr, 6)  # on the sample grid
        local = {k: _tree(v, lambda t, a=a: _local(t, a)) for k, v in marks.items()}
        value, topic = (question["value"], question.get("topic")) if question else (None, None)
        return Clip(kind, seed, task, folder, a, b, sr, local, value, topic)

    def value_after(t):  # the question whose reply follows the turn that ends at t
        return next((q for q in asked if abs(q["after"] - t) < 1e-6), None)

    if kind == "smooth_turn":
        clips, start = [], 0.0
        for k, t in enumerate(ann["turn_ends"]):
            stop = _next_user_start(ann, t, end)
            clips.append(clip("turn_taking", f"smooth_turn/{seed}_{k}", start, stop,
                              {"turn_end": t, "reply_from": t}, value_after(t)))
            start = stop
        return clips
    if kind == "pause":
        (a, b), t = ann["pauses"][0], ann["turn_ends"][0]
        return [clip("pause", f"pause/{seed}", 0.0, b, {"pause": (a, b)}),
                clip("answer", f"pause_answer/{seed}", b, end, {"turn_end": t, "reply_from": t},
                     value_after(t))]
    marks: dict = {}
    if kind == "interruption":
        bs, be = ann["barge_in"]
        marks = {"barge_in": (bs, be), "reply_from": be}
    elif kind == "backchannel":
        marks = {"story": (ann["user_speech"][0][0], ann["phrase_ends"][-1])}
    elif kind == "hesitation":
        t = ann["hesitations"][-1][1]
        marks = {"last_filler": t, "user_resumes": _next_user_start(ann, t, end)}
    elif kind in ("visual_cue", "timer"):
        target = ann["cue_time"] if kind == "visual_cue" else ann["timer_target"]
        marks = {"target": target, "request_end": ann["turn_ends"][0]}
    elif kind == "background":
        call = ann["call"]
        marks = {"issued": call["issued"], "arrived": call["arrived"],
                 "user_speech": [(a, b) for a, b in ann["user_speech"] if b > call["issued"]]}
    elif kind == "other_speaker":
        t = ann["other_speech"][0][0]
        marks = {"bystander": t, "user_resumes": _next_user_start(ann, t, end)}
        if ann["turn_ends"]:
            marks["turn_end"] = ann["turn_ends"][0]
    else:
        raise ValueError(f"no clips for scenario kind {kind!r}")
    if asked and kind != "interruption":
        marks["reply_from"] = asked[-1]["after"]
    return [clip(kind, f"{kind}/{seed}", 0.0, end, marks, asked[-1] if asked else None)]


def _tree(x, f):
    """f applied to every number in a nest of lists and tuples."""
    if isinstance(x, (list, tuple)):
        return [_tree(v, f) for v in x]
    return f(x)


def word_chunks(words: list[tuple[str, float]], audio: torch.Tensor | None, sample_rate: int,
                max_word_s: float = MAX_WORD_S) -> list[dict]:
    """[(word, start)] -> benchmark chunks with an end time for each spoken word.

    A word ends where the next one starts, or earlier where its audio falls
    silent for 100 ms (20 ms frames more than 40 dB below the loudest), and
    lasts at most `max_word_s`; without audio a word lasts DEFAULT_WORD_S (or to
    the next word). Silent tokens ("<call>", "<pad>", ...) are not speech and are
    left out. Times are rounded to the millisecond, as they are written."""
    spoken = sorted(((w, float(t)) for w, t in words if not w.startswith("<")), key=lambda x: x[1])
    loud: list[bool] = []
    n = 0
    if audio is not None:
        frame = sample_rate // 50  # 20 ms
        n = audio.shape[0] // frame
        level = audio[: n * frame].view(n, frame).pow(2).mean(1).clamp_min(1e-12).log10() * 10
        loud = (level > level.max() - 40).tolist() if n else []
    chunks = []
    for i, (word, start) in enumerate(spoken):
        nxt = spoken[i + 1][1] if i + 1 < len(spoken) else None
        if audio is None:
            end = nxt if nxt is not None and nxt - start <= max_word_s else start + DEFAULT_WORD_S
        else:
            limit = start + max_word_s if nxt is None else min(start + max_word_s, nxt)
            f, quiet = int(start * 50) + 2, 0  # let the word begin before looking for its end
            while f < n and (f + 1) / 50 < limit:
                quiet = 0 if loud[f] else quiet + 1
                if quiet == 5:  # 100 ms of silence: the word ended where it began
                    break
                f += 1
            end = min(limit, (f + 1 - quiet) / 50) if quiet == 5 else limit
            end = max(end, start + 0.05)
        chunks.append({"text": word, "timestamp": [round(start, 3), round(end, 3)]})
    return chunks


def benchmark_chunks(clip: Clip, spans) -> list[dict]:
    """What output.json holds: every word of the clip, but for an interruption only those
    from the end of the barge-in on (the benchmark crops the output there)."""
    lo = clip.marks["barge_in"][1] if clip.task == "interruption" else 0.0
    return [{"text": w, "timestamp": [a, b]} for w, a, b in spans if a >= lo]


def silent_words(words: list[tuple[str, float]]) -> list[bool]:
    """Which monologue words are not spoken: the "<...>" tokens, and the request written
    between "<call>" and "</call>" (it goes to the background model, not to the speaker)."""
    silent, inside = [], False
    for w, _ in words:
        inside = (inside or w == CALL) and w != END_CALL
        silent.append(inside or w.startswith("<"))
    return silent


def monologue_view(clip: Clip, words: list[tuple[str, float]], audio: torch.Tensor | None) -> View:
    """The clip's words from the model's monologue [(word, t)] (dialogue clock) and audio."""
    words = sorted(words, key=lambda x: x[1])
    inside = [(w, _local(t, clip.start), quiet) for (w, t), quiet in zip(words, silent_words(words))
              if clip.start <= t < clip.end]  # (word, t on the clip's clock, silent?)
    piece = None if audio is None else audio[clip.samples()]
    chunks = word_chunks([(w, t) for w, t, quiet in inside if not quiet], piece, clip.sample_rate)
    for c in chunks:  # no word runs past the clip
        c["timestamp"][1] = min(c["timestamp"][1], round(clip.duration, 3))
    spans = [(c["text"], *c["timestamp"]) for c in chunks]
    tokens = [(w, t) for w, t, quiet in inside if quiet and w != "<pad>"]
    return View(spans, tokens, benchmark_chunks(clip, spans))


def heard_view(clip: Clip, audio: torch.Tensor, recognizer) -> View:
    """The clip's words as a speech recognizer hears them in the output audio.

    For an interruption the audio is cropped at the end of the barge-in before it is
    transcribed, as the benchmark's transcription step does, and the times shifted back."""
    piece = audio[clip.samples()]
    spans = [(w, round(a, 3), round(b, 3)) for w, a, b in recognizer.transcribe(piece, clip.sample_rate)]
    chunks = benchmark_chunks(clip, spans)
    if clip.task == "interruption":
        be = clip.marks["barge_in"][1]
        i0 = round(be * clip.sample_rate)
        chunks = [{"text": w, "timestamp": [round(a + be, 3), round(b + be, 3)]}
                  for w, a, b in recognizer.transcribe(piece[i0:], clip.sample_rate)]
    return View(spans, None, chunks)  # a recognizer hears no silent tokens
