"""The neural background model: a small word-level transformer that answers calls.

    python -m minitml.neural_background train      # about 2 minutes on one CPU thread
    python -m minitml.neural_background eval       # accuracy per kind of request, held out

`WordGPT` is a decoder-only transformer over the toy world's word ids. It is
trained on question -> answer text (`<call> thirty seven times forty nine </call>
<result> one thousand ...`) generated from the toy world's facts and arithmetic
(`qa_pairs`: 10% of the number pairs are held out). `NeuralBackground` plugs it
into the handoff (minitml/background.py): for each call it samples several
answers in one batch and speaks the majority, or `<fail>` when too few agree
(self-consistency), streaming the words back at a slow cadence. The trained
weights ship in data/background_gpt.pt.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from minitml.background import BackgroundModel, ContextPackage
from minitml.protocol import CALL, END_CALL, FAIL, RESULT
from minitml.stream import PAD
from minitml.world.facts import ANIMAL_LEGS, THING_COLOURS
from minitml.world.vocab import VOCAB, number_words
from minitml.world.vocab import ids as word_ids

WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "background_gpt.pt"

@dataclass(frozen=True)
class WordGPTConfig:
    vocab_size: int = 256  # word ids (the toy vocabulary, with room to grow; = tiny text_vocab_size)
    max_len: int = 20  # positions: <call> question </call> <result> answer <pad>
    d_model: int = 96  # width
    n_layers: int = 2  # transformer blocks
    n_heads: int = 4  # attention heads
    batch_size: int = 128  # sequences per training step
    steps: int = 1500  # training steps (about 2 minutes on one CPU thread)
    lr: float = 2e-3  # peak learning rate (AdamW, linear warm-up, cosine decay)
    seed: int = 0  # data and initialisation


class WordGPT(nn.Module):
    """A decoder-only transformer over word ids: reads the call, writes the answer."""

    def __init__(self, cfg: WordGPTConfig = WordGPTConfig()):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) word ids -> (B, T, V) logits of the next word."""
        T = ids.shape[1]
        if T > self.cfg.max_len:
            raise ValueError(f"WordGPT reads at most {self.cfg.max_len} words, got {T}")
        x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))  # (B, T, d)
        causal = torch.triu(torch.full((T, T), float("-inf"), device=ids.device), diagonal=1)
        return self.head(self.norm(self.blocks(x, mask=causal, is_causal=True)))  # (B, T, V)


def qa_pairs(kind: str, split: str) -> list[tuple[list[str], list[str]]]:
    """Every (call words, answer words) of one kind of request; 10% of the numbers are held out.

    The kinds of the toy world's questions (world/facts.py), over wider ranges so that
    held-out pairs test arithmetic rather than memory: times (11..99 x 11..99, the
    background scenario), plus (0..99 + 0..99), minus (0..99 - 0..a), after (0..98),
    and the lookups colour and legs (every fact is in both splits: memorised).
    """
    spell = number_words
    if kind == "times":
        items = [([*spell(a), "times", *spell(b)], a * b) for a in range(11, 100) for b in range(11, 100)]
    elif kind == "plus":
        items = [([*spell(a), "plus", *spell(b)], a + b) for a in range(100) for b in range(100)]
    elif kind == "minus":
        items = [([*spell(a), "minus", *spell(b)], a - b) for a in range(100) for b in range(a + 1)]
    elif kind == "after":
        items = [(["after", *spell(n)], n + 1) for n in range(99)]
    elif kind == "colour":
        return [(["colour", "of", "a", t], [c]) for t, c in THING_COLOURS.items()]
    elif kind == "legs":
        return [(["legs", "of", "a", a], spell(n)) for a, n in ANIMAL_LEGS.items()]
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KIND_MIX)}")
    heldout = np.random.default_rng(1234).random(len(items)) < 0.1  # fixed, whatever the seed
    keep = heldout if split == "heldout" else ~heldout
    return [(call, spell(r)) for (call, r), k in zip(items, keep) if k]


KIND_MIX = {"times": 0.3, "plus": 0.2, "minus": 0.2, "after": 0.1, "colour": 0.1, "legs": 0.1}


def _batch(pairs: dict, rng: np.random.Generator, n: int, max_len: int):
    """(n, max_len) ids and (n, max_len) targets (-100 except on the answer and its end)."""
    kinds = rng.choice(list(KIND_MIX), size=n, p=list(KIND_MIX.values()))
    ids = torch.full((n, max_len), PAD, dtype=torch.long)
    targets = torch.full((n, max_len), -100, dtype=torch.long)
    for i, kind in enumerate(kinds):
        q, a = pairs[kind][rng.integers(len(pairs[kind]))]
        seq = word_ids([CALL, *q, END_CALL, RESULT, *a]) + [PAD]  # PAD ends the answer
        ids[i, :len(seq)] = torch.tensor(seq)
        start = len(q) + 2  # the position of <result>: it predicts the first answer word
        targets[i, start:len(seq) - 1] = torch.tensor(seq[start + 1:])
    return ids, targets


