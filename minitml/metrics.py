"""Scoring: Full-Duplex-Bench v1's rules on the clips the export writes, and are the answers right?

One scoring path. A run of a scenario is cut into the benchmark's samples
(`clips.cut`: a dialogue with two questions is two samples), each clip's words
are put on the clip's clock (`clips.monologue_view`, or `clips.heard_view` for
what a speech recognizer hears), and `score_clip` judges that view. Exporting a
run writes exactly those views (world/export.py), and `score_folder` reads them
back and calls the same `score_clip`: a run and its folder give the same numbers
to the last digit (tests/test_metrics.py checks it, and checks the benchmark's
figures against a reader that knows only the folder files and the published rules).

    rows = score(scenario, words, audio)      # one row per clip
    rows = score_folder("out/eval/fdb/smooth_turn/3_0")
    table = summarize(rows)                   # per kind: rates with k and n, means with n

The benchmark's rules, on output.json's chunks (what its scripts read):

    takeover   the chunks, first start to last end, last at least 1 s or are more
               than 3 words (protocol.is_takeover); no chunks: no takeover
    latency    start of the first chunk minus the cue, clipped at 0, over takeovers
               (cue: turn_taking.json timestamp[0]; interrupt.json timestamp[1])

Per task (every time on the clip's clock):

    turn_taking    (smooth_turn) took_turn, latency from the end of the question
    pause          took_turn: the benchmark's rule on the clip, which ends with the pause;
                   spoke_in_pause_s: seconds of speech inside the pause
    answer         (pause: the clip after the pause) answered, latency from the turn end
    interruption   speaking_at_barge_in: a segment of the model's speech is running when the
                   barge-in starts; over those runs only: stop_latency (its end minus the
                   barge-in start) and stopped_within_0_4. answered, latency: the benchmark's
                   rule on the words from the barge-in's end (the benchmark crops there)
    backchannel    took_turn: a segment of the story (before its last phrase end) is a
                   takeover; n_backchannels: the short segments during the story
    hesitation     offered_help: spoke after the last filler, before the user speaks again;
                   took_turn; latency from the last filler
    visual_cue,    error: first word after the acknowledgement minus the target; early: that
    timer            word comes before it; on_time: not early and error <= 0.6 s / 0.5 s
    background     called: a "<call>" token; over_user: s of speech over the user after the call
    other_speaker  took_turn from the first bystander word until the user speaks;
                   answered, latency: after a user question, where there is one

Every clip whose reply must carry a value (`Clip.value`: the sum, the colour, the
shape, the object, the product) also gets `right`: the value's words appear, whole
and in order, among the words said from `reply_from` to the clip's end (`holds`:
"two" is not in "twenty two"). `summarize` prints its chance level beside it:
`right_chance`, each reply checked against the values of the other clips of its kind.
Words said right after a visual_cue / timer request are its acknowledgement
("okay, i will watch"): words within ACK_S of the request (and ACK_MARGIN_S before
the target) are left out of error / early / on_time.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from minitml.clips import Clip, View, cut, heard_view, monologue_view
from minitml.events import GAP_S  # silence that ends a speech segment, as in a live session
from minitml.protocol import CALL, is_takeover
from minitml.world.vocab import number_words

STOP_WITHIN_S = 0.4
ON_TIME_S = {"visual_cue": 0.6, "timer": 0.5}
ACK_S, ACK_MARGIN_S = 1.6, 0.25
NUMBER_WORDS = frozenset(w for n in range(100) for w in number_words(n)) | {"hundred", "thousand"}


def took_turn(chunks: list[dict]) -> bool:
    """The benchmark's rule on a response: at least 1 s from first start to last end, or > 3 words."""
    if not chunks:
        return False
    return is_takeover(chunks[-1]["timestamp"][1] - chunks[0]["timestamp"][0], len(chunks))


def latency(chunks: list[dict], cue: float) -> float:
    """Start of the first chunk minus the cue, clipped at 0."""
    return max(0.0, chunks[0]["timestamp"][0] - cue)


@dataclass
class Segment:
    start: float
    end: float
    words: list[str]

    @property
    def took_turn(self) -> bool:
        return is_takeover(self.end - self.start, len(self.words))


def segments(spans, lo: float = 0.0, hi: float = float("inf"), gap: float = GAP_S) -> list[Segment]:
    """Speech segments from the words that start in [lo, hi), their ends clipped to hi."""
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


def holds(reply: list[str], value: list[str]) -> bool:
    """Does the reply say `value`, whole words in order? A number must stand alone: "two"
    is not in "twenty two", "forty" is not in "two thousand forty one"."""
    n = len(value)
    if n == 0:
        return False
    numeric = all(w in NUMBER_WORDS for w in value)
    for i in range(len(reply) - n + 1):
        if reply[i:i + n] != value:
            continue
        before = reply[i - 1] if i > 0 else None
        after = reply[i + n] if i + n < len(reply) else None
        if numeric and (before in NUMBER_WORDS or after in NUMBER_WORDS):
            continue
        return True
    return False


