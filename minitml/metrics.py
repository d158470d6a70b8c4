"""Scoring one run: did the model take the turn, how fast, did it stop, was it on time?

`score(scenario, words, audio)` judges one run of one scenario. `words` is the
model's inner monologue [(word, start s)] on the scenario's clock ("<call>" and
the other "<...>" tokens are silent), `audio` its output channel (optional: it
only sharpens where words end). The scripted ground truth is scored the same
way, `score(s, s.assistant_words, s.assistant_audio)`: that is the ceiling.

From words to speech (the Full-Duplex-Bench v1 view: time-aligned words):

    word span   (word, start, end): a word ends where the next one starts if
                that is within 0.8 s, else where the audio falls silent
                (`export.word_chunks`), or DEFAULT_WORD_S later without audio
    segment     words whose spans are less than GAP_S apart, merged
    response    all the words after a cue (until the window closes) taken as one
                span, first word start to last word end, as the benchmark's scripts do
    takeover    a response of at least 1 s or more than 3 words; where a window may
                hold several utterances (a story, bystanders talking) each segment
                is judged alone, and a short one is a backchannel ("mm-hm", "yeah")
    latency     start of the first word after the cue minus the cue, clipped at 0

Per kind (the cue, and what is measured):

    smooth_turn    took_turn after the first turn end (to the end of the clip,
                   as the exported turn_taking.json); latency from that turn end
    pause          took_turn inside the first pause span; spoke_in_pause_s
    backchannel    took_turn during the story (before the last phrase end);
                   n_backchannels: short segments starting during the story
    interruption   stop_latency: end of the model's segment that is running when the
                   barge-in starts, minus the barge-in start (0 if it was silent);
                   stopped_within_0_4; answered: took the turn after the barge-in;
                   latency from the barge-in's end (FD-bench: interrupt timestamp[1])
    hesitation     offered_help: spoke after the last filler (before the user speaks
                   again); took_turn; latency from the last filler's end
    visual_cue     error = first word after the acknowledgement minus cue_time;
    timer            (timer_target); early: that word comes before the target;
                   on_time: not early and error <= 0.6 s (visual_cue) / 0.5 s (timer)
    background     called: a "<call>" token; correct: the result words, contiguous and
                   in order, among the words after the result arrives; over_user:
                   seconds of speech over the user after the call was issued
    other_speaker  took_turn from the first bystander word until the user speaks
                   (or the clip ends); answered: took the turn after a user question

Words said right after a visual_cue / timer request are its acknowledgement
("okay, i will watch"), not the report: words starting within ACK_S of the
request (and at least ACK_MARGIN_S before the target) are left out.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from minitml.world.export import word_chunks

TURN_S, TURN_WORDS = 1.0, 3  # a takeover lasts >= 1 s or has > 3 words
GAP_S = 0.25  # silence that ends a speech segment (as session.EventTracker)
DEFAULT_WORD_S = 0.3  # how long a word lasts when there is no audio to tell
MAX_WORD_S = 0.8  # word_chunks: a word runs to the next one if it starts within this
STOP_WITHIN_S = 0.4
ON_TIME_S = {"visual_cue": 0.6, "timer": 0.5}
ACK_S, ACK_MARGIN_S = 1.6, 0.25


@dataclass
class Segment:
    start: float
    end: float
    words: list[str]

    @property
    def took_turn(self) -> bool:
        return self.end - self.start >= TURN_S - 1e-6 or len(self.words) > TURN_WORDS


def word_spans(words, audio: torch.Tensor | None = None, sample_rate: int = 16000):
    """[(word, start)] -> [(word, start, end)] of the spoken words (silent "<...>" tokens dropped)."""
    spoken = sorted(((w, float(t)) for w, t in words if not w.startswith("<")), key=lambda x: x[1])
    if audio is not None:
        return [(c["text"], *c["timestamp"]) for c in word_chunks(spoken, audio, sample_rate, MAX_WORD_S)]
    spans = []
    for i, (w, t) in enumerate(spoken):
        nxt = spoken[i + 1][1] if i + 1 < len(spoken) else None
        spans.append((w, t, nxt if nxt is not None and nxt - t <= MAX_WORD_S else t + DEFAULT_WORD_S))
    return spans


def segments(spans, lo: float = 0.0, hi: float = float("inf"), gap: float = GAP_S) -> list[Segment]:
    """Speech segments from the words that start in [lo, hi), their ends clipped to hi.

    gap=inf gives one segment from the first word to the last: Full-Duplex-Bench's
    view of a whole response (its scripts judge all chunks after the cue at once)."""
    segs: list[Segment] = []
    for w, a, b in spans:
        if not lo <= a < hi:
            continue
        b = min(b, hi)
        if segs and a - segs[-1].end < gap:
            segs[-1].end = max(segs[-1].end, b)
            segs[-1].words.append(w)
        else:
            segs.append(Segment(a, b, [w]))
    return segs


def overlap(segs: list[Segment], spans) -> float:
    """Seconds during which a segment and one of the (start, end) spans both run."""
    return sum(max(0.0, min(s.end, b) - max(s.start, a)) for s in segs for a, b in spans)


def _turn(spans, cue: float, hi: float = float("inf")) -> tuple[bool, float | None]:
    """(took the turn in [cue, hi), latency of its first word if it did): the whole response."""
    segs = segments(spans, cue, hi, gap=float("inf"))
    took = bool(segs) and segs[0].took_turn
    return took, (max(0.0, segs[0].start - cue) if took else None)


def _next_user_start(ann: dict, t: float, end: float) -> float:
    return min([a for a, _ in ann.get("user_speech", []) if a > t] + [end])


def _contains(words: list[str], want: list[str]) -> bool:
    n = len(want)
    return n > 0 and any(words[i:i + n] == want for i in range(len(words) - n + 1))


def score(scenario, words, audio: torch.Tensor | None = None) -> dict:
    """Score one run of one scenario (see the module docstring for each kind's metrics)."""
    ann, kind, end = scenario.annotations, scenario.kind, scenario.duration
    spans = word_spans(words, audio, scenario.sample_rate)
    row: dict = {"kind": kind, "seed": scenario.seed}
    if kind == "smooth_turn":
        row["took_turn"], row["latency"] = _turn(spans, ann["turn_ends"][0])
    elif kind == "pause":
        a, b = ann["pauses"][0]
        row["took_turn"] = _turn(spans, a, b)[0]
        row["spoke_in_pause_s"] = sum(s.end - s.start for s in segments(spans, a, b))
    elif kind == "backchannel":
        story = segments(spans, ann["user_speech"][0][0], ann["phrase_ends"][-1])
        row["took_turn"] = any(s.took_turn for s in story)
        row["n_backchannels"] = sum(not s.took_turn for s in story)
    elif kind == "interruption":
        bs, be = ann["barge_in"]
        running = [s for s in segments(spans) if s.start <= bs < s.end]
        row["stop_latency"] = running[0].end - bs if running else 0.0
        row["stopped_within_0_4"] = bool(row["stop_latency"] <= STOP_WITHIN_S)
        row["answered"], row["latency"] = _turn(spans, be)
    elif kind == "hesitation":
        t = ann["hesitations"][-1][1]
        hi = _next_user_start(ann, t, end)
        segs = segments(spans, t, hi)
        row["offered_help"] = bool(segs)
        row["took_turn"] = _turn(spans, t, hi)[0]
        row["latency"] = max(0.0, segs[0].start - t) if segs else None
    elif kind in ("visual_cue", "timer"):
        target = ann["cue_time"] if kind == "visual_cue" else ann["timer_target"]
        request_end = ann["turn_ends"][0]
        after_ack = min(request_end + ACK_S, target - ACK_MARGIN_S)
        first = next((a for _, a, _ in spans if a >= after_ack), None)
        row["error"] = None if first is None else first - target
        row["early"] = bool(first is not None and first < target)
        row["on_time"] = bool(first is not None and not row["early"] and row["error"] <= ON_TIME_S[kind])
    elif kind == "background":
        call = ann["call"]
        result = ann["expected_words"] if call["result"] == ["<fail>"] else call["result"]
        row["called"] = any(w == "<call>" for w, _ in words)
        row["correct"] = _contains([w for w, a, _ in spans if a >= call["arrived"]], list(result))
        row["over_user"] = overlap(segments(spans, call["issued"]),
                                   [(a, b) for a, b in ann["user_speech"] if b > call["issued"]])
    elif kind == "other_speaker":
        t = ann["other_speech"][0][0]
        hi = _next_user_start(ann, t, end)
        row["took_turn"] = any(s.took_turn for s in segments(spans, t, hi))
        if ann["turn_ends"]:
            row["answered"], row["latency"] = _turn(spans, ann["turn_ends"][0])
    else:
        raise ValueError(f"no metrics for scenario kind {kind!r}")
    return row


def summarize(rows: list[dict]) -> dict:
    """Per kind: n, the rate of every bool metric, the mean of every number over the runs
    where it exists (latency: over takeovers only) with that count as <metric>_runs, and
    for latency also the median (a few very late answers can pull the mean far up)."""
    out: dict = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        group = [r for r in rows if r["kind"] == kind]
        summary: dict = {"n": len(group)}
        for key in dict.fromkeys(k for r in group for k in r if k not in ("kind", "seed")):
            values = [r[key] for r in group if r.get(key) is not None]
            summary[key] = sum(values) / len(values) if values else None
            if not all(isinstance(v, bool) for v in values):  # a number: say over how many runs
                summary[key + "_runs"] = len(values)
            if key == "latency":
                summary["latency_median"] = statistics.median(values) if values else None
        out[kind] = summary
    return out


def ceiling(kinds, n: int, split: str = "heldout", seed: int = 0) -> dict:
    """The scripted ground truth of n scenarios per kind (seeds seed..seed+n-1), summarized."""
    from minitml.world.scenarios import make_scenario

    rows = []
    for kind in kinds:
        for i in range(seed, seed + n):
            s = make_scenario(kind, i, split)
            rows.append(score(s, s.assistant_words, s.assistant_audio))
    return summarize(rows)
