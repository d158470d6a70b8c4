"""Training: teach the interaction model when to speak, and what, from toy conversations.

    python -m minitml train --threads 1 --out out/train   # make train: TrainConfig's recipe
    torchrun --nproc-per-node 2 -m minitml train ...     # the same run over 2 processes

Each step takes a batch of whole conversations, packed as micro-turn blocks
(the assistant's channel shifted one micro-turn), and minimises

    loss = CE(monologue words) + CE(dMel bins) + heard_weight * CE(heard user words)
           [+ seen_weight * CE(seen words)] [+ MoE balance and z losses]

(word targets weighted against PAD: `word_weight`, `reply_weight`), with AdamW, a
linear warm-up, the learning rate held, then a cosine decay over the last `decay`
share of the steps (`schedule "wsd"`), and gradient clipping. MoE layers with the
sigmoid router get their balancing bias nudged after each step. Every `eval_every`
steps the same loss is measured on held-out conversations (held-out voices and
templates), with the probes (`Trainer.validate`). Checkpoints carry the
config, the vocabulary, the step, the optimiser and the random state, so a run
resumes exactly where it stopped; on a CPU with a fixed thread count, the same
seed gives the same run bit for bit.

One process, CPU or GPU, by default. Under torchrun the weights are sharded
over the processes with FSDP2 and checkpoints are written in shards
(minitml/distributed.py explains both); the global batch, and so the run, stay
the same. Options for large models: bf16 (the default on a GPU), activation
checkpointing (recompute each block in backward: less memory, about a third
more compute), torch.compile of the attention and dense FFNs, and expert
parallelism (minitml/expert_parallel.py).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

from minitml import checkpoint
from minitml.config import Config, get_config
from minitml.distributed import (
    Dist,
    full_state_dict,
    global_batch_slice,
    load_full,
    load_sharded,
    mean_over_processes,
    resolve_device,
    save_sharded,
    shard,
    sum_over_processes,
)
from minitml.expert_parallel import check_layout
from minitml.model import (
    REPLY_GAP_SLOTS,
    InteractionModel,
    dense_weights,
    dense_words,
    reply_starts,
    word_weights,
)
from minitml.moe import MoE
from minitml.protocol import CALL, END_CALL, PAD
from minitml.stream import Blocks, empty_blocks, output_slot
from minitml.world.facts import QUESTION_GROUPS, question_group

DECISIONS = (CALL, END_CALL)  # words weighted like a reply's first word


@dataclass
class TrainConfig:
    preset: str = "tiny"  # model preset (minitml.config.get_config)
    train_dialogues: int = 6000  # generated training conversations (about 14 hours)
    val_dialogues: int = 180  # held-out conversations for validation
    data_seed: int = 0  # seed of both datasets
    batch_size: int = 16  # conversations per step
    max_turns: int = 70  # longer conversations are cropped (70 micro-turns = 14 s: none is)
    steps: int = 1500  # optimiser steps
    lr: float = 3e-3  # peak learning rate
    schedule: str = "wsd"  # "wsd" (warm-up, stable, decay) or "cosine" (warm-up, then a cosine)
    decay: float = 0.2  # wsd: the share of the steps at the end that decay to the floor
    min_lr_ratio: float = 0.1  # the schedule ends at lr * min_lr_ratio
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm
    text_weight: float = 1.0  # weight of the monologue-word loss
    word_weight: float = 5.0  # weight of a word target against a PAD target inside it
    reply_weight: float = 2.0  # extra weight of a reply's first word and of <call> / </call>
    value_weight: float = 1.0  # extra weight of the asked-for value words of a reply (the colour, the sum)
    mel_weight: float = 1.0  # weight of the dMel loss
    heard_weight: float = 1.0  # weight of the heard-word loss (0 for a model without a heard head)
    heard_pad_weight: float = 0.1  # weight of a PAD target against a word in the heard loss (and the seen)
    seen_weight: float = 0.0  # weight of the seen-word loss (> 0 adds a seen head: ModelConfig.seen_head)
    kinds: str = ""  # training scenario kinds, comma-separated; one named twice is drawn twice as often
    #                  ("": all nine in turn)
    speakers: str = "few"  # training users' voices: "few" (66) or "many" (348; world/voices.py)
    voice_shift: int = 0  # training users' mel channels move by up to this many (perturb_voices)
    voice_level: int = 0  # and their levels by up to this many dMel bins
    own_speech: float = 0.5  # in the decay: share of conversations hearing the model's own dMel
    heard_feedback: int = 0  # 1: the model reads back what its heard head names (ModelConfig.heard_feedback)
    seen_feedback: int = 0  # 1: the model reads back what its seen head names (needs seen_weight > 0)
    embed_norm: int = 1  # 1: patches, dMel and words each through an RMSNorm (ModelConfig.embed_norm)
    heard_noise: float = 0.5  # with it: share of the true heard words read back missed or misheard
    eval_every: int = 100  # steps between validations (and checkpoints)
    keep_every: int = 300  # one process: also keep step<N>.pt every this many steps (0: never)
    seed: int = 0  # model init and batch order
    device: str = "auto"  # "auto": cuda if available, else cpu
    precision: str = "auto"  # "auto" (bf16 on a GPU, fp32 on a CPU), "bf16" or "fp32"
    activation_checkpointing: bool = False  # keep only block inputs; recompute the rest in backward
    compile: bool = False  # torch.compile attention and dense FFNs (MoE dispatch stays eager)
    expert_parallel: bool = False  # sharded runs: each process owns n_experts / world of the experts
    out: str = "out/train"  # checkpoints, losses and plots go here


def lr_at(step: int, tc: TrainConfig) -> float:
    """The learning rate of a step: a linear warm-up to tc.lr, then

    cosine  a cosine from tc.lr down to tc.lr * tc.min_lr_ratio at the last step;
    wsd     tc.lr held (stable) until the last `decay` share of the steps, then the same
            cosine down to the floor over those. The stable part does not depend on
            tc.steps, so a run of any length is the same run until its decay starts: a
            checkpoint from the stable part resumes into a shorter run's decay, or on into
            a longer one (keep_every keeps those checkpoints)."""
    if tc.schedule not in ("wsd", "cosine"):
        raise ValueError(f"schedule must be 'wsd' or 'cosine', got {tc.schedule!r}")
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    start = tc.warmup if tc.schedule == "cosine" else decay_start(tc)
    if step < start:
        return tc.lr
    progress = min(1.0, (step - start) / max(1, tc.steps - start))
    floor = tc.lr * tc.min_lr_ratio
    return floor + (tc.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def decay_start(tc: TrainConfig) -> int:
    """wsd: the first step of the decay (the stable part is [warmup, decay_start))."""
    return max(tc.warmup, tc.steps - round(tc.decay * tc.steps))


def collate(items: list[Blocks], cfg: Config, max_turns: int, turns: int | None = None) -> Blocks:
    """Conversations of different lengths -> one batch, cropped or padded with silence.

    The batch is as long as its longest conversation (at most max_turns), or
    exactly `turns` micro-turns when given (every process of a sharded run pads
    its share of the batch to the length of the whole batch)."""
    T = min(max_turns, max(b.n_turns for b in items)) if turns is None else turns
    padded = []
    for b in items:
        b = b.turns(0, min(T, b.n_turns))
        if b.n_turns < T:  # silence after the end of a conversation is natural
            b = Blocks.cat([b, empty_blocks(cfg, T - b.n_turns)], dim=1)
        padded.append(b)
    return Blocks.cat(padded, dim=0)


def perturb_voices(user_audio: torch.Tensor, seeds: list[int], shift: int, level: int,
                   n_bins: int) -> torch.Tensor:
    """(B, T, A, k, 80) dMel tokens heard -> the same, each dialogue's user a little changed.

    The held-out users speak in accents and voices no training user has; two cheap
    perturbations of the tokens make the training voices more varied:
    - a longer or shorter vocal tract moves every formant by about the same factor,
      which on the mel scale is about the same number of channels: dialogue b's 80
      channels move by s_b channels, s_b drawn from -shift..shift (the edge channel
      fills in);
    - a louder or quieter voice moves every log-mel level by the same amount: each
      sounding bin moves by o_b bins, o_b drawn from -level..level, and stays sounding
      (silence, bin 0, stays silence).
    Dialogue b draws from its own seed, seeds[b], so a batch's perturbation depends on
    nothing but the step and the dialogue's place in the global batch (runs resume and
    shard exactly)."""
    out = torch.empty_like(user_audio)
    n_mels = user_audio.shape[-1]
    channels = torch.arange(n_mels, device=user_audio.device)
    for b, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        s = int(torch.randint(-shift, shift + 1, (), generator=g))
        o = int(torch.randint(-level, level + 1, (), generator=g))
        source = (channels - s).clamp(0, n_mels - 1)  # channel c hears channel c - s
        x = user_audio[b][..., source]
        out[b] = torch.where(x > 0, (x + o).clamp(1, n_bins - 1), x)
    return out


def own_speech(model: InteractionModel, blocks: Blocks, rng: torch.Generator | None = None) -> torch.Tensor:
    """Blocks -> (B, T, A, k, 80): the dMel frames the model itself would say, slot by slot.

    In training, every output token embeds the recorded assistant audio of its slot; in a
    conversation it embeds the frames the model just drew, which are blurrier. A model
    that learned to read its next words off the recording meets its own speech only in
    use (exposure bias). These are its greedy frames given the true past (one forward
    pass, no gradient; a flow head draws them from rng): fed back in place of the
    recording (`model(blocks, said=...)`), with the recording still the target, they
    teach it to go on from its own voice."""
    with torch.no_grad():
        out = model(blocks)
        frames, _ = model.mel_head.sample(out.hidden, 0.0, rng)  # (B, T, A, k, 80)
    return frames.to(blocks.out_audio.dtype)


def mishear(heard_text: torch.Tensor, seeds: list[int], noise: float) -> torch.Tensor:
    """(B, T, A) true heard words -> the words read back in training (heard_feedback).

    In a conversation the model reads back what its own heard head named, and on a new
    voice that is often wrong; read back the truth only and it learns to trust its
    transcript blindly. So each true word is, with probability `noise`, missed (PAD) or
    misheard (another word of the same conversation), half and half. PAD stays PAD.
    Dialogue b draws from seeds[b] (runs resume and shard exactly)."""
    out = heard_text.clone()
    for b, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        said = heard_text[b][heard_text[b] != PAD].cpu()  # (n,) this conversation's words
        if said.numel() == 0:
            continue
        flat = out[b].view(-1)
        where = (flat != PAD).nonzero().flatten().cpu()  # (n,) their places
        hit = torch.rand(len(where), generator=g) < noise
        missed = torch.rand(len(where), generator=g) < 0.5
        other = said[torch.randint(0, len(said), (len(where),), generator=g)]
        new = torch.where(missed, torch.full_like(other, PAD), other)
        flat[where[hit]] = new[hit].to(flat.device)
    return out


def compile_blocks(model: InteractionModel) -> None:
    """torch.compile what has static shapes: each block's attention and dense FFN.

    A MoE layer's dropless dispatch has data-dependent shapes (how many tokens each
    expert receives changes every step), which would break the graph and recompile
    for new sizes; it stays eager."""
    for block in model.blocks:
        block.attn.compile()
        if not block.is_moe:
            block.ffn.compile()


def example_turns(example: dict) -> int:
    """Micro-turns of a stored conversation (one scene row per micro-turn)."""
    return len(example["scene"])


ASK_GROUPS = (*QUESTION_GROUPS, "cue", "tool")  # what `ask_group` names


def ask_group(ask: dict, transcript: list) -> str:
    """What an annotated ask ("asked": after, value, topic) answers: the template group of
    the user's line that ends at `after` ('q_legs': facts.question_group);
    "tool" for a delivered background result; "cue" for a reply to something seen."""
    lines = [text for who, _, end, text in transcript if who == "user" and abs(end - ask["after"]) < 1e-3]
    group = question_group(lines[0]) if lines else None
    return group or ("tool" if ask.get("topic") == "tool" else "cue")


def value_targets(example: dict, cfg: Config, turns: int, topic: str | None = None,
                  group: str | None = None) -> torch.Tensor:
    """(turns, A) bool: the word targets of `example` that carry an asked-for value.

    For every question in the annotations ("asked": after when, which value words),
    the reply that starts after it, and in that reply the words of the value, at
    the target slots where `pack_conversation` puts the monologue. topic: only the
    questions of that topic ("lookup": known or seen, "arithmetic": worked out).
    group: only the questions of that template group (`ask_group`: "q_legs", ...)."""
    from minitml.world.vocab import word_id

    A = cfg.audio.tokens_per_micro_turn
    slot_s = cfg.audio.micro_turn_ms / 1000 / A
    gap_s = REPLY_GAP_SLOTS * slot_s
    spoken = list(zip(example["assistant_word_ids"].tolist(), example["assistant_word_times"].tolist()))
    mask = torch.zeros(turns * A, dtype=torch.bool)
    annotations = json.loads(example["annotations"])
    for ask in annotations["asked"]:
        if topic is not None and ask.get("topic") != topic:
            continue
        if group is not None and ask_group(ask, annotations["transcript"]) != group:
            continue
        value = {word_id(w) for w in ask["value"]}
        reply = [(i, t) for i, t in spoken if t >= ask["after"] - 0.05]
        for k, (i, t) in enumerate(reply):
            if k > 0 and t - reply[k - 1][1] >= gap_s:
                break  # the reply is over
            slot = output_slot(cfg, t)
            if i in value and 0 <= slot < turns * A:
                mask[slot] = True
    return mask.view(turns, A)


def probe_counts(out, blocks: Blocks, values: torch.Tensor, known: torch.Tensor | None = None,
                 topics: dict[str, torch.Tensor] | None = None) -> list[tuple[str, int, int, torch.Tensor]]:
    """[(probe, targets predicted right, targets, (V,) count of each target id)] of one
    teacher-forced batch (argmax). The counts give each probe's control: always guessing
    the commonest target scores max(counts) / sum(counts). known: (V,) bool, the words
    training users say (probe_known counts the heard targets among them). topics: {topic:
    (B, T, A) bool}, the value words of that topic's questions (probe_value_<topic>)."""
    guess = out.text_logits.argmax(-1)  # (B, T, A)
    target = blocks.out_text
    right = guess == target
    words = target != PAD
    rows = [("probe_reply", reply_starts(target)), ("probe_value", values & words), ("probe_words", words)]
    rows += [(f"probe_value_{topic}", m & words) for topic, m in (topics or {}).items()]
    V = out.text_logits.shape[-1]
    counts = [(name, int((right & m).sum()), int(m.sum()), torch.bincount(target[m].cpu(), minlength=V))
              for name, m in rows]
    if out.heard_logits is not None:
        heard_right = out.heard_logits.argmax(-1) == blocks.heard_text
        masks = [("probe_heard", blocks.heard_text != PAD)]
        if known is not None:
            masks.append(("probe_known", (blocks.heard_text != PAD) & known.to(blocks.heard_text.device)[
                blocks.heard_text]))
        for name, m in masks:
            counts.append((name, int((heard_right & m).sum()), int(m.sum()),
                           torch.bincount(blocks.heard_text[m].cpu(), minlength=V)))
    if out.seen_logits is not None:
        m = blocks.seen_text != PAD
        seen_right = (out.seen_logits.argmax(-1) == blocks.seen_text) & m
        counts.append(("probe_seen", int(seen_right.sum()), int(m.sum()),
                       torch.bincount(blocks.seen_text[m].cpu(), minlength=V)))
    return counts


