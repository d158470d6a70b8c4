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
# # 02 · Seeing in 40x40 patches
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/02_patches.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F02_patches.ipynb)
#
# **One idea:** an image enters the transformer with *no vision encoder*. The
# frame is cut into 40x40 pixel patches, each patch is flattened into 4800
# numbers and projected straight to `d_model`. A patch is then a token like any
# audio or text token, in the same sequence, seen by every layer of the same
# transformer ("encoder-free early fusion", as in Fuyu-8B).
#
# ```
# frame (H, W, 3) --patchify--> (N, 3*40*40) --PatchEmbedding--> (N, d_model)
# ```
#
# All code lives in `minitml/patches.py`; this notebook only calls it and looks
# at what comes out.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only: fetch the repository (code and checkpoint), install it
    subprocess.run("test -d /content/minitml || git clone -q --depth 1 https://github.com/minitml/minitml "
                   "/content/minitml; pip install -q -e /content/minitml", shell=True, check=True)
    sys.path.insert(0, "/content/minitml")

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from minitml.config import VisionConfig, get_config, patch_embedding_params
from minitml.exercises import check
from minitml.patches import PatchEmbedding, grid_size, patch_positions, patchify, unpatchify

FAST = os.environ.get("MINITML_FAST") == "1"  # smaller pictures, same lessons

cfg = get_config("tiny")
P_SIZE = cfg.vision.patch_size  # 40
SMALL_FRAME = (cfg.vision.frame_height, cfg.vision.frame_width)  # (80, 80): the tiny preset
LARGE_FRAME = (160, 240) if FAST else (240, 320)  # (240, 320) is the tml_small frame
ODD_FRAME = (100, 130)  # not a multiple of 40: needs padding
torch.manual_seed(0)
print("tiny frame", SMALL_FRAME, "| large frame", LARGE_FRAME, "| FAST =", FAST)


# %% [markdown]
# ## A scene to look at
#
# The toy world draws its video with numpy: a coloured light, a few shapes, a
# floor. Here is a small version of such a scene, at the tiny preset's 80x80 and
# at a larger size. Pixels are `uint8` (0..255), channels last: `(H, W, 3)`.

# %%
def draw_scene(height, width, light=(40, 220, 60)):
    """A synthetic RGB scene (H, W, 3) uint8: sky, floor, a light, a box, a triangle."""
    y = np.linspace(0, 1, height)[:, None]  # (H, 1)
    x = np.linspace(0, 1, width)[None, :]  # (1, W)
    sky = np.array([60, 80, 140]) + y[..., None] * np.array([60, 60, 40])  # (H, 1, 3)
    img = np.broadcast_to(sky, (height, width, 3)).copy()  # (H, W, 3) a sky gradient
    img[y[:, 0] > 0.7] = (90, 70, 50)  # floor
    in_light = (y - 0.25) ** 2 + ((x - 0.22) * width / height) ** 2 < 0.15**2  # disc
    img[in_light] = light
    in_box = (y > 0.45) & (y < 0.85) & (x > 0.55) & (x < 0.85)
    img[in_box] = (200, 40, 40)
    in_tri = (y > 0.5) & (y < 0.9) & (np.abs(x - 0.35) < (y - 0.5) * 0.4)
    img[in_tri] = (230, 200, 40)
    return img.astype(np.uint8)


small = draw_scene(*SMALL_FRAME)
large = draw_scene(*LARGE_FRAME)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
for ax, im in zip(axes, [small, large]):
    ax.imshow(im)
    ax.set_title(f"{im.shape[0]}x{im.shape[1]}  dtype {im.dtype}")
plt.show()

# %% [markdown]
# ## Cutting it into patches
#
# `patchify` returns `(patches, grid)`. `patches` has one row per patch, in
# **row-major** order (left to right, then top to bottom), and each row holds the
# patch **channel-first**, `(3, 40, 40)` flattened: 1600 red values, 1600 green,
# 1600 blue. `grid = (rows, cols)`. uint8 pixels are divided by 255, so every
# value is a float32 in [0, 1].

# %%
patches, grid = patchify(small)
print("patches", tuple(patches.shape), patches.dtype, "| grid", grid)  # (4, 4800), (2, 2)
print("value range", patches.min().item(), "..", patches.max().item())


# %%
def show_grid(ax, image, grid, p=P_SIZE):
    """The image with the patch borders and each patch's index i = row * cols + col."""
    rows, cols = grid
    ax.imshow(image)
    for r in range(rows):
        for c in range(cols):
            ax.add_patch(Rectangle((c * p - 0.5, r * p - 0.5), p, p, fill=False, color="w", lw=1))
            ax.text(c * p + 3, r * p + 9, str(r * cols + c), color="w", fontsize=8,
                    bbox=dict(facecolor="k", alpha=0.5, pad=1, lw=0))


