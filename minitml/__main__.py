"""Command line: `python -m minitml demo | presets | plan | data | train | eval | repo`."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path


def demo(args) -> int:
    """The duplex demo, headless: every behaviour of the toy world through Session, in files.

    (The same conversations play live, in real time, in notebooks/10_live_demo.ipynb.)
    """
    import torch

    from minitml.demo import run_headless
    from minitml.world.scenarios import KINDS

    torch.set_num_threads(1)  # steady step times on a shared CPU (see notebook 05)
    kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    print("minitml demo: scripted conversations played through the interaction model, 200 ms at a time.")
    run_headless(args.out, kinds=kinds, seed=args.seed, checkpoint=args.checkpoint, device=args.device)
    return 0


def presets(args) -> int:
    from minitml.config import PRESETS, get_config
    from minitml.scale import flops_per_position

    print(f"{'preset':10s} {'total':>14s} {'active':>14s} {'bf16 bytes':>11s} {'GFLOP/token':>12s}")
    for name in PRESETS:
        cfg = get_config(name)
        counts = cfg.param_counts()
        print(f"{name:10s} {counts['total']:14,d} {counts['active']:14,d} "
              f"{2 * counts['total'] / 1e9:10.2f}G {flops_per_position(cfg) / 1e9:12.3f}")
    return 0


def plan(args) -> int:
    """The planner's table (minitml/scale.py): memory, FLOPs and GPUs for each preset."""
    from minitml.config import PRESETS
    from minitml.scale import format_plan
    from minitml.scale import plan as make_plan

    names = args.presets.split(",") if args.presets else list(PRESETS)
    print(format_plan([make_plan(name, gpu=args.gpu, sessions=args.sessions, train_days=args.days)
                       for name in names]))
    return 0


def data(args) -> int:
    """Generate toy conversations into token shards."""
    import json

    from minitml.world.dataset import make_dataset

    t0 = time.perf_counter()
    path = make_dataset(args.split, args.n, args.seed, folder=args.out, workers=args.workers,
                        overwrite=args.overwrite, speakers=args.speakers)
    index = json.loads((path / "index.json").read_text())
    size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    elapsed = time.perf_counter() - t0
    print(f"{index['n']} {args.split} dialogues, {index['seconds'] / 60:.1f} min of audio, "
          f"{size:.1f} MB, in {path} ({elapsed:.0f} s)")
    return 0


TRAIN_OPTIONS = {  # TrainConfig fields the train command takes as --options (minitml/train.py)
    "preset": "model preset", "steps": "optimiser steps", "batch_size": "conversations per step",
    "max_turns": "crop conversations to this many micro-turns",
    "train_dialogues": "generated training conversations", "val_dialogues": "held-out conversations",
    "lr": "peak learning rate", "eval_every": "steps between validations, probes and checkpoints",
    "word_weight": "a word target's weight against a PAD target",
    "reply_weight": "extra weight of a reply's first word and of <call> / </call>",
    "value_weight": "extra weight of a reply's asked-for value words (the colour, the sum)",
    "heard_weight": "weight of the heard-word loss (0: no heard head)",
    "seen_weight": "weight of the seen-word loss: a head names what each patch shows (0: no seen head)",
    "kinds": "training scenario kinds, comma-separated; a kind named twice is drawn twice as often "
             "(default: all nine)",
    "speakers": "few (66) or many (348) voices of training users (the held-out 54 stay the same)",
    "voice_shift": "move each training user's mel channels by up to this many (0: off)",
    "voice_level": "move each training user's levels by up to this many dMel bins (0: off)",
    "own_speech": "in the decay, share of conversations that hear the model's own dMel fed back (0: off)",
    "heard_feedback": "1: the model reads back, in each output slot, the word its heard head named (0: off)",
    "seen_feedback": "1: the model reads back, in output slot j, the word its seen head named at "
                     "patch j (needs --seen-weight > 0; 0: off)",
    "embed_norm": "1: patches, dMel frames and words each through their own RMSNorm, one scale "
                  "for all (0: off)",
    "heard_noise": "with --heard-feedback 1: share of true heard words read back missed or misheard",
    "seed": "model init and batch order", "device": "auto: cuda if available, else cpu",
    "out": "folder for checkpoints, history and plots",
}


