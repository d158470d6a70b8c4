"""Expert parallelism: each process owns some of the experts, and tokens travel to them.

FSDP (minitml/distributed.py) shards every weight, experts included, and
all-gathers each block's experts before running it: every process briefly holds
all E experts of a layer and runs them on its own tokens. With hundreds of big
experts that gather is most of the traffic. Expert parallelism turns it around:
the weights stay put and the *tokens* move. With P processes, process p owns
experts p*E/P ... (p+1)*E/P - 1 for good, and each MoE layer does

    route      every process routes its own N tokens: (N, k) expert ids
    sort       its N*k (token, expert) rows by expert, which also groups them
               by the process that owns the expert
    count      all-to-all of the (E,) row counts: now every process knows how
               many rows it will receive, from whom, for which of its experts
    dispatch   all-to-all of the rows themselves: (N*k, d) out, (M, d) in
    compute    each local expert runs once on the rows it received (M rows)
    combine    all-to-all back, the reverse of the dispatch, then scale by the
               gates and add each row into its token, as on one process

A row whose expert lives on another process crosses twice in forward (there and
back) and twice in backward (its gradients): d numbers each time, k rows per
token, instead of gathering E*3*d*h expert numbers per layer
(`minitml.scale.expert_traffic` compares the two; notebook 11 plots them).

Gradients. Process p's expert weights receive gradient from the tokens of all P
processes, so after backward they hold the sum of P per-process gradients. FSDP
averages its gradients over processes; the experts' are divided by P to match
(a hook on each expert weight), so the run is still the one-process run.

The expert weights become DTensors sharded along the expert dimension
(`Shard(0)` on the same device mesh as FSDP), and FSDP is told to leave them
alone (`ignored_params`). Being DTensors, they save and load through DCP like
everything else: a checkpoint written with experts split over 2 processes
loads into 1 process, and the other way round.

Here the expert-parallel group is the whole world (P = world size, E divisible
by P). Large systems split the processes into a grid, with expert parallelism
inside a node and data parallelism across nodes; the all-to-alls are the same.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from minitml.moe import MoE, grouped_experts

EXPERT_WEIGHTS = ("w_gate", "w_up", "w_down")  # (E, d, h), (E, d, h), (E, h, d) in every MoE layer


class AllToAll(torch.autograd.Function):
    """Rows go to other processes: the first send_splits[0] rows to process 0, and so on.

    x: (sum(send_splits), ...) -> (sum(recv_splits), ...). Its gradient is the same
    exchange run backwards: each row's gradient returns to the process that sent it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, send_splits: list[int], recv_splits: list[int], group) -> Tensor:
        ctx.send_splits, ctx.recv_splits, ctx.group = send_splits, recv_splits, group
        out = x.new_empty(sum(recv_splits), *x.shape[1:])
        dist.all_to_all_single(out, x.contiguous(), recv_splits, send_splits, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return AllToAll.apply(grad, ctx.recv_splits, ctx.send_splits, ctx.group), None, None, None


class ExpertParallel:
    """What a MoE layer needs to run its experts across processes (MoE.expert_parallel)."""

    def __init__(self, mesh: DeviceMesh):
        self.group = mesh.get_group()
        self.size = mesh.size()

    def forward(self, moe: MoE, x: Tensor, weights: Tensor, experts: Tensor) -> Tensor:
        """x: (N, d), weights/experts: (N, k) -> (N, d): what moe.experts_dispatch gives on one process."""
        N, k = experts.shape
        E, P = moe.cfg.n_experts, self.size
        local = E // P  # experts per process
        flat = experts.flatten()  # (N*k,)
        order = flat.argsort(stable=True)  # rows sorted by expert = grouped by owning process
        token = order // k  # (N*k,) the token of each sorted row
        gate = weights.flatten()[order, None]  # (N*k, 1)
        sent = torch.bincount(flat, minlength=E)  # (E,) rows I send to each expert
        got = torch.empty_like(sent)  # (E,) = (P, local): rows each process sends to my experts
        dist.all_to_all_single(got, sent, group=self.group)  # count, E/P numbers to each process
        send_splits = sent.view(P, local).sum(1).tolist()  # rows to each process
        recv_splits = got.view(P, local).sum(1).tolist()  # rows from each process
        rows = AllToAll.apply(x[token], send_splits, recv_splits, self.group)  # (M, d) dispatch
        # Received: from process 0 rows for my expert 0, 1, ...; then from process 1; ...
        expert_of_row = torch.arange(local, device=x.device).repeat(P).repeat_interleave(got)  # (M,)
        by_expert = expert_of_row.argsort(stable=True)
        w_gate, w_up, w_down = (local_weight(getattr(moe, n), x.dtype) for n in EXPERT_WEIGHTS)
        out_sorted = grouped_experts(rows[by_expert], got.view(P, local).sum(0).tolist(),
                                     w_gate, w_up, w_down)  # (M, d), my experts in order
        out = torch.empty_like(out_sorted).index_copy(0, by_expert, out_sorted)  # back to arrival order
        back = AllToAll.apply(out, recv_splits, send_splits, self.group)  # (N*k, d) combine
        return x.new_zeros(N, moe.d_model).index_add(0, token, gate * back)  # y[t] += g * expert(x[t])


def local_weight(w: Tensor, dtype: torch.dtype) -> Tensor:
    """This process's experts of a stacked weight, in the compute dtype: (E/P, ...)."""
    w = w.to_local() if isinstance(w, DTensor) else w
    return w.to(dtype)


def check_layout(n_experts: int, processes: int) -> None:
    """Refuse what expert parallelism cannot split, saying why."""
    if processes < 2:
        raise ValueError("expert parallelism needs several processes: launch with "
                         "torchrun --nproc-per-node N -m minitml train ... (N >= 2)")
    if n_experts % processes:
        raise ValueError(f"expert parallelism over {processes} processes needs n_experts divisible "
                         f"by {processes}, got n_experts={n_experts}")


def shard_experts(model: nn.Module, mesh: DeviceMesh) -> set[nn.Parameter]:
    """Split every MoE layer's experts over the mesh's processes; returns their weights.

    In place. Process 0's weights are the ones split (`distribute_tensor` sends each
    process its slice); each process keeps only its own. Pass the returned set to FSDP as
    `ignored_params`: these weights are already sharded and must not be gathered.
    """
    size = mesh.size()
    owned: set[nn.Parameter] = set()
    for moe in (m for m in model.modules() if isinstance(m, MoE)):
        check_layout(moe.cfg.n_experts, size)
        for name in EXPERT_WEIGHTS:
            w = nn.Parameter(distribute_tensor(getattr(moe, name).data, mesh, [Shard(0)]))
            # Each process's experts see the tokens of all processes: average the P sums.
            w.register_hook(lambda grad: grad / size)
            setattr(moe, name, w)
            owned.add(w)
        moe.expert_parallel = ExpertParallel(mesh)
    return owned

