"""The planner's formulas, checked by hand on the tiny preset and against the real model.

Hand counts spell every factor out. The measurements: parameters of a built
InteractionModel, its ring-buffer KV cache, the FLOPs torch's FlopCounterMode
counts in one streamed micro-turn, and the bytes autograd saves for backward
(saved_tensors_hooks) over a short training batch.
"""

import math
from dataclasses import replace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import minitml.model
from minitml.config import get_config
from minitml.model import InteractionModel
from minitml.scale import (
    BF16_ADAMW,
    FP32_ADAMW,
    GPU,
    LatencyBudget,
    activations_per_token,
    expert_traffic,
    experts_touched,
    flops_per_micro_turn,
    flops_per_position,
    format_plan,
    get_gpu,
    gpus_to_serve,
    gpus_to_train,
    kv_cache_bytes,
    moe_layer_bytes,
    plan,
    serving_step,
    sessions_per_gpu,
    train_flops_per_token,
    training_state_bytes,
)
from minitml.stream import random_blocks

# The tiny preset: d 128, 4 layers (blocks 1 and 3 MoE: 4 experts of width 256, top-2;
# blocks 0 and 2 dense, d_ff 512), 4 heads of 32 (4 KV heads), V 256, k 4 frames of
# 80 mel x 16 bins, 80x80 frames -> P 4 patches of 4800 numbers, A 4, X 2: L 14
# positions per micro-turn, window 32 micro-turns = 448 positions.
TINY_TOTAL = (
    256 * 128  # text embedding
    + 80 * 16 * 32 + 4 * 32 * 128  # dMel: 80 tables of 16 x 32, then 4 frames x 32 -> 128
    + 4800 * 128 + 128  # linear patch stem with bias
    + (16 + 16) * 128 + 4 * 128  # patch row / column tables, stream types
    + 4 * 4 * 128 * 128  # attention: 4 layers x q, k, v, o
    + 4 * 2 * 128 + 128  # norms: 2 per layer + the final one
    + 2 * 3 * 128 * 512  # 2 dense SwiGLU layers
    + 2 * (128 * 4 + 4 * 3 * 128 * 256)  # 2 MoE layers: router + 4 experts
    + 128 * 256 + 128 * 256 + 128 * 4 * 80 * 16  # text head, heard head, dMel head
)
TINY_ACTIVE = TINY_TOTAL - 2 * (4 - 2) * 3 * 128 * 256  # a token skips 2 of the 4 experts, 2 layers


@pytest.fixture(scope="module")
def tiny_model():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return InteractionModel(get_config("tiny"))


def test_parameters_by_hand_and_by_the_model(tiny, tiny_model):
    assert tiny.param_counts() == {"total": TINY_TOTAL, "active": TINY_ACTIVE}
    assert sum(p.numel() for p in tiny_model.parameters()) == TINY_TOTAL == 2_874_112


def test_training_state_bytes_by_hand(tiny):
    assert training_state_bytes(tiny, BF16_ADAMW) == {
        "weights": TINY_TOTAL * 2, "master": TINY_TOTAL * 4, "grads": TINY_TOTAL * 4,
        "optimizer": TINY_TOTAL * 2 * 4, "total": TINY_TOTAL * (2 + 4 + 4 + 8)}
    assert training_state_bytes(tiny, FP32_ADAMW)["total"] == TINY_TOTAL * (4 + 0 + 4 + 8)


def test_kv_cache_by_hand_and_by_the_model(tiny, tiny_model):
    # 2 (K and V) x 4 layers x 4 KV heads x 32 head_dim x 448 positions x 4 bytes (fp32)
    assert kv_cache_bytes(tiny, 4) == 2 * 4 * 4 * 32 * 448 * 4 == 1_835_008
    real = sum(c.nbytes() for c in tiny_model.new_cache(1))
    # The ring also keeps the int64 absolute position of each slot: 4 layers x 448 x 8 bytes.
    assert real == kv_cache_bytes(tiny, 4) + 4 * 448 * 8


