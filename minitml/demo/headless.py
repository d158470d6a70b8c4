"""The headless demo: every behaviour of the toy world, through the same engine as the widget.

    python -m minitml demo        # or make demo; writes out/demo/

One scripted conversation per scenario kind (held-out voices and phrasings, seed 0
of each: not picked), played back to back through `DemoEngine`, exactly the path
the widget's scripted mode takes: one 200 ms chunk per message, one `Session.step`
per chunk. It writes

    conversation.wav   stereo: the user (microphone) left, the model right
    timeline.png       one row per kind: both channels, the model's words, the cues
    report.md          per kind: the script, what the model said (and, if it reads back what
                       it hears, what it heard), its events, the metrics of each benchmark
                       sample, and each reply marked right or wrong
    report.json        the same, for programs

Decoding is greedy and a late step is only recorded (overrun="ignore"), as in the
evaluation, so the files are the same on every machine.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from minitml.demo.engine import DemoEngine, load_demo_model
from minitml.metrics import score
from minitml.world.scenarios import KINDS

GAP_S = 0.6  # silence between two conversations in the wav
WANTED = {  # what the right behaviour is (the kinds of world/scenarios.py), for the report
    "smooth_turn": "answer soon after the end of the turn",
    "pause": "hold the floor in a mid-sentence pause",
    "backchannel": "short mm-hms during a story, no takeover",
    "interruption": "stop within 0.4 s, answer the new request",
    "hesitation": "offer help after a natural wait",
    "visual_cue": "speak within 0.6 s of the change",
    "timer": "speak at the time, within 0.5 s",
    "background": "call the tool, speak the result when the user is quiet",
    "other_speaker": "do not respond to bystanders",
}


def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def run_headless(out="out/demo", kinds=KINDS, seed: int = 0, model=None, checkpoint=None,
                 device: str | None = None, log=print) -> dict:
    """Run the scripted conversations; write the wav, the PNG and the report; return the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minitml.evaluate import plot_run
    from minitml.wav import write_wav

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if model is None:
        model = load_demo_model(checkpoint, device)
    engine = DemoEngine(model, overrun="ignore")
    sr = model.cfg.audio.sample_rate
    log(f"model: {Path(engine.checkpoint).name or 'given'} on {engine.device}; "
        f"{len(kinds)} scripted conversations (held-out seed {seed})")

    rows, pieces, compute = [], [], []
    fig, axes = plt.subplots(len(kinds), 1, figsize=(13, 2.6 * len(kinds)), squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds):
        engine.handle({"type": "start", "mode": "scripted", "kind": kind, "seed": seed})
        scenario = engine.scenario
        for seq in range(scenario.n_turns):  # one message per 200 ms chunk, as the widget sends them
            for reply, _ in engine.handle({"type": "chunk", "seq": seq}):
                if reply["type"] == "error":
                    raise RuntimeError(f"{kind}: the engine refused chunk {seq}: {reply['message']}")
        timeline = engine.timeline()
        words, audio = timeline.words, timeline.model_audio
        samples = [{k: v for k, v in row.items() if k not in ("kind", "seed")}
                   for row in score(scenario, words, audio)]
        metrics = " | ".join(_metrics(row) for row in samples)
        events = [(e.kind, round(e.time, 2), e.detail) for e in timeline.events if e.kind != "speech_start"]
        compute += timeline.compute_ms
        rows.append({"kind": kind, "seed": seed, "wanted": WANTED[kind],
                     "duration_s": round(scenario.duration, 2),
                     "script": scenario.transcript().splitlines(),
                     "model_words": [(w, round(t, 2)) for w, t in words],
                     "model_heard": [(w, round(t, 2)) for w, t in timeline.heard],
                     "events": events, "samples": samples})
        plot_run(scenario, words, audio, ax=ax,
                 title=f"{kind}: {metrics}")
        for name, when, _ in events:
            if name in ("took_turn", "backchannel", "yielded", "deadline_miss"):
                ax.plot([when], [-0.2], marker="v", color="crimson" if name == "deadline_miss" else "green")
                ax.text(when, -0.45, name, fontsize=6, color="darkgreen")
        n = min(scenario.user_audio.shape[0], audio.shape[0])
        pieces += [torch.stack([scenario.user_audio[:n], audio[:n]]), torch.zeros(2, round(GAP_S * sr))]
        said = " ".join(w for w, _ in words if not w.startswith("<")) or "(silence)"
        log(f"  {kind:14s} {metrics}")
        for row in samples:
            if "right" in row:
                log(f"  {'':14s} {_answer(row)}")
        log(f"  {'':14s} said: {said[:100]}")
        if timeline.heard:  # a model that reads back what it hears (heard_feedback)
            log(f"  {'':14s} heard: {' '.join(w for w, _ in timeline.heard)[:100]}")
    engine.close()

    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=80)
    plt.close(fig)
    write_wav(out / "conversation.wav", torch.cat(pieces, dim=1).clamp(-1, 1), sr)
    misses = sum(c > engine.sessions["scripted"].budget_ms for c in compute)
    report = {
        "checkpoint": Path(engine.checkpoint).name, "device": engine.device, "seed": seed,
        "micro_turns": len(compute),
        "compute_ms": {"p50": round(statistics.median(compute), 2),
                       "p99": round(sorted(compute)[int(0.99 * (len(compute) - 1))], 2),
                       "max": round(max(compute), 2)},
        "budget_ms": engine.sessions["scripted"].budget_ms, "deadline_misses": misses,
        "seconds": round(time.perf_counter() - t_start, 1), "kinds": rows,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(report))
    c = report["compute_ms"]
    log(f"{len(compute)} micro-turns; compute per step p50 {c['p50']} ms, p99 {c['p99']} ms, "
        f"max {c['max']} ms of the {report['budget_ms']:.0f} ms budget; deadline misses: {misses}; "
        f"took {report['seconds']} s")
    for name in ("conversation.wav", "timeline.png", "report.md", "report.json"):
        log(f"wrote {out / name}")
    return report


