"""Tests for minitml.moe: the dispatch against an every-expert reference, the
decode path, gradients, the balance / z losses by hand, the sigmoid balancing
bias, and the parameter count that Config.param_groups() assumes."""

from __future__ import annotations

import math

import pytest
import torch

from minitml.config import Config, ModelConfig, MoEConfig
from minitml.moe import (
    MoE,
    SwiGLU,
    load_balancing_loss,
    load_stats,
    moe_dense_reference,
    moe_masked_loop,
    router_z_loss,
)

CASES = [
    # (N, d, E, k, shared, router)
    (5, 8, 2, 1, 0, "softmax"),
    (37, 16, 4, 2, 0, "softmax"),
    (64, 32, 8, 2, 1, "softmax"),
    (101, 24, 6, 3, 2, "softmax"),
    (13, 16, 4, 4, 0, "softmax"),
    (37, 16, 4, 2, 0, "sigmoid"),
    (64, 32, 8, 1, 1, "sigmoid"),
    (200, 16, 16, 4, 0, "sigmoid"),
]


def make_moe(d, E, k, shared=0, router="softmax", h=None, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = MoEConfig(n_experts=E, top_k=k, d_expert=h or 2 * d, n_shared_experts=shared,
                    router=router, **kw)
    moe = MoE(cfg, d)
    if router == "sigmoid":  # a non-zero bias, so choosing and weighting really differ
        moe.bias.copy_(0.3 * torch.randn(E))
    return moe


@pytest.mark.parametrize("N,d,E,k,shared,router", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_dispatch_matches_dense_reference(N, d, E, k, shared, router, seed):
    moe = make_moe(d, E, k, shared, router, seed=seed)
    x = torch.randn(N, d)
    y, aux = moe(x)
    want = moe_dense_reference(moe, x)
    assert y.shape == (N, d)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(moe_masked_loop(moe, x), want, atol=1e-5, rtol=0)
    assert aux.load.sum().item() == N * k  # dropless: every assignment was computed
    assert aux.load.dtype == torch.int64 and not aux.load.requires_grad


@pytest.mark.parametrize("router", ["softmax", "sigmoid"])
@pytest.mark.parametrize("N", [1, 2, 3, 4, 9, 40])
def test_decode_path_matches_dispatch(router, N):
    moe = make_moe(16, 6, 2, shared=1, router=router, seed=N)
    x = torch.randn(N, 16)
    r = moe.route(x)
    decode = moe.experts_decode(x, r.weights, r.experts)
    dispatch = moe.experts_dispatch(x, r.weights, r.experts)
    torch.testing.assert_close(decode, dispatch, atol=1e-5, rtol=0)
    if N <= moe.cfg.decode_max_tokens:  # forward takes the decode path here
        torch.testing.assert_close(moe(x)[0], moe_dense_reference(moe, x), atol=1e-5, rtol=0)


def test_forward_uses_decode_path_for_few_tokens(monkeypatch):
    moe = make_moe(8, 4, 2)
    calls = []
    monkeypatch.setattr(moe, "experts_decode", lambda *a: calls.append("decode") or a[0])
    monkeypatch.setattr(moe, "experts_dispatch", lambda *a: calls.append("dispatch") or a[0])
    moe(torch.randn(moe.cfg.decode_max_tokens, 8))
    moe(torch.randn(moe.cfg.decode_max_tokens + 1, 8))
    assert calls == ["decode", "dispatch"]


def test_three_dimensional_input():
    moe = make_moe(16, 4, 2, shared=1)
    x = torch.randn(3, 7, 16)  # (B, T, d)
    y, aux = moe(x)
    assert y.shape == (3, 7, 16)
    y_flat, _ = moe(x.reshape(21, 16))
    torch.testing.assert_close(y, y_flat.reshape(3, 7, 16))
    torch.testing.assert_close(y, moe_dense_reference(moe, x), atol=1e-5, rtol=0)
    assert aux.load.sum().item() == 21 * 2


def test_wrong_width_is_refused():
    moe = make_moe(16, 4, 2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 16\).*\(3, 8\)"):
        moe(torch.randn(3, 8))


@pytest.mark.parametrize("router", ["softmax", "sigmoid"])
@pytest.mark.parametrize("decode_max_tokens", [0, 4])  # 0: dispatch path, 4: decode path
def test_gradients_reach_router_and_used_experts(router, decode_max_tokens):
    moe = make_moe(16, 8, 2, shared=1, router=router, decode_max_tokens=decode_max_tokens)
    x = torch.randn(3, 16)  # 3 tokens x 2 choices < 8 experts: some experts get none
    y, aux = moe(x)
    (y.square().sum() + aux.loss).backward()
    assert moe.router.weight.grad.abs().sum() > 0
    for p in moe.shared.parameters():
        assert p.grad.abs().sum() > 0
    for e in range(8):
        used = aux.load[e].item() > 0
        for w in (moe.w_gate, moe.w_up, moe.w_down):
            assert (w.grad[e].abs().sum() > 0) == used, f"expert {e}, load {aux.load[e].item()}"
    assert 0 < int((aux.load > 0).sum()) < 8  # the example really has unused experts
    assert moe.bias.grad is None  # the bias is a buffer: never trained by the optimiser


def test_gradients_through_dispatch_path_match_reference():
    moe = make_moe(16, 4, 2, shared=1)
    x = torch.randn(30, 16)
    moe(x)[0].square().sum().backward()
    got = [p.grad.clone() for p in moe.parameters()]
    moe.zero_grad()
    moe_dense_reference(moe, x).square().sum().backward()
    for g, p in zip(got, moe.parameters()):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)


def test_balance_loss_hand_value():
    # E = 2, top-1, three tokens. Router weight picks logits [2, 0], [0, 1], [2, 1].
    moe = make_moe(2, 2, 1)
    with torch.no_grad():
        moe.router.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    _, aux = moe(x)
    # softmax of two logits: p0 = 1 / (1 + exp(l1 - l0))
    p0 = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-1))]
    P0, P1 = sum(p0) / 3, sum(1 - p for p in p0) / 3
    f0, f1 = 2 / 3, 1 / 3  # choices: expert 0, 1, 0
    assert aux.load.tolist() == [2, 1]
    assert aux.balance_loss.item() == pytest.approx(2 * (f0 * P0 + f1 * P1), abs=1e-6)
    z = [math.log(math.exp(2) + 1), math.log(1 + math.exp(1)), math.log(math.exp(2) + math.exp(1))]
    assert aux.z_loss.item() == pytest.approx(sum(v * v for v in z) / 3, abs=1e-5)
    want = moe.cfg.balance_loss_coef * aux.balance_loss + moe.cfg.z_loss_coef * aux.z_loss
    assert aux.loss.item() == pytest.approx(want.item())


