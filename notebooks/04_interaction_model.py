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
# # 04 · The interaction model: one transformer over interleaved 200 ms blocks, streamed
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/04_interaction_model.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F04_interaction_model.ipynb)
#
# **One idea:** there is no "user turn" and no "model turn". Time is cut into
# 200 ms **micro-turns**, and every micro-turn becomes one fixed block of
# positions in a single sequence:
#
# $$\underbrace{[\,\text{input } 0 \mid \text{output } 0\,]}_{\text{micro-turn } 0}\;
#   \underbrace{[\,\text{input } 1 \mid \text{output } 1\,]}_{\text{micro-turn } 1}\;
#   \underbrace{[\,\text{input } 2 \mid \text{output } 2\,]}_{\text{micro-turn } 2}\;\dots$$
#
# One decoder-only transformer reads the whole stream: what it sees (40x40
# patches), what it hears (dMel tokens), text that arrives, and what it says
# itself (a monologue word and dMel frames per 50 ms). Silence, overlap and
# interruptions are simply what the blocks contain.
#
# This notebook draws the block and the clock it runs on, the sliding-window
# mask and the ring-buffer cache, and checks that streaming, 200 ms at a time,
# gives the same numbers as one full forward pass. How the model turns a hidden
# state into sound, in two ways, is the next notebook, `04b_two_ways_to_speak`.
# The code lives in `minitml/stream.py`, `minitml/model.py`, `minitml/generator.py` and
# `minitml/session.py` (the streaming loop); here we only call it.

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
STREAM_TURNS = 6 if FAST else 16  # micro-turns of the streaming-equals-full check
INFLUENCE_TURNS = 10 if FAST else 16  # micro-turns of the "who influences whom" check

# %%
import dataclasses
import math
import time

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle

from minitml.config import AudioConfig, Config, get_config
from minitml.exercises import check
from minitml.model import InteractionModel, KVCache, rope_angles, sliding_window_mask
from minitml.session import Session
from minitml.stream import (
    MODEL_OUT,
    PATCH,
    STREAM_NAMES,
    TEXT_IN,
    USER_AUDIO,
    BlockLayout,
    Blocks,
    pack_conversation,
    random_blocks,
)
from minitml.timeline import MicroTurnOutput, Timeline
from minitml.world.espeak import synthesize

torch.manual_seed(0)
notebook_start = time.perf_counter()
cfg = get_config("tiny")
lay = BlockLayout.from_config(cfg)
print("FAST =", FAST, "| layout of one micro-turn:", cfg.layout())

# %% [markdown]
# ## The micro-turn block
#
# The tiny preset sees an 80x80 frame (P = 4 patches), hears 200 ms as A = 4
# audio tokens of k = 4 dMel frames (50 ms each), has X = 2 slots for text that
# arrives (tool results, typed words; PAD when empty) and says A = 4 output
# tokens, each a monologue word (or PAD) *plus* k dMel frames:
#
# $$L = P + A + X + A = 4 + 4 + 2 + 4 = 14 \text{ positions per 200 ms}$$
#
# Micro-turn $t$ occupies absolute positions $[tL, (t+1)L)$, so output token $j$
# of micro-turn $t$ sits at $tL + P + A + X + j$.
#
# **Who predicts what.** The model is autoregressive over positions: the hidden
# state at position $p$ predicts the content of position $p + 1$. Only the
# model-out tokens are predicted, so the *predictor* of output token $j$ is the
# position just before it: the last text-in slot for $j = 0$ (the moment the
# whole input block has been read), and output token $j - 1$ otherwise (the
# token the model has just said, fed back in).

# %%
COLOURS = {PATCH: "tab:green", USER_AUDIO: "tab:blue", TEXT_IN: "tab:purple",
           MODEL_OUT: "tab:orange"}