def train(args) -> int:
    """Generate (or reuse) the datasets, then train: in one process, or in each of torchrun's."""
    import torch
    import torch.distributed

    from minitml import distributed
    from minitml.config import get_config
    from minitml.expert_parallel import check_layout
    from minitml.train import TrainConfig, Trainer
    from minitml.world.dataset import load_dataset, make_dataset
    from minitml.world.vocab import VOCAB

    tc = TrainConfig(**{name: getattr(args, name) for name in TRAIN_OPTIONS},
                     compile=args.compile, activation_checkpointing=args.activation_checkpointing,
                     expert_parallel=args.expert_parallel)
    if args.threads:
        torch.set_num_threads(args.threads)
    dist = distributed.init(tc.device)
    if tc.expert_parallel:  # refuse before generating any data
        try:
            check_layout(get_config(tc.preset).moe.n_experts, dist.world_size)
        except ValueError as err:
            raise SystemExit(f"--expert-parallel: {err}") from None
    if dist.sharded and dist.is_main:
        experts = "; the experts split between them, tokens sent to them" if tc.expert_parallel else ""
        print(f"{dist.world_size} processes ({dist.device.type}): FSDP2, each holds 1/{dist.world_size} "
              f"of the weights{experts}; a global batch of {tc.batch_size} is "
              f"{tc.batch_size // dist.world_size} per process")

    def datasets():
        kinds = tc.kinds.split(",") if tc.kinds else None
        return (make_dataset("train", tc.train_dialogues, tc.data_seed, kinds, progress=dist.is_main,
                             speakers=tc.speakers),
                make_dataset("heldout", tc.val_dialogues, tc.data_seed, progress=dist.is_main))

    if dist.is_main:  # one process writes the shards, the others wait and read them
        datasets()
    if dist.sharded:
        torch.distributed.barrier()
    train_path, val_path = datasets()
    trainer = Trainer(tc, load_dataset(train_path), load_dataset(val_path), vocab=list(VOCAB), dist=dist)
    if args.resume:
        trainer.resume(Path(args.resume))
    history = trainer.fit()
    last = history[-1]
    if dist.is_main:
        name = "last.dcp" if dist.sharded else "last.pt"
        print(f"step {last['step']}: loss {last['loss']:.3f}; checkpoint {Path(tc.out) / name}; "
              f"{last['tokens_per_s']:.0f} tokens/s")
    if dist.sharded:
        del trainer  # its sharded tensors keep the process group alive (see distributed.close)
        distributed.close()
    return 0


SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "tiny.pt"


def evaluate_cmd(args) -> int:
    """Closed-loop evaluation beside the scripted ground truth and the walkie-talkie baseline."""
    import torch

    from minitml import checkpoint
    from minitml.evaluate import check_targets, evaluate, format_table, format_targets
    from minitml.world.scenarios import KINDS

    threshold = args.speak_threshold
    if threshold != "calibrated":
        try:
            threshold = float(threshold)
        except ValueError:
            threshold = -1.0
        if not 0 <= threshold < 1:
            raise SystemExit(f"--speak-threshold takes a number in [0, 1) or 'calibrated', "
                             f"got {args.speak_threshold!r}")
    path = Path(args.checkpoint) if args.checkpoint else SHIPPED_CHECKPOINT
    model = None
    if path.exists():
        model = checkpoint.load(path)
    elif args.checkpoint:
        raise SystemExit(f"no checkpoint at {path}")
    else:
        print(f"no trained checkpoint yet ({path} is missing): scoring the scripted "
              f"ground truth and the walkie-talkie baselines only\n")
    kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    torch.set_num_threads(1)  # one small step at a time: a second thread only waits (notebook 05)
    t0 = time.perf_counter()
    recognizer = None
    if args.transcribe:
        from minitml.listen import Recognizer

        recognizer = Recognizer()
    results = evaluate(model, kinds, args.n, split=args.split, out=args.out, recognizer=recognizer,
                       speak_threshold=threshold)
    print(format_table(results))
    if model is not None:
        print("\n## targets\n" + format_targets(check_targets(results)))
    print(f"\n{args.n} {args.split} scenarios per kind in {time.perf_counter() - t0:.0f} s")
    print(f"\nwrote {Path(args.out) / 'results.json'}")
    return 0


ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r'^Repository = "https://github\.com/([\w.-]+/[\w.-]+)"$', re.M)  # in pyproject.toml


def repository(root: Path = ROOT) -> str:
    """OWNER/NAME of the repository, from its one home: [project.urls] in pyproject.toml."""
    found = URL.search((root / "pyproject.toml").read_text())
    if not found:
        raise SystemExit(f"{root / 'pyproject.toml'} has no [project.urls] Repository = "
                         '"https://github.com/OWNER/NAME"')
    return found.group(1)


def linked_files(root: Path = ROOT) -> list[Path]:
    """Every file that links to the repository: the README's and notebooks' badges, Colab cells."""
    notebooks = root / "notebooks"
    return [root / "pyproject.toml", root / "README.md", *sorted(notebooks.glob("*.py")),
            *sorted(notebooks.glob("*.ipynb")), *sorted((notebooks / "solutions").glob("*.py"))]