def show_exploded(ax, patches, grid, p=P_SIZE, gap=4):
    """Draw each patch vector back as a (p, p, 3) tile, with gaps between tiles."""
    rows, cols = grid
    canvas = np.ones((rows * (p + gap) - gap, cols * (p + gap) - gap, 3))
    for i, vec in enumerate(patches):
        r, c = divmod(i, cols)  # row-major
        tile = vec.reshape(3, p, p).permute(1, 2, 0).numpy()  # (3*p*p,) -> (p, p, 3)
        canvas[r * (p + gap):r * (p + gap) + p, c * (p + gap):c * (p + gap) + p] = tile
    ax.imshow(canvas)
    ax.set_title(f"{rows}x{cols} = {rows * cols} patch tokens")
    ax.axis("off")


fig, axes = plt.subplots(2, 2, figsize=(9, 7))
for row, image in zip(axes, [small, large]):
    pt, gr = patchify(image)
    show_grid(row[0], image, gr)
    row[0].set_title(f"{image.shape[0]}x{image.shape[1]} frame")
    show_exploded(row[1], pt, gr)
plt.tight_layout()
plt.show()

# %% [markdown]
# The exploded tiles on the right were drawn from the patch *vectors* alone:
# `vec.reshape(3, 40, 40)` undoes the channel-first flattening. Nothing was
# learned here: `patchify` is a pure rearrangement (`pad -> reshape -> permute
# -> reshape`), and `unpatchify` is its exact inverse.

# %% [markdown]
# ## Sizes that are not a multiple of 40
#
# A 100x130 frame needs a 3x4 grid (120x160 pixels). `patchify` pads with zeros
# (black) at the bottom and right, and *says so* with a warning, because padding
# is content the model will see. `unpatchify(..., size=(H, W))` crops it away
# again, and the round trip is exact.

# %%
odd = draw_scene(*ODD_FRAME)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    odd_patches, odd_grid = patchify(odd)
print("warning:", caught[0].message)
print("grid", odd_grid, "= grid_size", grid_size(*ODD_FRAME))

padded = unpatchify(odd_patches, odd_grid)  # no size: keep the padding, (120, 160, 3)
back = unpatchify(odd_patches, odd_grid, size=ODD_FRAME)  # (100, 130, 3)
print("padded", tuple(padded.shape), "| cropped", tuple(back.shape))
print("round trip exact:", torch.equal(back, torch.from_numpy(odd).float() / 255))

fig, ax = plt.subplots(figsize=(4.5, 3.5))
show_grid(ax, padded.numpy(), odd_grid)
ax.add_patch(Rectangle((-0.5, -0.5), ODD_FRAME[1], ODD_FRAME[0], fill=False, color="orange",
                       lw=2, ls="--"))
ax.set_title("orange: the real 100x130 frame; black: padding")
plt.show()

# %% [markdown]
# ## From a patch to a token: two stems
#
# A *stem* turns each 4800-number patch into one `d_model` vector.
#
# - **linear** (`VisionConfig(stem="linear")`, the tiny preset): one matrix
#   `nn.Linear(4800, d_model)`. Every output feature is a weighted sum of all
#   4800 pixel values of the patch.
# - **hMLP** (`stem="hmlp"`, the small and tml_small presets): three
#   convolutions whose kernel equals their stride, 4x4/4 -> 5x5/5 -> 2x2/2, with
#   GELUs between (4 * 5 * 2 = 40). Each is run on one patch as a tiny
#   `(3, 40, 40)` image, so it sees 4x4 pixel blocks, then 5x5 blocks of
#   blocks, then the whole patch; it never sees a neighbour.
#
# Follow one patch through the hMLP:

# %%
d_model = cfg.model.d_model  # 128 in the tiny preset
hmlp = PatchEmbedding(VisionConfig(stem="hmlp"), d_model, cfg.model.max_patch_rows,
                      cfg.model.max_patch_cols)
x = patches[0].reshape(1, 3, P_SIZE, P_SIZE)  # (1, 3, 40, 40): one patch as an image
print("input       ", tuple(x.shape))
for layer in hmlp.proj:
    x = layer(x)
    print(f"{type(layer).__name__:12s}", tuple(x.shape))  # ends at (1, d_model, 1, 1)

# %% [markdown]
# What each level of the hMLP looks at, drawn on patch 0: the first convolution
# maps every 4x4 pixel block to `c` features, the second every 5x5 group of those
# (20x20 pixels), the last the 2x2 groups (the whole 40x40 patch). The linear
# stem instead looks at all 4800 numbers at once.

