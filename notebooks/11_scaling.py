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
# # 11 · Scaling: from the tiny model to 276B / 12B, what it costs
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/11_scaling.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F11_scaling.ipynb)
#
# **One idea:** the same few counts price every scale. Count the parameters, the bytes
# they and their training state take, the bytes of one live session's KV cache, and the
# FLOPs of one 200 ms micro-turn; divide each by what one GPU offers (memory, FLOP/s,
# memory bandwidth). The largest quotient is how many GPUs the job needs, and it tells
# you *which* resource you are paying for:
#
# $$\text{GPUs} = \max\Big(\frac{\text{bytes resident}}{\text{memory}},\;
#   \frac{\text{FLOPs}}{\text{time} \cdot \text{peak} \cdot \text{MFU}},\;
#   \frac{\text{bytes read}}{\text{time} \cdot \text{bandwidth} \cdot u}\Big)$$
#
# Every formula lives in `minitml/scale.py`, one comment beside each line;
# `tests/test_scale.py` checks them on the tiny preset against the real model. Nothing
# here builds the 276B model: it is all arithmetic on its config. GPU figures are the
# vendors' datasheet peaks, not measurements, and every count is a lower bound (time
# spent talking between GPUs is not counted).

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
CURVE_POINTS = 25 if FAST else 100  # points on each curve
SESSIONS = 1000  # concurrent live sessions to plan for
TOKENS_PER_PARAM = 20  # training tokens per (total) parameter: Chinchilla's rule of thumb
TRAIN_DAYS = 30  # wall-clock time to train in

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from minitml import checkpoint
from minitml.config import get_config
from minitml.exercises import check
from minitml.model import InteractionModel
from minitml.scale import (
    BF16_ADAMW,
    GPUS,
    LatencyBudget,
    activations_per_token,
    experts_touched,
    flops_per_micro_turn,
    format_plan,
    gpus_to_serve,
    gpus_to_train,
    human,
    kv_cache_bytes,
    moe_layer_bytes,
    plan,
    serving_step,
    sessions_per_gpu,
    train_flops_per_token,
    training_memory_per_gpu,
)
from minitml.stream import random_blocks

torch.manual_seed(0)
torch.set_num_threads(1)
PRESETS = ["tiny", "small", "tml_small"]
big = get_config("tml_small")
print("FAST =", FAST, "| GPUs (datasheet figures):")
for key, g in GPUS.items():
    print(f"  {key:<10} {g.name:<16} {human(g.memory_bytes, 'B'):>8}  "
          f"{human(g.flops, 'FLOP/s'):>13} bf16 dense  {human(g.bandwidth, 'B/s'):>10}")

# %% [markdown]
# ## The plan for the three presets
#
# `plan(cfg)` collects everything for one config; `format_plan` prints them side by
# side. Training assumes `TOKENS_PER_PARAM` tokens per parameter (Chinchilla's rule of
# thumb for dense models, a round assumption here) over `TRAIN_DAYS` days; serving
# assumes `SESSIONS` concurrent live sessions. The last lines list the other assumptions.

# %%
plans = [plan(name, sessions=SESSIONS, train_days=TRAIN_DAYS,
              train_tokens=TOKENS_PER_PARAM * get_config(name).param_counts()["total"])
         for name in PRESETS]
print(format_plan(plans))
p = BF16_ADAMW
print(f"\nbytes per parameter when training: {p.weights} (bf16) + {p.master} (fp32 master) + "
      f"{p.grads} (grads) + {p.optimizer} (AdamW m, v) = {p.weights + p.master + p.grads + p.optimizer}")

# %% [markdown]
# Reading the columns: the **weights** follow the *total* parameters (every expert is
# stored), the **FLOPs** follow the *active* ones (a token runs through $k$ experts).
# The training state is a bf16 copy of the weights, an fp32 master copy, fp32 gradients
# and AdamW's two fp32 moments per parameter (`scale.Precision`, printed below). The
# **KV cache** is per live session: keys and values of every layer over the whole
# sliding window,
#
# $$\text{KV} = 2 \cdot n_\text{layers} \cdot n_\text{kv heads} \cdot d_\text{head}
#   \cdot W \cdot \text{bytes},\qquad W = \text{window micro-turns} \times L .$$
#
# ## Checked against the real tiny model
#
# The formulas are worth something only if they match what the code does. For the tiny
# preset we build the model and compare: its parameters, its ring-buffer KV cache, and
# the FLOPs PyTorch's `FlopCounterMode` counts in one micro-turn streamed through the
# cache. (The counter sees matmuls only; the math attention backend turns attention into
# matmuls so it counts them too. A cached call scores each query against the whole ring
# *plus* the new block, $W + L$ keys with the extra ones masked, so that is the number of
# keys the formula is given here; the planner's default, $W$, is what attention needs.)

