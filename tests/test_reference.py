"""An independent reference for the transformer: a plain decoder written from the formulas.

Nothing here imports the model's attention, norm, rotary or FFN code. The reference
reads the weights out of the model's state dict and computes, layer by layer,

    h    = x / sqrt(mean(x^2) + eps) * g                            (torch.nn.RMSNorm)
    q, k = rotate(h Wq), rotate(h Wk)   each pair (x_i, x_{i+hd/2}) as the complex number
                                        x_i + j x_{i+hd/2}, times e^{j p theta^(-2i/hd)}
    k, v = repeated n_heads / n_kv_heads times                      (grouped-query heads)
    x    = x + softmax(q k^T / sqrt(hd) + mask) v Wo    mask: 0 for p - W < p' <= p, else -inf
    x    = x + FFN(RMSNorm(x))   dense SwiGLU, or every expert on every token, mixed by
                                 the top-k router weights renormalised to sum to one

and the final RMSNorm. The model's hidden states must equal it on random inputs, with a
window shorter than the sequence, for multi-head and grouped-query attention and both
routers. (The streaming path is checked against the full forward pass in test_model.py.)
"""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from minitml.config import get_config
from minitml.model import InteractionModel


def rms_norm(x, weight, eps):
    norm = torch.nn.RMSNorm(x.shape[-1], eps=eps)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm(x)


def rotate(x, positions, theta):
    """x (B, H, N, hd): pair i of each head turned by angle p * theta^(-2i / hd), as complex numbers."""
    hd = x.shape[-1]
    half = hd // 2
    freqs = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / hd)  # (hd/2,)
    angles = positions.double()[:, None] * freqs  # (N, hd/2)
    turn = torch.polar(torch.ones_like(angles), angles)  # e^{j angle}
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * turn
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def attention(x, w, m, positions, window):
    B, N, _ = x.shape
    H, Hkv, hd = m.n_heads, m.n_kv_heads, m.head_dim
    q = (x @ w["q"].T).view(B, N, H, hd).transpose(1, 2)  # (B, H, N, hd)
    k = (x @ w["k"].T).view(B, N, Hkv, hd).transpose(1, 2)  # (B, Hkv, N, hd)
    v = (x @ w["v"].T).view(B, N, Hkv, hd).transpose(1, 2)
    q, k = rotate(q, positions, m.rope_theta), rotate(k, positions, m.rope_theta)
    k = k.repeat_interleave(H // Hkv, dim=1)  # (B, H, N, hd): query head h reads kv head h // (H/Hkv)
    v = v.repeat_interleave(H // Hkv, dim=1)
    back = positions[:, None] - positions[None, :]  # (N, N) how far back each key is
    mask = torch.where((back >= 0) & (back < window), 0.0, -math.inf)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + mask  # (B, H, N, N)
    y = scores.softmax(-1) @ v  # (B, H, N, hd)
    return y.transpose(1, 2).reshape(B, N, H * hd) @ w["o"].T


def swiglu(x, gate, up, down):
    """x (..., d) with gate, up (d, h) and down (h, d) as x @ W."""
    return (F.silu(x @ gate) * (x @ up)) @ down


def moe(x, w, cfg):
    """Every expert on every token; each token keeps its top-k, weights renormalised."""
    logits = x @ w["router"].T  # (B, N, E)
    if cfg.router == "softmax":
        scores = logits.softmax(-1)
        _, chosen = scores.topk(cfg.top_k, dim=-1)
    else:
        scores = torch.sigmoid(logits)
        _, chosen = (scores + w["bias"]).topk(cfg.top_k, dim=-1)
    keep = torch.zeros_like(scores).scatter(-1, chosen, 1.0)
    gates = scores * keep / (scores * keep).sum(-1, keepdim=True)  # (B, N, E), zero off the top k
    outs = torch.stack([swiglu(x, w["w_gate"][e], w["w_up"][e], w["w_down"][e])
                        for e in range(cfg.n_experts)], dim=-2)  # (B, N, E, d)
    return (gates[..., None] * outs).sum(-2)


def reference_decoder(state, cfg, x, positions):
    m = cfg.model
    for i in range(m.n_layers):
        p = f"blocks.{i}."
        w = {n: state[p + "attn." + n + ".weight"] for n in ("q", "k", "v", "o")}
        x = x + attention(rms_norm(x, state[p + "attn_norm.weight"], m.norm_eps), w, m, positions,
                          cfg.window)
        h = rms_norm(x, state[p + "ffn_norm.weight"], m.norm_eps)
        if m.is_moe_layer(i):
            ffn = {"router": state[p + "ffn.router.weight"], "bias": state[p + "ffn.bias"],
                   **{n: state[p + "ffn." + n] for n in ("w_gate", "w_up", "w_down")}}
            x = x + moe(h, ffn, cfg.moe)
        else:  # nn.Linear stores W as (out, in): x @ W.T
            x = x + swiglu(h, state[p + "ffn.w_gate.weight"].T, state[p + "ffn.w_up.weight"].T,
                           state[p + "ffn.w_down.weight"].T)
    return rms_norm(x, state["norm.weight"], m.norm_eps)


def small(n_kv_heads: int, router: str):
    cfg = get_config("tiny")
    return cfg.replace(model=replace(cfg.model, n_layers=3, moe_every=2, n_kv_heads=n_kv_heads,
                                     window_micro_turns=3),
                       moe=replace(cfg.moe, router=router))


@pytest.mark.parametrize("n_kv_heads,router", [(4, "softmax"), (2, "sigmoid"), (1, "softmax")])
def test_the_model_equals_a_decoder_written_from_the_formulas(n_kv_heads, router):
    cfg = small(n_kv_heads, router)
    torch.manual_seed(0)
    model = InteractionModel(cfg).eval()
    with torch.no_grad():
        for block in model.blocks:
            if block.is_moe:  # a balancing bias that changes which experts win
                block.ffn.bias.copy_(torch.randn(cfg.moe.n_experts) * 0.05)
    N = 5 * cfg.positions_per_micro_turn  # longer than the 3-micro-turn window
    x = torch.randn(2, N, cfg.model.d_model)
    positions = torch.arange(N) + 1000  # any start: only differences matter, and RoPE says so
    with torch.no_grad():
        ours, _ = model.run(x, positions)
        theirs = reference_decoder(model.state_dict(), cfg, x, positions)
    assert N > cfg.window
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_the_reference_notices_a_wrong_weight():
    """The comparison can fail: one weight changed in the reference's copy breaks it."""
    cfg = small(4, "softmax")
    torch.manual_seed(0)
    model = InteractionModel(cfg).eval()
    x = torch.randn(1, 2 * cfg.positions_per_micro_turn, cfg.model.d_model)
    positions = torch.arange(x.shape[1])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["blocks.1.attn.v.weight"][0] += 0.5  # one row of one value projection
    with torch.no_grad():
        ours, _ = model.run(x, positions)
        theirs = reference_decoder(state, cfg, x, positions)
    assert (ours - theirs).abs().max() > 1e-3
