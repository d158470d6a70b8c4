"""Solutions to the exercises of 11_scaling (the tests run them through the notebook's checks)."""

import math

from minitml.scale import serving_step, train_flops_per_token


def my_kv_cache_bytes(cfg, bytes_per_number):
    m = cfg.model
    # K and V, every layer, every KV head (not every query head: GQA shares them), the whole ring.
    return 2 * m.n_layers * m.n_kv_heads * m.head_dim * cfg.window * bytes_per_number


def my_experts_touched(n_tokens, n_experts, top_k):
    # One token misses a given expert with probability 1 - k/E; n tokens all miss it with its n-th power.
    return n_experts * (1 - (1 - top_k / n_experts) ** n_tokens)


def my_bandwidth_sessions(cfg, gpu, budget_s):
    limit = budget_s * gpu.bandwidth * 0.8  # bytes the GPU reads within the budget

    def fits(n):
        return serving_step(cfg, n)["bytes"] <= limit

    lo, hi = 0, 1  # fits(lo) (or lo = 0), not fits(hi)
    while fits(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def my_training_gpus(cfg, tokens, days, gpu, mfu):
    flops = tokens * train_flops_per_token(cfg)  # the whole run
    return math.ceil(flops / (days * 86400 * gpu.flops * mfu))  # GPU-seconds / seconds


def my_expert_parallel_bytes(cfg, n_tokens, processes, bytes_per_number):
    rows = n_tokens * cfg.moe.top_k  # one row of d numbers per (token, chosen expert)
    away = (processes - 1) / processes  # rows whose expert lives on another process
    # there and back in forward (dispatch, combine), the same two for the gradients in backward
    return 4 * away * rows * cfg.model.d_model * bytes_per_number
