"""Training over 2 processes (torchrun, gloo, FSDP2) is the same run as 1 process.

The same command line, `python -m minitml train`, runs once in one process and
once under torchrun with 2 CPU processes, on the same global batch. Their losses
must agree step by step; the sharded checkpoint of the 2-process run must load
into one process with the weights the run ended with; and each run must resume
at the other world size.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from minitml import checkpoint, distributed
from minitml.config import get_config
from minitml.train import TrainConfig, Trainer, collate
from minitml.world.dataset import load_dataset, make_dataset, to_blocks
from minitml.world.vocab import VOCAB

ARGS = ["--train-dialogues", "8", "--val-dialogues", "4", "--batch-size", "4", "--max-turns", "12",
        "--eval-every", "2", "--threads", "1", "--lr", "1e-3"]


def train(tmp, name, steps, processes=1, extra=()):
    launcher = [sys.executable, "-m", "minitml"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", str(processes), "-m", "minitml"]
    env = {**os.environ, "MINITML_CACHE": str(tmp / "cache"), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([*launcher, "train", *ARGS, "--steps", str(steps), "--out", str(tmp / name),
                             *extra], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp / name / "history.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distributed")
    one = train(tmp, "one", steps=4)
    two = train(tmp, "two", steps=4, processes=2)
    return tmp, one, two


def assert_follows(one, other, label):
    """`other` (a multi-process run's history) matches the one-process history step by step."""
    assert [r["step"] for r in other] == [r["step"] for r in one]
    for a, b in zip(one, other):
        # Word and dMel losses are means over the global batch either way: equal to float noise.
        assert b["text"] == pytest.approx(a["text"], rel=1e-5)
        assert b["mel"] == pytest.approx(a["mel"], rel=1e-5)
        # The MoE balance loss is computed per process on half the tokens: close, not equal.
        assert b["aux"] == pytest.approx(a["aux"], rel=1e-2)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["tokens"] == a["tokens"]  # the same global batch, padded to the same length
    for a, b in zip(one[1::2], other[1::2]):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    worst = {k: max(abs(a[k] - b[k]) / abs(a[k]) for a, b in zip(one, other))
             for k in ("loss", "text", "mel", "aux", "grad_norm")}
    print(f"{label} vs 1 process, largest relative difference over {len(one)} steps: "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))


def test_two_processes_follow_one_process_step_by_step(runs):
    _, one, two = runs
    assert len(two) == 4
    assert_follows(one, two, "2 processes")
    assert two[-1]["loss"] < two[0]["loss"]


def test_sharded_checkpoint_loads_into_one_process(runs):
    tmp, _, _ = runs
    folder = tmp / "two" / "last.dcp"
    # DCP's index of where each piece lives, one shard file per process, our meta.json
    files = sorted(p.name for p in folder.iterdir())
    assert files == [".metadata", "__0_0.distcp", "__1_0.distcp", "meta.json"]
    tiny = get_config("tiny")  # as the train command builds it from TrainConfig's defaults
    trained = tiny.replace(model=replace(tiny.model, embed_norm=bool(TrainConfig().embed_norm)))
    sharded = checkpoint.load(folder, expect=trained, vocab=list(VOCAB))
    gathered = checkpoint.load(tmp / "two" / "model.pt")  # the one-file format
    for (name, a), b in zip(sharded.state_dict().items(), gathered.state_dict().values()):
        assert torch.equal(a, b), name
    cache = tmp / "cache"
    example = load_dataset(make_dataset("heldout", 4, 0, folder=cache / "probe", progress=False))[0]
    blocks = collate([to_blocks(example, sharded.cfg)], sharded.cfg, max_turns=12)
    sharded.eval(), gathered.eval()
    with torch.no_grad():
        assert torch.equal(sharded(blocks).text_logits, gathered(blocks).text_logits)
    # ...and it is (nearly) the model the one-process run trained.
    single = checkpoint.load(tmp / "one" / "model.pt")
    worst = max((a - b).abs().max().item()
                for a, b in zip(sharded.state_dict().values(), single.state_dict().values()))
    assert worst < 1e-3
    print(f"weights after 4 steps, 2 processes vs 1: largest difference {worst:.1e}")


def test_runs_resume_across_world_sizes(runs):
    """2 processes -> 1 (from the shards) and 1 -> 2 (from the one-file checkpoint)."""
    tmp, _, _ = runs
    resume = ["--resume", str(tmp / "one" / "last.pt")]
    one_one = train(tmp, "one_then_one", steps=6, extra=resume)
    one_two = train(tmp, "one_then_two", steps=6, processes=2, extra=resume)
    two_one = train(tmp, "two_then_one", steps=6, extra=["--resume", str(tmp / "two" / "last.dcp")])
    for history in (one_two, two_one):
        assert [r["step"] for r in history] == [1, 2, 3, 4, 5, 6]  # the history came along
        for a, b in zip(one_one[4:], history[4:]):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
            assert b["text"] == pytest.approx(a["text"], rel=1e-4)
    for name, history in (("1 -> 2", one_two), ("2 -> 1", two_one)):
        worst = max(abs(a["loss"] - b["loss"]) / a["loss"] for a, b in zip(one_one[4:], history[4:]))
        print(f"resumed {name} processes: steps 5-6 loss within {worst:.1e} of 1 -> 1")


@pytest.mark.parametrize("experts", ["gathered", "split"])
def test_bf16_sharded_with_activation_checkpointing(runs, experts):
    """The GPU recipe (bf16 weights gathered, fp32 reductions, recomputed blocks), on 2 CPUs;
    with the experts split, the all-to-alls carry bf16 rows and run again in the recompute."""
    tmp, one, _ = runs
    extra = ["--precision", "bf16", "--activation-checkpointing"]
    extra += ["--expert-parallel"] if experts == "split" else []
    bf16 = train(tmp, f"bf16_{experts}", steps=2, processes=2, extra=extra)
    for a, b in zip(one, bf16):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-2)  # bf16 keeps about 3 digits
    assert (tmp / f"bf16_{experts}" / "last.dcp" / "meta.json").exists()


def test_refusals(runs, tmp_path):
    tmp, _, _ = runs
    other = get_config("tiny").replace(model=get_config("small").model)
    with pytest.raises(ValueError, match="another config: model.d_model: expected 512, got 128"):
        checkpoint.load(tmp / "two" / "last.dcp", expect=other)
    with pytest.raises(ValueError, match="not a minitml sharded checkpoint"):
        distributed.read_meta(tmp_path)
    with pytest.raises(ValueError, match="a global batch of 5 does not split evenly over 2"):
        distributed.global_batch_slice(list(range(5)), distributed.Dist(rank=0, world_size=2))
    assert distributed.global_batch_slice(list(range(6)), distributed.Dist(rank=1, world_size=2)) == [3, 4, 5]
    with pytest.raises(ValueError, match="device must be"):
        distributed.init("tpu")


def test_activation_checkpointing_keeps_the_results(runs):
    """Recomputing blocks changes memory (tests/test_scale.py measures it), not the losses."""
    tmp, _, _ = runs
    data = load_dataset(make_dataset("train", 8, 0, folder=tmp / "cache" / "ac", progress=False))
    histories = []
    for recompute in (False, True):
        tc = TrainConfig(steps=2, batch_size=2, eval_every=100, max_turns=8, out=str(tmp / f"ac{recompute}"),
                         activation_checkpointing=recompute)
        trainer = Trainer(tc, data, data[:2], vocab=list(VOCAB))
        histories.append(trainer.fit(progress=False))
    for a, b in zip(*histories):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