LETTERS = {PATCH: "P", USER_AUDIO: "U", TEXT_IN: "X", MODEL_OUT: "O"}
types = lay.stream_types()  # (L,) stream type of each position of a block
print("stream types of one block:", types.tolist())
print("predictor offsets (in the block) of output tokens 0..A-1:", lay.predictor_offsets().tolist())
print("absolute positions of micro-turn 2:", lay.positions(2).tolist())


def draw_blocks(ax, n_turns, layout, arrows=True):
    """Positions of `n_turns` micro-turns as coloured boxes, predictor -> target arcs above."""
    L = layout.length
    kinds = layout.stream_types()
    for t in range(n_turns):
        for i in range(L):
            p = t * L + i
            kind = int(kinds[i])
            ax.add_patch(Rectangle((p, 0), 0.92, 1, color=COLOURS[kind], alpha=0.85))
            ax.text(p + 0.46, 0.5, LETTERS[kind], ha="center", va="center", color="white",
                    fontsize=8, weight="bold")
            ax.text(p + 0.46, -0.35, str(p), ha="center", va="center", fontsize=6)
        ax.annotate("", xy=(t * L, 1.25), xytext=((t + 1) * L - 0.08, 1.25),
                    arrowprops=dict(arrowstyle="<->", color="gray", lw=0.8))
        ax.text(t * L + layout.n_inputs / 2, 1.45, f"input {t}", ha="center", fontsize=8)
        ax.text(t * L + layout.out_start + layout.n_audio / 2, 1.45, f"output {t}", ha="center",
                fontsize=8, color="tab:orange")
        if arrows:
            for j, pred in enumerate(layout.predictor_offsets().tolist()):
                src, dst = t * L + pred + 0.46, t * L + layout.out_start + j + 0.46
                ax.add_patch(FancyArrowPatch((src, 1.0), (dst, 1.0), connectionstyle="arc3,rad=-0.9",
                                             arrowstyle="-|>", mutation_scale=7, color="black",
                                             lw=0.7))
                ax.plot(src, 1.02, marker="*", color="black", ms=5)
    ax.set_xlim(-0.5, n_turns * L + 0.5)
    ax.set_ylim(-0.7, 2.0)
    ax.axis("off")


fig, ax = plt.subplots(figsize=(15, 2.6))
draw_blocks(ax, 3, lay)
handles = [Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in COLOURS]
ax.legend(handles, [f"{LETTERS[k]} = {STREAM_NAMES[k]}" for k in COLOURS], ncol=4, fontsize=8,
          loc="upper center", bbox_to_anchor=(0.5, 0.0))
ax.set_title("three micro-turns of the tiny preset; * = predictor, the arc points at the "
             "output token its hidden state predicts", fontsize=9, loc="left")
plt.show()

# %% [markdown]
# ## The clock
#
# Input block $t$ holds what was seen and heard during $[200t,\ 200(t+1))$ ms.
# Output block $t$ can only be computed once input $t$ has fully arrived, so it is
# **played** during $[200(t+1),\ 200(t+2))$ ms. Every latency this project reports
# includes this 200 ms of buffering (plus whatever the compute takes).

# %%
ms = cfg.audio.micro_turn_ms
for t in range(4):
    print(f"micro-turn {t}: input heard [{ms * t:4d}, {ms * (t + 1):4d}) ms   "
          f"output played [{ms * (t + 1):4d}, {ms * (t + 2):4d}) ms")

fig, ax = plt.subplots(figsize=(11, 2.2))
for t in range(5):
    ax.add_patch(Rectangle((ms * t, 1), ms * 0.97, 0.6, color="tab:blue", alpha=0.7))
    ax.text(ms * t + ms / 2, 1.3, f"input {t} heard", ha="center", va="center", color="white",
            fontsize=8)
    ax.add_patch(Rectangle((ms * (t + 1), 0), ms * 0.97, 0.6, color="tab:orange", alpha=0.8))
    ax.text(ms * (t + 1) + ms / 2, 0.3, f"output {t} played", ha="center", va="center",
            color="white", fontsize=8)
    ax.annotate("", xy=(ms * (t + 1) + 8, 0.62), xytext=(ms * (t + 1) - 4, 0.98),
                arrowprops=dict(arrowstyle="-|>", color="black", lw=0.8))
