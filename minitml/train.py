"""Training: teach the interaction model when to speak, and what, from toy conversations.

    python -m minitml train --preset tiny --steps 1000 --threads 1 --out out/train

One process, CPU or GPU. Each step takes a batch of whole conversations,
packed as micro-turn blocks (the assistant's channel shifted one micro-turn),
and minimises

    loss = CE(monologue words) + CE(dMel bins)  [+ MoE balance and z losses]

with AdamW, a linear warm-up then a cosine decay of the learning rate, and
gradient clipping. MoE layers with the sigmoid router get their balancing bias
nudged after each step. Every `eval_every` steps the same loss is measured on
held-out conversations (held-out voices and templates). Checkpoints carry the
config, the vocabulary, the step, the optimiser and the random state, so a run
resumes exactly where it stopped; on a CPU with a fixed thread count, the same
seed gives the same run bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minitml.config import Config, get_config
from minitml.model import InteractionModel
from minitml.moe import MoE
from minitml.stream import Blocks, empty_blocks


@dataclass
class TrainConfig:
    preset: str = "tiny"  # model preset (minitml.config.get_config)
    train_dialogues: int = 6000  # generated training conversations (about 14 hours)
    val_dialogues: int = 180  # held-out conversations for validation
    data_seed: int = 0  # seed of both datasets
    batch_size: int = 16  # conversations per step
    max_turns: int = 70  # longer conversations are cropped (70 micro-turns = 14 s: none is)
    steps: int = 1000  # optimiser steps
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm
    text_weight: float = 1.0  # weight of the monologue-word loss
    word_weight: float = 1.0  # weight of a word target against a PAD target inside it
    mel_weight: float = 1.0  # weight of the dMel loss
    eval_every: int = 100  # steps between validations (and checkpoints)
    seed: int = 0  # model init and batch order
    device: str = "auto"  # "auto": cuda if available, else cpu
    out: str = "out/train"  # checkpoints, losses and plots go here


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up to tc.lr, then a cosine down to tc.lr * tc.min_lr_ratio."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    progress = min(1.0, (step - tc.warmup) / max(1, tc.steps - tc.warmup))
    floor = tc.lr * tc.min_lr_ratio
    return floor + (tc.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def collate(items: list[Blocks], cfg: Config, max_turns: int) -> Blocks:
    """Conversations of different lengths -> one batch, cropped or padded with silence."""
    T = min(max_turns, max(b.n_turns for b in items))
    padded = []
    for b in items:
        b = b.turns(0, min(T, b.n_turns))
        if b.n_turns < T:  # silence after the end of a conversation is natural
            b = Blocks.cat([b, empty_blocks(cfg, T - b.n_turns)], dim=1)
        padded.append(b)
    return Blocks.cat(padded, dim=0)


class Trainer:
    def __init__(self, tc: TrainConfig, train_examples: list, val_examples: list,
                 cfg: Config | None = None, vocab: list[str] | None = None):
        from minitml.world.dataset import to_blocks

        self.tc = tc
        self.cfg = cfg or get_config(tc.preset)
        self.vocab = vocab
        self.to_blocks = to_blocks
        if tc.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(tc.device)
        torch.manual_seed(tc.seed)
        self.model = InteractionModel(self.cfg).to(self.device)
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
        keep = [p for n, p in self.model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": tc.weight_decay}, {"params": keep, "weight_decay": 0.0}],
            lr=tc.lr, betas=(0.9, 0.95), fused=self.device.type == "cuda")
        self.train_examples, self.val_examples = train_examples, val_examples
        self.generator = torch.Generator().manual_seed(tc.seed)
        self.step = 0
        self.history: list[dict] = []

    # -- batches ---------------------------------------------------------------------
    def batch(self, examples: list, indices: list[int]) -> Blocks:
        items = [self.to_blocks(examples[i], self.cfg) for i in indices]
        return collate(items, self.cfg, self.tc.max_turns).to(self.device)

    def next_indices(self) -> list[int]:
        n = len(self.train_examples)
        return torch.randint(0, n, (self.tc.batch_size,), generator=self.generator).tolist()

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    # -- one step ---------------------------------------------------------------------
    def train_step(self) -> dict:
        self.model.train()
        blocks = self.batch(self.train_examples, self.next_indices())
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.tc)
        with self.autocast():
            losses = self.model.loss(blocks, self.tc.text_weight, self.tc.mel_weight,
                                     word_weight=self.tc.word_weight)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            for module in self.model.modules():
                if isinstance(module, MoE) and module.cfg.router == "sigmoid":
                    module.update_bias(module.last_load)
        self.step += 1
        tokens = blocks.batch_size * blocks.n_turns * self.model.layout.length
        return {"step": self.step, "lr": lr_at(self.step - 1, self.tc), "grad_norm": float(norm),
                "tokens": tokens, **{k: float(v.detach()) for k, v in losses.items()}}

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        totals: dict[str, float] = {}
        n = len(self.val_examples)
        for start in range(0, n, self.tc.batch_size):
            blocks = self.batch(self.val_examples, list(range(start, min(n, start + self.tc.batch_size))))
            with self.autocast():
                losses = self.model.loss(blocks, self.tc.text_weight, self.tc.mel_weight,
                                         word_weight=self.tc.word_weight)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v) * blocks.batch_size
        return {f"val_{k}": v / n for k, v in totals.items()}

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        return self.model.save(path, vocab=self.vocab, step=self.step, extra={
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "train_config": asdict(self.tc),
            "history": json.dumps(self.history),
        })

    def resume(self, path: Path) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        loaded = InteractionModel.from_checkpoint(path, expect=self.cfg, vocab=self.vocab)
        self.model.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(ckpt["extra"]["optimizer"])
        self.generator.set_state(ckpt["extra"]["generator"])
        torch.set_rng_state(ckpt["extra"]["torch_rng"])
        self.step = ckpt["step"]
        self.history = json.loads(ckpt["extra"]["history"])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, progress: bool = True, until: int | None = None) -> list[dict]:
        """Train to tc.steps (or stop early at step `until`: call fit again to go on)."""
        from tqdm.auto import tqdm

        out = Path(self.tc.out)
        out.mkdir(parents=True, exist_ok=True)
        stop = self.tc.steps if until is None else min(until, self.tc.steps)
        bar = tqdm(total=stop, initial=self.step, desc="training", disable=not progress)
        start, tokens = time.perf_counter(), 0
        while self.step < stop:
            row = self.train_step()
            tokens += row["tokens"]
            row["elapsed_s"] = time.perf_counter() - start  # wall time of this fit call
            row["tokens_per_s"] = tokens / row["elapsed_s"]
            if self.step % self.tc.eval_every == 0 or self.step == self.tc.steps:
                row.update(self.validate())
                self.history.append(row)
                self.save(out / "last.pt")
                plot_losses(self.history, out / "losses.png")
            else:
                self.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            bar.update(1)
        bar.close()
        if self.step == self.tc.steps:
            (out / "history.json").write_text(json.dumps(self.history))
            # the weights alone (no optimiser state): a third of the size, what gets shipped
            self.model.save(out / "model.pt", vocab=self.vocab, step=self.step,
                            extra={"train_config": asdict(self.tc), "history": json.dumps(self.history)})
        return self.history


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = [h["step"] for h in history]
    for key, style in (("text", "-"), ("mel", "-")):
        ax.plot(steps, [h[key] for h in history], style, lw=0.8, alpha=0.6, label=f"train {key}")
    val = [h for h in history if "val_loss" in h]
    for key in ("text", "mel"):
        ax.plot([h["step"] for h in val], [h[f"val_{key}"] for h in val], "o-", label=f"held-out {key}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
