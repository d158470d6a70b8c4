"""Closed-loop evaluation: the model, the scripted ceiling and a walkie-talkie, side by side.

    results = evaluate(model, KINDS, n=50, out="runs/eval")
    print(format_table(results))

Three kinds of system answer the same held-out scenarios, and `metrics.score`
judges them all the same way (Full-Duplex-Bench v1 definitions):

    model              `run_model`: the model in a closed loop through `Session`.
                       It hears the recorded user channel, sees the scenario's
                       frames, reads its text-in, and its own outputs feed back.
                       The user is a recording: a barge-in comes when it comes,
                       whatever the model is saying (that is what "closed loop
                       against a scripted user" means). Greedy decoding and
                       overrun="ignore": the numbers do not depend on the
                       machine's speed or on luck.
    ground_truth       the scripted assistant: the ceiling (`metrics.ceiling`).
    walkie_talkie_<t>  `walkie_talkie`: a cascaded voice pipeline that is given
                       the correct answer for free, so only its *timing* is
                       compared: an energy VAD waits for t seconds of silence.

The walkie-talkie, rule by rule (what common voice stacks do, simplified):

    VAD          20 ms frames; a frame is speech when its level is within
                 VAD_DB of the channel's loudest frame (and VAD_FLOOR_DB above
                 the noise floor, so a quiet clip's room noise is not speech).
    turn end     after `threshold_s` of silence (0.5 s and 0.8 s): the decision
                 time is the end of the last speech frame + threshold_s.
    answer       at each decision it plays the next scripted assistant reply
                 (words and audio, as scripted) that starts after the speech
                 the VAD just heard end, shifted to the decision time (0 s of
                 processing: generous). One reply at a time: a reply starts
                 only after the previous one has finished. So in a `pause`
                 longer than the threshold it answers inside the pause: the
                 classic failure. A reply is played as scripted, including
                 where the scripted assistant stopped for a barge-in, so it
                 stops as late as it started. It cannot tell a bystander from
                 the user: when bystanders fall silent, it answers them.
    cannot       backchannel (the scripted "uh-huh"s are never its replies),
                 watch or keep time (visual_cue / timer: it stays silent; the
                 promise "okay, i will watch" would be a lie), or wait for a
                 tool (background: it says the first reply, "let me check",
                 and never the result).

The VAD misses the quiet tail of some words (up to about 0.15 s below the
noise), so its latency can fall slightly under its threshold: that is the
VAD's error, kept, not hidden.

Every figure is scored on the benchmark's clips (`minitml.clips`): a dialogue
with two questions is two samples. `evaluate(..., out=DIR)` writes DIR/results.json
({kind: {system: summary}}, every rate with its k and n) and the model's runs as
Full-Duplex-Bench v1 folders DIR/fdb/<kind>/<sample>/, and scores the model from
those folders (`metrics.score_folder`). With a `recognizer` (minitml.listen), the
model and the ground truth are also scored from what it hears in their audio: the
systems "model_heard" and "ground_truth_heard", with the word error rate between
what each said in its monologue and what was heard.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minitml.clips import cut
from minitml.metrics import heard_rows, score, score_folder, summarize
from minitml.protocol import unnamed
from minitml.session import Session
from minitml.timeline import Timeline, plot_channels
from minitml.world.export import export_fdb
from minitml.world.scenarios import make_scenario
from minitml.world.vocab import VOCAB

FRAME_S = 0.02  # VAD frame
VAD_DB = 35.0  # speech: within this many dB of the loudest frame ...
VAD_FLOOR_DB = 6.0  # ... and this many dB above the noise floor (10th percentile level)
PROCESSING_S = 0.0  # ASR + LLM + TTS time of the cascade: none, to be generous
THRESHOLDS = (0.5, 0.8)


# -- the model, in a closed loop ---------------------------------------------------------
def run_scenario(session: Session, scenario, record: bool = False, progress: bool = False) -> Timeline:
    """A scenario through `session.run`: its user channel, its frames (at the session's frame
    size) and its text-in words.

    A background scenario carries its tool result as scripted text-in. When the session has a
    background model attached, that model answers the call itself (or does not), so the
    scripted result is not fed as well."""
    text_in = scenario.text_in
    call = scenario.annotations.get("call")
    if session.handoff is not None and call is not None:
        first, last = call["result_turns"]
        text_in = {t: words for t, words in text_in.items() if not first <= t <= last}
    return session.run(scenario.user_audio, scenario.frames(session.cfg.vision), text_in,
                       record=record, progress=progress)


def run_model(model, scenario, vocab: list[str] | None = None, temperature: float = 0.0,
              speak_threshold: float | str = 0.5):
    """One closed-loop run -> (words [(word, t)], audio (N,)) on the scenario's clock.

    vocab: the model's word list (default: the checkpoint's, else the toy world's).
    temperature: 0 is greedy (`generator.greedy_word`); above 0 words are sampled, with the
    session's fixed seed, so a run is still repeatable. speak_threshold: see greedy_word ("calibrated":
    the model's, `generator.calibrated_threshold`)."""
    if vocab is None:  # the checkpoint's vocabulary, else the toy world's
        vocab = model.vocab if model.vocab is not None else list(VOCAB)
    # ids the vocabulary does not name (an untrained model says them) are silent tokens
    vocab = list(vocab) + [unnamed(i) for i in range(len(vocab), model.cfg.model.text_vocab_size)]
    known = set(vocab)  # refused before the run starts, not at the micro-turn that needs them
    missing = sorted({w for ws in scenario.text_in.values() for w in ws if w not in known})
    if missing:
        raise ValueError(f"text-in words not in the vocabulary: {missing}")
    session = Session(model, overrun="ignore", temperature=temperature, vocab=vocab,
                      speak_threshold=speak_threshold)
    timeline = run_scenario(session, scenario)  # words: the session maps them to ids
    return timeline.words, timeline.model_audio


