"""Checkpoints: a model's config, vocabulary, step and weights, in one file or a folder of shards.

    checkpoint.save(model, "out/m.pt", vocab=VOCAB, step=1000, extra={...})
    model = checkpoint.load("data/tiny.pt")          # the config comes from the file
    model = checkpoint.load(path, expect=cfg, vocab=VOCAB)  # refuses another config or
                                                     # vocabulary, and says what differs
    model = checkpoint.load("out/train/last.dcp")    # a folder of shards written by a run
                                                     # over several processes, into one

One file (`torch.save` of a dict, read back with weights_only=True):

    format   "minitml-checkpoint-1"
    config   Config.to_dict()          the model is rebuilt from it
    vocab    the word list, or None    ids are positions in it
    step     optimiser steps trained
    model    the state dict (CPU tensors)
    extra    anything else: the optimiser, the training config, the loss history

A folder of shards is minitml.distributed's format (one file per process, read
with torch.distributed.checkpoint, and meta.json with the same fields); it loads
here into a plain model in one process, no process group needed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from minitml.config import Config
from minitml.distributed import load_shards, read_meta
from minitml.model import InteractionModel

FORMAT = "minitml-checkpoint-1"


def save(model: InteractionModel, path: str | Path, vocab: list[str] | None = None, step: int = 0,
         extra: dict | None = None, state: dict | None = None) -> Path:
    """One file: config, vocabulary (default the model's), step, weights (`state`, default
    the model's own) and `extra`."""
    state = model.state_dict() if state is None else state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "vocab": vocab if vocab is not None else model.vocab,
        "step": step,
        "model": {k: v.detach().cpu() for k, v in state.items()},
        "extra": extra or {},
    }, path)
    return path


def read(path: str | Path, map_location="cpu") -> dict:
    """The raw contents of a one-file checkpoint, checked to be one."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} is not a minitml checkpoint (expected a dict with format {FORMAT!r})")
    return saved


def load(path: str | Path, expect: Config | None = None, vocab: list[str] | None = None,
         map_location="cpu") -> InteractionModel:
    """A model from a file or a folder of shards; refuse another config or vocabulary, saying why."""
    folder = Path(path).is_dir()
    saved = read_meta(path) if folder else read(path, map_location)
    cfg = Config.from_dict(saved["config"])
    if expect is not None and cfg != expect:
        raise ValueError(f"{path} was trained with another config: " + "; ".join(expect.diff(cfg)))
    if vocab is not None and saved.get("vocab") is not None and saved["vocab"] != vocab:
        raise ValueError(f"{path} has another vocabulary: " + vocab_diff(vocab, saved["vocab"]))
    model = InteractionModel(cfg).to(map_location)
    if folder:
        load_shards(path, model)
    else:
        model.load_state_dict(saved["model"])
    model.vocab = saved.get("vocab")
    trained = saved.get("train_config") or saved.get("extra", {}).get("train_config") or {}
    model.word_weight = trained.get("word_weight", 1.0)  # older files: every target weighed 1
    model.heard_pad_weight = trained.get("heard_pad_weight", 0.1)
    return model


def vocab_diff(expected: list[str], got: list[str]) -> str:
    """Where two vocabularies part: "expected 256 words, got 250", or the first word that differs."""
    if len(expected) != len(got):
        return f"expected {len(expected)} words, got {len(got)}"
    i = next(i for i, (x, y) in enumerate(zip(expected, got)) if x != y)
    return f"word {i} is {got[i]!r}, expected {expected[i]!r}"
