"""Tests for minitml.patches: layout, round trip, per-patch locality, errors, counts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from minitml.config import VisionConfig, get_config, patch_embedding_params
from minitml.patches import (
    PatchEmbedding,
    grid_size,
    patch_positions,
    patchify,
    unpatchify,
)

STEMS = ["linear", "hmlp"]
D = 32  # a small d_model keeps every test fast


def random_uint8(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def quiet_patchify(image, patch_size=40):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return patchify(image, patch_size)


# ----------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------
def test_layout_hand_built_one_row():
    # pixel (y, x) of channel ch holds 100*ch + 10*y + x; patches are 2x2.
    y, x, ch = np.meshgrid(np.arange(2), np.arange(4), np.arange(3), indexing="ij")
    image = (100 * ch + 10 * y + x).astype(np.uint8)  # (2, 4, 3)
    patches, grid = patchify(image, patch_size=2)
    assert grid == (1, 2)
    want = torch.tensor(
        [
            [0, 1, 10, 11, 100, 101, 110, 111, 200, 201, 210, 211],  # left patch: R, G, B
            [2, 3, 12, 13, 102, 103, 112, 113, 202, 203, 212, 213],  # right patch
        ],
        dtype=torch.float32,
    ) / 255
    assert patches.dtype == torch.float32
    assert torch.equal(patches, want)


def test_layout_is_row_major():
    # 4x4 image, 2x2 patches: patch 1 is top-right, patch 2 is bottom-left.
    y, x, ch = np.meshgrid(np.arange(4), np.arange(4), np.arange(3), indexing="ij")
    image = (100 * ch + 10 * y + x).astype(np.uint8)
    patches, grid = patchify(image, patch_size=2)
    assert grid == (2, 2)
    red = (patches[:, :4] * 255).round().long().tolist()  # the red 2x2 block of each patch
    assert red == [[0, 1, 10, 11], [2, 3, 12, 13], [20, 21, 30, 31], [22, 23, 32, 33]]


def test_layout_matches_slicing_at_40():
    image = torch.rand(80, 120, 3)
    patches, (rows, cols) = patchify(image)
    assert (rows, cols) == (2, 3)
    for r in range(rows):
        for c in range(cols):
            block = image[40 * r : 40 * r + 40, 40 * c : 40 * c + 40]  # (40, 40, 3)
            assert torch.equal(patches[r * cols + c], block.permute(2, 0, 1).reshape(-1))


def test_patch_positions():
    assert patch_positions((2, 3)).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


# ----------------------------------------------------------------------------
# Shapes, padding, round trip
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("h, w", [(37, 53), (80, 80), (81, 120), (1, 1), (40, 41)])
def test_round_trip_uint8(h, w):
    image = random_uint8(h, w)
    patches, grid = quiet_patchify(image)
    assert grid == grid_size(h, w) == (-(-h // 40), -(-w // 40))
    assert patches.shape == (grid[0] * grid[1], 3 * 40 * 40)
    back = unpatchify(patches, grid, size=(h, w))
    assert back.shape == (h, w, 3)
    assert torch.equal(back, torch.from_numpy(image).float() / 255)


@pytest.mark.parametrize("h, w", [(37, 53), (81, 120)])
@pytest.mark.parametrize("as_numpy", [False, True])
def test_round_trip_float(h, w, as_numpy):
    image = torch.rand(h, w, 3, generator=torch.Generator().manual_seed(1))
    patches, grid = quiet_patchify(image.numpy() if as_numpy else image)
    assert torch.equal(unpatchify(patches, grid, size=(h, w)), image)


def test_float64_and_batch():
    images = np.random.default_rng(2).random((3, 50, 90, 3))  # float64 batch
    patches, grid = quiet_patchify(images)
    assert patches.dtype == torch.float32 and patches.shape == (3, 2 * 3, 4800)
    for b in range(3):  # a batch is the same as one image at a time
        assert torch.equal(patches[b], quiet_patchify(images[b])[0])
    back = unpatchify(patches, grid, size=(50, 90))
    assert back.shape == (3, 50, 90, 3)
    assert torch.equal(back, torch.from_numpy(images).float())


def test_padding_warns_and_is_black():
    image = np.full((37, 53, 3), 255, dtype=np.uint8)
    with pytest.warns(UserWarning, match=r"37x53.*40x80"):
        patches, grid = patchify(image)
    padded = unpatchify(patches, grid)  # no size: keep the padding
    assert padded.shape == (40, 80, 3)
    assert torch.all(padded[:37, :53] == 1) and padded[37:].abs().sum() == 0
    assert padded[:, 53:].abs().sum() == 0


def test_no_warning_when_exact():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        patchify(random_uint8(80, 120))


def test_unpatchify_checks_its_input():
    patches, grid = patchify(random_uint8(80, 80))
    with pytest.raises(ValueError, match=r"\(\.\.\., 6, 4800\)"):
        unpatchify(patches, (2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        unpatchify(patches, grid, size=(30, 80))


# ----------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((80, 80), np.uint8), "grayscale"),
        (np.zeros((80, 80, 1), np.uint8), "grayscale"),
        (np.zeros((80, 80, 4), np.uint8), "RGBA.*alpha"),
        (torch.zeros(3, 80, 80), r"channel-first.*[Pp]ermute"),
        (np.zeros((2, 3, 80, 80), np.float32), "channel-first"),
        (np.zeros(80, np.uint8), "1 dimensions"),
        (np.zeros((1, 1, 80, 80, 3), np.uint8), "5 dimensions"),
        (np.zeros((0, 80, 3), np.uint8), "empty"),
        (np.zeros((80, 80, 3), np.int64), "uint8.*int64"),
        (torch.full((8, 8, 3), float("nan")), "NaN"),
        (np.full((8, 8, 3), 255.0), r"\[0, 1\].*\[255, 255\].*uint8"),
        (np.full((8, 8, 3), -0.5), r"found values in \[-0.5, -0.5\]"),
    ],
)
def test_clear_errors(image, message):
    with pytest.raises(ValueError, match=message):
        patchify(image)


def test_bad_patch_size():
    with pytest.raises(ValueError, match="patch_size"):
        patchify(random_uint8(8, 8), patch_size=0)


# ----------------------------------------------------------------------------
# PatchEmbedding
# ----------------------------------------------------------------------------
def make_embedding(stem, d_model=D, max_rows=4, max_cols=4, **vision):
    torch.manual_seed(0)
    return PatchEmbedding(VisionConfig(stem=stem, **vision), d_model, max_rows, max_cols)


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("hmlp_channels", [0, 6])
def test_param_count_matches_config(stem, hmlp_channels):
    vision = VisionConfig(stem=stem, hmlp_channels=hmlp_channels)
    emb = PatchEmbedding(vision, d_model=D, max_rows=5, max_cols=7)
    n = sum(p.numel() for p in emb.parameters())
    assert n == patch_embedding_params(vision, D) + (5 + 7) * D


def test_param_count_matches_config_for_presets():
    for name in ("tiny", "small"):
        cfg = get_config(name)
        m = cfg.model
        emb = PatchEmbedding(cfg.vision, m.d_model, m.max_patch_rows, m.max_patch_cols)
        n = sum(p.numel() for p in emb.parameters())
        groups = cfg.param_groups()
        assert n == groups["patch_embedding"]["total"] + groups["patch_positions"]["total"]


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("h, w", [(37, 53), (81, 120)])
def test_embedding_shapes(stem, h, w):
    emb = make_embedding(stem)
    patches, grid = quiet_patchify(random_uint8(h, w))
    out = emb(patches, grid)
    assert out.shape == (grid[0] * grid[1], D)
    batch = torch.stack([patches, patches])  # (2, N, 4800)
    out2 = emb(batch, grid)
    assert out2.shape == (2, grid[0] * grid[1], D)
    torch.testing.assert_close(out2[1], out, rtol=0, atol=1e-6)


def embed_image(emb, image):
    patches, grid = patchify(image)
    return emb(patches, grid)


def _assert_local(embed, image, rows, cols):
    """Perturbing one patch changes exactly that patch's vector, and every pixel counts."""
    base = embed(image)  # (N, d)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        # Change the pixels along all four borders of patch k only.
        poked = image.clone()
        ys, xs = slice(40 * r, 40 * r + 40), slice(40 * c, 40 * c + 40)
        poked[ys, xs][[0, -1], :] = 1 - poked[ys, xs][[0, -1], :]
        poked[ys, xs][:, [0, -1]] = 1 - poked[ys, xs][:, [0, -1]]
        changed = (embed(poked) != base).any(dim=1)  # (N,) which patch vectors moved
        assert changed.tolist() == [i == k for i in range(rows * cols)], f"patch {k} leaked"

        # Gradient of patch k's vector (projected on a random direction) w.r.t. the image:
        # nonzero at every pixel of patch k, zero everywhere else.
        pixels = image.clone().requires_grad_(True)
        direction = torch.randn(base.shape[1], generator=torch.Generator().manual_seed(k))
        (embed(pixels)[k] @ direction).backward()
        influence = pixels.grad.abs().sum(dim=2) > 0  # (H, W)
        inside = torch.zeros_like(influence)
        inside[ys, xs] = True
        assert torch.equal(influence, inside), f"patch {k}: influence is not its own 40x40 block"