# %%
tile = patches[0].reshape(3, P_SIZE, P_SIZE).permute(1, 2, 0).numpy()  # (40, 40, 3)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
for ax, (title, block) in zip(axes, [("linear: all 4800 at once", 40), ("conv 1: 4x4 blocks", 4),
                                     ("conv 2: 20x20 blocks", 20), ("conv 3: whole patch", 40)]):
    ax.imshow(tile)
    for edge in range(0, P_SIZE + 1, block):
        ax.axhline(edge - 0.5, color="w", lw=0.6)
        ax.axvline(edge - 0.5, color="w", lw=0.6)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# Parameter counts come from the config's own arithmetic,
# `patch_embedding_params(vision, d_model)`, and the built modules agree.
# Linear costs `4800 * d + d`. The hMLP with `c = d / 4` hidden channels costs
# about `2.6 * d**2`: far less at the tiny and small widths, more at 4096.

# %%
print(f"{'preset':10s} {'d_model':>7s} {'linear':>12s} {'hmlp':>12s}")
for name in ["tiny", "small", "tml_small"]:
    d = get_config(name).model.d_model
    lin = patch_embedding_params(VisionConfig(stem="linear"), d)
    hm = patch_embedding_params(VisionConfig(stem="hmlp"), d)
    print(f"{name:10s} {d:7d} {lin:12,d} {hm:12,d}")

for stem in ["linear", "hmlp"]:
    m = cfg.model
    emb = PatchEmbedding(VisionConfig(stem=stem), m.d_model, m.max_patch_rows, m.max_patch_cols)
    built = sum(p.numel() for p in emb.parameters())
    formula = patch_embedding_params(VisionConfig(stem=stem), m.d_model)
    positions = (m.max_patch_rows + m.max_patch_cols) * m.d_model
    print(f"{stem:6s}: built {built:,} = stem {formula:,} + positions {positions:,}:",
          built == formula + positions)

# %% [markdown]
# **One patch, one token, no leaks.** Turn the light from green to red. Only the
# pixels of one patch change, so with either stem exactly one token changes:
# this is what lets the model notice "the light turned red" as a change in
# one position of one micro-turn.

# %%
red = draw_scene(*SMALL_FRAME, light=(230, 30, 30))
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
axes[0].imshow(np.concatenate([small, red], axis=1))
axes[0].set_title("green light | red light")
for ax, stem in zip(axes[1:], ["linear", "hmlp"]):
    emb = PatchEmbedding(VisionConfig(stem=stem), d_model, 16, 16)
    with torch.no_grad():
        before = emb(*patchify(small))  # (4, d_model)
        after = emb(*patchify(red))
    change = (after - before).norm(dim=1)  # (4,) how far each token moved
    ax.bar(range(len(change)), change.numpy())
    ax.set_xticks(range(len(change)))
    ax.set_xlabel("patch index")
    ax.set_title(f"{stem}: change per token")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Where is a patch? Row and column positions
#
# The stem maps identical pixels to identical vectors wherever they sit. So
# `PatchEmbedding` adds two learned vectors: `row_position[r]` and
# `col_position[c]` (tables of `max_patch_rows` and `max_patch_cols` entries,
# 16 each in the presets). `patch_positions(grid)` lists `(row, col)` of every
# patch in the same row-major order. The transformer's own rotary positions
# then only need to say *when* (which micro-turn), not *where* in the frame.

# %%
print("positions of the 2x2 grid:", patch_positions(grid).tolist())

grey = np.full((*SMALL_FRAME, 3), 128, np.uint8)  # four identical patches
emb = PatchEmbedding(VisionConfig(stem="linear"), d_model, 16, 16)
with torch.no_grad():
    content = emb.embed_content(patchify(grey)[0])  # (4, d) the stem alone
    tokens = emb(*patchify(grey))  # (4, d) stem + row + column
print("stem alone, patch 0 vs 3 equal:", torch.equal(content[0], content[3]))
print("with positions, distance 0 -> 1, 2, 3:",
      [round((tokens[0] - tokens[k]).norm().item(), 3) for k in (1, 2, 3)])

# %% [markdown]
# A larger frame just has a larger grid; it must fit the position tables. A
# 480x640 frame gives 12x16 patches, which fits the 16x16 tables; a 720x1280
# frame (18x32) would be refused with an error saying so.

# %%
print("480x640 ->", grid_size(480, 640), "| 720x1280 ->", grid_size(720, 1280))
try:
    emb(torch.zeros(18 * 32, 3 * P_SIZE**2), (18, 32))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## Early fusion: one sequence per 200 ms micro-turn