def repoint(new: str, root: Path = ROOT) -> list[Path]:
    """Point every badge, Colab clone and pyproject's URL at github.com/<new>; the files changed."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", new):
        raise SystemExit(f"expected OWNER/NAME, e.g. minitml/minitml, got {new!r}")
    old = repository(root)
    # github.com/OLD (links, clones), colab.../github/OLD/..., mybinder.org/v2/gh/OLD/...
    pattern = re.compile(r"(github\.com/|/github/|/gh/)" + re.escape(old) + r"(?=[/\s\"')]|$)")
    changed = []
    for path in linked_files(root):
        text = path.read_text()
        new_text = pattern.sub(lambda m: m.group(1) + new, text)
        if new_text != text:
            path.write_text(new_text)
            changed.append(path)
    return changed


def repo(args) -> int:
    if args.address is None:
        print(repository())
        return 0
    changed = repoint(args.address)
    print(f"github.com/{args.address} in {len(changed)} files")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minitml")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="the duplex demo, headless: a wav, a timeline PNG and a report")
    p.add_argument("--out", default="out/demo", help="folder for conversation.wav, timeline.png, report.md")
    p.add_argument("--kinds", default=None, help="comma-separated scenario kinds (default: all nine)")
    p.add_argument("--seed", type=int, default=0, help="held-out scenario seed")
    p.add_argument("--checkpoint", default=None,
                   help="default: data/tiny.pt (data/small.pt on a GPU, if present)")
    p.add_argument("--device", default=None, help="default: cuda when there is a GPU, else cpu")
    p.set_defaults(func=demo)
    p = sub.add_parser("presets", help="parameter counts and costs of the presets")
    p.set_defaults(func=presets)
    p = sub.add_parser("plan", help="memory, FLOPs and GPUs to train and to serve each preset")
    p.add_argument("--presets", default=None, help="comma-separated (default: all three)")
    p.add_argument("--gpu", default="H100-SXM", help="A100-80GB, H100-SXM or H200 (datasheet figures)")
    p.add_argument("--sessions", type=int, default=1000, help="concurrent live sessions to serve")
    p.add_argument("--days", type=float, default=30, help="wall-clock days to train in")
    p.set_defaults(func=plan)
    p = sub.add_parser("data", help="generate toy conversations into token shards")
    p.add_argument("--split", default="train", choices=["train", "heldout"])
    p.add_argument("--n", type=int, default=450, help="dialogues (450 is about an hour)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder (default: the cache, $MINITML_CACHE)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true")
    from minitml.world.voices import SPEAKERS

    p.add_argument("--speakers", default=SPEAKERS[0], choices=SPEAKERS,
                   help="training users from 66 voices (few) or 348 (many); held-out is the same")
    p.set_defaults(func=data)
    p = sub.add_parser("train", help="train a model on the toy world")
    from minitml.train import TrainConfig

    defaults = TrainConfig()  # one home for the recipe: every default below is TrainConfig's
    for name, help_text in TRAIN_OPTIONS.items():
        value = getattr(defaults, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value, help=help_text)
    p.add_argument("--resume", default=None,
                   help="a checkpoint to continue from: last.pt, or a last.dcp folder at any world size")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto: bf16 on a GPU, fp32 on a CPU")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile each block's attention and dense FFN")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute each block in backward: less memory, more compute")
    p.add_argument("--expert-parallel", action="store_true",
                   help="under torchrun: each process owns n_experts/world experts; tokens travel to them")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 is steadier on a shared machine")
    p.set_defaults(func=train)
    p = sub.add_parser("repo", help="the repository every badge and Colab cell points at; re-point them")
    p.add_argument("address", nargs="?", default=None, help="OWNER/NAME to point them at (default: print)")
    p.set_defaults(func=repo)
    p = sub.add_parser("eval", help="closed-loop evaluation on held-out scenarios")
    p.add_argument("--checkpoint", default=None,
                   help="default: the shipped data/tiny.pt; a file, or a sharded .dcp folder")
    p.add_argument("--n", type=int, default=50, help="scenarios per kind")
    p.add_argument("--kinds", default=None, help="comma-separated (default: all nine)")
    p.add_argument("--split", default="heldout", choices=["heldout", "train"],
                   help="held-out voices and phrasings (the benchmark), or the training ones")
    p.add_argument("--out", default="out/eval")
    p.add_argument("--transcribe", action="store_true",
                   help="also score what a speech recognizer hears in the output audio (minitml.listen); "
                        "output.json then holds its transcript, as the benchmark's pipeline does")
    p.add_argument("--speak-threshold", default="0.5",
                   help="greedy decoding speaks when P(speak) is above this; 'calibrated': w / (1 + w) "
                        "for a model trained with word targets weighing w (minitml.generator)")
    p.set_defaults(func=evaluate_cmd)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
