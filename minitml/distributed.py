"""Training on many processes: PyTorch's FSDP2, and checkpoints saved in shards.

    torchrun --nproc-per-node 2 -m minitml train --preset tiny --steps 100   # 2 CPU processes (gloo)
    torchrun --nproc-per-node 8 -m minitml train --preset small              # 8 GPUs (NCCL)
    python -m minitml train --preset tiny                                    # the same script, 1 process

Data parallelism with fully sharded parameters (ZeRO-3 / FSDP): every process
runs the whole model on its own slice of the batch, but holds only 1/world of
each weight, gradient and optimizer moment. PyTorch's `fully_shard` does the
talking between processes:

    forward of block i    all-gather block i's weight shards -> full weights, run, free them
    backward of block i   all-gather again, compute full gradients,
                          reduce-scatter them: each process keeps the mean of its shard
    optimizer step        AdamW on the local shard only (the moments are sharded too)

So one process's memory for weights + gradients + AdamW is (4 + 4 + 8) bytes x
parameters / world, plus the full weights of the block being computed (and of
the next one, which FSDP gathers ahead to overlap talking with computing).
Sharding happens per block (`fully_shard(block)`), then once more for what is
left (embeddings, heads, the final norm), so no process ever holds the whole
model at once.

Same result as one process on the whole batch: every process draws the same
global batch from the same seeded generator, pads it to the same number of
micro-turns, and takes its own contiguous slice. Each computes the mean loss of
its slice, and the reduce-scatter averages the gradients over processes, which is
the gradient of the mean over the global batch. (The weighted word and heard
losses divide by the global batch's sum of weights, `Trainer.denominators`, so
they stay exact. One term is not a mean over the batch: the MoE balance loss, a
product of two batch averages. Its per-process value differs a little from the
whole-batch value; tests/test_distributed.py measures how much.)

Checkpoints go through `torch.distributed.checkpoint` (DCP): every process writes
its own shards into one folder, with a metadata file that says where each piece
of each tensor lives. Loading reads whatever pieces the new layout needs, so a
folder saved by 2 processes loads into 4, or into 1 plain process with no
process group at all (`minitml.checkpoint.load`). The tensors are read with
`weights_only=True`, but DCP's index file (`.metadata`) is a pickle: load only
folders you trust.

With `expert_parallel`, the MoE experts are not gathered at all: each process
keeps its share of them and the tokens travel instead (minitml/expert_parallel.py).

Backends: gloo on CPU, NCCL on GPU. On a GPU the weights are gathered in bf16
and gradients reduced in fp32 (`MixedPrecisionPolicy`).
"""

from __future__ import annotations

import gc
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from minitml.config import Config
from minitml.expert_parallel import shard_experts
from minitml.model import InteractionModel

FORMAT = "minitml-dcp-1"


@dataclass(frozen=True)
class Dist:
    """Who this process is: rank r of world processes, and the device it drives."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank within this machine: which GPU to use
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, plots and writes the files that exist once."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when there is a GPU, else "cpu"; any other name is kept."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def init(device: str = "auto") -> Dist:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK), or run alone.

    device: "auto" (cuda if there is a GPU, else cpu), "cpu" or "cuda".
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device)
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if world == 1:
        return Dist(device=torch.device(device))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        target = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        target, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise RuntimeError(f"process group is rank {dist.get_rank()} of {dist.get_world_size()}, "
                           f"but the environment says rank {rank} of {world}")
    return Dist(rank, world, local_rank, target)


def close() -> None:
    """Leave the process group cleanly: all processes at once, after the last sharded tensor.

    Sharded weights and optimizer state keep the process group alive through their
    device mesh. If it is still alive when Python exits, gloo's worker threads can be
    torn down mid-flight and abort the process; so drop them first (`del trainer`),
    then call this.
    """
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def shard(model: InteractionModel, bf16: bool = False, expert_parallel: bool = False) -> InteractionModel:
    """Shard the model's weights over the process group: one FSDP unit per block, then the rest.

    bf16: gather weights and run the forward in bf16, reduce gradients in fp32
    (the optimizer still updates fp32 shards). expert_parallel: each process owns
    n_experts / world of every MoE layer's experts and tokens travel to them
    (minitml/expert_parallel.py); FSDP shards everything else. In place; returns the model.
    """
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    device_type = next(model.parameters()).device.type
    mesh = init_device_mesh(device_type, (dist.get_world_size(),))  # one mesh for FSDP and the experts
    experts = shard_experts(model, mesh) if expert_parallel else set()
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy, ignored_params=experts & set(block.parameters()))
    fully_shard(model, mesh=mesh, mp_policy=policy, ignored_params=experts)  # embeddings, final norm, heads
    # FSDP warns that the model's outputs are views (in-place edits of them would skip
    # a hook). Nothing in minitml edits them in place.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    return model


def global_batch_slice(indices: list[int], d: Dist) -> list[int]:
    """This process's contiguous share of a global batch (its size must divide evenly)."""
    if len(indices) % d.world_size:
        raise ValueError(f"a global batch of {len(indices)} does not split evenly over "
                         f"{d.world_size} processes; use a batch size that is a multiple of it")
    per = len(indices) // d.world_size
    return indices[d.rank * per:(d.rank + 1) * per]


