"""Seeing in 40x40 patches: an image enters the transformer with no vision encoder.

Most vision-language models run a separate image network (a ViT, a CNN) and
hand its features to the language model. The interaction model does not
("encoder-free early fusion", as in Fuyu-8B): each video frame is cut into
square 40x40 pixel patches, each patch is flattened into one vector of
3 * 40 * 40 = 4800 numbers, and a small *stem* maps that vector straight to
the transformer's width d_model. From then on a patch is a token like any
other: it sits in the same sequence as the audio and text tokens of the same
200 ms micro-turn, and every layer of the one transformer can look at it.

    frame (H, W, 3) --patchify--> (N, 3*p*p) --PatchEmbedding--> (N, d_model)
    with N = rows * cols,  rows = ceil(H / p),  cols = ceil(W / p)

Three conventions, fixed here and used everywhere else:

- Pixels are float32 in [0, 1]. uint8 frames (0..255) are divided by 255.
- Patches are numbered row-major: patch i sits at row i // cols, column
  i % cols (left to right, then top to bottom, like reading a page).
- Each patch is flattened channel-first, as (3, p, p): first the p*p red
  values, then green, then blue, each row by row. This is the layout a
  Conv2d expects, so the hMLP stem can reshape a vector back into a tiny image.

A frame whose size is not a multiple of p is padded with zeros (black) at the
bottom and right, and `patchify` warns that it did so; `unpatchify` crops the
padding away again, so `unpatchify(patchify(x)) == x` exactly.

Two stems, chosen by `VisionConfig.stem`:

- "linear": one matrix, nn.Linear(3*p*p, d_model). This is all Fuyu does.
- "hmlp": a hierarchical MLP (Touvron et al., "Three things everyone should
  know about Vision Transformers", 2022) written as three convolutions whose
  kernel equals their stride, 4x4/4 -> 5x5/5 -> 2x2/2 (4 * 5 * 2 = 40). Each
  convolution sees non-overlapping pixel blocks, so the stem is a small MLP
  applied to 4x4 pixel blocks, then to blocks of blocks, and it never looks
  across a patch border: still exactly one token per patch, but built from
  local structure first, with two nonlinearities. With c = d_model / 4 hidden
  channels it has about 2.6 * d_model**2 weights against 4800 * d_model for
  the linear stem: fewer below d_model ~ 1900, more above.

The stem alone does not know where a patch was. Learned row and column
position tables (one d_model vector per row index, one per column index) are
added to each patch vector; the transformer's rotary positions then only
need to say *when* (which micro-turn), not *where* in the frame.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from minitml.config import VisionConfig


def grid_size(height: int, width: int, patch_size: int = 40) -> tuple[int, int]:
    """(rows, cols) of patches for an image of height x width, after padding."""
    return -(-height // patch_size), -(-width // patch_size)  # ceil division


def patch_positions(grid: tuple[int, int]) -> torch.Tensor:
    """(row, col) of every patch in row-major order: a (rows*cols, 2) long tensor.

    >>> patch_positions((2, 3)).tolist()
    [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    """
    rows, cols = grid
    row = torch.arange(rows).repeat_interleave(cols)  # (N,) 0 0 0 1 1 1
    col = torch.arange(cols).repeat(rows)  # (N,) 0 1 2 0 1 2
    return torch.stack([row, col], dim=1)  # (N, 2)


# ----------------------------------------------------------------------------
# Pixels in: checking what came
# ----------------------------------------------------------------------------
def _as_float_image(image) -> torch.Tensor:
    """Check an RGB image (H, W, 3) or a batch (B, H, W, 3); return float32 in [0, 1]."""
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            x = torch.from_numpy(np.ascontiguousarray(image))
        elif np.issubdtype(image.dtype, np.floating):
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        else:
            raise ValueError(
                f"expected a uint8 (0..255) or float ([0, 1]) image, got numpy dtype {image.dtype}"
            )
    elif isinstance(image, torch.Tensor):
        x = image
    else:
        raise TypeError(f"expected a numpy array or torch tensor, got {type(image).__name__}")

    shape = tuple(x.shape)
    if x.ndim == 2:
        raise ValueError(
            f"got a 2-D array of shape {shape}, which looks like a grayscale image; expected "
            f"H x W x 3 RGB. Repeat it to 3 channels, e.g. np.stack([img] * 3, axis=-1)"
        )
    if x.ndim not in (3, 4):
        raise ValueError(
            f"expected an image H x W x 3 or a batch B x H x W x 3, got {x.ndim} dimensions "
            f"with shape {shape}"
        )
    if shape[-1] != 3:
        if shape[-3] == 3:
            raise ValueError(
                f"got shape {shape}, which looks channel-first (3 x H x W); expected channels "
                f"last, H x W x 3. Permute it: image.permute(1, 2, 0) (torch) or "
                f"image.transpose(1, 2, 0) (numpy)"
            )
        if shape[-1] == 1:
            raise ValueError(
                f"got shape {shape}, a grayscale image with one channel; expected H x W x 3 "
                f"RGB. Repeat the channel 3 times, e.g. image.repeat(3, axis=-1)"
            )
        if shape[-1] == 4:
            raise ValueError(
                f"got shape {shape}, which looks like RGBA (4 channels); expected H x W x 3 "
                f"RGB. Drop the alpha channel: image[..., :3]"
            )
        raise ValueError(f"expected 3 colour channels in the last axis (H x W x 3), got {shape}")
    if shape[-3] == 0 or shape[-2] == 0:
        raise ValueError(f"got an empty image of shape {shape}; expected at least 1 x 1 pixels")

    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if not x.is_floating_point():
        raise ValueError(
            f"expected a uint8 (0..255) or float ([0, 1]) image, got torch dtype {x.dtype}"
        )
    x = x.to(torch.float32)
    if x.numel() > 0 and torch.isnan(x).any():
        raise ValueError(f"the image of shape {shape} contains NaN values")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"float pixel values must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]; "
            f"expected uint8 (0..255) or floats in [0, 1] (divide 0..255 floats by 255)"
        )
    return x


# ----------------------------------------------------------------------------
# patchify / unpatchify: pure rearrangement, no learned weights
# ----------------------------------------------------------------------------
def patchify(image, patch_size: int = 40) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut an RGB image into flat square patches.

    image: (H, W, 3) or a batch (B, H, W, 3); numpy or torch; uint8 0..255 or
           float in [0, 1].
    Returns (patches, grid): patches is float32 (rows*cols, 3*p*p), or
    (B, rows*cols, 3*p*p) for a batch, row-major, each patch laid out as
    (3, p, p); grid = (rows, cols).
    """
    if patch_size < 1:
        raise ValueError(f"patch_size must be a positive number of pixels, got {patch_size}")
    x = _as_float_image(image)
    batched = x.ndim == 4
    if not batched:
        x = x.unsqueeze(0)  # (1, H, W, 3)
    B, H, W, _ = x.shape
    p = patch_size
    rows, cols = grid_size(H, W, p)
    pad_h, pad_w = rows * p - H, cols * p - W
    if pad_h or pad_w:
        warnings.warn(
            f"an image of {H}x{W} pixels is not a whole number of {p}x{p} patches; padded it "
            f"with zeros (black) at the bottom/right to {rows * p}x{cols * p}",
            stacklevel=2,
        )

    x = x.permute(0, 3, 1, 2)  # (B, 3, H, W): channel-first, as Conv2d and the patch layout want
    x = F.pad(x, (0, pad_w, 0, pad_h))  # (B, 3, rows*p, cols*p), zeros bottom/right
    x = x.reshape(B, 3, rows, p, cols, p)  # split each axis into (which patch, pixel in patch)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, 3, p, p)
    patches = x.reshape(B, rows * cols, 3 * p * p)  # (B, N, 3*p*p), row-major patches
    return (patches if batched else patches[0]), (rows, cols)


def unpatchify(
    patches: torch.Tensor,
    grid: tuple[int, int],
    size: tuple[int, int] | None = None,
    patch_size: int = 40,
) -> torch.Tensor:
    """Undo `patchify`: (..., rows*cols, 3*p*p) -> (..., H, W, 3) float.

    size = (H, W) crops the zero padding away; None keeps the padded image
    (rows*p, cols*p). Works on one image's patches (N, 3*p*p) or a batch
    (B, N, 3*p*p).
    """
    patches = torch.as_tensor(patches)
    rows, cols = grid
    p = patch_size
    if patches.ndim < 2 or patches.shape[-1] != 3 * p * p or patches.shape[-2] != rows * cols:
        raise ValueError(
            f"expected patches of shape (..., {rows * cols}, {3 * p * p}) for a {rows}x{cols} "
            f"grid of {p}x{p} patches, got {tuple(patches.shape)}"
        )
    H, W = (rows * p, cols * p) if size is None else size
    if not (rows * p - p < H <= rows * p and cols * p - p < W <= cols * p):
        raise ValueError(
            f"size {H}x{W} does not fit a {rows}x{cols} grid of {p}x{p} patches (it needs "
            f"{rows * p - p + 1}..{rows * p} x {cols * p - p + 1}..{cols * p} pixels)"
        )
    lead = patches.shape[:-2]
    x = patches.reshape(-1, rows, cols, 3, p, p)  # (B, rows, cols, 3, p, p)
    x = x.permute(0, 1, 4, 2, 5, 3)  # (B, rows, p, cols, p, 3)
    x = x.reshape(-1, rows * p, cols * p, 3)  # (B, rows*p, cols*p, 3)
    x = x[:, :H, :W]  # (B, H, W, 3): crop the padding
    return x.reshape(*lead, H, W, 3)


# ----------------------------------------------------------------------------
# PatchEmbedding: flat patch -> one d_model token
# ----------------------------------------------------------------------------
class PatchEmbedding(nn.Module):
    """Stem + learned row/column positions: (..., N, 3*p*p) -> (..., N, d_model).

    Weights: `patch_embedding_params(vision, d_model)` for the stem, plus
    (max_rows + max_cols) * d_model for the two position tables.
    """

    def __init__(self, vision: VisionConfig, d_model: int, max_rows: int, max_cols: int):
        super().__init__()
        if d_model < 1 or max_rows < 1 or max_cols < 1:
            raise ValueError(
                f"d_model, max_rows and max_cols must be >= 1, "
                f"got {d_model}, {max_rows}, {max_cols}"
            )
        self.stem = vision.stem
        self.patch_size = p = vision.patch_size
        self.d_model = d_model
        self.max_rows, self.max_cols = max_rows, max_cols
        if vision.stem == "linear":
            # One weight per (pixel value, output feature): 4800 * d_model for 40x40.
            self.proj = nn.Linear(3 * p * p, d_model)
        else:
            if p != 40:  # VisionConfig refuses this too; say it again where it matters
                raise ValueError(f"the hMLP stem is built for 40x40 patches, got {p}x{p}")
            c = vision.hmlp_channels or d_model // 4
            if c < 1:
                raise ValueError(
                    f"the hMLP needs at least 1 hidden channel, got {c} (d_model={d_model})"
                )
            # kernel == stride: every conv sees disjoint pixel blocks inside one patch.
            self.proj = nn.Sequential(
                nn.Conv2d(3, c, kernel_size=4, stride=4),  # (3, 40, 40) -> (c, 10, 10)
                nn.GELU(),
                nn.Conv2d(c, c, kernel_size=5, stride=5),  # (c, 10, 10) -> (c, 2, 2)
                nn.GELU(),
                nn.Conv2d(c, d_model, kernel_size=2, stride=2),  # (c, 2, 2) -> (d_model, 1, 1)
            )
        self.row_position = nn.Embedding(max_rows, d_model)  # one vector per patch row
        self.col_position = nn.Embedding(max_cols, d_model)  # one vector per patch column
        # Small positions, so they shift a patch vector without drowning its content.
        nn.init.normal_(self.row_position.weight, std=0.02)
        nn.init.normal_(self.col_position.weight, std=0.02)

    def embed_content(self, patches: torch.Tensor) -> torch.Tensor:
        """The stem alone: (..., 3*p*p) -> (..., d_model), no positions."""
        if self.stem == "linear":
            return self.proj(patches)  # (..., d_model)
        p, lead = self.patch_size, patches.shape[:-1]
        x = patches.reshape(-1, 3, p, p)  # (M, 3, p, p): each patch as its own tiny image
        x = self.proj(x)  # (M, d_model, 1, 1)
        return x.reshape(*lead, self.d_model)  # (..., d_model)

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        rows, cols = grid
        p = self.patch_size
        if patches.ndim < 2 or patches.shape[-1] != 3 * p * p or patches.shape[-2] != rows * cols:
            raise ValueError(
                f"expected patches of shape (..., {rows * cols}, {3 * p * p}) for a {rows}x{cols} "
                f"grid of {p}x{p} patches, got {tuple(patches.shape)}"
            )
        if rows > self.max_rows or cols > self.max_cols:
            raise ValueError(
                f"a {rows}x{cols} patch grid does not fit the position tables "
                f"({self.max_rows} rows x {self.max_cols} cols); use a smaller frame or raise "
                f"max_patch_rows / max_patch_cols"
            )
        x = self.embed_content(patches)  # (..., N, d_model)
        pos = patch_positions(grid).to(patches.device)  # (N, 2)
        where = self.row_position(pos[:, 0]) + self.col_position(pos[:, 1])  # (N, d_model)
        return x + where  # (..., N, d_model), broadcast over leading dims
