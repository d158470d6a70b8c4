# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Mixture of Experts: capacity without compute
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/03_moe.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F03_moe.ipynb)
#
# **One idea:** a token uses only $k$ of $E$ experts. The layer *owns* $E$
# feed-forward networks, but each token is sent through $k$ of them, so the
# model can hold far more parameters than any one token pays for. The reference
# interaction model has **276B parameters, of which 12B are active** per token.
#
# A dense feed-forward block (a SwiGLU) computes, for every token $x$,
#
# $$\mathrm{FFN}(x) = W_\text{down}\,\big(\mathrm{silu}(W_\text{gate}\,x) \odot W_\text{up}\,x\big)$$
#
# A Mixture-of-Experts block has $E$ of them and a router $W_r$ (one row per expert):
#
# $$p = \mathrm{softmax}(W_r x), \qquad
#   \mathcal{T} = \text{top-}k(p), \qquad
#   y = \sum_{e \in \mathcal{T}} \frac{p_e}{\sum_{j \in \mathcal{T}} p_j}\, \mathrm{FFN}_e(x)$$
#
# All code lives in `minitml/moe.py`; this notebook only calls it and looks at
# what comes out.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only: fetch the repository (code and checkpoint), install it
    subprocess.run("test -d /content/minitml || git clone -q --depth 1 https://github.com/minitml/minitml "
                   "/content/minitml; pip install -q -e /content/minitml", shell=True, check=True)
    sys.path.insert(0, "/content/minitml")

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINITML_FAST") == "1"  # the test suite runs a shrunken version
TRAIN_STEPS = 150 if FAST else 400  # steps of each toy training run
TIMING_TOKENS = 256 if FAST else 1024  # tokens in the sparse-vs-dense timing

# %%
import time

import matplotlib.pyplot as plt
import torch

from minitml.config import Config, ModelConfig, MoEConfig, get_config
from minitml.exercises import check
from minitml.moe import (
    MoE,
    SwiGLU,
    load_balancing_loss,
    load_stats,
    moe_dense_reference,
    router_z_loss,
)
from minitml.scale import flops_per_position, human  # human: 12_345_678 -> '12.3M'; 2.2e9 bytes -> '2.2 GB'

torch.manual_seed(0)
print("FAST =", FAST, "| train steps:", TRAIN_STEPS, "| timing tokens:", TIMING_TOKENS)

# %% [markdown]
# ## One layer: what it owns, what a token uses
#
# An expert is a SwiGLU with hidden width $h$ = `d_expert`: $3dh$ weights. The
# layer stores the $E$ experts stacked, `w_gate` $(E, d, h)$, `w_up` $(E, d, h)$,
# `w_down` $(E, h, d)$, next to the router $(E, d)$. A token touches the router
# and its $k$ experts:
#
# $$\text{total} = dE + 3dhE, \qquad \text{active} = dE + 3dhk$$

# %%
d_model = 16
moe_cfg = MoEConfig(n_experts=8, top_k=2, d_expert=32)
moe = MoE(moe_cfg, d_model)
print(moe)
total = sum(p.numel() for p in moe.parameters())
E, k, h = moe_cfg.n_experts, moe_cfg.top_k, moe_cfg.d_expert
active = d_model * E + k * 3 * d_model * h
print(f"total {total:,} weights; active per token {active:,} ({active / total:.0%})")

x = torch.randn(5, d_model)  # (N, d): five tokens
y, aux = moe(x)  # y: (5, d)
print("output", tuple(y.shape), "| load per expert", aux.load.tolist(),
      f"| balance loss {aux.balance_loss:.3f} | z-loss {aux.z_loss:.3f}")

# %% [markdown]
# ## Routing, step by step
#
# The router gives each token a probability per expert and keeps the $k$ best.
# Running the experts without dropping any token ("dropless dispatch"):
#
# 1. flatten the $(N, k)$ choices into $Nk$ (token, expert) assignments,
# 2. sort them by expert id (one `argsort`),
# 3. count per expert (`bincount`): each expert's tokens are now one contiguous slice,
# 4. run each expert **once** on its slice (a loop over experts, never over tokens),
# 5. scale by the gate weight and `index_add_` each result back to its token.
#
# Here are steps 1–3 on the five tokens above (this is what `MoE.experts_dispatch` does):