def said_by_users(examples: list, vocab_size: int) -> torch.Tensor | None:
    """(V,) bool: the words the users of `examples` say (None without examples). On held-out
    dialogues the heard head is asked for words no training user says ("which", "much": the
    held-out phrasings' own words); probe_known leaves those out. What it leaves in is still
    heard in new voices *and* in new sentences: it takes the new words away, not the new
    contexts."""
    if not examples:
        return None
    known = torch.zeros(vocab_size, dtype=torch.bool)
    known[torch.cat([e["user_word_ids"] for e in examples]).unique()] = True
    known[PAD] = False
    return known


class Trainer:
    def __init__(self, tc: TrainConfig, train_examples: list, val_examples: list,
                 cfg: Config | None = None, vocab: list[str] | None = None,
                 dist: Dist | None = None):
        from minitml.world.dataset import to_blocks

        # TrainConfig's model switches shape the preset's config. A config given is used as it
        # is (a checkpoint's, judged by validate), and tc records what it has.
        if tc.seen_feedback and tc.seen_weight <= 0:
            raise ValueError("seen_feedback=1 reads back what the seen head names, and seen_weight=0 "
                             "trains no seen head: give seen_weight > 0 (--seen-weight 1)")
        if cfg is None:
            preset = get_config(tc.preset)
            m = preset.model
            cfg = replace(preset, model=replace(
                m, heard_feedback=m.heard_feedback or bool(tc.heard_feedback),
                embed_norm=m.embed_norm or bool(tc.embed_norm), seen_head=m.seen_head or tc.seen_weight > 0,
                seen_feedback=m.seen_feedback or bool(tc.seen_feedback)))
        self.cfg = cfg
        self.tc = tc = replace(tc, heard_feedback=int(cfg.model.heard_feedback),
                               embed_norm=int(cfg.model.embed_norm),
                               seen_feedback=int(cfg.model.seen_feedback))
        if tc.seen_weight > 0 and not self.cfg.model.seen_head:
            raise ValueError(f"seen_weight={tc.seen_weight} trains the seen head, and this config has "
                             "none: set model.seen_head=True, or seen_weight=0")
        if tc.heard_weight > 0 and not self.cfg.model.heard_head:
            raise ValueError(f"heard_weight={tc.heard_weight} trains the heard head, and this config has "
                             "none: use a preset with one (tiny, small), set model.heard_head=True, "
                             "or heard_weight=0")
        # <call> and </call> are decisions as rare as a reply's first word (reply_weight)
        self.decision_ids = tuple(vocab.index(w) for w in DECISIONS if w in vocab) if vocab else ()
        self.vocab = vocab
        self.to_blocks = to_blocks
        if dist is None:
            dist = Dist(device=torch.device(resolve_device(tc.device)))
        self.dist, self.device = dist, dist.device
        if tc.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {tc.precision!r}")
        self.bf16 = tc.precision == "bf16" or (tc.precision == "auto" and self.device.type == "cuda")
        torch.manual_seed(tc.seed)  # the same initial weights in every process
        self.model = InteractionModel(self.cfg).to(self.device)
        self.model.word_weight = tc.word_weight  # for decoding (generator.calibrated_threshold)
        self.model.heard_pad_weight = tc.heard_pad_weight  # for reading back (model.dense_words)
        self.model.activation_checkpointing = tc.activation_checkpointing
        if tc.compile:
            compile_blocks(self.model)
        if tc.expert_parallel:
            check_layout(self.cfg.moe.n_experts, dist.world_size)
        if dist.sharded:
            shard(self.model, bf16=self.bf16, expert_parallel=tc.expert_parallel)
        named = list(self.model.named_parameters())
        decay = [(n, p) for n, p in named if p.dim() >= 2 and "embedding" not in n]
        keep = [(n, p) for n, p in named if not (p.dim() >= 2 and "embedding" not in n)]
        self.param_names = [n for n, _ in decay + keep]  # the optimizer's order of parameters
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for _, p in decay], "weight_decay": tc.weight_decay},
             {"params": [p for _, p in keep], "weight_decay": 0.0}],
            lr=tc.lr, betas=(0.9, 0.95), fused=self.device.type == "cuda")
        self.train_examples, self.val_examples = train_examples, val_examples
        self.known_words = said_by_users(train_examples, self.cfg.model.text_vocab_size)
        self.generator = torch.Generator().manual_seed(tc.seed)
        self.step = 0
        self.history: list[dict] = []

    # -- batches ---------------------------------------------------------------------
    def batch(self, examples: list, indices: list[int]) -> Blocks:
        """This process's share of the global batch `indices`, padded to the whole batch's length."""
        turns = min(self.tc.max_turns, max(example_turns(examples[i]) for i in indices))
        mine = global_batch_slice(indices, self.dist)
        items = [self.to_blocks(examples[i], self.cfg) for i in mine]
        return collate(items, self.cfg, self.tc.max_turns, turns).to(self.device)

    def next_indices(self) -> list[int]:
        """The global batch: every process draws the same indices from the same generator."""
        n = len(self.train_examples)
        return torch.randint(0, n, (self.tc.batch_size,), generator=self.generator).tolist()

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    # -- one step ---------------------------------------------------------------------
    def train_step(self) -> dict:
        self.model.train()
        indices = self.next_indices()
        blocks = self.batch(self.train_examples, indices)
        values = self.values(self.train_examples, indices, blocks) if self.tc.value_weight != 1.0 else None
        if self.tc.voice_shift or self.tc.voice_level:
            step_seed, first = self.draw_place(blocks)
            seeds = [step_seed * 4096 + first + b for b in range(blocks.batch_size)]
            blocks.user_audio = perturb_voices(blocks.user_audio, seeds, self.tc.voice_shift,
                                               self.tc.voice_level, self.cfg.audio.n_bins)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.tc)
        with self.autocast():
            said, heard = self.said(blocks), self.read_back(blocks)
            out = None if said is None and heard is None else self.model(blocks, said, heard)
            losses = self.loss(blocks, out, values)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        if isinstance(norm, DTensor):  # sharded: the norm over all shards, on every process
            norm = norm.full_tensor()
        self.optimizer.step()
        with torch.no_grad():
            for module in self.model.modules():
                if isinstance(module, MoE) and module.cfg.router == "sigmoid":
                    module.update_bias(sum_over_processes(module.last_load.clone(), self.dist))
        self.step += 1
        tokens = len(indices) * blocks.n_turns * self.model.layout.length  # the whole global batch
        losses = mean_over_processes({k: float(v.detach()) for k, v in losses.items()}, self.dist)
        return {"step": self.step, "lr": lr_at(self.step - 1, self.tc), "grad_norm": float(norm),
                "tokens": tokens, **losses}

    def draw_place(self, blocks: Blocks) -> tuple[int, int]:
        """(this step's seed, the place of this process's first conversation in the global
        batch): what a step's random choices are drawn from, so that they depend on nothing
        else (runs resume and shard exactly)."""
        return self.tc.seed * 1_000_003 + self.step, self.dist.rank * blocks.batch_size

    def said(self, blocks: Blocks) -> torch.Tensor | None:
        """What this step's conversations hear themselves say (None: the recording, all of
        them). In the decay (from `decay_start` on) a tc.own_speech share of them, drawn
        from the step and each one's place in the global batch (runs resume and shard
        exactly), hears `own_speech`. Only then: early on the model's own frames are noise,
        and a wsd run's stable part stays the same whatever its length, so a long run's
        checkpoint still branches into a shorter run's decay."""
        if not self.tc.own_speech or self.step < decay_start(self.tc):
            return None
        step_seed, first = self.draw_place(blocks)
        g = torch.Generator().manual_seed(step_seed)
        mine = torch.rand(first + blocks.batch_size, generator=g)[first:] < self.tc.own_speech
        if not mine.any():
            return None
        mine = mine.to(self.device)
        frames = own_speech(self.model, blocks, torch.Generator().manual_seed(self.step))
        return torch.where(mine.view(-1, 1, 1, 1, 1), frames, blocks.out_audio)

    def read_back(self, blocks: Blocks) -> torch.Tensor | None:
        """The words this step's conversations read back (heard_feedback): the true ones,
        `mishear`d at tc.heard_noise. None: the true ones (or no read-back at all)."""
        if not self.cfg.model.heard_feedback or not self.tc.heard_noise:
            return None
        step_seed, first = self.draw_place(blocks)
        # perturb_voices' seeds, made odd: the same step draws other numbers for this
        seeds = [(step_seed * 4096 + first + b) * 2 + 1 for b in range(blocks.batch_size)]
        return mishear(blocks.heard_text, seeds, self.tc.heard_noise)

    def own_heard(self, blocks: Blocks, said: torch.Tensor | None = None) -> torch.Tensor | None:
        """With heard_feedback: the words the model's own heard head names (`dense_words`,
        from a first pass that reads back the true ones), so the probes measure a
        reply that reads back its own transcript, as in a conversation. Else None."""
        if not self.cfg.model.heard_feedback:
            return None
        first = self.model(blocks, said)
        return dense_words(first.heard_logits, self.tc.heard_pad_weight)

    def values(self, examples: list, indices: list[int], blocks: Blocks,
               topic: str | None = None) -> torch.Tensor:
        """(B, T, A) bool: the asked-for value words of this process's share of the batch
        (of one topic's questions only, if given: `value_targets`)."""
        mine = global_batch_slice(indices, self.dist)
        return torch.stack([value_targets(examples[i], self.cfg, blocks.n_turns, topic)
                            for i in mine]).to(self.device)

    def loss(self, blocks: Blocks, out=None, values: torch.Tensor | None = None) -> dict:
        tc = self.tc
        return self.model.loss(blocks, tc.text_weight, tc.mel_weight, out=out,
                               word_weight=tc.word_weight, reply_weight=tc.reply_weight,
                               decision_ids=self.decision_ids, heard_weight=tc.heard_weight,
                               heard_pad_weight=tc.heard_pad_weight, seen_weight=tc.seen_weight,
                               denominators=self.denominators(blocks, values),
                               values=values, value_weight=tc.value_weight)

    def denominators(self, blocks: Blocks, values: torch.Tensor | None = None) -> dict[str, float] | None:
        """Sharded: this process's share of the whole global batch's sums of loss weights.

        The word and heard losses are weighted means; each process holds a slice of the
        batch with its own sum of weights, and the reduce-scatter averages the gradients.
        Dividing every slice by (global sum / world size) makes that average the global
        batch's weighted mean, so the run stays the one-process run. One process: None."""
        if not self.dist.sharded:
            return None
        tc = self.tc
        sums = torch.stack([
            word_weights(blocks.out_text, tc.word_weight, tc.reply_weight, self.decision_ids, values,
                         tc.value_weight).sum(),
            dense_weights(blocks.heard_text, tc.heard_pad_weight).sum(),
            dense_weights(blocks.seen_text, tc.heard_pad_weight).sum()]).double()
        sums = sum_over_processes(sums.to(self.device), self.dist) / self.dist.world_size
        return {"text": float(sums[0]), "heard": float(sums[1]), "seen": float(sums[2])}

    @torch.no_grad()
    def validate(self, own: bool = False) -> dict:
        """Held-out losses, and the probes: teacher-forced accuracy of the words that matter.

            val_<loss>       each loss, as in training
            probe_reply      a reply's first word (greedy argmax, given the true past)
            probe_value      the asked-for value words of each reply (the colour, the sum)
            probe_words      every monologue word
            probe_heard      the heard head naming each user word where it ends
            probe_known      the same, on the words that training users say too
            probe_seen       the seen head naming what each patch shows (with a seen head)

        Each probe_* rate comes with probe_*_n, the number of targets it counts, and
        probe_*_chance, its control: always guessing the commonest of those targets.
        own=True feeds the model its own frames (`own_speech`) instead of the recorded
        ones, as a conversation does: the gap to own=False is its exposure bias."""
        self.model.eval()
        totals: dict[str, float] = {}
        hits: dict[str, int] = {}
        seen: dict[str, torch.Tensor] = {}  # per probe, how often each target id came
        # Sharded, every batch must split evenly: drop the last n % world conversations.
        n = len(self.val_examples) - len(self.val_examples) % self.dist.world_size
        for start in range(0, n, self.tc.batch_size):
            indices = list(range(start, min(n, start + self.tc.batch_size)))
            blocks = self.batch(self.val_examples, indices)
            with self.autocast():
                said = own_speech(self.model, blocks) if own else None
                out = self.model(blocks, said, self.own_heard(blocks, said))
                losses = self.loss(blocks, out)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v) * blocks.batch_size
            values = self.values(self.val_examples, indices, blocks)
            topics = {topic: self.values(self.val_examples, indices, blocks, topic) for topic in TOPICS}
            for name, n_hit, n_all, ids in probe_counts(out, blocks, values, self.known_words, topics):
                hits[name] = hits.get(name, 0) + n_hit
                hits[name + "_n"] = hits.get(name + "_n", 0) + n_all
                seen[name] = seen.get(name, 0) + ids
        totals = mean_over_processes(totals, self.dist)  # each process saw 1/world of every batch
        keys = sorted(hits)  # counts add up over the processes' shares
        summed = sum_over_processes(torch.tensor([hits[k] for k in keys], device=self.device), self.dist)
        hits = dict(zip(keys, summed.tolist()))
        row = {f"val_{k}": v / (n / self.dist.world_size) for k, v in totals.items()}
        for name in [k for k in hits if not k.endswith("_n")]:
            row[name] = hits[name] / max(1, hits[name + "_n"])
            row[name + "_n"] = hits[name + "_n"]
        for name, ids in sorted(seen.items()):  # the control: always guessing the commonest target
            ids = sum_over_processes(ids.to(self.device), self.dist)
            row[name + "_chance"] = float(ids.max() / ids.sum().clamp(min=1))
        return row

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """One file (`last.pt`) in one process; a folder of shards (`last.dcp`) when sharded."""
        if self.dist.sharded:
            return save_sharded(path.with_suffix(".dcp"), self.model, self.optimizer, self.dist, meta={
                "vocab": self.vocab, "step": self.step,
                "generator": self.generator.get_state().tolist(),
                "train_config": asdict(self.tc), "history": self.history,
            })
        return checkpoint.save(self.model, path, vocab=self.vocab, step=self.step, extra={
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "train_config": asdict(self.tc),
            "history": json.dumps(self.history),
        })

    def resume(self, path: Path) -> None:
        """Continue from `last.pt` or a `last.dcp` folder, in one process or in several."""
        path = Path(path)
        if path.is_dir():
            meta = load_sharded(path, self.model, self.optimizer, expect=self.cfg)
            self.generator.set_state(torch.tensor(meta["generator"], dtype=torch.uint8))
            self.step, self.history = meta["step"], meta["history"]
            return
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        loaded = checkpoint.load(path, expect=self.cfg, vocab=self.vocab)
        if self.dist.sharded:  # every process cuts its shards out of the full tensors
            load_full(self.model, self.optimizer, loaded.state_dict(), ckpt["extra"]["optimizer"],
                      self.param_names)
        else:
            self.model.load_state_dict(loaded.state_dict())
            self.optimizer.load_state_dict(ckpt["extra"]["optimizer"])
        self.generator.set_state(ckpt["extra"]["generator"])
        torch.set_rng_state(ckpt["extra"]["torch_rng"])
        self.step = ckpt["step"]
        self.history = json.loads(ckpt["extra"]["history"])

    def save_weights(self, path: Path) -> None:
        """The weights alone in the one-file format (what gets shipped), from any number of processes."""
        state = full_state_dict(self.model) if self.dist.sharded else None
        if self.dist.is_main:
            checkpoint.save(self.model, path, vocab=self.vocab, step=self.step, state=state,
                            extra={"train_config": asdict(self.tc), "history": json.dumps(self.history)})

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, progress: bool = True, until: int | None = None) -> list[dict]:
        """Train to tc.steps (or stop early at step `until`: call fit again to go on)."""
        from tqdm.auto import tqdm

        out = Path(self.tc.out)
        out.mkdir(parents=True, exist_ok=True)
        stop = self.tc.steps if until is None else min(until, self.tc.steps)
        main = self.dist.is_main
        bar = tqdm(total=stop, initial=self.step, desc="training", disable=not (progress and main))
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
                if main and self.tc.keep_every and self.step % self.tc.keep_every == 0 \
                        and not self.dist.sharded:
                    shutil.copyfile(out / "last.pt", out / f"step{self.step}.pt")
                if main:
                    plot_losses(self.history, out / "losses.png")
            else:
                self.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            bar.update(1)
        bar.close()
        if self.step == self.tc.steps:
            if main:
                (out / "history.json").write_text(json.dumps(self.history))
            # the weights alone (no optimiser state): a third of the size, what gets shipped
            self.save_weights(out / "model.pt")
        return self.history