def _markdown(report: dict) -> str:
    c = report["compute_ms"]
    lines = [f"# minitml demo: {report['checkpoint']} on {report['device']}", "",
             f"{report['micro_turns']} micro-turns; compute per step p50 {c['p50']} ms, p99 {c['p99']} ms, "
             f"max {c['max']} ms (budget {report['budget_ms']:.0f} ms); deadline misses: "
             f"{report['deadline_misses']}. conversation.wav: user left, model right.", ""]
    for r in report["kinds"]:
        lines += [f"## {r['kind']} (held-out seed {r['seed']}, {r['duration_s']} s)", "",
                  f"right behaviour: {r['wanted']}", "", "script:", "```", *r["script"], "```",
                  "model said: " + (" ".join(f"{w}@{t}" for w, t in r["model_words"]) or "(nothing)"), "",
                  *(["model heard: " + " ".join(f"{w}@{t}" for w, t in r["model_heard"]), ""]
                    if r["model_heard"] else []),
                  "events: " + (", ".join(f"{k} at {t} s" + (f" ({d})" if d else "")
                                          for k, t, d in r["events"]) or "(none)"), "",
                  *[f"sample {row['clip']}: {_metrics(row)}" for row in r["samples"]],
                  "", *[_answer(row) for row in r["samples"] if "right" in row], ""]
    return "\n".join(lines)


def _metrics(row: dict) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k not in ("clip", "reply", "value"))


def _answer(row: dict) -> str:
    """'answer RIGHT: asked for "red", said "the light is red"' (or WRONG)."""
    return (f"answer {'RIGHT' if row['right'] else 'WRONG'} ({row['clip']}): asked for "
            f"\"{row['value']}\", said \"{row['reply'] or '(nothing)'}\"")