# %%
with torch.no_grad():
    r = moe.route(x)  # weights, experts: (N, k); logits, probs: (N, E)
flat = r.experts.flatten()  # (N*k,)
order = flat.argsort()  # assignments grouped by expert
print("chosen experts per token:\n", r.experts)
print("gate weights (rows sum to 1):\n", r.weights.round(decimals=3))
print("flattened choices:  ", flat.tolist())
print("sorted by expert:   ", flat[order].tolist())
print("their tokens:       ", (order // k).tolist())
print("tokens per expert:  ", torch.bincount(flat, minlength=E).tolist())

# %% [markdown]
# The result equals an independent, slow reference that runs *every* expert on
# *every* token and multiplies by a gate matrix that is zero outside the top-$k$:

# %%
with torch.no_grad():
    print("max |dispatch - dense reference| =",
          f"{(moe(x)[0] - moe_dense_reference(moe, x)).abs().max():.1e}")

# %% [markdown]
# ## A toy task where experts can specialise
#
# Inputs come from 8 clusters; each cluster has its own linear map to the
# target. One MoE layer learns the regression $x \mapsto y$. We start every run
# from the **same lopsided router**: two experts score high for almost every
# token, the way a few experts can get ahead early in training and then keep
# winning ("the rich get richer").

# %%
N_CLUSTERS = 8
centers = torch.randn(N_CLUSTERS, d_model) * 2  # (C, d)
maps = torch.randn(N_CLUSTERS, d_model, d_model) / d_model**0.5  # (C, d, d)


def toy_batch(n, generator):
    """n points: cluster ids (n,), inputs x (n, d), targets y = maps[c] x (n, d)."""
    c = torch.randint(N_CLUSTERS, (n,), generator=generator)
    x = centers[c] + 0.5 * torch.randn(n, d_model, generator=generator)
    y = torch.einsum("nd,nde->ne", x, maps[c])
    return c, x, y


def train_toy(cfg, steps=TRAIN_STEPS, seed=1):
    """Train one MoE layer on the toy task; returns the layer and its history.

    On one thread: the layer is so small that its kernels are over in microseconds, and
    two threads then spend their time waiting for each other (on a 2-core machine with
    the other core busy, this cell took 74 s on two threads and 2.7 s on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_toy(cfg, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train_toy(cfg, steps, seed):
    torch.manual_seed(seed)
    layer = MoE(cfg, d_model)
    with torch.no_grad():  # the lopsided start: experts 0 and 1 favour every cluster
        common = centers.mean(0)
        layer.router.weight[:2] += 2.0 * common / common.norm()
    optimizer = torch.optim.Adam(layer.parameters(), lr=3e-3)
    data = torch.Generator().manual_seed(2)
    history = {"imbalance": [], "mse": []}
    for _ in range(steps):
        _, x, y = toy_batch(256, data)
        out, aux = layer(x)
        mse = (out - y).square().mean()
        loss = mse + aux.loss  # aux.loss = balance_coef * balance + z_coef * z
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if cfg.router == "sigmoid":
            layer.update_bias(aux.load)  # aux-loss-free balancing, after the step
        history["imbalance"].append(load_stats(aux.load)["max_over_mean"])
        history["mse"].append(mse.item())
    return layer, history


test_c, test_x, test_y = toy_batch(2048, torch.Generator().manual_seed(3))

# %% [markdown]
# ## Load balance, three ways
#
# * **no balancing**: the plain softmax router, balance loss weight 0;
# * **balance loss** (Switch / Mixtral): add $\;\alpha \cdot E \sum_e f_e P_e\;$,
#   where $f_e$ is the fraction of assignments that went to expert $e$ and $P_e$
#   its mean router probability. It is 1 when perfectly balanced and $E/k$ when
#   everything lands on the same $k$ experts; its gradient (through $P_e$) pushes
#   probability away from the busy experts;
# * **sigmoid router + bias** (DeepSeek-V3, no loss at all): scores
#   $s = \sigma(W_r x)$, choose the top-$k$ of $s + b$, weight by the unbiased $s$;
#   after each step $b_e \mathrel{+}= \gamma \cdot \mathrm{sign}(\overline{\text{load}} - \text{load}_e)$.
#
# (The z-loss, $\overline{\mathrm{logsumexp}(W_r x)^2}$, keeps router logits
# small; it is switched off here to isolate the balancing.)

# %%
runs = {
    "no balancing": MoEConfig(n_experts=8, top_k=2, d_expert=32,
                              balance_loss_coef=0.0, z_loss_coef=0.0),
    "balance loss (0.5)": MoEConfig(n_experts=8, top_k=2, d_expert=32,
                                    balance_loss_coef=0.5, z_loss_coef=0.0),
    "sigmoid + bias": MoEConfig(n_experts=8, top_k=2, d_expert=32, router="sigmoid",
                                bias_update_rate=3e-3, balance_loss_coef=0.0, z_loss_coef=0.0),
}
trained, histories, start_load, end_load = {}, {}, {}, {}
for name, cfg in runs.items():
    t0 = time.perf_counter()
    torch.manual_seed(1)
    with torch.no_grad():  # the load before training (same lopsided start for all)
        start_load[name] = train_toy(cfg, steps=0)[0](test_x)[1].load
    trained[name], histories[name] = train_toy(cfg)
    with torch.no_grad():
        out, aux = trained[name](test_x)
    end_load[name] = aux.load
    stats = load_stats(aux.load)
    print(f"{name:<20} max/mean load {load_stats(start_load[name])['max_over_mean']:.2f} -> "
          f"{stats['max_over_mean']:.2f}   entropy {stats['entropy']:.2f}   "
          f"test mse {(out - test_y).square().mean():.4f}   ({time.perf_counter() - t0:.1f} s)")

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
for name, hist in histories.items():
    axes[0].plot(hist["imbalance"], label=name)
axes[0].axhline(1.0, color="gray", lw=0.8, ls="--")
axes[0].set(xlabel="step", ylabel="max load / mean load", title="imbalance while training")
axes[0].legend(fontsize=8)
for ax, name in zip(axes[1:], runs):
    before = (start_load[name] / start_load[name].sum()).numpy()  # (E,) shares
    after = (end_load[name] / end_load[name].sum()).numpy()
    experts = torch.arange(E).numpy()
    ax.bar(experts - 0.2, before, width=0.4, label="before", color="lightgray")
    ax.bar(experts + 0.2, after, width=0.4, label="after")
    ax.axhline(1 / E, color="gray", lw=0.8, ls="--")
    ax.set(xlabel="expert", ylabel="share of assignments", title=name, ylim=(0, 0.6))
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Without balancing, the two early favourites keep most of the tokens and the
# other experts' parameters sit mostly idle: capacity paid for in memory, never
# used. Both balancing methods spread the tokens out, and the spread model fits
# the task better (lower test error above).
#
# ## Routing, visualised
#
# Which experts does each token pick? Rows are 64 test tokens sorted by their
# cluster; a cell is the gate weight $g_e$ (zero for the $E-k$ experts not chosen).

# %%
order_by_cluster = test_c.argsort()[:: len(test_c) // 64][:64]  # 64 tokens, cluster-sorted
fig, axes = plt.subplots(1, 2, figsize=(10, 5))
for ax, name in zip(axes, ["no balancing", "sigmoid + bias"]):
    layer = trained[name]
    with torch.no_grad():
        r = layer.route(test_x[order_by_cluster])
    gates = torch.zeros(len(order_by_cluster), E).scatter(1, r.experts, r.weights)  # (64, E)
    image = ax.imshow(gates.numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1)
    clusters = test_c[order_by_cluster]
    edges = [i for i in range(1, len(clusters)) if clusters[i] != clusters[i - 1]]
    for edge in edges:
        ax.axhline(edge - 0.5, color="orange", lw=0.8)
    ax.set(xlabel="expert", ylabel="token (sorted by cluster)", title=name)
fig.colorbar(image, ax=axes, label="gate weight $g_e$")
plt.show()

# %% [markdown]
# Without balancing, every cluster goes to the same two experts. With
# balancing, the clusters (between the orange lines) mostly get experts of their
# own: the router has learnt to *specialise*, and each expert sees the tokens it
# is good at.
#
# ## Sparse versus dense compute
#
# Forward FLOPs are about 2 per weight touched. Per token:

# %%
d, E, k, h = 512, 8, 2, 1024  # the sizes of bench/moe.py
flops_moe = 2 * (d * E + k * 3 * d * h)  # router + k experts
flops_dense_active = 2 * 3 * d * (k * h)  # one SwiGLU as wide as k experts
flops_dense_total = 2 * 3 * d * (E * h)  # one SwiGLU as big as all experts
print(f"MoE (E={E}, k={k}):            {flops_moe / 1e6:6.2f} MFLOPs/token")
print(f"dense, same active params: {flops_dense_active / 1e6:6.2f} MFLOPs/token")
print(f"dense, same total params:  {flops_dense_total / 1e6:6.2f} MFLOPs/token")

# %% [markdown]
# And measured on this machine (a quick look; `python bench/moe.py` measures carefully):

# %%
def median_ms(fn, x, repeats=5):
    """Median wall time of fn(x) in milliseconds, after one warm-up call."""
    fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


big_moe = MoE(MoEConfig(n_experts=E, top_k=k, d_expert=h), d)
dense_active = SwiGLU(d, k * h)
dense_total = SwiGLU(d, E * h)
many, one = torch.randn(TIMING_TOKENS, d), torch.randn(1, d)
with torch.inference_mode():
    rows = [
        ("dense SwiGLU, same active params", lambda z: dense_active(z)),
        ("dense SwiGLU, same total params", lambda z: dense_total(z)),
        ("every expert on every token", lambda z: moe_dense_reference(big_moe, z)),
        ("MoE layer (top-2 of 8)", lambda z: big_moe(z)),
    ]
    print(f"{'':<34}{TIMING_TOKENS:>6} tokens   1 token (decode)")
    for label, fn in rows:
        print(f"{label:<34}{median_ms(fn, many):>9.1f} ms{median_ms(fn, one, repeats=21):>12.2f} ms")

# %% [markdown]
# The MoE costs about what the *active*-size dense layer costs, for four times
# the parameters. For a single decoding token the layer skips the sort and
# multiplies the token by only the chosen experts' matrices: decode reads $k$
# experts' weights, not $E$ (the reference system does this with a gather and
# batched matrix-vector products on the GPU).
#
# ## 276B total, 12B active
#
# The presets in `minitml.config` run from a CPU toy to the published scale.
# Memory follows the **total** (every expert must be stored; 2 bytes per weight
# in bf16); compute per token follows the **active** count. The FLOPs column is
# `minitml.scale.flops_per_position`: 2 per multiply-add with an active weight, plus
# attention over the sliding window, with table look-ups free and each head run
# only where it predicts (notebook 11 checks it against PyTorch's own count). Our
# `tml_small` layout lands at 278B / 11.9B, within 1% of the published figures.

# %%
print(f"{'preset':<10}{'total':>9}{'active':>9}{'active %':>10}"
      f"{'bf16 total':>12}{'bf16 active':>13}{'GFLOPs/token':>14}")
for name in ["tiny", "small", "tml_small"]:
    c = get_config(name)
    n = c.param_counts()
    print(f"{name:<10}{human(n['total']):>9}{human(n['active']):>9}"
          f"{n['active'] / n['total']:>10.1%}{human(2 * n['total'], 'B'):>12}"
          f"{human(2 * n['active'], 'B'):>13}{flops_per_position(c) / 1e9:>14.3g}")

# %% [markdown]
# Where the 276B sit in `tml_small` (48 layers, $d$ = 4096, 128 experts of
# width 3712, top-4; the first layer is dense):

# %%
big = get_config("tml_small")
groups = big.param_groups()
print(f"{'group':<24}{'total':>18}{'active':>18}")
for group, n in sorted(groups.items(), key=lambda item: -item[1]["total"]):
    print(f"{group:<24}{n['total']:>18,}{n['active']:>18,}")
counts = big.param_counts()
print(f"{'all':<24}{counts['total']:>18,}{counts['active']:>18,}")
moe_share = groups["moe_ffn"]["total"] / counts["total"]
print(f"\nthe routed experts are {moe_share:.1%} of all weights; "
      f"a token uses {big.moe.top_k} of {big.moe.n_experts} per layer")

# %% [markdown]
# The same `MoE` class builds one of those layers on PyTorch's *meta* device
# (shapes only, no memory), and its parameter count matches the inventory:

# %%
with torch.device("meta"):
    huge_layer = MoE(big.moe, big.model.d_model)
n_moe_layers = sum(big.model.is_moe_layer(i) for i in range(big.model.n_layers))
per_layer = sum(p.numel() for p in huge_layer.parameters())
print(f"one tml_small MoE layer: {per_layer:,} weights "
      f"({2 * per_layer / 1e9:.1f} GB in bf16) x {n_moe_layers} layers = "
      f"{per_layer * n_moe_layers:,} (inventory: {groups['moe_ffn']['total']:,})")

# %% [markdown]
# No single GPU holds 47 such layers of experts and their training state. Notebook 11
# spreads them over many: FSDP shards every weight and gathers each layer's experts when it
# runs, and *expert parallelism* leaves each expert on one process and sends the tokens to
# it instead (`minitml/expert_parallel.py`), the same sorted dispatch as above with an
# all-to-all before the experts run and one after.

# %% [markdown]
# ## Exercises
#
# Replace each `raise NotImplementedError` with your code and re-run the cell;
# `check` compares your answer with the package's.
#
# **1.** How many weights of one MoE layer does a token use? Count the router,
# the $k$ routed experts and the `n_shared_experts` shared experts (every token
# uses those) for a `MoEConfig` and a `d_model`.

# %%
def my_active_params(moe_cfg, d_model):
    raise NotImplementedError  # your code here


def active_per_moe_layer(c):
    n_moe = sum(c.model.is_moe_layer(i) for i in range(c.model.n_layers))
    return c.param_groups()["moe_ffn"]["active"] // n_moe


shared = Config(moe=MoEConfig(n_experts=16, top_k=1, d_expert=96, n_shared_experts=2),
                model=ModelConfig(d_model=64, moe_every=1))
check(my_active_params, [
    ((c.moe, c.model.d_model), active_per_moe_layer(c))
    for c in [get_config("tiny"), get_config("small"), get_config("tml_small"), shared]
])

# %% [markdown]
# **2.** The balance loss by hand: given router probabilities `probs` $(N, E)$
# and chosen experts `experts` $(N, k)$, return
# $E \sum_e f_e P_e$ with $f_e$ = (assignments to $e$) / $(Nk)$ and
# $P_e$ = mean of `probs[:, e]`.

# %%
def my_balance_loss(probs, experts):
    raise NotImplementedError  # your code here


def routed(N, E, k, seed):
    g = torch.Generator().manual_seed(seed)
    probs = torch.randn(N, E, generator=g).mul(2).softmax(-1)
    return probs, probs.topk(k, dim=-1).indices


check(my_balance_loss, [
    (case, load_balancing_loss(*case))
    for case in [routed(10, 4, 1, 0), routed(64, 8, 2, 1), routed(7, 3, 3, 2)]
], atol=1e-5)

# %% [markdown]
# **3.** The router z-loss: the mean over tokens of $\mathrm{logsumexp}(\text{logits})^2$.
# Why does it keep logits small? (Hint: what happens to it when you add a
# constant to every logit of a token?)

# %%
def my_z_loss(logits):
    raise NotImplementedError  # your code here


check(my_z_loss, [
    ((logits,), router_z_loss(logits))
    for logits in [torch.zeros(3, 4), torch.tensor([[1.0, 2.0, 3.0]]), torch.randn(16, 8) * 3]
], atol=1e-4)