# -- the walkie-talkie baseline ------------------------------------------------------------
def vad(audio: torch.Tensor, sample_rate: int) -> list[tuple[float, float]]:
    """Energy VAD: the speech spans (start, end) in s, on the 20 ms frame grid."""
    frame = round(FRAME_S * sample_rate)
    n = audio.shape[0] // frame
    if n == 0:
        return []
    level = audio[: n * frame].view(n, frame).pow(2).mean(1).clamp_min(1e-12).log10() * 10
    floor = float(level.quantile(0.1))
    speech = (level > max(float(level.max()) - VAD_DB, floor + VAD_FLOOR_DB)).tolist()
    spans, start = [], None
    for i, s in enumerate(speech + [False]):
        if s and start is None:
            start = i
        elif not s and start is not None:
            spans.append((start * FRAME_S, i * FRAME_S))
            start = None
    return spans


def turn_ends(spans, threshold_s: float, duration: float) -> list[tuple[float, float]]:
    """[(speech end, decision time)]: each end followed by threshold_s of silence."""
    out = []
    for i, (_, end) in enumerate(spans):
        decide = end + threshold_s
        nxt = spans[i + 1][0] if i + 1 < len(spans) else float("inf")
        if decide <= nxt + 1e-9 and decide < duration:
            out.append((end, decide))
    return out


def _replies(scenario) -> list[tuple[float, float, list[tuple[str, float]]]]:
    """The scripted replies the walkie-talkie may say: [(start, end, words)]."""
    ann, kind = scenario.annotations, scenario.kind
    if kind in ("visual_cue", "timer"):
        return []  # cannot watch, cannot keep time
    backchannels = ann.get("backchannels", [])
    spans = [(a, b) for a, b in sorted(ann["assistant_speech"])
             if not any(abs(a - c) < 1e-6 for c, _ in backchannels)]
    if kind == "background":
        spans = spans[:1]  # "let me check"; the result never comes
    spoken = [(w, t) for w, t in scenario.assistant_words if not w.startswith("<")]
    return [(a, b, [(w, t) for w, t in spoken if a - 1e-3 <= t < b]) for a, b in spans]


def walkie_talkie(scenario, threshold_s: float):
    """The cascaded baseline -> (words [(word, t)], audio (N,)); see the module docstring."""
    sr, dur = scenario.sample_rate, scenario.duration
    audio = torch.zeros_like(scenario.assistant_audio)
    words: list[tuple[str, float]] = []
    replies, busy_until, k = _replies(scenario), 0.0, 0
    for heard_end, decide in turn_ends(vad(scenario.user_audio, sr), threshold_s, dur):
        while k < len(replies) and replies[k][0] <= heard_end:
            k += 1  # a reply to speech before this turn: too late for it now
        if k == len(replies):
            break
        a, b, said = replies[k]
        k += 1
        at = max(decide + PROCESSING_S, busy_until)
        shift, busy_until = at - a, at + (b - a)
        piece = scenario.assistant_audio[round(a * sr):round(b * sr)]
        i0 = round(at * sr)
        piece = piece[: max(0, audio.shape[0] - i0)]
        audio[i0:i0 + piece.shape[0]] = piece
        words += [(w, round(t + shift, 6)) for w, t in said if t + shift < dur]
    return words, audio