@pytest.mark.parametrize("E,k", [(4, 1), (8, 1), (8, 2)])
def test_balance_loss_is_one_when_balanced_and_E_when_collapsed(E, k):
    N = 8 * E
    uniform = torch.full((N, E), 1.0 / E)
    round_robin = (torch.arange(N * k) % E).view(N, k)
    assert load_balancing_loss(uniform, round_robin).item() == pytest.approx(1.0)
    # Everything confidently on expert 0 (and the k-1 next ones): the worst case.
    collapsed_probs = torch.zeros(N, E)
    collapsed_probs[:, 0] = 1.0
    collapsed = torch.arange(k).expand(N, k)
    assert load_balancing_loss(collapsed_probs, collapsed).item() == pytest.approx(E / k)
    # Any routing whose probabilities agree with its choices costs more than balance.
    skewed = torch.softmax(torch.tensor([3.0] + [0.0] * (E - 1)), 0).expand(N, E)
    assert load_balancing_loss(skewed, collapsed).item() > 1.05


def test_z_loss_hand_value():
    logits = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    lse = [math.log(3.0), math.log(math.e + math.e**2 + math.e**3)]
    assert router_z_loss(logits).item() == pytest.approx((lse[0] ** 2 + lse[1] ** 2) / 2)


def test_sigmoid_bias_balances_a_skewed_router():
    torch.manual_seed(0)
    E, d = 8, 16
    moe = make_moe(d, E, 2, router="sigmoid", bias_update_rate=0.01)
    moe.bias.zero_()
    with torch.no_grad():  # skew: experts 0 and 1 score high for almost every token
        direction = torch.randn(d)
        moe.router.weight[:2] += 1.5 * direction
    x = torch.randn(512, d) + direction / direction.norm() * 2.0

    def imbalance():
        return load_stats(moe(x)[1].load)["max_over_mean"]

    before = imbalance()
    for _ in range(200):
        with torch.no_grad():
            load = moe(x)[1].load
        moe.update_bias(load)
    after = imbalance()
    assert before > 3.0, before  # the router really was skewed
    assert after < 1.5, (before, after)
    assert after < 0.4 * before