@pytest.mark.parametrize("stem", STEMS)
def test_patches_never_mix_across_borders(stem):
    emb = make_embedding(stem)
    image = torch.rand(80, 120, 3, generator=torch.Generator().manual_seed(3))
    _assert_local(lambda im: embed_image(emb, im), image, rows=2, cols=3)


def test_locality_check_can_fail():
    # A stem that blurs across patch borders (3x3 conv over the whole frame) must be caught.
    emb = make_embedding("linear")
    blur = nn.Conv2d(3, 3, kernel_size=3, padding=1)

    def leaky(image):  # (H, W, 3) -> (N, d)
        x = blur(image.permute(2, 0, 1)[None])[0].permute(1, 2, 0)  # (H, W, 3)
        return embed_image(emb, x.sigmoid())

    image = torch.rand(80, 80, 3, generator=torch.Generator().manual_seed(4))
    with pytest.raises(AssertionError, match="leaked"):
        _assert_local(leaky, image, rows=2, cols=2)


@pytest.mark.parametrize("stem", STEMS)
def test_positions_tell_patches_apart(stem):
    emb = make_embedding(stem)
    image = torch.full((80, 80, 3), 0.5)  # four identical patches
    out = embed_image(emb, image)  # (4, d)
    content = emb.embed_content(patchify(image)[0])  # (4, d), identical rows
    assert torch.equal(content[0], content[3])
    for k, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        where = emb.row_position.weight[r] + emb.col_position.weight[c]
        torch.testing.assert_close(out[k], content[k] + where)
    assert len({tuple(v.tolist()) for v in out}) == 4


@pytest.mark.parametrize("stem", STEMS)
def test_gradients_flow(stem):
    emb = make_embedding(stem)
    patches, grid = quiet_patchify(random_uint8(81, 120))
    emb(patches, grid).square().mean().backward()
    for name, p in emb.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_embedding_errors():
    emb = make_embedding("linear", max_rows=2, max_cols=3)
    patches, grid = patchify(random_uint8(120, 120))  # 3x3 grid
    with pytest.raises(ValueError, match=r"3x3 patch grid.*2 rows x 3 cols"):
        emb(patches, grid)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 4800\)"):
        emb(patches, (2, 2))
    with pytest.raises(ValueError, match="40x40"):
        VisionConfig(stem="hmlp", patch_size=16)  # the hMLP's 4*5*2 kernels need 40


def test_linear_stem_other_patch_size():
    emb = make_embedding("linear", patch_size=16)
    patches, grid = patchify(random_uint8(32, 48), patch_size=16)
    assert emb(patches, grid).shape == (6, D)
