"""Datasets of toy conversations: generated once, stored as compact token shards.

    path = make_dataset("train", n=3000, seed=0)       # shards under the cache folder
    examples = load_dataset(path)                      # list of dicts
    blocks = to_blocks(examples[0], get_config("tiny"))  # ready for the model

A stored example keeps only what the model needs and what the metrics need:

    user_tokens, assistant_tokens   (F, 80) uint8 causal dMel at 80 frames/s (4 bits each)
    user_words, assistant_words     word ids with their times
    scene                           (n_turns, fields) small ints: frames are re-drawn on load
    text_in                         {micro-turn: [word ids]}
    annotations                     the scenario's ground truth, as JSON text

Video is stored as scene *states*, not pixels: an 80x80 frame is 19 KB, its state
a few bytes, and drawing it again is cheap and exact. Everything is a function of
(split, n, seed, kinds, speakers): the same call writes the same shards, bit for bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from minitml.config import AudioConfig, Config
from minitml.dmel import DMel
from minitml.patches import patchify
from minitml.protocol import PAD
from minitml.stream import Blocks, pack_conversation

FORMAT = "minitml-dataset-1"


def cache_dir() -> Path:
    """$MINITML_CACHE, else ~/.cache/minitml."""
    return Path(os.environ.get("MINITML_CACHE", Path.home() / ".cache" / "minitml"))


def example_seed(seed: int, index: int) -> int:
    """A distinct, reproducible scenario seed for example `index` of a dataset."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def encode_scenario(scenario, dmel: DMel) -> dict:
    """Scenario -> one stored example (tensors, lists and strings only)."""
    from minitml.world.vocab import word_id

    user = dmel.encode(scenario.user_audio, causal=True).to(torch.uint8)
    assistant = dmel.encode(scenario.assistant_audio, causal=True).to(torch.uint8)
    scene = torch.tensor([dataclasses.astuple(s) for s in scenario.scene], dtype=torch.int16)
    return {
        "kind": scenario.kind,
        "seed": scenario.seed,
        "split": scenario.split,
        "seconds": scenario.user_audio.shape[0] / scenario.sample_rate,
        "user_tokens": user,
        "assistant_tokens": assistant,
        "user_word_ids": torch.tensor([word_id(w) for w, _, _ in scenario.user_words],
                                      dtype=torch.long),
        "user_word_times": torch.tensor([[s, e] for _, s, e in scenario.user_words],
                                        dtype=torch.float64).reshape(-1, 2),
        "assistant_word_ids": torch.tensor([word_id(w) for w, _ in scenario.assistant_words],
                                           dtype=torch.long),
        "assistant_word_times": torch.tensor([t for _, t in scenario.assistant_words],
                                             dtype=torch.float64),
        "scene": scene,
        "text_in": {str(t): [word_id(w) for w in words] for t, words in scenario.text_in.items()},
        "annotations": json.dumps(scenario.annotations),
    }


def _generate(job: tuple[str, int, list[tuple[str, int]], str]) -> list[dict]:
    """Make and encode the scenarios of one piece of a shard: (split, shard, items, speakers)."""
    from minitml.world.scenarios import make_scenario

    split, _, items, speakers = job
    torch.set_num_threads(1)
    dmel = DMel(AudioConfig())
    return [encode_scenario(make_scenario(kind, s, split, speakers=speakers), dmel) for kind, s in items]


def _generate_bytes(job) -> bytes:
    """Worker: the same, returned as serialized bytes. (Tensors sent between processes
    as tensors travel as shared-memory file descriptors, and thousands of them in
    flight exhaust the limit on open files.)"""
    buffer = io.BytesIO()
    torch.save(_generate(job), buffer)
    return buffer.getvalue()