def test_flops_per_micro_turn_by_hand(tiny):
    f = flops_per_micro_turn(tiny)  # keys = the window, 448
    assert f["embed"] == 4 * 2 * 4800 * 128 + 2 * 4 * 2 * (4 * 32) * 128  # patches; heard + said dMel
    assert f["blocks"] == 14 * 2 * (4 * 4 * 128 * 128 + 2 * 3 * 128 * 512 + 2 * (128 * 4 + 2 * 3 * 128 * 256))
    assert f["attention"] == 14 * 4 * 2 * 2 * 4 * 32 * 448  # positions x layers x (q.k, p.v) x H x hd x keys
    assert f["heads"] == 4 * 2 * 128 * (256 + 4 * 80 * 16)  # A predictors x (text + dMel logits)
    assert f["total"] == 52_916_224


def test_flops_per_position_is_the_micro_turn_over_its_positions(tiny):
    """The one FLOP model, per token: what one micro-turn costs, spread over its L = 14 positions."""
    W = 32 * 14
    assert tiny.window == W
    attention = 14 * 4 * 2 * 2 * 4 * 32 * W  # positions x layers x (q.k, p.v) x H x hd x keys
    assert flops_per_position(tiny) == 52_916_224 / 14  # 3.78M
    assert flops_per_position(tiny, keys=0) == (52_916_224 - attention) / 14
    assert train_flops_per_token(tiny) == 3 * flops_per_position(tiny)
    # 2 x active parameters (+ attention) would say 5.88M, 1.55 times more: it counts the
    # look-up tables (text ids, dMel bins, positions) as matmuls, and the patch stem, the dMel
    # projection and the heads at all 14 positions, where they run at P = 4 patches, 2A = 8
    # audio tokens and A = 4 predictors (the heard head, a training signal, not at all).
    rule_of_thumb = 2 * TINY_ACTIVE + attention / 14
    assert 1.5 < rule_of_thumb / flops_per_position(tiny) < 1.6


def stream_one_micro_turn(model) -> tuple[int, list]:
    """One micro-turn of one session through the model's ring cache, as Session.step's
    input call plus the heads: (the matmul FLOPs FlopCounterMode counts, the caches)."""
    cfg = model.cfg
    model.eval()
    caches = model.new_cache(1)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        x = model.embed(random_blocks(cfg, n_turns=1, batch_size=1))  # (1, L, d)
        h, _ = model.run(x, torch.arange(cfg.positions_per_micro_turn), caches)  # through the ring
        h = h[:, model.predictors]  # (1, A, d) the predictor positions
        model.text_head(h), model.mel_head.logits(h)
    return counter.get_total_flops(), caches


def test_flops_per_micro_turn_against_flop_counter(tiny, tiny_model):
    """One micro-turn streamed through the model with its ring cache, counted by torch.

    The cached call scores every query against the whole ring plus the new block
    (W + L = 462 keys, the ones outside the window masked), so the formula with
    keys = W + L must match exactly. FlopCounterMode counts matmuls only (mm, addmm,
    bmm); the math SDPA backend turns attention into bmm so it is counted too. The
    planner's default, keys = W, is what attention needs; it is 0.75% lower here.
    """
    L, W = tiny.positions_per_micro_turn, tiny.window
    counted, _ = stream_one_micro_turn(tiny_model)
    assert counted == flops_per_micro_turn(tiny, keys=W + L)["total"] == 53_317_632
    default = flops_per_micro_turn(tiny)["total"]
    assert abs(counted - default) / counted < 0.01
    print(f"FLOPs per micro-turn: counted {counted:,}, formula (keys = W) {default:,} "
          f"({(default - counted) / counted:+.2%})")