#
# Every micro-turn is a fixed block of positions (`cfg.layout()`): the `P`
# patch tokens of the frame seen, the `A` user-audio tokens heard (each 4 dMel
# frames = 50 ms), `X` text-in slots (PAD when empty), then the `A` tokens the
# model says in the next 200 ms. In the tiny preset that is 4 + 4 + 2 + 4 = 14
# positions. Patches are not special: after the stem they are rows of the same
# `(T, d_model)` matrix as everything else.
#
# Timing: the input part of micro-turn t holds what was seen and heard during
# [200t, 200t + 200) ms; its output part can only be computed after that, so it
# is *played* one micro-turn later, during [200(t+1), 200(t+2)) ms.

# %%
layout = cfg.layout()
print(layout)

colours = {"patches": "tab:green", "user_audio": "tab:blue", "text_in": "tab:grey",
           "model_out": "tab:orange"}
labels = {"patches": "P", "user_audio": "A", "text_in": "X", "model_out": "O"}
n_turns = 2 if FAST else 3
fig, ax = plt.subplots(figsize=(12, 1.6))
pos = 0
for t in range(n_turns):
    for kind in ["patches", "user_audio", "text_in", "model_out"]:
        for _ in range(layout[kind]):
            ax.add_patch(Rectangle((pos, 0), 1, 1, color=colours[kind], ec="w"))
            ax.text(pos + 0.5, 0.5, labels[kind], ha="center", va="center", color="w")
            pos += 1
    ax.text(pos - layout["total"] / 2, 1.15, f"micro-turn {t}", ha="center")
    ax.axvline(pos, color="k", lw=2)
ax.set_xlim(0, pos)
ax.set_ylim(0, 1.5)
ax.axis("off")
ax.set_title("P patches | A user audio | X text-in | O model output", loc="left")
plt.show()

# %% [markdown]
# In code, fusing is a concatenation along the sequence axis. The patch tokens
# are real; the audio, text and output rows below are zero stand-ins for the
# embeddings built in the dMel and model notebooks.

# %%
emb = PatchEmbedding(cfg.vision, d_model, cfg.model.max_patch_rows, cfg.model.max_patch_cols)
with torch.no_grad():
    patch_tokens = emb(*patchify(small))  # (P, d) = (4, 128)
audio_tokens = torch.zeros(layout["user_audio"], d_model)  # (A, d) stand-in
text_tokens = torch.zeros(layout["text_in"], d_model)  # (X, d) stand-in
output_tokens = torch.zeros(layout["model_out"], d_model)  # (A, d) stand-in
block = torch.cat([patch_tokens, audio_tokens, text_tokens, output_tokens])  # (14, d)
print("one micro-turn:", tuple(block.shape), "| positions per micro-turn:",
      cfg.positions_per_micro_turn)

# %% [markdown]
# ## Exercises
#
# Replace each `raise NotImplementedError` with your code and re-run the cell;
# `check` compares your answer with the package's.
#
# **1.** How many patch tokens does a frame of `height x width` make with
# `patch_size`-pixel patches (after padding)? E.g. a 480x640 camera frame.

# %%
def my_n_patches(height, width, patch_size):
    raise NotImplementedError  # your code here


check(my_n_patches, [
    ((h, w, p), VisionConfig(frame_height=h, frame_width=w, patch_size=p).n_patches)
    for h, w, p in [(480, 640, 40), (80, 80, 40), (100, 130, 40), (37, 53, 16)]
])

# %% [markdown]
# **2.** Write `patchify` for one patch by slicing: return the flat vector of the
# patch at `(row, col)` of a float image `(H, W, 3)` (H and W multiples of `p`),
# in the package's layout (channel-first, then row by row).

# %%
def my_patch(image, row, col, p):
    raise NotImplementedError  # your code here


scene = torch.from_numpy(draw_scene(80, 120)).float() / 255  # (80, 120, 3), 2x3 patches
scene_patches, (_, scene_cols) = patchify(scene)
check(my_patch, [
    ((scene, r, c, 40), scene_patches[r * scene_cols + c]) for r, c in [(0, 0), (0, 2), (1, 1)]
])

# %% [markdown]
# **3.** How many weights does each stem have (without the position tables)?
# For the hMLP, the hidden width is `c = d_model // 4`; count each convolution's
# kernel and bias. At which `d_model` does the hMLP become the bigger one?

# %%
def my_stem_params(stem, d_model):
    raise NotImplementedError  # your code here


check(my_stem_params, [
    ((stem, d), patch_embedding_params(VisionConfig(stem=stem), d))
    for stem, d in [("linear", 128), ("hmlp", 128), ("hmlp", 512), ("hmlp", 4096)]
])