# -- the whole benchmark ----------------------------------------------------------------
def evaluate(model, kinds, n: int, split: str = "heldout", seed: int = 0, out=None,
             vocab: list[str] | None = None, thresholds=THRESHOLDS, progress: bool = True,
             temperature: float = 0.0, speak_threshold: float | str = 0.5, recognizer=None) -> dict:
    """Score n scenarios per kind (seeds seed..seed+n-1) -> {kind: {system: summary}}.

    Systems: "model" (when a model is given), "ground_truth", "walkie_talkie_<t>", and with a
    recognizer "model_heard", "ground_truth_heard". With `out`: out/results.json, out/rows.json
    (every clip's row) and the model's runs under out/fdb/<kind>/<sample>/."""
    jobs = [(kind, i) for kind in kinds for i in range(seed, seed + n)]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="evaluate")
    rows: dict[str, list[dict]] = {}
    for kind, i in jobs:
        s = make_scenario(kind, i, split)
        runs = {}
        if model is not None:
            words, audio = run_model(model, s, vocab, temperature, speak_threshold)
            if out is not None:  # the model is scored from the folders it exports
                folders = export_fdb(s, Path(out) / "fdb", audio, words, recognizer)
                rows.setdefault("model", []).extend(score_folder(f) for f in folders)
            else:
                runs["model"] = (words, audio)
        runs["ground_truth"] = (s.assistant_words, s.assistant_audio)
        for t in thresholds:
            runs[f"walkie_talkie_{t}"] = walkie_talkie(s, t)
        for system, (words, audio) in runs.items():
            listen = recognizer if system in ("model", "ground_truth") else None
            rows.setdefault(system, []).extend(score(s, words, audio, listen))
    for system in [name for name in ("model", "ground_truth") if name in rows]:
        if heard_rows(rows[system]):
            rows[system + "_heard"] = heard_rows(rows[system])
    by_system = {system: summarize(r) for system, r in rows.items()}
    names = [k for k in kinds] + (["all"] if any("all" in v for v in by_system.values()) else [])
    results = {kind: {system: by_system[system][kind] for system in by_system if kind in by_system[system]}
               for kind in names}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.json").write_text(json.dumps(results, indent=2))
        (Path(out) / "rows.json").write_text(json.dumps(rows, indent=1))
    return results


def value_text(v) -> str:
    """One value as a table prints it: "-" for none, two decimals for a float."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def cell(summary: dict, metric: str) -> str:
    """A summary's metric with its count: "0.43 13/30" for a rate, "0.25 n=13" for a mean."""
    v = summary.get(metric)
    if metric + "_k" in summary:
        return f"{value_text(v)} {summary[metric + '_k']}/{summary[metric + '_n']}"
    if metric + "_n" in summary and metric not in ("right_chance",):
        return f"{value_text(v)} n={summary[metric + '_n']}"
    if metric == "latency_median" and "latency_n" in summary:
        return f"{value_text(v)} n={summary['latency_n']}"
    return value_text(v)


def format_table(results: dict) -> str:
    """One table per kind: a row per metric, a column per system; rates as "rate k/n",
    means as "mean n=runs"; right_chance is the shuffled control beside right."""
    blocks = []
    for kind, systems in results.items():
        names = list(systems)
        metrics = list(dict.fromkeys(m for s in systems.values() for m in s
                                     if not m.endswith(("_n", "_k"))))
        width = max(len(m) for m in metrics + ["metric"])
        cols = [max(len(nm), 12) for nm in names]
        lines = [f"## {kind}",
                 "  ".join(["metric".ljust(width)] + [nm.rjust(c) for nm, c in zip(names, cols)])]
        for m in metrics:
            cells = [cell(systems[nm], m) for nm in names]
            lines.append("  ".join([m.ljust(width)] + [c.rjust(w) for c, w in zip(cells, cols)]))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# -- the targets of the shipped checkpoint ---------------------------------------------------