# %%
tiny = get_config("tiny")
model = InteractionModel(tiny).eval()
L, W = tiny.positions_per_micro_turn, tiny.window
caches = model.new_cache(1)
with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
    h, _ = model.run(model.embed(random_blocks(tiny, 1)), torch.arange(L), caches)  # (1, L, d)
    h = h[:, model.predictors]  # (1, A, d) the positions that predict output tokens
    model.text_head(h), model.mel_head.logits(h)
rows = [
    ("parameters", tiny.param_counts()["total"], sum(p.numel() for p in model.parameters())),
    ("KV cache bytes (fp32, + int64 slot positions)",
     kv_cache_bytes(tiny, 4) + tiny.model.n_layers * W * 8, sum(c.nbytes() for c in caches)),
    ("FLOPs of one micro-turn (W + L keys)",
     flops_per_micro_turn(tiny, keys=W + L)["total"], counter.get_total_flops()),
]
print(f"{'':<48}{'formula':>14}{'measured':>14}")
for label, formula, measured in rows:
    print(f"{label:<48}{formula:>14,}{measured:>14,}")
print(f"\nL = {L} positions per micro-turn, window W = {W}; the planner's FLOPs (W keys): "
      f"{flops_per_micro_turn(tiny)['total']:,}")

# %% [markdown]
# The activation formula (`activations_per_token`) lists, tensor by tensor, what autograd
# keeps for backward; `tests/test_scale.py` measures it with `saved_tensors_hooks` on a real
# forward + loss and prints the agreement.
#
# ## Training: memory per GPU against the number of GPUs
#
# Training shards the weights, gradients and optimizer state over the $G$ GPUs (FSDP /
# ZeRO-3), but each GPU also holds the activations of its own micro-batch, which
# sharding does not shrink:
#
# $$\text{memory per GPU} = \frac{b \cdot N_\text{total}}{G} + \text{micro-batch tokens}
#   \times \text{activation bytes per token}$$
#
# with $b$ the training bytes per parameter printed above.
#
# Activation checkpointing keeps only each block's input and recomputes the block during
# backward (one extra forward pass, which this planner does not add to the compute).

# %%
gpus = np.unique(np.geomspace(8, 4096, CURVE_POINTS).astype(int))
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for ckpt, style in [(False, "--"), (True, "-")]:
    per_gpu = [training_memory_per_gpu(big, g, 4096, BF16_ADAMW, ckpt) / 1e9 for g in gpus]
    axes[0].loglog(gpus, per_gpu, style, label=f"checkpointing={ckpt}")
for key in ["H100-SXM", "H200"]:
    axes[0].axhline(0.9 * GPUS[key].memory_bytes / 1e9, color="gray", lw=0.8, ls=":")
    axes[0].text(gpus[0], 0.9 * GPUS[key].memory_bytes / 1e9 * 1.08, f"90% of {key}", fontsize=8)
axes[0].set(xlabel="GPUs", ylabel="GB per GPU", title="tml_small: memory per GPU (micro-batch 4096 tokens)")
axes[0].legend(fontsize=8)

days = np.geomspace(7, 365, CURVE_POINTS)
tokens = TOKENS_PER_PARAM * big.param_counts()["total"]
runs = [gpus_to_train(big, tokens, d * 86400, "H100-SXM") for d in days]
axes[1].loglog(days, [r["compute"] for r in runs], label="compute bound")
axes[1].loglog(days, [r["memory"] for r in runs], label="memory bound")
axes[1].set(xlabel="wall-clock days", ylabel="H100s",
            title=f"tml_small: GPUs to train on {human(tokens)} tokens")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

for ckpt in (False, True):
    a = activations_per_token(big, checkpointing=ckpt)
    r = gpus_to_train(big, tokens, TRAIN_DAYS * 86400, "H100-SXM", checkpointing=ckpt)
    print(f"checkpointing={ckpt!s:<5}: {human(a['total'], 'B')} of activations per token; "
          f"{TRAIN_DAYS} days on H100s: compute needs {r['compute']}, memory needs {r['memory']} "
          f"-> {r['gpus']} ({r['binding']} binds)")