def make_dataset(split: str, n: int, seed: int = 0, kinds: list[str] | None = None,
                 folder: str | Path | None = None, shard_size: int = 200, workers: int = 2,
                 progress: bool = True, overwrite: bool = False, speakers: str = "few") -> Path:
    """Generate n conversations (kinds in turn) into token shards; return the folder.

    A kind named twice in `kinds` is generated twice as often: ["smooth_turn",
    "smooth_turn", "pause"] makes two question-and-answer dialogues for each pause.

    speakers "many": the training split's users come from 348 voices instead of 66
    (voices.user_voices; the held-out split is the same either way).
    An existing complete dataset with the same name is reused unless overwrite=True.
    """
    from minitml.world.scenarios import KINDS
    from minitml.world.vocab import VOCAB
    from minitml.world.voices import SPEAKERS

    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    kinds = list(kinds or KINDS)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown scenario kinds {unknown}; expected some of {KINDS}")
    if speakers not in SPEAKERS:
        raise ValueError(f"speakers must be one of {SPEAKERS}, got {speakers!r}")
    if split == "heldout":
        speakers = "few"  # the held-out voices do not depend on it: one name, one cache
    name = f"{split}-n{n}-seed{seed}-{'_'.join(kinds) if kinds != list(KINDS) else 'all'}"
    name += "-many" if speakers == "many" else ""
    path = Path(folder) if folder is not None else cache_dir() / name
    index_file = path / "index.json"
    if index_file.exists() and not overwrite:
        return path
    path.mkdir(parents=True, exist_ok=True)
    items = [(kinds[i % len(kinds)], example_seed(seed, i)) for i in range(n)]
    jobs = [(split, k, items[k * shard_size:(k + 1) * shard_size], speakers)
            for k in range(-(-n // shard_size))]
    # Small jobs of ~20 scenarios keep both workers busy and the progress bar moving.
    pieces = [(split, k, job[2][j:j + 20], speakers) for k, job in enumerate(jobs)
              for j in range(0, len(job[2]), 20)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"{split} dialogues", unit="dlg")
    shards: dict[int, list[dict]] = {k: [] for k in range(len(jobs))}
    if workers > 1:
        # Fork where it exists: workers start at once and need no importable __main__.
        # Each worker first drops to one torch thread (see _generate): a forked child of a
        # process that has run multi-threaded torch must not touch the inherited OpenMP pool.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            for (_, k, _, _), blob in zip(pieces, pool.map(_generate_bytes, pieces)):
                examples = torch.load(io.BytesIO(blob), weights_only=True)
                shards[k].extend(examples)
                if bar:
                    bar.update(len(examples))
    else:
        for piece in pieces:
            shards[piece[1]].extend(_generate(piece))
            if bar:
                bar.update(len(piece[2]))
    if bar:
        bar.close()
    files, seconds = [], 0.0
    for k, examples in shards.items():
        file = path / f"shard-{k:04d}.pt"
        torch.save(examples, file)
        files.append(file.name)
        seconds += sum(e["seconds"] for e in examples)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    index = {"format": FORMAT, "split": split, "n": n, "seed": seed, "kinds": kinds, "speakers": speakers,
             "shards": files, "seconds": round(seconds, 3), "audio": dataclasses.asdict(AudioConfig()),
             "vocab_sha256": hashlib.sha256("\n".join(VOCAB).encode()).hexdigest()}
    index_file.write_text(json.dumps(index, indent=1) + "\n")
    return path


def load_dataset(path: str | Path) -> list[dict]:
    """All examples of a dataset folder, checked against this package's vocabulary."""
    from minitml.world.vocab import VOCAB

    path = Path(path)
    index_file = path / "index.json"
    if not index_file.exists():
        raise ValueError(f"{path} is not a minitml dataset (no index.json); make it with make_dataset")
    index = json.loads(index_file.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    if index["vocab_sha256"] != hashlib.sha256("\n".join(VOCAB).encode()).hexdigest():
        raise ValueError(f"{path} was made with another vocabulary; make it again")
    examples = []
    for name in index["shards"]:
        examples.extend(torch.load(path / name, weights_only=True))
    return examples


def to_blocks(example: dict, cfg: Config) -> Blocks:
    """One stored example -> model Blocks (B = 1), output shifted one micro-turn."""
    from minitml.world.scenes import SceneState, render_all, seen_names
    from minitml.world.vocab import word_id

    states = [SceneState(*map(int, row)) for row in example["scene"].tolist()]
    frames = render_all(states, cfg.vision)  # (n_turns, H, W, 3) uint8
    named = {s: [PAD if n is None else word_id(n) for n in seen_names(s, cfg.vision)] for s in set(states)}
    seen = torch.tensor([named[s] for s in states], dtype=torch.long)  # (n_turns, P)
    patches, _ = patchify(torch.as_tensor(frames), cfg.vision.patch_size)  # (n_turns, P, 4800)
    words = list(zip(example["assistant_word_ids"].tolist(),
                     example["assistant_word_times"].tolist()))
    X = cfg.model.text_in_slots
    text_in = {}
    for turn, ids in example["text_in"].items():  # more than X words spill into the next turns
        for i in range(0, len(ids), X):
            text_in.setdefault(int(turn) + i // X, []).extend(ids[i:i + X])
    heard = list(zip(example["user_word_ids"].tolist(), example["user_word_times"][:, 1].tolist()))
    return pack_conversation(cfg, example["user_tokens"].long(), example["assistant_tokens"].long(),
                             words, patches, text_in, heard, seen)