ax.set_xlim(0, 6 * ms)
ax.set_ylim(-0.1, 1.7)
ax.set_yticks([])
ax.set_xlabel("time (ms)")
ax.set_title("input t has arrived at 200(t+1) ms: output t is computed then and played next",
             fontsize=9)
plt.show()

# %% [markdown]
# ### Packing a recorded conversation: the one-micro-turn shift
#
# When a recorded conversation (both channels on one clock) is packed for
# training, output block $t$ must hold what the assistant said during
# $[200(t+1), 200(t+2))$: `pack_conversation` shifts the assistant's channel by
# one micro-turn (16 dMel frames). Below, every frame is labelled with the
# 200 ms window it was *recorded* in (window $w$ gets the value $w + 1$; 0 means
# "nothing"), and the assistant says word 5 at 0.25 s and word 7 at 0.61 s.

# %%
fpt = cfg.audio.frames_per_micro_turn  # 16 frames per micro-turn
n_demo = 4
window_label = (torch.arange(n_demo * fpt) // fpt + 1)[:, None].expand(-1, cfg.audio.n_mels)
demo = pack_conversation(cfg, user_tokens=window_label, model_tokens=window_label,
                         model_words=[(5, 0.25), (7, 0.61)])
for t in range(n_demo):
    heard = demo.user_audio[0, t, :, :, 0].flatten().unique().tolist()  # labels in input t
    said = demo.out_audio[0, t, :, :, 0].flatten().unique().tolist()
    print(f"block {t}: input holds window {[w - 1 for w in heard]}, "
          f"output holds window {[w - 1 for w in said if w > 0] or 'none (no target)'}, "
          f"output words {demo.out_text[0, t].tolist()}")

# %% [markdown]
# Output block 0 holds the assistant's window 1 (200–400 ms), and the word said
# at 0.25 s lands in block 0, slot 1: the 50 ms slot $[250, 300)$ ms of output
# 0's playback. The word at 0.61 s lands in block 2, slot 0 ($[600, 650)$ ms).
# The last output block has no target: its playback interval lies beyond the
# recording. Get this shift wrong and the model learns to react to sound it has
# not heard yet.

# %% [markdown]
# ## The attention mask: causal, with a sliding window
#
# Position $q$ may attend to key $k$ when $q - W < k \le q$. The window $W$ is
# counted in whole micro-turns (the preset's 32 micro-turns = 448 positions =
# 6.4 s). To see it, take a window of only 2 micro-turns:

# %%
cfg_w2 = cfg.replace(model=dataclasses.replace(cfg.model, window_micro_turns=2))
L = lay.length
print(f"window: {cfg_w2.model.window_micro_turns} micro-turns = {cfg_w2.window} positions")
pos = torch.arange(4 * L)  # four micro-turns
mask = sliding_window_mask(pos, pos, cfg_w2.window)  # (56, 56) True = may attend

fig, ax = plt.subplots(figsize=(6.5, 6.5))
ax.imshow(mask.numpy(), cmap="Greys", interpolation="nearest")
for b in range(1, 4):
    ax.axhline(b * L - 0.5, color="tab:red", lw=0.6)
    ax.axvline(b * L - 0.5, color="tab:red", lw=0.6)
for p in pos.tolist():
    colour = COLOURS[int(types[p % L])]
    ax.add_patch(Rectangle((p - 0.5, -2.5), 1, 1.6, color=colour, clip_on=False))
    ax.add_patch(Rectangle((-2.5, p - 0.5), 1.6, 1, color=colour, clip_on=False))
ax.set_xlim(-2.6, 4 * L - 0.5)
ax.set_ylim(4 * L - 0.5, -2.6)
ax.set_xlabel("key position")
ax.set_ylabel("query position")
ax.set_title(f"sliding_window_mask, W = {cfg_w2.window}: black = may attend", fontsize=9)
plt.show()

# %% [markdown]
# ### No output depends on input from its own playback interval
#
# Output $t$ is played while input $t+1$ is being heard. If anything in output
# block $t$ depended on input block $t+1$, the model would be reacting to the
# future. Take a random (untrained) tiny model with the 2-micro-turn window, run
# the full forward pass `model(blocks)` on random blocks, then change
# **everything** in input block $t+1$ (patches, user audio, text in) and run it
# again: the logits of every output block up to $t$ must not move at all.

# %%
torch.manual_seed(0)
model_w2 = InteractionModel(cfg_w2).eval()
blocks = random_blocks(cfg_w2, INFLUENCE_TURNS, seed=1)


def perturb_input(blocks, turn, seed=2):
    """A copy of `blocks` with every input stream of micro-turn `turn` redrawn at random."""
    other = random_blocks(cfg_w2, blocks.n_turns, seed=seed)
    new = Blocks(**{f.name: getattr(blocks, f.name).clone() for f in dataclasses.fields(Blocks)})
    new.patches[:, turn] = other.patches[:, turn]
    new.user_audio[:, turn] = other.user_audio[:, turn]
    new.text_in[:, turn] = other.text_in[:, turn]
    return new


t_probe = 3
with torch.no_grad():
    base = model_w2(blocks)
    moved = model_w2(perturb_input(blocks, t_probe + 1))
text_change = (base.text_logits - moved.text_logits).abs().amax(dim=(0, 2, 3))  # (T,)
mel_change = (base.mel_logits - moved.mel_logits).abs().flatten(2).amax(dim=(0, 2))  # (T,)
print(f"input block {t_probe + 1} changed; max |change| of the logits of output block:")
for t in range(t_probe + 3):
    print(f"  {t}: text {text_change[t]:.2e}   mel {mel_change[t]:.2e}")
assert text_change[: t_probe + 1].max() == 0 and mel_change[: t_probe + 1].max() == 0
print(f"outputs 0..{t_probe} are exactly unchanged: they never see input {t_probe + 1}")

# %% [markdown]
# The same experiment, repeated for every input block, gives the full
# influence map. Below the diagonal nothing moves (causality). The window also
# bounds how *far* an input reaches: one layer looks back at most $W$ positions,
# and each of the $n_\text{layers}$ layers can carry information one window
# further, so an input can influence outputs up to about
# $n_\text{layers} \times W$ positions later and not beyond.

# %%
influence = torch.zeros(INFLUENCE_TURNS, INFLUENCE_TURNS)  # [input block, output block]
with torch.no_grad():
    for t_in in range(INFLUENCE_TURNS):
        out = model_w2(perturb_input(blocks, t_in))
        influence[t_in] = (base.text_logits - out.text_logits).abs().amax(dim=(0, 2, 3))
reach = cfg_w2.model.n_layers * (cfg_w2.window - 1)  # positions
fig, ax = plt.subplots(figsize=(5.5, 4.5))
image = ax.imshow(torch.log10(influence + 1e-12).numpy(), cmap="viridis", vmin=-8)
ax.set_xlabel("output block")
ax.set_ylabel("input block changed")
ax.set_title("log10 max |change| of text logits\n(darkest = exactly zero)", fontsize=9)
fig.colorbar(image, ax=ax)
plt.show()
print(f"receptive field: {cfg_w2.model.n_layers} layers x {cfg_w2.window - 1} positions = "
      f"{reach} positions = {reach / L:.1f} micro-turns")
print("farthest output block moved by input block 0:",
      int(torch.nonzero(influence[0] > 0).max()))

# %% [markdown]
# ## The cache is a ring
#
# A live session does not rerun the whole sequence every 200 ms. Each layer keeps
# the keys and values of the last $W$ positions in a **ring buffer**: absolute
# position $p$ lives in slot $p \bmod W$, and `cache.pos[slot]` remembers which
# $p$ is there (the mask is computed from those absolute positions, so the order
# inside the ring never matters). When $p$ arrives, the key it overwrites is
# $p - W$: exactly the one that just left the window.
#
# Step a `Session` on the 2-micro-turn-window model and look at layer 0's ring
# after each micro-turn. (After step $t$ the ring holds everything up to
# position $(t+1)L - 2$: the last output token of a micro-turn enters the cache
# together with the next input block.)

# %%
speech = synthesize("Tell me when the light turns green.")
chunk = cfg.audio.samples_per_micro_turn  # 3200 samples = 200 ms
n_ring_turns = 6
session = Session(model_w2, vocode=False, overrun="ignore")
ring, sizes = [], []
for t in range(n_ring_turns):
    session.step(speech.wave[t * chunk:(t + 1) * chunk])
    caches = session.generator.state.caches  # one ring per layer
    ring.append(caches[0].pos.clone())  # (W,) absolute position in each slot
    sizes.append(sum(c.nbytes() for c in caches))
ring = torch.stack(ring)  # (steps, W)

fig, ax = plt.subplots(figsize=(14, 3.2))
turn_of = torch.where(ring >= 0, ring // L, float("nan"))  # micro-turn of each slot's position
colours = plt.get_cmap("tab10").with_extremes(bad="white")  # white: slots still empty
ax.imshow(turn_of.numpy(), cmap=colours, vmin=0, vmax=9, aspect="auto")
for row in range(ring.shape[0]):
    for slot, p in enumerate(ring[row].tolist()):
        ax.text(slot, row, "" if p < 0 else str(p), ha="center", va="center", fontsize=7)
ax.set_xlabel(f"ring slot (W = {cfg_w2.window})")
ax.set_ylabel("after micro-turn")
ax.set_title("absolute position held in each slot of layer 0's ring (colour = its micro-turn)",
             fontsize=9)
plt.show()
print("cache bytes after each micro-turn:", sizes)

# %% [markdown]
# The cache never grows: an hour costs the same memory, and the same attention
# work per micro-turn, as the first few seconds. For the tiny preset's real
# 32-micro-turn window:

# %%
one_hour_positions = 3600 * 1000 // ms * L  # 252,000 positions
ring_bytes = sum(c.nbytes() for c in InteractionModel(cfg).new_cache())
m = cfg.model
full_bytes = 2 * m.n_layers * m.n_kv_heads * m.head_dim * 4 * one_hour_positions  # keys + values
print(f"ring of {cfg.window} positions, all layers: {ring_bytes / 1e6:.2f} MB, at any length")
print(f"keeping all {one_hour_positions:,} positions of an hour instead: {full_bytes / 1e9:.2f} GB")

# %% [markdown]
# ### Rotary angles over an hour
#
# The ring stays the same size, but positions are absolute and keep growing: an
# hour of the tiny preset is 252,000 positions. Rotary embeddings rotate each
# pair of query/key channels by the angle $p \cdot \theta^{-2i/d_h}$. In float32
# a number near 252,000 has a spacing of $2^{-6} \approx 0.016$, so a naive
# float32 product rounds the angle by up to 0.008 rad, and the rounded frequency
# adds a little more: about 0.01 rad by the end of the hour, and it grows with
# every position. The attention score between two positions depends on the
# *difference* of their angles, which these errors scramble.
# `rope_angles` takes the product in float64 and rounds only the final cos/sin.

# %%
head_dim, theta = cfg.model.head_dim, cfg.model.rope_theta
positions = torch.arange(one_hour_positions + 1)  # every position of an hour
i = torch.arange(0, head_dim, 2)
exact = positions.double()[:, None] * theta ** (-i.double() / head_dim)  # (N, hd/2) reference
naive = positions.float()[:, None] * theta ** (-i.float() / head_dim)  # all in float32
cos_pkg, _ = rope_angles(positions, head_dim, theta)  # (N, hd/2) float32
angle_err = (naive.double() - exact).abs().amax(-1)  # (N,) worst frequency
cos_err_naive = (torch.cos(naive).double() - torch.cos(exact)).abs().amax(-1)
cos_err_pkg = (cos_pkg.double() - torch.cos(exact)).abs().amax(-1)
last_minute = positions >= one_hour_positions - 60 * 1000 // ms * L
print(f"in the last minute of the hour: naive float32 angle error up to "
      f"{angle_err[last_minute].max():.4f} rad (cos error {cos_err_naive[last_minute].max():.1e}); "
      f"rope_angles cos error {cos_err_pkg[last_minute].max():.1e}")
edges = torch.unique(torch.logspace(0, math.log10(one_hour_positions), 80).long())
worst_naive = [cos_err_naive[a:b + 1].max().item() + 1e-12 for a, b in zip(edges[:-1], edges[1:])]
worst_pkg = [cos_err_pkg[a:b + 1].max().item() + 1e-12 for a, b in zip(edges[:-1], edges[1:])]

plt.figure(figsize=(8, 3))
plt.loglog(edges[1:].numpy(), worst_naive, label="naive float32 product")
plt.loglog(edges[1:].numpy(), worst_pkg, label="rope_angles (float64 product)")
plt.axvline(one_hour_positions, color="gray", ls="--", lw=0.8)
plt.text(one_hour_positions * 0.5, 1e-9, "1 hour", fontsize=8, ha="right")
plt.xlabel("absolute position")
plt.ylabel("max |cos error| near there")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Streaming equals the full forward pass
#
# The central check of this module: a live `Session` that sees one micro-turn
# at a time, through the ring cache, must produce **the same logits** as one
# full forward pass over the whole recorded sequence with the same mask. We
# sample freely (temperature 1 for words and mel) so the model's own outputs are
# varied, record every block it saw and said, then run `model(...)` on all of
# them at once. The session runs longer than the window, so the ring wraps
# several times.
#
# (`overrun="ignore"`: the first step pays one-time warm-up costs and can exceed
# the 200 ms budget; by default the session would then say silence in a
# catch-up step without computing logits. `vocode=False` skips Griffin-Lim,
# which plays no part here.)

# %%
audio = torch.cat([speech.wave, torch.zeros(STREAM_TURNS * chunk)])[: STREAM_TURNS * chunk]
session = Session(model_w2, temperature=1.0, mel_temperature=1.0, record_logits=True,
                  vocode=False, overrun="ignore", seed=3)
outs = [session.step(audio[t * chunk:(t + 1) * chunk], record=True) for t in range(STREAM_TURNS)]
recorded = Blocks.cat(session.recorded, dim=1)  # (1, STREAM_TURNS, ...) what it saw and said
with torch.no_grad():
    full = model_w2(recorded)
text_diff = torch.stack([(full.text_logits[0, t] - o.text_logits).abs().max()
                         for t, o in enumerate(outs)])
mel_diff = torch.stack([(full.mel_logits[0, t] - o.mel_logits).abs().max()
                        for t, o in enumerate(outs)])
print(f"{STREAM_TURNS} micro-turns = {STREAM_TURNS * L} positions through a ring of {cfg_w2.window}")
print(f"max |streamed - full| text logits: {text_diff.max():.1e}, mel logits: {mel_diff.max():.1e}")
assert text_diff.max() < 1e-4 and mel_diff.max() < 1e-4

plt.figure(figsize=(8, 2.8))
plt.semilogy(text_diff.numpy(), "o-", label="text logits")
plt.semilogy(mel_diff.numpy(), "s-", label="mel logits")
plt.axvline(cfg_w2.model.window_micro_turns - 0.5, color="gray", ls="--", lw=0.8)
plt.text(cfg_w2.model.window_micro_turns - 0.4, text_diff.max().item() * 3, "ring wraps from here",
         fontsize=8)
plt.ylim(1e-9, 1e-3)
plt.xlabel("micro-turn")
plt.ylabel("max |streamed - full|")
plt.title("streaming through the ring = full forward pass (float32 rounding only)", fontsize=9)
plt.legend(fontsize=8)
plt.show()

# %%
print(f"whole notebook: {time.perf_counter() - notebook_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# Replace each `raise NotImplementedError` with your code and re-run the cell;
# `check` compares your answer with the package's.
#
# **1.** The absolute position of the hidden state that predicts output token
# `j` of micro-turn `t`, for any config (use `cfg.layout()` or the fields of
# `cfg`, not `BlockLayout`).

# %%
def my_predictor_position(cfg, t, j):
    raise NotImplementedError  # your code here


def package_predictor_position(c, t, j):
    layout = BlockLayout.from_config(c)
    return int(layout.positions(t)[layout.predictor_offsets()[j]])


check(my_predictor_position, [
    ((c, t, j), package_predictor_position(c, t, j))
    for c in [get_config("tiny"), get_config("small"), get_config("tml_small")]
    for t, j in [(0, 0), (0, 3), (5, 0), (17_999, 2)]
])


# %% [markdown]
# **2.** Which micro-turn's output is playing at time `seconds` of a session?
# Return `None` during the first micro-turn, when nothing has been computed yet.
# (Work in whole samples: `round(seconds * sample_rate)`.) The expected answers
# come from `Timeline.model_audio`, the model's channel on the user's clock.

# %%
def my_playing_turn(cfg, seconds):
    raise NotImplementedError  # your code here


def package_playing_turns(c, times, n_turns=30):
    """Lay n_turns fake outputs on a Timeline (output t's samples = t + 1) and read it."""
    a = c.audio
    n = a.samples_per_micro_turn
    timeline = Timeline(a.sample_rate, a.micro_turn_ms, torch.zeros(n_turns * n))
    for t in range(n_turns):
        timeline.add(MicroTurnOutput(turn=t, audio=torch.full((n,), t + 1.0), tokens=None,
                                     text_ids=None, words=[], events=[], compute_ms=0.0,
                                     late_ms=0.0))
    playing = timeline.model_audio
    return [int(playing[round(s * a.sample_rate)]) - 1 for s in times]


fast_turns = Config(audio=AudioConfig(micro_turn_ms=100))  # 100 ms micro-turns
cases = []
for c in [get_config("tiny"), fast_turns]:
    times = [0.0, 0.15, 0.2, 0.3999, 0.4, 1.05, 2.1]
    cases += [((c, s), None if t < 0 else t) for s, t in zip(times, package_playing_turns(c, times))]
check(my_playing_turn, cases)


# %% [markdown]
# **3.** How many bytes does a session's whole KV cache take (every layer, batch
# 1, float32 keys and values, plus the int64 `pos` of each ring)? It does not
# depend on how long the session has run. The expected answers build the rings
# on PyTorch's meta device (shapes only, no memory): `tml_small`'s is several GB.

# %%
def my_cache_nbytes(cfg):
    raise NotImplementedError  # your code here


def package_cache_nbytes(c):
    m = c.model
    rings = [KVCache(1, m.n_kv_heads, c.window, m.head_dim, device="meta")
             for _ in range(m.n_layers)]
    return sum(r.nbytes() for r in rings)


check(my_cache_nbytes, [((c,), package_cache_nbytes(c))
                        for c in [cfg, cfg_w2, get_config("small"), get_config("tml_small")]])