print(f"training FLOPs per token: {human(train_flops_per_token(big), 'FLOP')} "
      f"(6 x active parameters alone would be {human(6 * big.param_counts()['active'], 'FLOP')}; "
      "the rest is attention over the window and the patch stem)")

# %% [markdown]
# ## Serving: real time, every 200 ms
#
# A live session must finish each micro-turn's step before the next 200 ms of audio has
# arrived. One step is $A$ forward calls (see `minitml/generator.py`): one over the input
# block, then $A - 1$ one-token calls, each producing the next output token from the one
# before. The GPUs batch every session's calls together. Three bounds:
#
# * **memory**: the weights (once, sharded) plus one KV cache per session;
# * **compute**: sessions $\times$ FLOPs per micro-turn within the budget, at an assumed MFU;
# * **bandwidth**: each call reads the weights it touches and every session's KV cache.
#
# First `small`, which fits on one GPU with room to spare: how many sessions per GPU,
# bound by bound, on each GPU type.

# %%
small = get_config("small")
fig, ax = plt.subplots(figsize=(8, 3.5))
bounds = ["memory", "compute", "bandwidth"]
for i, key in enumerate(GPUS):
    s = sessions_per_gpu(small, key)
    ax.bar(i + np.array([-0.25, 0, 0.25]), [s[b] for b in bounds], width=0.25,
           color=["C0", "C1", "C2"], label=bounds if i == 0 else None)
    print(f"{key:<10} memory {s['memory']:>6,}  compute {s['compute']:>6,}  "
          f"bandwidth {s['bandwidth']:>6,}  -> {s['sessions']:,} sessions ({s['binding']} binds)")
ax.set_xticks(range(len(GPUS)), list(GPUS))
ax.set(ylabel="live sessions per GPU", title="small: sessions one GPU serves in real time")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Now `tml_small`. Its bf16 weights alone do not fit on one GPU of any of these types:

# %%
weights = big.param_counts()["total"] * 2
for key, g in GPUS.items():
    r = gpus_to_serve(big, 1, key)
    print(f"{key:<10} {human(weights, 'B')} of weights / {human(0.9 * g.memory_bytes, 'B')} usable "
          f"-> {r['hold_weights']} GPUs just to hold them; one session needs {r['gpus']} ({r['binding']})")
print(f"each session adds a {human(kv_cache_bytes(big), 'B')} KV cache "
      f"({big.model.window_micro_turns} micro-turns x {big.positions_per_micro_turn} positions of keys and values)")

# %% [markdown]
# How the count grows with the number of sessions, and which bound binds where:

# %%
n_sessions = np.unique(np.geomspace(1, 20_000, CURVE_POINTS).astype(int))
fig, ax = plt.subplots(figsize=(8, 4))
table = [gpus_to_serve(big, int(n), "H100-SXM") for n in n_sessions]
for b in bounds:
    ax.loglog(n_sessions, [r[b] for r in table], label=f"{b} bound")
ax.loglog(n_sessions, [r["gpus"] for r in table], "k:", lw=2, label="needed (the largest)")
ax.set(xlabel="live sessions", ylabel="H100s", title="tml_small: GPUs to serve in real time")
ax.legend(fontsize=8)
plt.show()
for n in [1, 10, 100, SESSIONS, 10_000]:
    r = gpus_to_serve(big, n, "H100-SXM")
    print(f"{n:>6,} sessions: memory {r['memory']:>4}, compute {r['compute']:>4}, "
          f"bandwidth {r['bandwidth']:>4} -> {r['gpus']:>4} H100s ({r['binding']} binds), "
          f"{n / r['gpus']:.1f} sessions per GPU")

# %% [markdown]
# With few sessions the GPUs are there to *hold* the weights. With many, what fills
# them is one KV cache per session, and the compute and bandwidth of every session's
# micro-turn grow with it; the weights are read once per call for all the sessions in
# the batch, so batching is what makes them cheap. (Shrinking the window, or keeping
# fewer KV heads, is what would cut the per-session memory.)
#
# ## Why MoE: capacity at fixed compute
#
# Keep one token's work fixed (the top-$k$ experts of `tml_small`, each as wide as
# there) and give each layer more experts. The total parameters, and the memory, grow with $E$; the
# active parameters and the FLOPs per micro-turn hardly move (only the router, $d \cdot E$
# per layer, grows).