def saved_bytes(model, run) -> int:
    """Bytes of every tensor autograd saves for backward during run(), each storage once,
    parameters excluded (they exist anyway)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run()  # keeps everything saved alive until we have counted it
    assert loss.requires_grad
    return sum(storages.values())


def test_activation_bytes_against_saved_tensors(tiny):
    """What autograd keeps for backward on a real forward + loss, against the formula.

    The formula leaves out what does not grow with tokens or is tiny: the (N, N)
    float mask the CPU attention kernel builds per layer (N^2 x 4 bytes, here
    56 x 56 x 4 x 4 layers = 0.6% of the total), the RoPE tables and a few small
    index tensors. Tolerance: the formula is within 2% below the measurement.
    """
    torch.manual_seed(0)
    model = InteractionModel(tiny).train()
    B, T = 2, 4
    N = B * T * tiny.positions_per_micro_turn  # 112 positions
    blocks = random_blocks(tiny, n_turns=T, batch_size=B)
    measured = saved_bytes(model, lambda: model.loss(blocks)["loss"])
    formula = activations_per_token(tiny, FP32_ADAMW)["total"] * N
    print(f"activations, no checkpointing: measured {measured / N:,.0f} B/token, "
          f"formula {formula / N:,.0f} ({(formula - measured) / measured:+.2%})")
    assert 0 < measured - formula < 0.02 * measured

    # With checkpointing, what stays between forward and backward: each block's input.
    model.activation_checkpointing = True  # the training option (`--activation-checkpointing`)
    measured = saved_bytes(model, lambda: model.loss(blocks)["loss"])
    ckpt = activations_per_token(tiny, FP32_ADAMW, checkpointing=True)
    formula = (ckpt["total"] - ckpt["recompute"]) * N  # the recomputed block only lives in backward
    print(f"activations, checkpointing: measured {measured / N:,.0f} B/token, "
          f"formula {formula / N:,.0f} ({(formula - measured) / measured:+.2%})")
    assert 0 < measured - formula < 0.02 * measured


def test_formulas_hold_for_the_small_layout():
    """small's layout (hMLP stem, grouped-query attention, MoE in every layer), cut to 2
    layers and a short window so it runs in a second: FLOPs and KV cache exact,
    activations within 2%, as on tiny."""
    s = get_config("small")
    cfg = s.replace(model=replace(s.model, n_layers=2, window_micro_turns=4, text_vocab_size=512))
    torch.manual_seed(0)
    model = InteractionModel(cfg)
    L, W = cfg.positions_per_micro_turn, cfg.window
    counted, caches = stream_one_micro_turn(model)
    assert counted == flops_per_micro_turn(cfg, keys=W + L)["total"]
    assert sum(c.nbytes() for c in caches) == kv_cache_bytes(cfg, 4) + 2 * W * 8
    model.train()
    N = 3 * L  # one conversation of 3 micro-turns
    measured = saved_bytes(model, lambda: model.loss(random_blocks(cfg, 3))["loss"])
    formula = activations_per_token(cfg, FP32_ADAMW)["total"] * N
    print(f"activations, small layout: measured {measured / N:,.0f} B/token, "
          f"formula {formula / N:,.0f} ({(formula - measured) / measured:+.2%})")
    assert 0 < measured - formula < 0.02 * measured


def test_activation_formula_by_hand(tiny):
    d, H, hd, h_ff, h_e, E, k = 128, 4, 32, 512, 256, 4, 2
    norm = 3 * d + 1  # input, rsqrt, input * rsqrt, output
    attention = norm + (H + 2 * H) * hd + 2 * H * hd + H  # q, k, v; output + copy; log-sum-exp
    dense = norm + 4 * h_ff
    moe = norm + k * (3 * d + 4 * h_e + 1) + 2 * E + k + 2
    io = 4 * 4800 + 2 * 4 * 4 * 32 + 14 * (2 * d + 1) + 4 * (d + 256 + 4 * 80 * 16)  # per micro-turn
    ints = 8 * (3 * 4 * 4 * 80 + 2 + 4) / 14 + 2 * 8 * 3 * k  # dMel ids and targets, text ids; routing
    a = activations_per_token(tiny, FP32_ADAMW)
    assert a["total"] == pytest.approx(4 * (2 * (attention + dense) + 2 * (attention + moe) + io / 14) + ints)
    c = activations_per_token(tiny, FP32_ADAMW, checkpointing=True)
    assert c["layers"] == 4 * d * 4 and c["recompute"] == 4 * (attention + moe) + 8 * 3 * k
    assert a["io"] == c["io"] and c["total"] < a["total"] / 2


def test_experts_touched():
    assert experts_touched(0, 128, 4) == 0
    assert experts_touched(1, 128, 4) == pytest.approx(4)  # one token: exactly its k experts
    assert experts_touched(2, 8, 2) == pytest.approx(8 * (1 - (6 / 8) ** 2))  # 3.5
    assert experts_touched(10_000, 128, 4) == pytest.approx(128)  # every expert
    b = moe_layer_bytes("tml_small", 32)  # 32 tokens x top-4 = 128 = E: the crossover
    assert b["gather"] == b["all"] > b["touched"]
    with pytest.raises(ValueError, match="top_k"):
        experts_touched(3, 4, 5)


def test_expert_traffic_by_hand():
    # tiny, 2 processes, bf16: the 4 experts are 4 x 3 x 128 x 256 x 2 = 786,432 bytes; half
    # of them live on the other process, gathered twice and reduce-scattered once: 1,179,648.
    # 1000 tokens x top-2 rows of 128 x 2 bytes = 512,000; half leave, 4 times: 1,024,000.
    t = expert_traffic("tiny", 1000, processes=2)
    assert t["gathered"] == 1_179_648
    assert t["split"] == 1_024_000
    assert t["crossover_tokens"] == 1152  # 9 x 4 x 256 / (4 x 2)
    at = expert_traffic("tml_small", int(expert_traffic("tml_small", 1, 8)["crossover_tokens"]), 8)
    assert at["split"] == pytest.approx(at["gathered"])  # where the two lines cross
    assert expert_traffic("tiny", 1000, processes=1) == {"gathered": 0, "split": 0, "crossover_tokens": 1152}


TOY = GPU("toy", memory_bytes=1e9, flops=1e12, bandwidth=1e11)  # numbers easy to divide by


def test_gpus_to_train_small_case_by_hand(tiny):
    per_token = 3 * 52_916_224 / 14  # train FLOPs per token: 3 x forward, per position
    act = activations_per_token(tiny, FP32_ADAMW, checkpointing=False)["total"]
    # 1e9 tokens in 1000 s at 50% of 1e12 FLOP/s: 1e9 x 11.3M / (1000 x 5e11) = 22.7 -> 23 GPUs
    r = gpus_to_train(tiny, 1e9, 1000, TOY, mfu=0.5, micro_batch_tokens=1000, precision=FP32_ADAMW,
                      checkpointing=False)
    assert r["compute"] == math.ceil(1e9 * per_token / (1000 * 1e12 * 0.5)) == 23
    assert r["memory"] == math.ceil(TINY_TOTAL * 16 / (0.9 * 1e9 - 1000 * act)) == 1
    assert (r["gpus"], r["binding"]) == (23, "compute")
    # A 0.1 GB GPU: 90 MB usable, 77 MB of activations, 13 MB left for 45 MB of state -> 4 GPUs.
    small = GPU("small", 0.1e9, 1e12, 1e11)
    r = gpus_to_train(tiny, 1e6, 1000, small, mfu=0.5, micro_batch_tokens=1000, precision=FP32_ADAMW,
                      checkpointing=False)
    assert r["memory"] == math.ceil(TINY_TOTAL * 16 / (0.9 * 0.1e9 - 1000 * act)) == 4
    assert (r["gpus"], r["binding"]) == (4, "memory")
    with pytest.raises(ValueError, match="micro-batch of 2000 tokens needs"):
        gpus_to_train(tiny, 1e6, 1000, small, micro_batch_tokens=2000, precision=FP32_ADAMW,
                      checkpointing=False)


def test_gpus_to_serve_small_case_by_hand(tiny):
    slow = GPU("slow", memory_bytes=1e9, flops=1e9, bandwidth=5e7)  # small enough to need several
    f = 52_916_224  # FLOPs per micro-turn
    kv = 2 * 4 * 4 * 32 * 448 * 2  # bf16 KV cache per session
    n = 10
    r = gpus_to_serve(tiny, n, slow, budget_s=0.2, mfu=0.5, bandwidth_utilisation=0.5)
    assert r["memory"] == math.ceil((TINY_TOTAL * 2 + n * kv) / 0.9e9) == 1
    assert r["compute"] == math.ceil(n * f / (0.2 * 1e9 * 0.5)) == 6  # 5.3 -> 6
    # Bandwidth: A = 4 calls (one of 10 x 11 tokens, three of 10); each reads the weights
    # outside the experts (minus look-up tables), the experts its tokens touch, every KV cache.
    outside = TINY_TOTAL - 2 * 4 * 3 * 128 * 256 - (256 * 128 + 32 * 128 + 4 * 128)
    expert = 3 * 128 * 256 * 2
    weights = sum(outside * 2 + 2 * experts_touched(t, 4, 2) * expert for t in (110, 10, 10, 10))
    read = weights + 4 * n * kv  # 22.4 MB + 36.7 MB
    assert serving_step(tiny, n)["bytes"] == pytest.approx(read)
    assert r["bandwidth"] == math.ceil(read / (0.2 * 5e7 * 0.5)) == 12  # 11.8 -> 12
    assert (r["gpus"], r["binding"]) == (12, "bandwidth")


def test_more_sessions_never_need_fewer_gpus():
    for name in ("small", "tml_small"):
        counts = [gpus_to_serve(name, n, "H100-SXM")["gpus"] for n in (1, 2, 5, 10, 100, 1000, 10_000)]
        assert counts == sorted(counts), (name, counts)
    s = sessions_per_gpu("small", "H100-SXM")
    assert s["sessions"] == min(s["memory"], s["compute"], s["bandwidth"])
    # The bandwidth bound is the largest count whose reads fit the budget.
    limit = 0.2 * 3.35e12 * 0.8
    fits, one_more = (serving_step("small", s["bandwidth"] + i)["bytes"] for i in (0, 1))
    assert fits <= limit < one_more


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"mfu must be a fraction in \(0, 1\], got 0"):
        gpus_to_train("tiny", 1e9, 1000, mfu=0)
    with pytest.raises(ValueError, match="got 1.5"):
        gpus_to_serve("tiny", 10, mfu=1.5)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        plan("huge")
    with pytest.raises(ValueError, match="unknown GPU 'B200'"):
        get_gpu("B200")
    with pytest.raises(ValueError, match="sessions must be a whole number >= 1, got 0"):
        gpus_to_serve("tiny", 0)
    with pytest.raises(ValueError, match="seconds must be a positive number, got -1"):
        gpus_to_train("tiny", 1e9, -1)
    with pytest.raises(ValueError, match=r"cannot hold tml_small's weights .* need 8 GPUs"):
        sessions_per_gpu("tml_small", "H100-SXM")
    with pytest.raises(ValueError, match="no time is left"):
        LatencyBudget(uplink_s=0.3).breakdown()


def test_tml_small_is_planned_without_building_it(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the planner must not build a model")

    monkeypatch.setattr(minitml.model.InteractionModel, "__init__", refuse)
    p = plan("tml_small")
    assert abs(p["params"]["total"] / 276e9 - 1) < 0.01
    assert abs(p["params"]["active"] / 12e9 - 1) < 0.01
    assert p["per_gpu"] is None and p["serve"]["hold_weights"] > 1
    assert p["serve"]["gpus"] >= p["serve"]["hold_weights"]
    table = format_plan([plan(name) for name in ("tiny", "small", "tml_small")])
    print(table)
    assert "tml_small" in table and "does not fit" in table