def legs_s(history: list[dict]) -> list[float]:
    """Wall time of each `fit` call of a run, in seconds. A run resumed from a checkpoint
    restarts its clock (`elapsed_s`), so each leg ends where the clock next goes back."""
    return [h["elapsed_s"] for i, h in enumerate(history)
            if i + 1 == len(history) or history[i + 1]["elapsed_s"] < h["elapsed_s"]]


PROBES = ("probe_reply", "probe_value", "probe_words", "probe_heard", "probe_known", "probe_seen")
TOPICS = ("lookup", "arithmetic")  # probe_value_<topic>: the value words of one kind of question


def plot_probes(ax, history: list[dict], x: str = "step") -> None:
    """The held-out probes of a run's history against `x` ("step" or "tokens", the tokens
    trained on so far), each with its control dashed: always guessing the commonest target."""
    seen, rows = 0, []
    for h in history:
        seen += h.get("tokens", 0)
        if "val_loss" in h:
            rows.append({**h, "tokens": seen / 1e6})
    colours = ("tab:orange", "tab:red", "tab:blue", "tab:green", "tab:olive", "tab:purple")  # one per probe
    drawn = [(k, c) for k, c in zip(PROBES, colours) if rows and k in rows[-1]]
    for key, colour in drawn:
        points = [r for r in rows if key in r]
        ax.plot([r[x] for r in points], [r[key] for r in points], "o-", ms=3, color=colour,
                label=f"{key[6:]} (n={rows[-1][key + '_n']})")
        if key + "_chance" in rows[-1]:
            ax.axhline(rows[-1][key + "_chance"], color=colour, ls="--", lw=0.8)
    ax.set_xlabel("step" if x == "step" else "training tokens (millions)")
    ax.set_ylabel("held-out accuracy, teacher-forced (dashed: control)")
    ax.set_ylim(0, 1)
    if drawn:
        ax.legend(fontsize=8)


def plot_losses(history: list[dict], path: Path) -> None:
    """Losses (left) and the held-out probes (right) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, probes) = plt.subplots(1, 2, figsize=(11, 3.5))
    steps = [h["step"] for h in history]
    keys = [k for k in ("text", "mel", "heard", "seen") if k in history[-1]]
    for key in keys:
        ax.plot(steps, [h[key] for h in history], lw=0.8, alpha=0.6, label=f"train {key}")
    val = [h for h in history if "val_loss" in h]
    for key in keys:
        ax.plot([h["step"] for h in val], [h[f"val_{key}"] for h in val], "o-", label=f"held-out {key}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize=8)
    plot_probes(probes, history)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
