"""Command line: `python -m minitml demo`, `python -m minitml presets`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def demo(args) -> int:
    """The most complete thing that runs today: speech -> dMel tokens -> speech.

    (The live duplex conversation replaces this once the interaction model and
    its trained checkpoint exist.)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from minitml.config import get_config
    from minitml.dmel import DMel, write_wav
    from minitml.world.espeak import synthesize

    out = Path(args.out)
    cfg = get_config("tiny").audio
    dmel = DMel(cfg)
    print("minitml demo: the dMel round trip (audio -> 4-bit tokens -> audio).")
    print("The duplex conversation demo needs the interaction model, which is not built yet.\n")

    t0 = time.perf_counter()
    speech = synthesize(args.text)
    tokens = dmel.encode(speech.wave)  # (frames, 80) in [0, 16)
    audio = dmel.vocode(tokens)  # Griffin-Lim
    again = dmel.encode(audio)
    elapsed = time.perf_counter() - t0

    write_wav(out / "original.wav", speech.wave, cfg.sample_rate)
    write_wav(out / "vocoded.wav", audio, cfg.sample_rate)

    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    frames = torch.arange(tokens.shape[0]) / cfg.frame_rate
    panels = [
        (dmel.log_mel(speech.wave), "log10-mel of the eSpeak speech (continuous)"),
        (dmel.decode(tokens), "dMel: each channel snapped to one of 16 levels (4 bits)"),
        (dmel.decode(again), "dMel of the Griffin-Lim audio rebuilt from those tokens"),
    ]
    for ax, (image, title) in zip(axes, panels):
        ax.imshow(image.T.numpy(), origin="lower", aspect="auto", vmin=cfg.log_min, vmax=cfg.log_max,
                  extent=(0, float(frames[-1]), 0, cfg.n_mels), cmap="magma")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mel channel")
    for word, start in speech.words:
        axes[0].text(start, cfg.n_mels - 8, word, fontsize=8, color="white")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out / "dmel.png", dpi=110)

    exact = (again == tokens).float().mean().item()
    near = ((again - tokens).abs() <= 1).float().mean().item()
    print(f"text: {args.text!r}")
    print(f"speech: {speech.duration:.2f} s, {len(speech.words)} words, "
          f"{tokens.shape[0]} dMel frames x {tokens.shape[1]} channels")
    print(f"bitrate: {cfg.bits_per_second / 1000:.1f} kbit/s (16-bit PCM: 256 kbit/s)")
    print(f"tokens kept after vocode -> encode: {100 * exact:.1f}% exactly, "
          f"{100 * near:.1f}% within one level")
    print(f"took {elapsed:.2f} s on the CPU\n")
    for name in ("original.wav", "vocoded.wav", "dmel.png"):
        print(f"wrote {out / name}")
    return 0


def presets(args) -> int:
    from minitml.config import PRESETS, get_config

    print(f"{'preset':10s} {'total':>14s} {'active':>14s} {'bf16 bytes':>11s} {'GFLOP/token':>12s}")
    for name in PRESETS:
        cfg = get_config(name)
        counts = cfg.param_counts()
        print(f"{name:10s} {counts['total']:14,d} {counts['active']:14,d} "
              f"{2 * counts['total'] / 1e9:10.2f}G {cfg.flops_per_token() / 1e9:12.3f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minitml")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the demo (today: the dMel round trip)")
    p.add_argument("--text", default="Tell me when the light turns green, and I will wait.")
    p.add_argument("--out", default="out/demo", help="folder for the wav files and the plot")
    p.set_defaults(func=demo)
    p = sub.add_parser("presets", help="parameter counts and costs of the presets")
    p.set_defaults(func=presets)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