# %%
experts = [8, 16, 32, 64, 128, 256]
print(f"each token: top-{big.moe.top_k} experts of width {big.moe.d_expert}, d_model {big.model.d_model}")
rows = []
for E in experts:
    c = big.replace(moe=replace(big.moe, n_experts=E))
    n = c.param_counts()
    rows.append((E, n["total"], n["active"], flops_per_micro_turn(c)["total"],
                 gpus_to_serve(c, 1, "H100-SXM")["hold_weights"]))
print(f"{'experts':>8}{'total':>10}{'active':>10}{'FLOPs/micro-turn':>18}{'H100s to hold':>15}")
for E, total, active, flops, hold in rows:
    print(f"{E:>8}{human(total):>10}{human(active):>10}{human(flops, 'FLOP'):>18}{hold:>15}")
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogx([r[0] for r in rows], [r[1] / 1e9 for r in rows], "o-", base=2, label="total (memory)")
ax.semilogx([r[0] for r in rows], [r[2] / 1e9 for r in rows], "o-", base=2, label="active (compute)")
ax.set(xlabel="experts per layer", ylabel="parameters (billions)", title="tml_small with E experts, top-4")
ax.legend(fontsize=8)
plt.show()
n = big.param_counts()
print(f"a dense model as large as tml_small would do {n['total'] / n['active']:.0f}x the weight "
      "FLOPs per token")

# %% [markdown]
# ## Why streaming decode gathers expert weights
#
# In one call with $n$ tokens, each routed to $k$ of $E$ experts, a MoE layer can
#
# * run a grouped matrix multiply over **all** $E$ experts (reads all $E$ experts' weights),
# * **gather**, for each token, the matrices of its $k$ experts and do matrix-vector
#   products (reads $n k$ expert matrices), or at best
# * read each expert that got a token once: with uniform routing the expected number of
#   distinct experts **touched** is $E\,(1 - (1 - k/E)^n)$.
#
# At decode, a call carries one token per session, and reading weights (not arithmetic)
# is the cost. Gathering wins while $n k < E$, i.e. below $n = E/k$ tokens. That is why
# the reference system decodes with gather + matrix-vector products, and why
# `minitml.moe.MoE` switches to its decode path at or below `decode_max_tokens` tokens.

# %%
E, k = big.moe.n_experts, big.moe.top_k
ns = np.unique(np.geomspace(1, 1024, CURVE_POINTS).astype(int))
layer = [moe_layer_bytes(big, int(n)) for n in ns]
fig, ax = plt.subplots(figsize=(7, 3.8))
for way in ["all", "gather", "touched"]:
    ax.loglog(ns, [b[way] / 1e9 for b in layer], label=way)
ax.axvline(E / k, color="gray", ls=":", lw=0.8)
ax.set(xlabel="tokens in the call", ylabel="GB of expert weights read (one layer, bf16)",
       title=f"tml_small MoE layer: E = {E}, top-{k}")
ax.legend(fontsize=8)
plt.show()
print(f"crossover: n = E / k = {E // k} tokens")
tokens_prefill = big.positions_per_micro_turn - big.layout()["model_out"] + 1
for label, n_tok in [("one session's input call", tokens_prefill), ("one session's decode call", 1)]:
    print(f"{label} ({n_tok} tokens): touches {experts_touched(n_tok, E, k):.1f} of {E} experts per layer")

# %% [markdown]
# ## The 0.40 s latency budget
#
# The reported average turn-taking latency is 0.40 s. Of that, only part is left for the
# GPUs. `LatencyBudget` writes the rest down, each item an **assumption** you can change:
# the user's turn ends, on average, halfway through a 200 ms input chunk, and the model
# hears that chunk only when it is complete; the audio travels to the server and back; the
# first output token is vocoded; the client buffers a little against network jitter; and
# the model answers in the first micro-turn after the end of the turn (no extra wait).

# %%
budget = LatencyBudget()
parts = budget.breakdown()
fig, ax = plt.subplots(figsize=(9, 1.8))
left = 0.0
for i, (name, seconds) in enumerate(parts.items()):
    ax.barh(0, seconds, left=left, color=f"C{i}", label=f"{name} {1000 * seconds:.0f} ms")
    left += seconds
