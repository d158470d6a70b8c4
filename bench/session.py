"""Per-micro-turn cost of a live Session: flat over ten minutes, and what the cache buys.

    .venv/bin/python bench/session.py                       # tiny preset, CPU, 10 minutes
    .venv/bin/python bench/session.py --preset small --device cuda

Everything is measured in this run:
- a 10-minute session (3000 micro-turns) of eSpeak speech and silence through
  `Session.step` (hear, prefill, generate 4 output tokens, vocode): compute time
  per step at minute 1 and at minute 10, the growth between them, and the
  process memory at both;
- the cached step against recomputing the window from scratch (no cache: every
  output token re-runs the model over the whole window), model compute only;
- streaming logits against the full forward pass on a session whose window
  wraps several times.
Without a checkpoint the model is randomly initialised: it babbles, but it costs
exactly what a trained one costs. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml import checkpoint
from minitml.config import get_config  # noqa: E402
from minitml.model import InteractionModel  # noqa: E402
from minitml.session import Session  # noqa: E402
from minitml.stream import Blocks  # noqa: E402
from minitml.world.espeak import synthesize  # noqa: E402


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # Linux fallback
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * 4096 / 2**20


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def user_stream(n_turns: int) -> torch.Tensor:
    """Speech with pauses, repeated to n_turns micro-turns of 16 kHz audio."""
    lines = ["Tell me when the light turns green.", "What is thirty seven times forty nine?",
             "I went to the market this morning, and it was very busy.", "Hold on a second."]
    parts = []
    for i, line in enumerate(lines):
        parts += [synthesize(line, voice="en-us" if i % 2 else "en").wave, torch.zeros(16000)]
    one = torch.cat(parts)
    n = n_turns * 3200
    return one.repeat(n // one.numel() + 1)[:n]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def streaming_error(cfg, device) -> float:
    """Max |streamed - full| logits over a session 4x longer than its window."""
    small = cfg.replace(model=replace(cfg.model, window_micro_turns=3))
    torch.manual_seed(0)
    model = InteractionModel(small).to(device).eval()
    session = Session(model, temperature=1.0, mel_temperature=1.0, record_logits=True,
                      overrun="ignore", vocode=False)
    g = torch.Generator().manual_seed(1)
    outs = [session.step(0.3 * torch.randn(3200, generator=g), record=True) for _ in range(12)]
    with torch.no_grad():
        full = model(Blocks.cat(session.recorded, dim=1).to(device))
    err = (full.text_logits[0].cpu() - torch.stack([o.text_logits for o in outs])).abs().max()
    if full.mel_logits is not None:
        mel = torch.stack([o.mel_logits for o in outs])
        err = max(err, (full.mel_logits[0].cpu() - mel).abs().max())
    return float(err)


@torch.inference_mode()
def uncached_turn_ms(model, session, device, turns: int = 10) -> float:
    """Recompute the window from scratch for each output token of a micro-turn."""
    W = model.cfg.model.window_micro_turns
    history = Blocks.cat(session.recorded[-W:], dim=1).to(device)  # the last W micro-turns
    times = []
    for _ in range(turns):
        sync(device)
        start = time.perf_counter()
        for _ in range(model.layout.n_audio):  # each output token needs a fresh pass
            out = model(history)
            int(out.text_logits[0, -1, 0].argmax())  # use the result (and sync)
        sync(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; one keeps a tiny model's steps steady on a busy machine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.checkpoint:  # the checkpoint's own config (--preset is for an untrained model)
        model = checkpoint.load(args.checkpoint)
    else:
        model = InteractionModel(get_config(args.preset))
    cfg = model.cfg
    model = model.to(device).eval()

    n_turns = int(args.minutes * 60 * 1000 / cfg.audio.micro_turn_ms)
    per_minute = min(n_turns, 60 * 1000 // cfg.audio.micro_turn_ms)  # 300 micro-turns
    audio = user_stream(max(n_turns, cfg.model.window_micro_turns + 20))
    session = Session(model, overrun="ignore")  # a benchmark measures; it does not catch up
    for i in range(20):  # warm-up (allocator, kernels)
        session.step(audio[i * 3200:(i + 1) * 3200])
    session.reset()

    compute, rss = [], {}
    start = time.perf_counter()
    for t in range(n_turns):
        out = session.step(audio[t * 3200:(t + 1) * 3200])
        compute.append(out.compute_ms)
        if t + 1 in (per_minute, n_turns):
            rss[t + 1] = rss_mb()
    wall = time.perf_counter() - start
    first = compute[:per_minute]
    last = compute[-per_minute:]
    cache_mb = sum(c.nbytes() for c in session.generator.state.caches) / 2**20

    # Cached vs from scratch, model compute only (no vocoder) on the same history.
    bare = Session(model, overrun="ignore", vocode=False)
    W = cfg.model.window_micro_turns
    cached = [bare.step(audio[t * 3200:(t + 1) * 3200], record=True).compute_ms
              for t in range(W + 20)][W:]
    cached_ms = statistics.median(cached)
    scratch_ms = uncached_turn_ms(model, bare, device)
    err = streaming_error(cfg, device)

    p50, p99 = statistics.median(first), percentile(first, 99)
    p50_10, p99_10 = statistics.median(last), percentile(last, 99)
    budget = cfg.audio.micro_turn_ms
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"Session.step, preset {cfg.name} ({cfg.param_counts()['total'] / 1e6:.1f}M params), "
          f"{name}, {torch.get_num_threads()} threads, {n_turns} micro-turns "
          f"({args.minutes:g} min of audio in {wall:.0f} s)")
    print(f"{'':24s} {'p50 ms':>8s} {'p99 ms':>8s} {'RTF p99':>8s} {'RSS MB':>8s}")
    print(f"{'minute 1':24s} {p50:8.1f} {p99:8.1f} {p99 / budget:8.3f} {rss[per_minute]:8.0f}")
    print(f"{'minute ' + str(round(args.minutes)):24s} {p50_10:8.1f} {p99_10:8.1f} "
          f"{p99_10 / budget:8.3f} {rss[n_turns]:8.0f}")
    print(f"growth (last-minute p50 / first-minute p50): {p50_10 / p50:.3f}  (goal < 1.2)")
    print(f"KV cache: {cache_mb:.2f} MB, the same at every step (window {cfg.window} positions)")
    print(f"model compute per micro-turn: cached {cached_ms:.1f} ms, recomputing the window "
          f"from scratch {scratch_ms:.1f} ms -> cached speed-up {scratch_ms / cached_ms:.1f}x")
    print(f"streamed vs full-forward logits, window wrapped 4x: max |diff| = {err:.2e}")
    print(json.dumps({
        "bench": "session", "preset": cfg.name, "device": name, "threads": torch.get_num_threads(),
        "micro_turns": n_turns,
        "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
        "p50_ms_min10": round(p50_10, 2), "p99_ms_min10": round(p99_10, 2),
        "growth": round(p50_10 / p50, 3), "rtf_p99": round(p99 / budget, 4),
        "rss_mb_min1": round(rss[per_minute], 1), "rss_mb_end": round(rss[n_turns], 1),
        "kv_cache_mb": round(cache_mb, 3), "cached_ms": round(cached_ms, 2),
        "scratch_ms": round(scratch_ms, 2), "cached_speedup": round(scratch_ms / cached_ms, 2),
        "stream_vs_full_max_abs_err": err,
    }))


if __name__ == "__main__":
    main()