def train_word_gpt(cfg: WordGPTConfig = WordGPTConfig(), log: Callable | None = print) -> WordGPT:
    """Train on the toy world's question -> answer text (train split only), on one thread."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = WordGPT(cfg)
    pairs = {k: qa_pairs(k, "train") for k in KIND_MIX}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warmup = max(1, cfg.steps // 20)
    start = time.perf_counter()
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, targets = _batch(pairs, rng, cfg.batch_size, cfg.max_len)
        logits = model(ids)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log and (step % 250 == 0 or step == cfg.steps - 1):
            log(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - start:5.1f} s")
    return model.eval()


def save_word_gpt(model: WordGPT, path=WEIGHTS):
    torch.save({"config": asdict(model.cfg), "vocab": VOCAB, "state": model.state_dict()}, path)


def load_word_gpt(path=WEIGHTS) -> WordGPT:
    """Load trained weights; refuse a file made with another vocabulary (ids must not move)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train one with "
                                "`python -m minitml.neural_background train`")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    vocab = ckpt["vocab"]
    if VOCAB[:len(vocab)] != vocab:
        first = next(i for i, (a, b) in enumerate(zip(VOCAB, vocab)) if a != b)
        raise ValueError(f"{path} was trained with another vocabulary: word {first} is "
                         f"{vocab[first]!r} there and {VOCAB[first]!r} here")
    model = WordGPT(WordGPTConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state"])
    return model.eval()


@torch.no_grad()
def sample_answers(model: WordGPT, call: list[str], n_samples: int, temperature: float = 1.0,
                   generator: torch.Generator | None = None, check: Callable = lambda: None,
                   max_words: int = 8) -> list[tuple[str, ...]]:
    """n_samples answers to one call, sampled in one batch (temperature 0: greedy)."""
    prompt = torch.tensor(word_ids([CALL, *call, END_CALL, RESULT]))
    ids = prompt.repeat(n_samples, 1)  # (K, T)
    done = torch.zeros(n_samples, dtype=torch.bool)
    for _ in range(min(max_words, model.cfg.max_len - ids.shape[1])):
        check()  # a cancelled call stops between words
        logits = model(ids)[:, -1]  # (K, V)
        if temperature <= 0:
            nxt = logits.argmax(-1)
        else:
            nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0]
        nxt = torch.where(done, PAD, nxt)  # (K,)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == PAD
        if done.all():
            break
    answers = []
    for row in ids[:, prompt.numel():].tolist():
        words = [VOCAB[i] for i in row[:row.index(PAD)] if i < len(VOCAB)] if PAD in row else []
        answers.append(tuple(words))  # no end within max_words: the empty answer, a failure
    return answers


def vote(answers: list[tuple[str, ...]], min_agreement: float) -> list[str]:
    """The majority answer if enough samples agree on it, else [<fail>] (self-consistency)."""
    best, n = Counter(answers).most_common(1)[0]
    if not best or n / len(answers) < min_agreement or any(w.startswith("<") for w in best):
        return [FAIL]
    return list(best)


class NeuralBackground(BackgroundModel):
    """A small transformer answers; it says <fail> when its samples disagree.

    n_samples answers are sampled (more: slower, better calibrated); the majority is
    spoken if at least `min_agreement` of them agree. word_delay_s: the slow cadence
    at which the answer streams back, one word at a time.
    """

    def __init__(self, model: WordGPT | None = None, n_samples: int = 16, min_agreement: float = 0.75,
                 temperature: float = 1.0, word_delay_s: float = 0.3, seed: int = 0,
                 worker: str = "process", **kwargs):
        super().__init__(worker=worker, **kwargs)
        self.model = (model if model is not None else load_word_gpt()).eval()
        self.n_samples, self.min_agreement = n_samples, min_agreement
        self.temperature, self.word_delay_s, self.seed = temperature, word_delay_s, seed

    def solve(self, call: list[str]) -> list[str]:
        """The answer words (or [<fail>]) to one call, computed at once."""
        g = torch.Generator().manual_seed(self.seed)
        answers = sample_answers(self.model, call, self.n_samples, self.temperature, g, check=self.check)
        return vote(answers, self.min_agreement)

    def answer(self, package: ContextPackage) -> Iterator[str]:
        for word in self.solve(package.call):
            self.wait(self.word_delay_s)  # a big model would take this long per word
            yield word