def mean_over_processes(values: dict[str, float], d: Dist) -> dict[str, float]:
    """Average scalars over processes (each computed on an equal share of the batch)."""
    if not d.sharded:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=d.device)  # NCCL: on the GPU
    dist.all_reduce(t)
    return {k: float(v) / d.world_size for k, v in zip(keys, t.tolist())}


def sum_over_processes(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """All-reduce (sum) a tensor in place and return it; a no-op in one process."""
    if d.sharded:
        dist.all_reduce(t)
    return t


# ----------------------------------------------------------------------------
# Checkpoints: one folder, one shard file per process, loadable at any world size
# ----------------------------------------------------------------------------
def save_sharded(folder: str | Path, model: InteractionModel, optimizer: torch.optim.Optimizer | None,
                 d: Dist, meta: dict) -> Path:
    """Save model (+ optimizer) shards with DCP, and `meta` (config, step, ...) as meta.json.

    Every process must call it. meta must be JSON-serialisable.
    """
    folder = Path(folder)
    if optimizer is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
    else:
        state = {"model": get_model_state_dict(model)}
    dcp.save(state, storage_writer=dcp.FileSystemWriter(folder, overwrite=True),  # one file per process
             no_dist=not dist.is_initialized())
    if d.is_main:
        meta = {"format": FORMAT, "config": model.cfg.to_dict(), "world_size": d.world_size, **meta}
        (folder / "meta.json").write_text(json.dumps(meta))
    if d.sharded:
        dist.barrier()  # nobody reads meta.json before it is there
    return folder


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    meta_file = folder / "meta.json"
    if not meta_file.exists():
        raise ValueError(f"{folder} is not a minitml sharded checkpoint (no meta.json)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_sharded(folder: str | Path, model: InteractionModel,
                 optimizer: torch.optim.Optimizer | None = None, expect: Config | None = None) -> dict:
    """Load a sharded checkpoint into `model` (sharded or plain) and optimizer; returns meta.

    The folder may have been saved by any number of processes: DCP reads the pieces
    this process's shards need. A checkpoint of another config is refused.
    """
    meta = read_meta(folder)
    saved = Config.from_dict(meta["config"])
    expect = expect or model.cfg
    if saved != expect:
        raise ValueError(f"{folder} was trained with another config: "
                         + "; ".join(expect.diff(saved)))
    load_shards(folder, model, optimizer)
    return meta


def load_shards(folder: str | Path, model: InteractionModel,
                optimizer: torch.optim.Optimizer | None = None) -> None:
    """The tensors of a sharded checkpoint into `model` (and optimizer), with no checks."""
    if optimizer is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
    else:
        state = {"model": get_model_state_dict(model)}
    with warnings.catch_warnings():  # DCP warns that one process reads alone: that is the point
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=folder, no_dist=not dist.is_initialized())
    if optimizer is not None:
        set_state_dict(model, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])
    else:
        set_model_state_dict(model, state["model"])


def load_full(model: InteractionModel, optimizer: torch.optim.Optimizer, model_state: dict,
              optimizer_state: dict, param_names: list[str]) -> None:
    """Load a one-process checkpoint (full tensors) into a sharded model and its optimizer.

    optimizer_state is `optimizer.state_dict()` of the one-process run, which numbers
    the parameters 0, 1, ... in the optimizer's order; param_names gives their names
    in that order (the same names under FSDP).
    """
    by_name = {
        "state": {param_names[i]: v for i, v in optimizer_state["state"].items()},
        "param_groups": [{**g, "params": [param_names[i] for i in g["params"]]}
                         for g in optimizer_state["param_groups"]],
    }
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=by_name,
                   options=StateDictOptions(full_state_dict=True))


def full_state_dict(model: InteractionModel) -> dict[str, torch.Tensor]:
    """The whole state dict gathered on CPU: every process must call it, rank 0 receives it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
