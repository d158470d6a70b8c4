"""Mixture-of-Experts: capacity without compute.

A dense feed-forward layer (SwiGLU) spends 3*d*h multiply-adds on every token.
A Mixture-of-Experts layer keeps E such FFNs ("experts") and a tiny router that
sends each token to only k of them:

    logits = x @ W_router^T                       (N, E)   one score per expert
    chosen = top-k experts of each token          (N, k)
    y      = sum over chosen e of  g_e * expert_e(x)

so the layer *owns* E experts' worth of parameters but each token *uses* k.
The published interaction model is built this way: 276B parameters in total,
12B active per token (128 experts, 4 chosen, in our layout of it).

Routers (both from the literature):

    "softmax"  p = softmax(logits); take the top-k of p; g = p_top / sum(p_top)
    "sigmoid"  s = sigmoid(logits); take the top-k of s + bias; g = s_top / sum(s_top)
               (DeepSeek-V3). `bias` is a buffer, not a parameter: after each
               training step `update_bias(load)` nudges it up for under-used
               experts and down for over-used ones. It only changes *which*
               experts are chosen, never the weights g, so no loss term is needed.

Two auxiliary losses keep routing healthy:

    balance_loss = E * sum_e f_e * P_e      (Switch Transformer / Mixtral)
        f_e = fraction of the N*k assignments that went to expert e
        P_e = mean router probability of expert e
        = 1 when perfectly balanced, up to E when everything goes to one expert.
    z_loss = mean( logsumexp(logits)^2 )    (ST-MoE; keeps router logits small)

Running the experts ("dropless dispatch"): every token is computed, none is
dropped for lack of capacity.

    1. flatten the (N, k) choices to N*k (token, expert) assignments
    2. sort the assignments by expert id (one argsort)
    3. count assignments per expert (bincount) -> one contiguous slice each
    4. run each expert ONCE on its slice (a loop over experts, never over tokens)
    5. scale by g and index_add_ the results back to their tokens

Over several processes (minitml/expert_parallel.py) the steps stay the same, with
an all-to-all that sends each row to the process owning its expert before step 4,
and one that brings the results back after it.

When only a handful of tokens arrive (streaming decode: one position at a time)
sorting is overhead. Then the layer picks just the chosen experts' weight
matrices, w_gate[e] etc., and does matrix-vector products with them, reading
k experts' weights instead of E: decode cost follows the *active* parameters,
not the total (the reference system does the same with a gather and batched
mat-vecs on the GPU). `moe_dense_reference` (every expert on every token) and
`moe_masked_loop` (the straightforward per-expert loop) are slow, independent
baselines for the tests and the benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minitml.config import MoEConfig


# ----------------------------------------------------------------------------
# The dense feed-forward: one SwiGLU
# ----------------------------------------------------------------------------
class SwiGLU(nn.Module):
    """y = w_down( silu(w_gate x) * w_up x ), no biases: 3*d*h parameters."""

    def __init__(self, d_model: int, d_hidden: int):
        super().__init__()
        self.w_gate = nn.Linear(d_model, d_hidden, bias=False)
        self.w_up = nn.Linear(d_model, d_hidden, bias=False)
        self.w_down = nn.Linear(d_hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (..., d) -> (..., d)
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


def grouped_experts(xs: Tensor, counts: list[int], w_gate: Tensor, w_up: Tensor, w_down: Tensor) -> Tensor:
    """Each expert once, on its contiguous slice of rows sorted by expert.

    xs: (n, d), the first counts[0] rows for expert 0, the next counts[1] for expert 1...;
    w_gate/w_up: (E, d, h), w_down: (E, h, d) -> (n, d). A loop over experts, never over
    tokens. An expert with no rows still runs (on zero rows) so that every expert weight
    is part of the graph: under expert parallelism every process must take part in the
    backward exchange, whatever it received.
    """
    outs, start = [], 0
    for e, n in enumerate(counts):
        rows = xs[start:start + n]  # (n_e, d) the rows routed to expert e
        hidden = F.silu(rows @ w_gate[e]) * (rows @ w_up[e])  # (n_e, h)
        outs.append(hidden @ w_down[e])  # (n_e, d)
        start += n
    return torch.cat(outs)  # (n, d)


# ----------------------------------------------------------------------------
# What the router decided, and what the layer reports back
# ----------------------------------------------------------------------------
@dataclass
class Routing:
    weights: Tensor  # (N, k) combine weights g of the chosen experts; each row sums to 1
    experts: Tensor  # (N, k) ids of the chosen experts (int64)
    logits: Tensor  # (N, E) raw router logits
    probs: Tensor  # (N, E) router probabilities (sigmoid router: scores / their row sum)


@dataclass
class MoEAux:
    balance_loss: Tensor  # scalar, E * sum_e f_e * P_e (1 = perfectly balanced)
    z_loss: Tensor  # scalar, mean logsumexp(logits)^2
    load: Tensor  # (E,) int64, assignments per expert in this call (detached)
    loss: Tensor  # scalar, balance_loss_coef * balance_loss + z_loss_coef * z_loss


def load_balancing_loss(probs: Tensor, experts: Tensor) -> Tensor:
    """Switch/Mixtral balance loss E * sum_e f_e * P_e.

    probs: (N, E) router probabilities; experts: (N, k) chosen expert ids.
    f_e (the hard counts) carries no gradient; P_e does, and pushes probability
    away from the experts that receive more than their share.
    """
    n_experts = probs.shape[-1]
    counts = torch.bincount(experts.flatten(), minlength=n_experts)  # (E,)
    f = counts.to(probs.dtype) / experts.numel()  # (E,) fraction of the N*k assignments
    P = probs.mean(dim=0)  # (E,) mean probability per expert
    return n_experts * (f * P).sum()


def router_z_loss(logits: Tensor) -> Tensor:
    """mean over tokens of logsumexp(logits)^2.  logits: (N, E)."""
    return torch.logsumexp(logits, dim=-1).square().mean()


# ----------------------------------------------------------------------------
# The Mixture-of-Experts layer
# ----------------------------------------------------------------------------
class MoE(nn.Module):
    """Router + E routed SwiGLU experts (+ optional shared experts).

    Parameters: router d*E, routed experts E * 3*d*h, shared experts S * 3*d*h,
    exactly what `Config.param_groups()` counts. `bias` (E,) is a buffer.
    """

    def __init__(self, cfg: MoEConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.d_model = d_model
        E, d, h = cfg.n_experts, d_model, cfg.d_expert
        self.router = nn.Linear(d, E, bias=False)
        # The E experts' weights stacked, so expert e is w_gate[e], w_up[e], w_down[e].
        self.w_gate = nn.Parameter(torch.empty(E, d, h))  # (E, d, h)
        self.w_up = nn.Parameter(torch.empty(E, d, h))  # (E, d, h)
        self.w_down = nn.Parameter(torch.empty(E, h, d))  # (E, h, d)
        # Shared experts: S experts every token uses are one SwiGLU of width S*h.
        S = cfg.n_shared_experts
        self.shared = SwiGLU(d, S * h) if S > 0 else None
        # Balancing bias of the sigmoid router (saved with the model, never trained).
        self.register_buffer("bias", torch.zeros(E))
        # Set by minitml.expert_parallel.shard_experts: experts split over processes.
        self.expert_parallel = None
        # (E,) assignments per expert in the last forward: the trainer nudges `bias` with it.
        self.last_load: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The same init as nn.Linear: uniform in +-1/sqrt(fan_in).
        d, h = self.d_model, self.cfg.d_expert
        nn.init.uniform_(self.w_gate, -(d**-0.5), d**-0.5)
        nn.init.uniform_(self.w_up, -(d**-0.5), d**-0.5)
        nn.init.uniform_(self.w_down, -(h**-0.5), h**-0.5)

    # -- routing ----------------------------------------------------------------
    def route(self, x: Tensor) -> Routing:
        """Choose k experts per token.  x: (N, d)."""
        k = self.cfg.top_k
        logits = self.router(x)  # (N, E)
        if self.cfg.router == "softmax":
            probs = logits.softmax(dim=-1)  # (N, E)
            top, experts = probs.topk(k, dim=-1)  # (N, k), (N, k)
        else:
            scores = torch.sigmoid(logits)  # (N, E), each in (0, 1) independently
            _, experts = (scores + self.bias).topk(k, dim=-1)  # bias only picks...
            top = scores.gather(-1, experts)  # ...the weights use the unbiased scores
            probs = scores / scores.sum(dim=-1, keepdim=True)  # (N, E)
        weights = top / top.sum(dim=-1, keepdim=True)  # (N, k), g renormalised to sum 1
        return Routing(weights=weights, experts=experts, logits=logits, probs=probs)

    @torch.no_grad()
    def update_bias(self, load: Tensor) -> None:
        """Aux-loss-free balancing: bias_e += rate * sign(mean_load - load_e).

        Call after an optimiser step with the (E,) load of that step.
        """
        if load.shape != self.bias.shape:
            raise ValueError(f"load must have shape {tuple(self.bias.shape)}, got {tuple(load.shape)}")
        load = load.to(self.bias.dtype)
        self.bias += self.cfg.bias_update_rate * torch.sign(load.mean() - load)

    # -- running the experts ------------------------------------------------------
    def experts_dispatch(self, x: Tensor, weights: Tensor, experts: Tensor) -> Tensor:
        """Dropless sorted dispatch.  x: (N, d), weights/experts: (N, k) -> (N, d)."""
        N, k = experts.shape
        flat = experts.flatten()  # (N*k,) expert of each (token, slot) assignment
        order = flat.argsort()  # (N*k,) assignments grouped by expert: 0s, then 1s, ...
        token = order // k  # (N*k,) the token each sorted assignment belongs to
        gate = weights.flatten()[order, None]  # (N*k, 1) its combine weight g
        counts = torch.bincount(flat, minlength=self.cfg.n_experts).tolist()  # E ints
        out = grouped_experts(x[token], counts, self.w_gate, self.w_up, self.w_down)  # (N*k, d)
        return x.new_zeros(N, self.d_model).index_add(0, token, gate * out)  # y[t] += g * expert_e(x[t])

    def experts_decode(self, x: Tensor, weights: Tensor, experts: Tensor) -> Tensor:
        """A handful of tokens: mat-vecs with only the chosen experts' weights.

        x: (N, d), weights/experts: (N, k) -> (N, d). No sort, no bincount; the
        layer reads k experts' weights per token and never looks at the other E-k.
        The reference system gathers the chosen matrices and runs one batched
        mat-vec kernel on the GPU. On a CPU, a gather like self.w_gate[experts]
        *copies* k*d*h numbers per matrix, more memory traffic than the mat-vec
        itself (bench/moe.py measures it), so here self.w_gate[e] with a plain int
        (a view of the stack, no copy) feeds each mat-vec directly.
        """
        rows = []
        for x_n, g_n, chosen in zip(x, weights, experts.tolist()):  # at most decode_max_tokens
            y_n = torch.zeros_like(x_n)  # (d,)
            for g, e in zip(g_n, chosen):  # the k experts of this token
                hidden = F.silu(x_n @ self.w_gate[e]) * (x_n @ self.w_up[e])  # (h,) = (d,) @ (d, h)
                y_n = y_n + g * (hidden @ self.w_down[e])  # (d,) += g * (h,) @ (h, d)
            rows.append(y_n)
        return torch.stack(rows)  # (N, d)

    def forward(self, x: Tensor) -> tuple[Tensor, MoEAux]:
        """x: (..., d) -> (y (..., d), MoEAux)."""
        if x.shape[-1] != self.d_model:
            raise ValueError(f"MoE expects inputs (..., {self.d_model}), got shape {tuple(x.shape)}")
        shape = x.shape
        x = x.reshape(-1, self.d_model)  # (N, d)
        if x.shape[0] == 0 and self.expert_parallel is None:  # nothing to route: no output, no loss (not NaN)
            zero = x.new_zeros(())
            load = torch.zeros(self.cfg.n_experts, dtype=torch.long, device=x.device)
            return x.reshape(shape), MoEAux(zero, zero, load, zero)
        r = self.route(x)
        if self.expert_parallel is not None:  # every process takes part, however few its tokens
            y = self.expert_parallel.forward(self, x, r.weights, r.experts)
        elif x.shape[0] <= self.cfg.decode_max_tokens:
            y = self.experts_decode(x, r.weights, r.experts)
        else:
            y = self.experts_dispatch(x, r.weights, r.experts)
        if self.shared is not None:
            y = y + self.shared(x)  # (N, d) every token also uses the shared experts
        if x.shape[0] and (self.training or torch.is_grad_enabled()):
            balance, z = load_balancing_loss(r.probs, r.experts), router_z_loss(r.logits)
        else:  # inference, or no tokens: nothing will be trained on these
            balance = z = x.new_zeros(())
        aux = MoEAux(
            balance_loss=balance,
            z_loss=z,
            load=torch.bincount(r.experts.flatten(), minlength=self.cfg.n_experts).detach(),
            loss=self.cfg.balance_loss_coef * balance + self.cfg.z_loss_coef * z,
        )
        self.last_load = aux.load  # (E,) for the trainer's balancing-bias update
        return y.reshape(shape), aux

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"n_experts={c.n_experts}, top_k={c.top_k}, d_expert={c.d_expert}, "
                f"n_shared_experts={c.n_shared_experts}, router={c.router!r}")


# ----------------------------------------------------------------------------
# Independent baselines (tests, benchmark)
# ----------------------------------------------------------------------------
def moe_dense_reference(moe: MoE, x: Tensor) -> Tensor:
    """Slow reference: EVERY expert on EVERY token, combined with top-k gates.

    Written without `MoE.route` or the dispatch: the gates are a dense (N, E)
    matrix that is zero outside each token's top-k. x: (..., d) -> (..., d).
    """
    cfg, shape = moe.cfg, x.shape
    x = x.reshape(-1, moe.d_model)  # (N, d)
    logits = F.linear(x, moe.router.weight)  # (N, E)
    if cfg.router == "softmax":
        gate_values = choice_scores = logits.softmax(dim=-1)  # (N, E)
    else:
        gate_values = torch.sigmoid(logits)  # (N, E)
        choice_scores = gate_values + moe.bias
    rank = choice_scores.argsort(dim=-1, descending=True).argsort(dim=-1)  # (N, E) 0 = best
    gates = torch.where(rank < cfg.top_k, gate_values, torch.zeros_like(gate_values))
    gates = gates / gates.sum(dim=-1, keepdim=True)  # (N, E) rows sum to 1
    hidden = F.silu(torch.einsum("nd,edh->neh", x, moe.w_gate)) * torch.einsum(
        "nd,edh->neh", x, moe.w_up
    )  # (N, E, h)
    y_all = torch.einsum("neh,ehd->ned", hidden, moe.w_down)  # (N, E, d)
    y = torch.einsum("ne,ned->nd", gates, y_all)  # (N, d)
    if moe.shared is not None:
        y = y + moe.shared(x)
    return y.reshape(shape)


def moe_masked_loop(moe: MoE, x: Tensor) -> Tensor:
    """The straightforward loop: for each expert, find its tokens with a mask.

    (The pattern of many first MoE implementations.) x: (..., d) -> (..., d).
    """
    shape = x.shape
    x = x.reshape(-1, moe.d_model)  # (N, d)
    r = moe.route(x)
    y = torch.zeros_like(x)  # (N, d)
    for e in range(moe.cfg.n_experts):
        token, slot = torch.where(r.experts == e)  # tokens that chose e, and in which slot
        if token.numel() == 0:
            continue
        xs = x[token]  # (n, d)
        out = (F.silu(xs @ moe.w_gate[e]) * (xs @ moe.w_up[e])) @ moe.w_down[e]  # (n, d)
        y.index_add_(0, token, out * r.weights[token, slot, None])
    if moe.shared is not None:
        y = y + moe.shared(x)
    return y.reshape(shape)


# ----------------------------------------------------------------------------
# Load statistics for the notebooks
# ----------------------------------------------------------------------------
def load_stats(load: Tensor) -> dict[str, object]:
    """Summary of an (E,) per-expert load (counts or fractions).

    fraction: list of E shares summing to 1; max_over_mean: busiest expert's load
    over the mean (1 = balanced, E = all on one); cv: std / mean; entropy: of the
    fractions, divided by log E (1 = balanced, 0 = all on one expert).
    """
    load = torch.as_tensor(load).detach().double().flatten()
    if load.numel() == 0 or load.sum() <= 0:
        raise ValueError(f"load must be a non-empty (E,) tensor with a positive sum, got {load}")
    E = load.numel()
    fraction = load / load.sum()  # (E,)
    nonzero = fraction[fraction > 0]
    entropy = float(-(nonzero * nonzero.log()).sum())
    return {
        "fraction": [round(float(f), 4) for f in fraction],
        "max_over_mean": float(load.max() / load.mean()),
        "cv": float(load.std(unbiased=False) / load.mean()),
        "entropy": entropy / math.log(E) if E > 1 else 1.0,
    }