def evaluate_neural(background: NeuralBackground, split: str = "heldout", per_kind: int = 100,
                    seed: int = 0) -> dict:
    """Per kind: answered (share not <fail>), right (share of all), wrong (answered and wrong)."""
    rng = np.random.default_rng(seed)
    report = {}
    for kind in KIND_MIX:
        pairs = qa_pairs(kind, split) or qa_pairs(kind, "train")  # lookups: no held-out facts
        picks = rng.choice(len(pairs), size=min(per_kind, len(pairs)), replace=False)
        said = [(background.solve(pairs[i][0]), pairs[i][1]) for i in picks]
        n = len(said)
        answered = [(s, a) for s, a in said if s != [FAIL]]
        right = sum(s == a for s, a in answered)
        report[kind] = {"n": n, "answered": len(answered) / n, "right": right / n,
                        "wrong": (len(answered) - right) / n}
    return report


HARD_CALL = "eighty seven times sixty three".split()  # a call the model works on, then fails


def deadline_under_load(model, worker: str = "process", steps: int = 300, block: int = 50,
                        n_samples: int = 256, warmup: int = 20) -> dict:
    """The micro-turn loop's step times with the background model idle, then flooded.

    One Session of `model` (overrun="ignore", so every step is timed whole) steps back to
    back in alternating blocks of `block` steps: idle (a NeuralBackground attached, with
    nothing to do) and busy (it is sent `block` hard calls, n_samples answers each: more
    than it can finish, so its worker computes without a pause). Alternating blocks let
    both conditions see the same machine load. Per phase it returns the step times
    (ms: wall time; own_ms: the loop's own CPU time, which stays put when a slower step
    was waiting for a core), the worker's share of a core (Linux), and the calls
    answered while busy.
    """
    from minitml.session import Session

    bg = NeuralBackground(n_samples=n_samples, word_delay_s=0.0, worker=worker, timeout_s=1e6)
    session = Session(model, background=bg, overrun="ignore", vocab=model.vocab or list(VOCAB))
    chunk = 0.05 * torch.randn(session.cfg.audio.samples_per_micro_turn,
                               generator=torch.Generator().manual_seed(0))
    for _ in range(warmup):
        session.step(chunk)
    ms, own = {"idle": [], "busy": []}, {"idle": [], "busy": []}
    cpu, wall = {"idle": 0.0, "busy": 0.0}, {"idle": 0.0, "busy": 0.0}
    answered = 0
    for i in range(2 * steps // block):
        phase = "busy" if i % 2 else "idle"
        if phase == "busy":
            for _ in range(block):
                session.handoff.submit(HARD_CALL, session.turn * session.cfg.audio.micro_turn_ms / 1000,
                                       session.turn)
        c0, w0 = bg.cpu_seconds(), time.perf_counter()
        for _ in range(block):
            t0 = time.thread_time()
            ms[phase].append(session.step(chunk).compute_ms)
            own[phase].append(1000 * (time.thread_time() - t0))
        cpu[phase] += bg.cpu_seconds() - c0
        wall[phase] += time.perf_counter() - w0
        if phase == "busy":
            answered += sum(c.status == "done" for c in session.handoff.calls)
            session.cancel_background()
            session.reset()  # forget the calls: the next idle block starts clean
            time.sleep(0.1)  # the worker drops the cancelled calls
    session.close()
    return {"ms": ms, "own_ms": own, "worker_cpu_share": {k: cpu[k] / wall[k] for k in cpu},
            "calls_answered_busy": answered}


def main(argv=None):
    """python -m minitml.neural_background train [--out PATH] [--steps N] | eval"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m minitml.neural_background")
    p.add_argument("what", choices=["train", "eval"])
    p.add_argument("--out", default=str(WEIGHTS))
    p.add_argument("--steps", type=int, default=WordGPTConfig().steps)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "train":
        start = time.perf_counter()
        model = train_word_gpt(WordGPTConfig(steps=args.steps))
        save_word_gpt(model, args.out)
        print(f"trained in {time.perf_counter() - start:.0f} s; saved {args.out}")
    bg = NeuralBackground(load_word_gpt(args.out))
    for kind, r in evaluate_neural(bg).items():
        print(f"{kind:7s} answered {r['answered']:5.0%}  right {r['right']:5.0%}  wrong {r['wrong']:5.0%}"
              f"  (n={r['n']})")


if __name__ == "__main__":
    main()