def test_update_bias_step_and_shape_check():
    moe = make_moe(4, 4, 1, router="sigmoid", bias_update_rate=0.1)
    moe.bias.zero_()
    moe.update_bias(torch.tensor([10, 0, 5, 5]))  # mean 5
    torch.testing.assert_close(moe.bias, torch.tensor([-0.1, 0.1, 0.0, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        moe.update_bias(torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("shared", [0, 1, 3])
def test_param_count_formula(shared):
    d, E, h = 24, 6, 40
    moe = make_moe(d, E, 2, shared=shared, h=h)
    n = sum(p.numel() for p in moe.parameters())
    assert n == d * E + (E + shared) * 3 * d * h
    assert "bias" in dict(moe.named_buffers())  # a buffer, not a parameter
    # ... and the same as the inventory the config keeps for a model of MoE blocks.
    cfg = Config(moe=moe.cfg, model=ModelConfig(d_model=d, n_heads=4, n_kv_heads=4, n_layers=3,
                                                moe_every=1))
    assert cfg.param_groups()["moe_ffn"]["total"] == 3 * n
    assert cfg.param_groups()["moe_ffn"]["active"] == 3 * (d * E + (2 + shared) * 3 * d * h)


def test_swiglu_params_and_formula():
    torch.manual_seed(0)
    f = SwiGLU(8, 20)
    assert sum(p.numel() for p in f.parameters()) == 3 * 8 * 20
    x = torch.randn(5, 8)
    want = (torch.nn.functional.silu(x @ f.w_gate.weight.T) * (x @ f.w_up.weight.T)) @ f.w_down.weight.T
    torch.testing.assert_close(f(x), want)


def test_builds_on_meta_device():
    with torch.device("meta"):
        moe = MoE(MoEConfig(n_experts=16, top_k=2, d_expert=64), 32)
    assert moe.w_gate.is_meta and moe.bias.is_meta


def test_load_stats():
    s = load_stats(torch.tensor([5, 5, 5, 5]))
    assert s["max_over_mean"] == 1.0 and s["cv"] == 0.0 and s["entropy"] == pytest.approx(1.0)
    s = load_stats(torch.tensor([12, 0, 0, 0]))
    assert s["fraction"] == [1.0, 0.0, 0.0, 0.0]
    assert s["max_over_mean"] == 4.0 and s["entropy"] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        load_stats(torch.zeros(4))


def test_empty_input_gives_empty_output_and_zero_losses():
    moe = MoE(MoEConfig(n_experts=4, top_k=2, d_expert=8), 16)
    y, aux = moe(torch.zeros(2, 0, 16))
    assert y.shape == (2, 0, 16)
    assert aux.loss.item() == 0.0 and aux.load.sum().item() == 0