# (kind, metric, test, goal): "min" the rate must reach goal, "max" it must not pass it,
# "near_truth" the value must lie within goal (a fraction) of the ground truth's.
TARGETS = [
    ("smooth_turn", "took_turn", "min", 0.9),
    ("smooth_turn", "latency", "max", 0.40),
    ("smooth_turn", "no_reply", "max", 0.05),
    ("all", "right", "min", 0.7),
    ("all", "right_lookup", "min", 0.8),
    ("all", "right_arithmetic", "min", 0.5),
    ("pause", "took_turn", "max", 0.10),
    ("backchannel", "took_turn", "max", 0.15),
    ("backchannel", "n_backchannels", "near_truth", 0.5),
    ("interruption", "speaking_at_barge_in", "min", 0.8),
    ("interruption", "stopped_within_0_4", "min", 0.9),
    ("interruption", "right", "min", 0.7),
    ("hesitation", "offered_help", "min", 0.7),
    ("visual_cue", "on_time", "min", 0.7),
    ("visual_cue", "early", "max", 0.1),
    ("timer", "on_time", "min", 0.7),
    ("timer", "early", "max", 0.1),
    ("background", "called", "min", 0.8),
    ("background", "right", "min", 0.8),
    ("background", "over_user", "max", 0.0),
    ("other_speaker", "took_turn", "max", 0.10),
]


def check_targets(results: dict, system: str = "model") -> list[dict]:
    """Each target of TARGETS that `results` covers -> {kind, metric, goal, value, truth, met}.

    A metric with no value (no takeover, so no latency) does not meet its target."""
    rows = []
    for kind, metric, test, goal in TARGETS:
        if kind not in results or system not in results[kind]:
            continue
        value = results[kind][system].get(metric)
        truth = results[kind].get("ground_truth", {}).get(metric)
        if value is None:
            met = False
        elif test == "min":
            met = value >= goal
        elif test == "max":
            met = value <= goal + 1e-9
        else:
            met = truth is not None and abs(value - truth) <= goal * truth
        text = {"min": f">= {goal:g}", "max": f"<= {goal:g}",
                "near_truth": f"within {goal:.0%} of truth"}[test]
        rows.append({"kind": kind, "metric": metric, "goal": text, "value": value, "truth": truth,
                     "met": met})
    return rows


def format_targets(rows: list[dict]) -> str:
    lines = [f"{'kind':14s} {'metric':19s} {'goal':22s} {'model':>6s} {'truth':>6s}  met"]
    for r in rows:
        lines.append(f"{r['kind']:14s} {r['metric']:19s} {r['goal']:22s} {value_text(r['value']):>6s} "
                     f"{value_text(r['truth']):>6s}  {'yes' if r['met'] else 'NO'}")
    return "\n".join(lines)


# -- one run, drawn ---------------------------------------------------------------------------
def plot_run(scenario, words, audio, ax=None, title: str = ""):
    """The user's channel above, a system's below, its words, the scenario's cues, and each
    reply that must carry a value marked right (green) or wrong (red) where it is due."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(12, 2.8))
    ann = scenario.annotations
    plot_channels(ax, scenario.user_audio, audio, scenario.sample_rate, words, "system")
    for a, b in ann.get("pauses", []):
        ax.axvspan(a, b, color="gold", alpha=0.25, lw=0)
    if "barge_in" in ann:
        ax.axvspan(*ann["barge_in"], color="red", alpha=0.15, lw=0)
    cues = [(x, "turn end", "green") for x in ann.get("turn_ends", [])]
    cues += [(ann[k], k.replace("_", " "), "purple") for k in ("cue_time", "timer_target") if k in ann]
    if "call" in ann:
        cues.append((ann["call"]["arrived"], "result in", "black"))
    for x, label, colour in cues:
        ax.axvline(x, color=colour, lw=0.8, ls="--")
        ax.text(x, 2.0, " " + label, fontsize=7, color=colour, va="top")
    for clip, row in zip(cut(scenario), score(scenario, words, audio)):
        if "right" in row:
            x = clip.start + clip.marks["reply_from"]
            ax.text(x, -1.6, f" {'right' if row['right'] else 'wrong'}: {row['value']}", fontsize=7,
                    color="green" if row["right"] else "red", va="bottom")
    ax.set_xlim(0, scenario.duration)
    ax.set_title(title or f"{scenario.kind} (seed {scenario.seed})", fontsize=10)
    return ax