ax.set(xlim=(0, budget.target_s), yticks=[], xlabel="seconds", title="where the 0.40 s goes")
ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.6))
plt.show()
step_s = min(tiny.audio.micro_turn_ms / 1000, budget.compute_s)  # keep up AND answer in time
print(f"compute left: {1000 * budget.compute_s:.0f} ms; a step must also fit the "
      f"{tiny.audio.micro_turn_ms} ms micro-turn -> budget {1000 * step_s:.0f} ms per step")
s = sessions_per_gpu(small, "H100-SXM", budget_s=step_s)
r = gpus_to_serve(big, SESSIONS, "H100-SXM", budget_s=step_s)
print(f"small:     {s['sessions']:,} sessions per H100 ({s['binding']} binds)")
print(f"tml_small: {r['gpus']} H100s for {SESSIONS:,} sessions ({r['binding']} binds)")
print(f"one tml_small session's micro-turn alone on one H100 at 30% MFU: "
      f"{1000 * serving_step(big, 1)['flops'] / (GPUS['H100-SXM'].flops * 0.3):.0f} ms of compute")

# %% [markdown]
# ## Sharding for real: FSDP2 on two processes
#
# The training plan above assumes the state is *sharded*: each of $G$ GPUs keeps $1/G$
# of every weight, gradient and optimizer moment, gathers one block's full weights just
# before using it, and frees them right after. `minitml/distributed.py` does exactly that
# with PyTorch's own `fully_shard` (FSDP2), one unit per transformer block; the same
# `python -m minitml train` runs under `torchrun` (gloo on CPUs, NCCL on GPUs).
#
# Here it runs for real on this machine: the tiny model trains for a few steps once in
# one process and once in two, on the same global batch. The losses must agree (the
# gradients are averaged over the two halves of the batch), and each process's shard of
# the checkpoint must hold half of the fp32 weights and AdamW moments:
# $(4 + 8) \cdot N_\text{total} / 2$ bytes.

# %%
import json
import tempfile
from pathlib import Path

from minitml.scale import FP32_ADAMW

work = Path(tempfile.mkdtemp())
env = {**os.environ, "MINITML_CACHE": str(work / "data"), "PYTHONWARNINGS": "ignore"}
train_args = ["train", "--train-dialogues", "8", "--val-dialogues", "4", "--batch-size", "4",
              "--max-turns", "12", "--steps", str(3 if FAST else 10), "--eval-every", "1000", "--threads", "1"]
