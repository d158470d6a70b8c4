"""Benchmark of the MoE layer on the CPU: does sparse compute cost what it should?

    .venv/bin/python bench/moe.py

Prefill (4096 tokens, d_model 512, 8 experts top-2, d_expert 1024), forward only,
float32, torch.inference_mode:
  (a) a dense SwiGLU with the SAME ACTIVE parameters (hidden = k * d_expert)
  (b) the masked per-expert loop      (minitml.moe.moe_masked_loop)
  (c) the dense reference             (minitml.moe.moe_dense_reference: every expert, every token)
  and the MoE layer itself (routing + sorted dropless dispatch + aux losses).
Decode (1 token): the MoE layer's decode path (mat-vecs with the chosen experts'
weights) against dense SwiGLUs with the same ACTIVE and the same TOTAL parameters,
and against the GPU recipe run on the CPU: copy the chosen experts' weights out of
the stack (w_gate[experts]), then one batched mat-vec.

Every figure is a median over rounds; within a round the candidates run one after
another, so a slow moment of the machine hits all of them alike. Ratios are
time(MoE) / time(baseline), all measured in this run. The last line is JSON.
"""

from __future__ import annotations

import json
import statistics
import time

import torch
import torch.nn.functional as F

from minitml.config import MoEConfig
from minitml.moe import MoE, SwiGLU, moe_dense_reference, moe_masked_loop

TOKENS, D_MODEL, N_EXPERTS, TOP_K, D_EXPERT = 4096, 512, 8, 2, 1024
PREFILL_ROUNDS = 7  # timed rounds (after one warm-up round)
DECODE_ROUNDS, DECODE_CALLS = 9, 50  # each decode figure: median over rounds of a 50-call mean


def decode_gather_copy(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Decode the GPU way: gather (= copy) the chosen experts' weights, batched mat-vec."""
    r = moe.route(x)
    N, k = r.experts.shape
    chosen = r.experts.flatten()  # (N*k,)
    w_gate = moe.w_gate.index_select(0, chosen)  # (N*k, d, h), a copy: w_gate[experts]
    w_up = moe.w_up.index_select(0, chosen)  # (N*k, d, h)
    w_down = moe.w_down.index_select(0, chosen)  # (N*k, h, d)
    xv = x.repeat_interleave(k, dim=0)[:, None, :]  # (N*k, 1, d)
    hidden = F.silu(torch.bmm(xv, w_gate)) * torch.bmm(xv, w_up)  # (N*k, 1, h)
    y = torch.bmm(hidden, w_down).view(N, k, -1)  # (N, k, d)
    return (r.weights[..., None] * y).sum(dim=1)  # (N, d)


def time_rounds(candidates: dict, rounds: int, calls: int = 1) -> dict[str, float]:
    """Median seconds per call of each candidate, interleaved round by round."""
    times = {name: [] for name in candidates}
    for round_ in range(rounds + 1):  # round 0 is the warm-up
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            if round_ > 0:
                times[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    torch.manual_seed(0)
    cfg = MoEConfig(n_experts=N_EXPERTS, top_k=TOP_K, d_expert=D_EXPERT)
    moe = MoE(cfg, D_MODEL)
    dense_active = SwiGLU(D_MODEL, TOP_K * D_EXPERT)  # same active parameters as one token's MoE
    dense_total = SwiGLU(D_MODEL, N_EXPERTS * D_EXPERT)  # same parameters as all the experts
    x = torch.randn(TOKENS, D_MODEL)
    x1 = torch.randn(1, D_MODEL)

    with torch.inference_mode():
        error = (moe(x)[0] - moe_dense_reference(moe, x)).abs().max().item()
        error_decode = max(
            (moe(x1)[0] - moe_dense_reference(moe, x1)).abs().max().item(),
            (decode_gather_copy(moe, x1) - moe_dense_reference(moe, x1)).abs().max().item(),
        )
        prefill = time_rounds(
            {
                "dense_active": lambda: dense_active(x),
                "masked_loop": lambda: moe_masked_loop(moe, x),
                "dense_reference": lambda: moe_dense_reference(moe, x),
                "moe": lambda: moe(x),
            },
            PREFILL_ROUNDS,
        )
        decode = time_rounds(
            {
                "dense_active": lambda: dense_active(x1),
                "dense_total": lambda: dense_total(x1),
                "gather_copy": lambda: decode_gather_copy(moe, x1),
                "moe": lambda: moe(x1),  # 1 <= decode_max_tokens: the decode path
            },
            DECODE_ROUNDS,
            DECODE_CALLS,
        )

    n_params = sum(p.numel() for p in moe.parameters())
    n_active = D_MODEL * N_EXPERTS + TOP_K * 3 * D_MODEL * D_EXPERT
    ms = {k: v * 1e3 for k, v in prefill.items()}
    ms1 = {k: v * 1e3 for k, v in decode.items()}
    print(f"MoE layer on the CPU: float32, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{N_EXPERTS} experts top-{TOP_K}, d_model {D_MODEL}, d_expert {D_EXPERT}: "
          f"{n_params / 1e6:.1f}M parameters, {n_active / 1e6:.1f}M active per token")
    print(f"max |MoE - dense reference| = {error:.1e} (4096 tokens), {error_decode:.1e} (1 token)\n")
    print(f"{'prefill, ' + str(TOKENS) + ' tokens':<40}{'median ms':>10}{'MoE / this':>12}")
    rows = [
        ("(a) dense SwiGLU, same active params", "dense_active"),
        ("(b) masked per-expert loop", "masked_loop"),
        ("(c) dense reference, every expert", "dense_reference"),
        ("MoE, sorted dropless dispatch", "moe"),
    ]
    for label, key in rows:
        print(f"{label:<40}{ms[key]:>10.1f}{ms['moe'] / ms[key]:>11.2f}x")
    print(f"\n{'decode, 1 token':<40}{'median ms':>10}{'MoE / this':>12}")
    rows = [
        (f"dense SwiGLU, same active (h={TOP_K * D_EXPERT})", "dense_active"),
        (f"dense SwiGLU, same total (h={N_EXPERTS * D_EXPERT})", "dense_total"),
        ("gather copy + batched mat-vec", "gather_copy"),
        ("MoE decode path, mat-vecs on views", "moe"),
    ]
    for label, key in rows:
        print(f"{label:<40}{ms1[key]:>10.3f}{ms1['moe'] / ms1[key]:>11.2f}x")

    result = {
        "bench": "moe",
        "tokens": TOKENS,
        "d_model": D_MODEL,
        "n_experts": N_EXPERTS,
        "top_k": TOP_K,
        "d_expert": D_EXPERT,
        "threads": torch.get_num_threads(),
        "max_abs_error": max(error, error_decode),
        "prefill_ms": {k: round(v, 2) for k, v in ms.items()},
        "decode_ms": {k: round(v, 4) for k, v in ms1.items()},
        "moe_vs_dense_active": round(ms["moe"] / ms["dense_active"], 3),
        "moe_vs_masked_loop": round(ms["moe"] / ms["masked_loop"], 3),
        "moe_vs_dense_reference": round(ms["moe"] / ms["dense_reference"], 3),
        "decode_vs_dense_active": round(ms1["moe"] / ms1["dense_active"], 3),
        "decode_vs_dense_total": round(ms1["moe"] / ms1["dense_total"], 3),
        "decode_vs_gather_copy": round(ms1["moe"] / ms1["gather_copy"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
