"""Solutions to the exercises of 03_moe (the tests run them through the notebook's checks)."""

import torch


def my_active_params(moe_cfg, d_model):
    router = d_model * moe_cfg.n_experts  # every token is scored against every expert
    expert = 3 * d_model * moe_cfg.d_expert  # gate, up, down of one SwiGLU
    return router + (moe_cfg.top_k + moe_cfg.n_shared_experts) * expert


def my_balance_loss(probs, experts):
    N, E = probs.shape
    f = torch.bincount(experts.flatten(), minlength=E).float() / experts.numel()  # (E,)
    P = probs.mean(dim=0)  # (E,)
    return E * (f * P).sum()


def my_z_loss(logits):
    # logsumexp grows with every logit; adding c to a token's logits adds c to it.
    return (torch.logsumexp(logits, dim=-1) ** 2).mean()