def _turn_taking(row: dict, chunks: list[dict], cue: float, name: str) -> None:
    row[name] = took_turn(chunks)
    row["latency"] = latency(chunks, cue) if row[name] else None
    row["no_reply"] = not any(c["timestamp"][0] >= cue for c in chunks)


def score_clip(clip: Clip, view: View) -> dict:
    """Judge one clip from one view of its words (see the module docstring)."""
    m, task, spans, chunks = clip.marks, clip.task, view.spans, view.chunks
    row: dict = {"kind": clip.kind, "seed": clip.seed, "clip": clip.folder}
    if task == "turn_taking":
        _turn_taking(row, chunks, m["turn_end"], "took_turn")
    elif task == "answer":
        _turn_taking(row, chunks, m["turn_end"], "answered")
    elif task == "pause":
        a, b = m["pause"]
        row["took_turn"] = took_turn(chunks)
        row["spoke_in_pause_s"] = round(float(sum(s.end - s.start for s in segments(spans, a, b))), 6)
    elif task == "interruption":
        bs, be = m["barge_in"]
        running = [s for s in segments(spans) if s.start <= bs < s.end]
        row["speaking_at_barge_in"] = bool(running)
        row["stop_latency"] = round(running[0].end - bs, 6) if running else None
        row["stopped_within_0_4"] = (row["stop_latency"] <= STOP_WITHIN_S) if running else None
        _turn_taking(row, chunks, be, "answered")
    elif task == "backchannel":
        story = segments(spans, *m["story"])
        row["took_turn"] = any(s.took_turn for s in story)
        row["n_backchannels"] = sum(not s.took_turn for s in story)
    elif task == "hesitation":
        t, hi = m["last_filler"], m["user_resumes"]
        segs = segments(spans, t, hi)
        row["offered_help"] = bool(segs)
        row["took_turn"] = any(s.took_turn for s in segments(spans, t, hi, gap=float("inf")))
        row["latency"] = round(max(0.0, segs[0].start - t), 6) if segs else None
    elif task in ("visual_cue", "timer"):
        target = m["target"]
        after_ack = min(m["request_end"] + ACK_S, target - ACK_MARGIN_S)
        first = next((a for _, a, _ in spans if a >= after_ack), None)
        row["error"] = None if first is None else round(first - target, 6)
        row["early"] = first is not None and first < target
        row["on_time"] = first is not None and not row["early"] and row["error"] <= ON_TIME_S[task]
    elif task == "background":
        row["called"] = None if view.tokens is None else any(w == CALL for w, _ in view.tokens)
        row["over_user"] = round(float(overlap(segments(spans, m["issued"]), m["user_speech"])), 6)
    elif task == "other_speaker":
        row["took_turn"] = any(s.took_turn for s in segments(spans, m["bystander"], m["user_resumes"]))
        if "turn_end" in m:
            t = m["turn_end"]
            _turn_taking(row, [c for c in chunks if c["timestamp"][0] >= t], t, "answered")
    else:
        raise ValueError(f"no metrics for clip task {task!r}")
    if clip.value is not None:
        reply = [w for w, a, _ in spans if a >= m["reply_from"]]
        row["reply"], row["value"] = " ".join(reply), " ".join(clip.value)
        if clip.topic is not None:
            row["topic"] = clip.topic
        row["right"] = holds(reply, clip.value)
    return row


def score(scenario, words, audio=None, recognizer=None) -> list[dict]:
    """Score one run of one scenario: one row per clip.

    words: the model's monologue [(word, start s)] on the scenario's clock ("<call>" and the
    other "<...>" tokens are silent); audio: its output channel (it tells where words end).
    With a `recognizer` (minitml.listen.Recognizer) each row also holds `heard`: the same
    clip scored from what the recognizer hears in the audio. The scripted ground truth is
    scored the same way: `score(s, s.assistant_words, s.assistant_audio)`."""
    rows = []
    for clip in cut(scenario):
        views = {"monologue": monologue_view(clip, words, audio)}
        if recognizer is not None:
            views["heard"] = heard_view(clip, audio, recognizer)
        rows.append(score_views(clip, views))
    return rows


def score_views(clip: Clip, views: dict[str, View]) -> dict:
    """The clip scored from the monologue and, where there is one, from what was heard:
    row["heard"] is that row, with `said` (the monologue's words) and `transcript` (the
    recognizer's) for the word error rate between them."""
    row = score_clip(clip, views["monologue"])
    if "heard" in views:
        row["heard"] = score_clip(clip, views["heard"])
        row["heard"]["said"] = " ".join(w for w, *_ in views["monologue"].spans)
        row["heard"]["transcript"] = " ".join(w for w, *_ in views["heard"].spans)
    return row


def score_folder(folder) -> dict:
    """Score one exported Full-Duplex-Bench folder from its own files: minitml.json holds the
    clip and its views (and "heard" where it was exported with a recognizer)."""
    path = Path(folder) / "minitml.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not an exported sample: it has no minitml.json")
    meta = json.loads(path.read_text())
    views = {name: View.from_json(v) for name, v in meta["views"].items()}
    return score_views(Clip(**meta["clip"]), views)