one_process = [sys.executable, "-m", "minitml"]
two_processes = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                 "-m", "minitml"]
histories = {}
for name, launcher in [("1 process", one_process), ("2 processes", two_processes)]:
    run = subprocess.run([*launcher, *train_args, "--out", str(work / name)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    histories[name] = json.loads((work / name / "history.json").read_text())
print("step   loss, 1 process   loss, 2 processes")
for a, b in zip(histories["1 process"], histories["2 processes"]):
    print(f"{a['step']:4d}   {a['loss']:15.6f}   {b['loss']:17.6f}")

shards = sorted((work / "2 processes" / "last.dcp").glob("*.distcp"))
state = tiny.param_counts()["total"] * (FP32_ADAMW.weights + FP32_ADAMW.optimizer)
print(f"\nplanner: {state / 2:,.0f} bytes of weights + AdamW moments per process")
for shard in shards:
    print(f"measured: {shard.name} holds {shard.stat().st_size:,} bytes")
sharded = checkpoint.load(work / "2 processes" / "last.dcp")  # back into one process
print(f"loaded into this one process: {sum(p.numel() for p in sharded.parameters()):,} parameters")

# %% [markdown]
# The losses agree to a few parts in a million: the only differences are the order of the
# additions in the gradient reduction, and the MoE balance loss, which each process
# computes on its own half of the tokens. Each shard file holds half the state, plus a
# percent or two for the names, offsets and step counters DCP stores beside it. The folder loads
# back into a single process, or into any other number of processes (DCP reads the pieces
# each new shard needs). `bench/distributed.py` measures what two processes buy in speed on
# a CPU; on two cores, not much (README, "Measured so far").

# %% [markdown]
# ## Expert parallelism: move the tokens, not the experts
#
# FSDP gathers each MoE layer's experts, all $E$ of them, before running the layer, once
# in forward and again in backward, and reduce-scatters their gradients after. With 128
# experts of $3 \cdot 4096 \cdot 3712$ numbers each, that is most of the traffic.
# **Expert parallelism** turns it around: process $p$ owns experts
# $pE/P, \dots, (p+1)E/P - 1$ for good, and each routed row of $d$ numbers travels to the
# process that owns its expert (an *all-to-all*), and its result travels back (another).
# Backward runs the same two exchanges in reverse. Per MoE layer and step, one process
# sends (uniform routing, so $(P-1)/P$ of the data leaves it)
#
# $$\text{gathered} = 3\,\tfrac{P-1}{P}\; E \cdot 3 d h \cdot b, \qquad
#   \text{split} = 4\,\tfrac{P-1}{P}\; n k \cdot d \cdot b$$
#
# for $n$ tokens per process, $b$ bytes per number. The tokens win below
# $n = 9Eh / (4k)$: big experts, few tokens per step.

# %%
from minitml.scale import expert_traffic

ns = np.unique(np.geomspace(256, 2**20, CURVE_POINTS).astype(int))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, name in zip(axes, ["tiny", "tml_small"]):
    traffic = [expert_traffic(name, int(n), processes=8) for n in ns]
    ax.loglog(ns, [t["gathered"] / 1e6 for t in traffic], label="experts gathered (FSDP)")
    ax.loglog(ns, [t["split"] / 1e6 for t in traffic], label="tokens sent (expert parallel)")
    ax.axvline(traffic[0]["crossover_tokens"], color="gray", ls=":", lw=0.8)
    ax.set(xlabel="tokens per process per step", ylabel="MB sent per MoE layer", title=f"{name}, 8 processes")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for name in ["tiny", "tml_small"]:
    t = expert_traffic(name, 4096, processes=8)
    print(f"{name:>9}, 4096 tokens per process: gathered {human(t['gathered'], 'B')}, "
          f"split {human(t['split'], 'B')} (crossover {t['crossover_tokens']:,.0f} tokens)")

# %% [markdown]
# Who sends what to whom: two processes each route their own tokens through one of the tiny
# model's MoE layers (4 experts, top-2; process 0 owns experts 0 and 1, process 1 owns 2 and
# 3). Each process counts its rows per expert: that row of counts is the first thing the
# processes exchange, so that each knows how many rows will arrive, before the rows do.

# %%
torch.manual_seed(0)
layer = InteractionModel(tiny).blocks[1].ffn  # an (untrained) MoE layer of the tiny model
E, P = tiny.moe.n_experts, 2
x = torch.randn(P, 336, tiny.model.d_model)  # each process's 336 tokens (hidden states)
with torch.no_grad():
    sent = torch.stack([torch.bincount(layer.route(x[p]).experts.flatten(), minlength=E)
                        for p in range(P)])  # (P, E): rows process p sends to each expert
owner = torch.arange(E) // (E // P)  # the process that owns each expert
print("rows to expert" + "".join(f"{f'e{e} (on {int(owner[e])})':>12}" for e in range(E)))
for p in range(P):
    keeps = int(sent[p, owner == p].sum())
    print(f"process {p}:    " + "".join(f"{int(n):>12}" for n in sent[p])
          + f"   keeps {keeps}, sends {int(sent[p].sum()) - keeps} away")
print(f"rows arriving at each process (its experts' columns, summed): "
      f"{[int(sent[:, owner == p].sum()) for p in range(P)]}")

# %% [markdown]
# `python -m minitml train --expert-parallel` does it for real (`minitml/expert_parallel.py`):
# the expert weights become tensors sharded along the expert dimension that FSDP leaves
# alone, and each MoE layer sorts its rows by expert, exchanges the counts, then the rows,
# runs its own experts, and sends the results back. Each expert's gradient now sums the
# tokens of both processes, so it is halved to match FSDP's average. Same run again, with
# the experts split:

# %%
name = "2 processes, experts split"
run = subprocess.run([*two_processes, *train_args, "--expert-parallel", "--out", str(work / name)],
                     env=env, capture_output=True, text=True)
assert run.returncode == 0, run.stderr[-2000:]
histories[name] = json.loads((work / name / "history.json").read_text())
print("step   loss, 1 process   loss, experts split")
for a, b in zip(histories["1 process"], histories[name]):
    print(f"{a['step']:4d}   {a['loss']:15.6f}   {b['loss']:19.6f}")
per_process = 2 * 12 * tiny.positions_per_micro_turn  # 2 conversations of 12 micro-turns each
t = expert_traffic(tiny, per_process, processes=2, bytes_per_number=4)  # fp32 on this CPU
print(f"\n{per_process} tokens per process per step; per MoE layer, gathering the experts sends "
      f"{human(t['gathered'], 'B')}, sending the tokens {human(t['split'], 'B')}")

# %% [markdown]
# The same losses again, to a few parts in a million. In this small run each process
# routes a few hundred tokens a step, below the tiny model's crossover of 1,152, so sending
# tokens also moves fewer bytes than gathering the experts. Bytes are not the whole cost,
# though: every MoE layer now waits on five exchanges per step (the counts, then the rows
# there and back in forward and again in backward), each one a meeting point of all the
# processes. `bench/distributed.py` times both ways on this machine (README,
# "Measured so far"). For tml_small the plot leaves no doubt: at 4096 tokens per process,
# gathering its experts sends about 65 times the bytes.

# %% [markdown]
# ## Exercises
#
# Replace each `raise NotImplementedError` with your code and re-run the cell;
# `check` compares your answer with the package's.
#
# **1.** The KV cache of one live session, in bytes: keys and values, every layer, every
# KV head, the whole window (`cfg.window` positions), `bytes_per_number` bytes each.

# %%
def my_kv_cache_bytes(cfg, bytes_per_number):
    raise NotImplementedError  # your code here


check(my_kv_cache_bytes, [((get_config(name), b), kv_cache_bytes(get_config(name), b))
                          for name in PRESETS for b in (2, 4)])

# %% [markdown]
# **2.** The expected number of distinct experts that `n_tokens` tokens use, each sent to
# `top_k` of `n_experts` experts chosen uniformly. (Hint: the chance that one token misses
# a given expert.)

# %%
def my_experts_touched(n_tokens, n_experts, top_k):
    raise NotImplementedError  # your code here


check(my_experts_touched, [((n, E, k), experts_touched(n, E, k))
                           for n, E, k in [(0, 8, 2), (1, 128, 4), (3, 8, 2), (59, 128, 4), (500, 64, 8)]])

# %% [markdown]
# **3.** Sessions per GPU by the bandwidth bound: the largest number of sessions $n$ whose
# micro-turn reads, `serving_step(cfg, n)["bytes"]`, fit in what the GPU reads within
# `budget_s` at 80% of its bandwidth (`gpu.bandwidth`). The bytes grow with $n$: search
# (doubling, then bisecting, is fast).

# %%
def my_bandwidth_sessions(cfg, gpu, budget_s):
    raise NotImplementedError  # your code here


check(my_bandwidth_sessions, [((small, GPUS[key], b), sessions_per_gpu(small, key, budget_s=b)["bandwidth"])
                              for key in ["A100-80GB", "H200"] for b in (0.2, step_s)])

# %% [markdown]
# **4.** The compute bound of training: how many GPUs train `cfg` on `tokens` tokens in
# `days` days at model FLOPs utilisation `mfu`? Use `train_flops_per_token(cfg)` (three
# times the forward: forward plus a backward that costs twice as much).

# %%
def my_training_gpus(cfg, tokens, days, gpu, mfu):
    raise NotImplementedError  # your code here


check(my_training_gpus, [((get_config(name), t, d, GPUS[key], m),
                          gpus_to_train(get_config(name), t, d * 86400, key, mfu=m)["compute"])
                         for name, t, d, key, m in [("small", 1e11, 7, "A100-80GB", 0.4),
                                                    ("tml_small", 1e13, 60, "H100-SXM", 0.35),
                                                    ("tml_small", 2e12, 30, "H200", 0.5)]])

# %% [markdown]
# **5.** Expert parallelism: the bytes one process sends per MoE layer per training step,
# for `n_tokens` tokens per process over `processes` processes, `bytes_per_number` bytes
# each. Every token's `top_k` rows of `d_model` numbers go to their experts and come back
# in forward, and their gradients do the same in backward; with uniform routing, a share
# $(P-1)/P$ of the rows belongs to another process.

# %%
def my_expert_parallel_bytes(cfg, n_tokens, processes, bytes_per_number):
    raise NotImplementedError  # your code here


check(my_expert_parallel_bytes, [((get_config(name), n, p, b), expert_traffic(name, n, p, b)["split"])
                                 for name, n, p, b in [("tiny", 1000, 2, 4), ("small", 4096, 8, 2),
                                                       ("tml_small", 8192, 64, 2)]])
