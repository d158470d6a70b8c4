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


def data(args) -> int:
    """Generate toy conversations into token shards."""
    import json

    from minitml.world.dataset import make_dataset

    t0 = time.perf_counter()
    path = make_dataset(args.split, args.n, args.seed, folder=args.out, workers=args.workers,
                        overwrite=args.overwrite)
    index = json.loads((path / "index.json").read_text())
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    elapsed = time.perf_counter() - t0
    print(f"{index['n']} {args.split} dialogues, {index['seconds'] / 60:.1f} min of audio, "
          f"{size:.1f} MB, in {path} ({elapsed:.0f} s)")
    return 0


def train(args) -> int:
    """Generate (or reuse) the datasets, then train."""
    from minitml.train import TrainConfig, Trainer
    from minitml.world.dataset import load_dataset, make_dataset
    from minitml.world.vocab import VOCAB

    tc = TrainConfig(preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                     train_dialogues=args.train_dialogues, val_dialogues=args.val_dialogues,
                     lr=args.lr, seed=args.seed, out=args.out, device=args.device,
                     eval_every=args.eval_every)
    train_set = load_dataset(make_dataset("train", tc.train_dialogues, tc.data_seed))
    val_set = load_dataset(make_dataset("heldout", tc.val_dialogues, tc.data_seed))
    trainer = Trainer(tc, train_set, val_set, vocab=list(VOCAB))
    if args.resume:
        trainer.resume(Path(args.resume))
    history = trainer.fit()
    last = history[-1]
    print(f"step {last['step']}: loss {last['loss']:.3f}; checkpoint {Path(tc.out) / 'last.pt'}")
    return 0


SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "tiny.pt"


def evaluate_cmd(args) -> int:
    """Closed-loop evaluation beside the scripted ground truth and the walkie-talkie baseline."""
    from minitml.evaluate import evaluate, format_table
    from minitml.model import InteractionModel
    from minitml.world.scenarios import KINDS

    checkpoint = Path(args.checkpoint) if args.checkpoint else SHIPPED_CHECKPOINT
    model = None
    if checkpoint.exists():
        model = InteractionModel.from_checkpoint(checkpoint)
    elif args.checkpoint:
        raise SystemExit(f"no checkpoint at {checkpoint}")
    else:
        print(f"no trained checkpoint yet ({checkpoint} is missing): scoring the scripted "
              f"ground truth and the walkie-talkie baselines only\n")
    kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    results = evaluate(model, kinds, args.n, split="heldout", out=args.out)
    print(format_table(results))
    print(f"\nwrote {Path(args.out) / 'results.json'}")
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
    p = sub.add_parser("data", help="generate toy conversations into token shards")
    p.add_argument("--split", default="train", choices=["train", "heldout"])
    p.add_argument("--n", type=int, default=450, help="dialogues (450 is about an hour)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder (default: the cache, $MINITML_CACHE)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=data)
    p = sub.add_parser("train", help="train a model on the toy world")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--train-dialogues", type=int, default=3000)
    p.add_argument("--val-dialogues", type=int, default=180)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="out/train")
    p.add_argument("--resume", default=None, help="a checkpoint to continue from")
    p.set_defaults(func=train)
    p = sub.add_parser("eval", help="closed-loop evaluation on held-out scenarios")
    p.add_argument("--checkpoint", default=None, help="default: the shipped data/tiny.pt")
    p.add_argument("--n", type=int, default=50, help="scenarios per kind")
    p.add_argument("--kinds", default=None, help="comma-separated (default: all nine)")
    p.add_argument("--out", default="out/eval")
    p.set_defaults(func=evaluate_cmd)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