# -- many runs, summarized ---------------------------------------------------------------
def chance(rows: list[dict]) -> list[float | None]:
    """For each row with a value: how often its reply holds the values of the *other* rows of
    its kind (a shuffled control: what a reply that ignores the question scores)."""
    out: list[float | None] = []
    for i, r in enumerate(rows):
        if "value" not in r:
            out.append(None)
            continue
        others = [o["value"].split() for j, o in enumerate(rows)
                  if j != i and o["kind"] == r["kind"] and "value" in o]
        out.append(sum(holds(r["reply"].split(), v) for v in others) / len(others) if others else None)
    return out


TEXT_KEYS = ("kind", "seed", "clip", "reply", "value", "topic", "heard", "said", "transcript")


def summarize(rows: list[dict]) -> dict:
    """Per kind: `n` clips; for every yes/no metric its rate with `<metric>_k` of `<metric>_n`
    runs where it applies; for every number its mean with `<metric>_n` (latency: over the
    takeovers only, also the median); `right_chance` beside `right`."""
    rows = [dict(r, right_chance=c) if "value" in r else r for r, c in zip(rows, chance(rows))]
    out: dict = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        group = [r for r in rows if r["kind"] == kind]
        summary: dict = {"n": len(group)}
        for key in dict.fromkeys(k for r in group for k in r if k not in TEXT_KEYS):
            values = [r[key] for r in group if r.get(key) is not None]
            summary[key] = round(sum(values) / len(values), 6) if values else None
            summary[key + "_n"] = len(values)
            if values and all(isinstance(v, bool) for v in values):
                summary[key + "_k"] = sum(values)
            if key == "latency":
                summary["latency_median"] = round(statistics.median(values), 6) if values else None
        if any("said" in r for r in group):
            summary["wer"], summary["wer_n"] = pooled_wer(group)
        out[kind] = summary
    valued = [r for r in rows if "right" in r]
    if len({r["kind"] for r in valued}) > 1:  # every kind that asks something, together
        chances = [r["right_chance"] for r in valued if r["right_chance"] is not None]
        out["all"] = {"n": len(valued), "right": round(sum(r["right"] for r in valued) / len(valued), 6),
                      "right_n": len(valued), "right_k": sum(r["right"] for r in valued),
                      "right_chance": round(statistics.mean(chances), 6) if chances else None}
        for topic in ("lookup", "arithmetic"):  # the answers by what they take
            group = [r for r in valued if r.get("topic") == topic]
            if group:
                k = sum(r["right"] for r in group)
                out["all"].update({f"right_{topic}": round(k / len(group), 6),
                                   f"right_{topic}_k": k, f"right_{topic}_n": len(group)})
        if any("said" in r for r in rows):
            out["all"]["wer"], out["all"]["wer_n"] = pooled_wer(rows)
    return out


def pooled_wer(rows: list[dict]) -> tuple[float | None, int]:
    """(word error rate, reference words) of the rows' `said` against their `transcript`, pooled:
    all edits over all reference words, not a mean of per-clip rates."""
    pairs = [word_errors(r["said"].split(), r["transcript"].split()) for r in rows if "said" in r]
    errors, words = sum(e for e, _ in pairs), sum(n for _, n in pairs)
    return (round(errors / words, 6) if words else None), words


def word_errors(reference: list[str], hypothesis: list[str]) -> tuple[int, int]:
    """(substitutions + deletions + insertions, len(reference)): pool these over clips."""
    previous = list(range(len(hypothesis) + 1))  # distance from reference[:0] to hypothesis[:j]
    for i, ref in enumerate(reference, start=1):
        current = [i]
        for j, hyp in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1,  # reference word deleted
                               current[j - 1] + 1,  # hypothesis word inserted
                               previous[j - 1] + (ref != hyp)))  # match or substitution
        previous = current
    return previous[-1], len(reference)


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """Levenshtein distance on words / len(reference). An empty reference: 0.0 if nothing
    was heard, else inf (any word is an insertion, with nothing to divide by)."""
    errors, n = word_errors(reference, hypothesis)
    if n == 0:
        return 0.0 if errors == 0 else math.inf
    return errors / n


def heard_rows(rows: list[dict]) -> list[dict]:
    """The rows as scored from what the recognizer heard (rows scored with a recognizer)."""
    return [r["heard"] for r in rows if "heard" in r]


def ceiling(kinds, n: int, split: str = "heldout", seed: int = 0) -> dict:
    """The scripted ground truth of n scenarios per kind (seeds seed..seed+n-1), summarized."""
    from minitml.world.scenarios import make_scenario

    rows = []
    for kind in kinds:
        for i in range(seed, seed + n):
            s = make_scenario(kind, i, split)
            rows += score(s, s.assistant_words, s.assistant_audio)
    return summarize(rows)
