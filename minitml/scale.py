"""What it costs: memory, FLOPs and GPUs for any config, from the tiny model to 276B / 12B.

Plain arithmetic over a `Config`, each formula beside the line that computes it.
Nothing here builds a model, so tml_small is planned in microseconds;
tests/test_scale.py checks the formulas against the real tiny model (parameters,
KV cache, the FLOPs PyTorch counts, the bytes autograd saves for backward).

    print(format_plan([plan(name) for name in ("tiny", "small", "tml_small")]))

Three ceilings decide how many GPUs a job needs (a roofline view):

    memory     what must stay resident: the weights, + gradients, optimizer state and
               activations when training, + one KV cache per live session when serving
    compute    FLOPs / (peak FLOP/s x utilisation)
    bandwidth  bytes read from GPU memory / (bytes/s x utilisation): what limits
               streaming decode, where each call reads the weights it touches and
               every session's KV cache to produce only a few tokens

The count is the largest of the three; the plan says which one binds.
Assumptions, stated once: weights, gradients and optimizer state are sharded
evenly over the GPUs (FSDP / ZeRO-3 when training, expert + tensor parallel when
serving) and the GPUs batch all their sessions' steps together; time spent
talking between GPUs is not counted, so every count is a lower bound; GPU
figures are the vendors' datasheet peaks, not measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Integral, Real

from minitml.config import Config, get_config


# ----------------------------------------------------------------------------
# Bytes per number, and the GPUs
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Precision:
    """Bytes per number, for each kind of tensor a job keeps."""

    weights: int = 2  # bf16 copy the forward and backward passes read
    master: int = 4  # fp32 copy the optimizer updates (0 when the weights are fp32 already)
    grads: int = 4  # fp32 gradients, accumulated over micro-batches
    optimizer: int = 8  # AdamW: two fp32 moments, m and v
    activations: int = 2  # bf16 tensors saved for backward (autocast keeps a few in fp32: ignored)
    kv_cache: int = 2  # bf16 keys and values of a live session


BF16_ADAMW = Precision()  # mixed precision, the usual GPU setup: 2 + 4 + 4 + 8 = 18 bytes per parameter
FP32_ADAMW = Precision(weights=4, master=0, grads=4, optimizer=8, activations=4, kv_cache=4)  # the CPU: 16


@dataclass(frozen=True)
class GPU:
    """One accelerator, as its datasheet describes it: peak figures, not measurements."""

    name: str
    memory_bytes: float  # on-package memory (HBM)
    flops: float  # dense bf16 FLOP/s (without 2:4 sparsity)
    bandwidth: float  # memory bandwidth, bytes/s


GPUS = {  # NVIDIA datasheet figures for the SXM parts
    "A100-80GB": GPU("A100 SXM 80GB", 80e9, 312e12, 2.039e12),
    "H100-SXM": GPU("H100 SXM 80GB", 80e9, 989e12, 3.35e12),
    "H200": GPU("H200 SXM 141GB", 141e9, 989e12, 4.8e12),
}


def get_gpu(gpu: GPU | str) -> GPU:
    """A GPU, or the preset of that name."""
    if isinstance(gpu, GPU):
        return gpu
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; expected a GPU(...) or one of {sorted(GPUS)}")
    return GPUS[gpu]


def _config(cfg: Config | str) -> Config:
    if isinstance(cfg, str):
        return get_config(cfg)  # ValueError naming the presets when the name is unknown
    if not isinstance(cfg, Config):
        raise ValueError(f"expected a Config or a preset name, got {type(cfg).__name__}")
    return cfg


def _check(name: str, value: float, fraction: bool = False) -> None:
    """A positive number; a fraction in (0, 1] when `fraction`."""
    ok = isinstance(value, Real) and math.isfinite(value) and value > 0
    if not ok or (fraction and value > 1):
        expected = "a fraction in (0, 1]" if fraction else "a positive number"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def human(x: float, unit: str = "") -> str:
    """2_874_112 -> '2.87M'; with a unit, 555e9 -> '555 GB'."""
    for scale, letter in ((1e12, "T"), (1e9, "G" if unit else "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{' ' if unit else ''}{letter}{unit}"
    return f"{x:.3g}{' ' if unit else ''}{unit}"


# ----------------------------------------------------------------------------
# Memory: training state, activations, the KV cache
# ----------------------------------------------------------------------------
def training_state_bytes(cfg: Config | str, precision: Precision = BF16_ADAMW) -> dict[str, int]:
    """Weights, master copy, gradients and optimizer state: every parameter, experts included."""
    n = _config(cfg).param_counts()["total"]
    state = {"weights": n * precision.weights, "master": n * precision.master,
             "grads": n * precision.grads, "optimizer": n * precision.optimizer}
    state["total"] = sum(state.values())  # n x 18 bytes in bf16 + AdamW
    return state


def activations_per_token(cfg: Config | str, precision: Precision = BF16_ADAMW,
                          checkpointing: bool = False) -> dict[str, float]:
    """Bytes autograd keeps for backward per position (token) of a training sequence.

    Counted tensor by tensor for this implementation (numbers per position):
      each RMSNorm    its input, rsqrt, input * rsqrt, its output            3d + 1
      attention       q, k, v after RoPE; the output and its (N, H*hd) copy for
                      the o projection; a log-sum-exp per head (the flash kernel
                      keeps no N x N matrix)                  (H + 2Hkv) hd + 2H hd + H
      dense SwiGLU    gate and up outputs, silu(gate), their product         4 d_ff
      MoE             per each of the k assignments: the gathered input, gate, up,
                      silu, product, expert output, its weight, weighted output
                      3d + 4h + 1; per token: router logits and probabilities, the
                      top-k weights and their sum, the z-loss log-sum-exp    2E + k + 2
      outside blocks  per micro-turn: patch stem inputs (and hMLP conv outputs),
                      dMel projection inputs of the 2A heard and said tokens, the
                      final norm (2d + 1 per position), and at the A predictors the
                      head input and the text and dMel log-softmax outputs
      ints            8 bytes each: dMel bins looked up (heard, said) and targeted,
                      text ids, 3 routing indices per assignment
    Not counted: the (N, N) float mask the CPU kernel builds per layer (per
    sequence, not per token), the RoPE tables, small index tensors.

    With checkpointing each block keeps only its input (d numbers); in backward one
    block at a time is recomputed, which briefly holds that block's full set again
    ("recompute", the largest block, per token of the micro-batch).
    """
    cfg = _config(cfg)
    m, a, e, v = cfg.model, cfg.audio, cfg.moe, cfg.vision
    d, hd, H, Hkv = m.d_model, m.head_dim, m.n_heads, m.n_kv_heads
    L, A, P, k = cfg.positions_per_micro_turn, a.tokens_per_micro_turn, v.n_patches, a.frames_per_token
    norm = 3 * d + 1  # input, rsqrt, input * rsqrt, output
    attention = norm + (H + 2 * Hkv) * hd + 2 * H * hd + H  # q, k, v; output + its copy; log-sum-exp
    dense = norm + 4 * m.d_ff  # gate, up, silu(gate), product
    moe = (norm + e.top_k * (3 * d + 4 * e.d_expert + 1) + 2 * e.n_experts + e.top_k + 2
           + 4 * e.n_shared_experts * e.d_expert)  # k assignments; routing; shared SwiGLU
    moe_ints = 8 * 3 * e.top_k  # bytes: chosen experts, sort order, token of each assignment (int64)
    blocks = [(attention + moe, moe_ints) if m.is_moe_layer(i) else (attention + dense, 0)
              for i in range(m.n_layers)]  # (numbers, int bytes) per block
    if v.stem == "linear":
        stem = v.patch_dim  # the flattened patch, input of the linear stem
    else:
        stem = v.patch_dim + 2 * (100 + 4) * (v.hmlp_channels or d // 4)  # + conv outputs, GELU outputs
    if m.mel_head == "discrete":
        head = d + m.text_vocab_size + k * a.n_mels * a.n_bins  # head input, two log-softmax outputs
    else:  # flow head (not measured by the tests): MLP input, hidden layers, velocity and target
        mel = k * a.n_mels
        head = d + m.text_vocab_size + (mel + 1 + d) + 4 * m.flow_hidden + 2 * mel
    io = (P * stem + 2 * A * k * a.embed_dim + L * (2 * d + 1) + A * head) / L  # per position
    io_ints = 8 * (3 * A * k * a.n_mels + m.text_in_slots + A) / L  # bytes per position
    if checkpointing:
        layers = m.n_layers * d * precision.activations  # each block's input
        recompute = max(n * precision.activations + ints for n, ints in blocks)  # one block in backward
    else:
        layers = sum(n * precision.activations + ints for n, ints in blocks)
        recompute = 0
    out = {"layers": layers, "recompute": recompute, "io": io * precision.activations, "ints": io_ints}
    out["total"] = sum(out.values())
    return out


def kv_cache_bytes(cfg: Config | str, bytes_per_number: int = 2) -> int:
    """The ring-buffer KV cache of one live session: a full window, every layer."""
    cfg = _config(cfg)
    m = cfg.model
    return 2 * m.n_layers * m.n_kv_heads * m.head_dim * cfg.window * bytes_per_number  # K and V


# ----------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------
def flops_per_micro_turn(cfg: Config | str, keys: int | None = None) -> dict[str, int]:
    """Forward FLOPs of one 200 ms micro-turn of one session: 2 per multiply-add, matmuls only.

    keys: how many keys each of the L positions is scored against; default the
    window W (a full ring: an hour-long session's steady state). Norms, RoPE and
    softmax are elementwise and not counted; text ids and dMel bins are table
    look-ups (free).
    """
    cfg = _config(cfg)
    m, a, v = cfg.model, cfg.audio, cfg.vision
    d, k, A, L = m.d_model, a.frames_per_token, a.tokens_per_micro_turn, cfg.positions_per_micro_turn
    keys = cfg.window if keys is None else keys
    g = cfg.param_groups()
    weights = 2 * sum(g[n]["active"] for n in ("attention", "dense_ffn", "moe_ffn"))  # q,k,v,o, FFN
    attention = m.n_layers * 2 * 2 * m.n_heads * m.head_dim * keys  # q.k and p.v, 2 FLOPs per multiply-add
    if v.stem == "linear":
        stem = 2 * v.patch_dim * d  # one (4800 -> d) matmul per patch
    else:
        c = v.hmlp_channels or d // 4
        stem = 2 * (3 * 16 * c * 100 + c * 25 * c * 4 + c * 4 * d)  # 10x10, 2x2, 1x1 conv outputs
    embed = v.n_patches * stem + 2 * A * 2 * k * a.embed_dim * d  # + dMel projection, heard and said
    if m.mel_head == "discrete":
        heads = A * 2 * d * (m.text_vocab_size + k * a.n_mels * a.n_bins)  # text + dMel logits
    else:
        mel, hf = k * a.n_mels, m.flow_hidden
        heads = A * (2 * d * m.text_vocab_size + m.flow_steps * 2 * ((mel + 1 + d) * hf + hf * hf + hf * mel))
    out = {"embed": embed, "blocks": L * weights, "attention": L * attention, "heads": heads}
    out["total"] = sum(out.values())
    return out


def flops_per_position(cfg: Config | str, keys: int | None = None) -> float:
    """Forward FLOPs of one position (one token): a micro-turn's FLOPs shared over its L positions.

    This is the per-token figure everywhere (`python -m minitml presets`, notebook 03).
    It is well below the rule of thumb of 2 x active parameters: table look-ups (text
    ids, dMel bins, positions) cost nothing, and the patch stem, the dMel projection and
    the heads run only at the positions that use them (P patches, 2A audio tokens, A
    predictors).
    """
    cfg = _config(cfg)
    return flops_per_micro_turn(cfg, keys)["total"] / cfg.positions_per_micro_turn


def train_flops_per_token(cfg: Config | str, keys: int | None = None) -> float:
    """Training FLOPs per position: forward + backward (twice the forward) = 3 x forward."""
    return 3 * flops_per_position(cfg, keys)


# ----------------------------------------------------------------------------
# MoE: which expert weights a call reads
# ----------------------------------------------------------------------------
def experts_touched(n_tokens: float, n_experts: int, top_k: int) -> float:
    """Expected distinct experts that n tokens, each routed to top_k of n_experts, use.

    With uniform routing a token misses a given expert with probability 1 - k/E,
    so n independent tokens all miss it with (1 - k/E)^n.
    """
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"need 1 <= top_k <= n_experts, got top_k={top_k}, n_experts={n_experts}")
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    return n_experts * (1 - (1 - top_k / n_experts) ** n_tokens)  # E (1 - (1 - k/E)^n)


def moe_layer_bytes(cfg: Config | str, n_tokens: int, bytes_per_number: int = 2) -> dict[str, float]:
    """Expert weight bytes one MoE layer reads for n tokens, three ways.

    all:     a grouped GEMM over every expert (tiles for all E, used or not)
    gather:  per token, gather its k experts' matrices and do mat-vecs: n*k reads
    touched: the ideal, each expert that has a token read once
    Gather beats "all" while n*k < E, i.e. below n = E / k tokens: streaming decode.
    """
    cfg = _config(cfg)
    e = cfg.moe
    expert = 3 * cfg.model.d_model * e.d_expert * bytes_per_number  # gate, up, down of one expert
    return {"all": e.n_experts * expert, "gather": n_tokens * e.top_k * expert,
            "touched": experts_touched(n_tokens, e.n_experts, e.top_k) * expert}


def expert_traffic(cfg: Config | str, tokens_per_process: int, processes: int,
                   bytes_per_number: int = 2) -> dict[str, float]:
    """Bytes one process sends per MoE layer per training step: experts gathered, or tokens sent.

    gathered (FSDP): all-gather the experts in forward, again in backward, then
                     reduce-scatter their gradients: 3 x (P-1)/P x E experts' weights
    split (expert parallel): all-to-all each routed row there and back in forward,
                     and their gradients in backward: 4 x (P-1)/P x n*k rows of d
                     (uniform routing: (P-1)/P of the rows go to another process)
    Tokens win below n = 9*E*h / (4*k) tokens per process: experts that are big next
    to the tokens of a step.
    """
    cfg = _config(cfg)
    _check("tokens_per_process", tokens_per_process)
    _check("processes", processes)
    e, d = cfg.moe, cfg.model.d_model
    away = (processes - 1) / processes  # share of the data that leaves this process
    experts = moe_layer_bytes(cfg, 0, bytes_per_number)["all"]  # every expert of one layer
    rows = tokens_per_process * e.top_k * d * bytes_per_number
    return {"gathered": 3 * away * experts, "split": 4 * away * rows,
            "crossover_tokens": 9 * e.n_experts * e.d_expert / (4 * e.top_k)}


# ----------------------------------------------------------------------------
# Training: GPUs for a token budget in a wall-clock time
# ----------------------------------------------------------------------------
def training_memory_per_gpu(cfg: Config | str, n_gpus: int, micro_batch_tokens: int = 4096,
                            precision: Precision = BF16_ADAMW, checkpointing: bool = True) -> float:
    """Bytes on each GPU: its 1/n of the sharded training state + its micro-batch's activations."""
    _check("n_gpus", n_gpus)
    state = training_state_bytes(cfg, precision)["total"]
    act = activations_per_token(cfg, precision, checkpointing)["total"]
    return state / n_gpus + micro_batch_tokens * act


def gpus_to_train(cfg: Config | str, tokens: float, seconds: float, gpu: GPU | str = "H100-SXM",
                  mfu: float = 0.4, micro_batch_tokens: int = 4096, precision: Precision = BF16_ADAMW,
                  checkpointing: bool = True, usable_memory: float = 0.9) -> dict:
    """GPUs to train on `tokens` in `seconds`: the larger of the compute and memory counts.

    mfu: model FLOPs utilisation, the fraction of peak the training reaches (an
    assumption; large runs report 0.3 to 0.5). usable_memory: the fraction of a
    GPU's memory left for tensors after the runtime, buffers and fragmentation.
    """
    cfg, gpu = _config(cfg), get_gpu(gpu)
    for name, value in (("tokens", tokens), ("seconds", seconds), ("micro_batch_tokens", micro_batch_tokens)):
        _check(name, value)
    _check("mfu", mfu, fraction=True)
    _check("usable_memory", usable_memory, fraction=True)
    flops = tokens * train_flops_per_token(cfg)  # whole run
    compute = math.ceil(flops / (seconds * gpu.flops * mfu))  # GPU-seconds needed / seconds given
    act = micro_batch_tokens * activations_per_token(cfg, precision, checkpointing)["total"]
    room = gpu.memory_bytes * usable_memory - act  # what is left on a GPU for its shard of the state
    if room <= 0:
        raise ValueError(
            f"a micro-batch of {micro_batch_tokens} tokens needs {human(act, 'B')} of activations, more "
            f"than the {human(gpu.memory_bytes * usable_memory, 'B')} usable on one {gpu.name}; "
            f"use checkpointing=True or a smaller micro_batch_tokens")
    state = training_state_bytes(cfg, precision)["total"]
    memory = math.ceil(state / room)  # shards of the state that fit next to the activations
    need = {"compute": compute, "memory": memory}
    binding = max(need, key=need.get)
    return {**need, "gpus": need[binding], "binding": binding, "flops": flops,
            "gpu_days": flops / (gpu.flops * mfu) / 86400, "tokens": tokens, "seconds": seconds}


# ----------------------------------------------------------------------------
# Serving: GPUs for N live sessions in real time
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyBudget:
    """Where the 0.40 s average turn-taking latency goes. Every field but the target is an assumption."""

    target_s: float = 0.40  # the reported average turn-taking latency (Full-Duplex-Bench v1)
    chunk_wait_s: float = 0.10  # the user stops, on average, mid-way through a 200 ms input chunk
    uplink_s: float = 0.03  # client -> server: capture buffer and network, one way
    downlink_s: float = 0.03  # server -> client
    vocoder_s: float = 0.01  # dMel -> waveform for the first 50 ms output token
    playout_s: float = 0.04  # the client's jitter buffer before the first sample plays
    decision_s: float = 0.0  # micro-turns the model waits before speaking (0: it answers at once)

    def breakdown(self) -> dict[str, float]:
        """Every part in seconds, and "compute": what the others leave of the target."""
        parts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "target_s"}
        parts["compute"] = self.target_s - sum(parts.values())
        if parts["compute"] <= 0:
            raise ValueError(f"the parts add up to {sum(parts.values()) - parts['compute']:.3f} s, "
                             f"no time is left for compute within {self.target_s} s")
        return parts

    @property
    def compute_s(self) -> float:
        return self.breakdown()["compute"]


def serving_step(cfg: Config | str, sessions: int, precision: Precision = BF16_ADAMW) -> dict:
    """What `sessions` live sessions cost together in one micro-turn, batched.

    A micro-turn is A forward calls (minitml/generator.py): one over the input block
    plus the previous micro-turn's last output token, then A - 1 one-token calls,
    each generating an output token from the one before. Every call reads every
    weight outside the routed experts (look-up tables only their rows: not
    counted), the experts its tokens touch, and every session's KV cache.
    """
    cfg = _config(cfg)
    if not (isinstance(sessions, Integral) and sessions >= 1):
        raise ValueError(f"sessions must be a whole number >= 1, got {sessions!r}")
    m, g = cfg.model, cfg.param_groups()
    lay, A = cfg.layout(), cfg.audio.tokens_per_micro_turn
    tokens = [sessions * (lay["total"] - lay["model_out"] + 1)] + [sessions] * (A - 1)  # per call
    n_moe = sum(m.is_moe_layer(i) for i in range(m.n_layers))
    lookups = sum(g[n]["total"] for n in ("text_embedding", "patch_positions", "stream_type_embedding"))
    total = cfg.param_counts()["total"]
    all_experts = n_moe * moe_layer_bytes(cfg, 0, precision.weights)["all"]
    dense = (total - lookups) * precision.weights - all_experts  # read by every call
    kv = kv_cache_bytes(cfg, precision.kv_cache)
    weight_bytes = sum(dense + n_moe * moe_layer_bytes(cfg, n, precision.weights)["touched"]
                       for n in tokens)
    kv_bytes = len(tokens) * sessions * kv  # each call reads every session's whole ring
    return {"calls": len(tokens), "tokens": tokens,
            "flops": sessions * flops_per_micro_turn(cfg)["total"],
            "weight_bytes": weight_bytes, "kv_bytes": kv_bytes, "bytes": weight_bytes + kv_bytes,
            "memory": total * precision.weights + sessions * kv}  # resident: weights + N KV caches


def gpus_to_serve(cfg: Config | str, sessions: int, gpu: GPU | str = "H100-SXM",
                  budget_s: float | None = None, mfu: float = 0.3, bandwidth_utilisation: float = 0.8,
                  usable_memory: float = 0.9, precision: Precision = BF16_ADAMW) -> dict:
    """GPUs to run `sessions` live sessions in real time: every micro-turn within budget_s.

    budget_s: compute time per micro-turn; default the micro-turn itself (200 ms:
    slower and the session falls behind); LatencyBudget().compute_s is stricter.
    mfu, bandwidth_utilisation: fractions of the datasheet peaks reached (assumptions).
    """
    cfg, gpu = _config(cfg), get_gpu(gpu)
    budget_s = cfg.audio.micro_turn_ms / 1000 if budget_s is None else budget_s
    _check("budget_s", budget_s)
    for name, value in (("mfu", mfu), ("bandwidth_utilisation", bandwidth_utilisation),
                        ("usable_memory", usable_memory)):
        _check(name, value, fraction=True)
    step = serving_step(cfg, sessions, precision)
    memory = gpu.memory_bytes * usable_memory
    need = {
        "memory": math.ceil(step["memory"] / memory),  # weights + N KV caches resident
        "compute": math.ceil(step["flops"] / (budget_s * gpu.flops * mfu)),  # N x FLOPs in time
        "bandwidth": math.ceil(step["bytes"] / (budget_s * gpu.bandwidth * bandwidth_utilisation)),
    }
    binding = max(need, key=need.get)
    hold = math.ceil(cfg.param_counts()["total"] * precision.weights / memory)  # the weights alone
    return {**need, "gpus": need[binding], "binding": binding, "hold_weights": hold,
            "sessions": sessions, "budget_s": budget_s}


def sessions_per_gpu(cfg: Config | str, gpu: GPU | str = "H100-SXM", budget_s: float | None = None,
                     mfu: float = 0.3, bandwidth_utilisation: float = 0.8, usable_memory: float = 0.9,
                     precision: Precision = BF16_ADAMW) -> dict:
    """Live sessions one GPU (holding all the weights) serves in real time, bound by bound."""
    cfg, gpu = _config(cfg), get_gpu(gpu)
    check = gpus_to_serve(cfg, 1, gpu, budget_s, mfu, bandwidth_utilisation, usable_memory, precision)
    weights = cfg.param_counts()["total"] * precision.weights
    kv = kv_cache_bytes(cfg, precision.kv_cache)
    room = gpu.memory_bytes * usable_memory - weights  # left for KV caches
    if room < kv:
        raise ValueError(
            f"one {gpu.name} ({human(gpu.memory_bytes * usable_memory, 'B')} usable) cannot hold "
            f"{cfg.name}'s weights ({human(weights, 'B')}) and one session's KV cache "
            f"({human(kv, 'B')}); the weights alone need {check['hold_weights']} GPUs: use gpus_to_serve")
    budget_s = check["budget_s"]
    limit = budget_s * gpu.bandwidth * bandwidth_utilisation  # bytes one GPU reads in the budget

    def reads_in_time(n: int) -> bool:
        return serving_step(cfg, n, precision)["bytes"] <= limit

    lo, hi = 0, 1  # largest n that reads in time: double, then bisect (bytes grow with n)
    while reads_in_time(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if reads_in_time(mid) else (lo, mid)
    need = {
        "memory": math.floor(room / kv),  # KV caches beside the weights
        "compute": math.floor(budget_s * gpu.flops * mfu / flops_per_micro_turn(cfg)["total"]),
        "bandwidth": lo,
    }
    binding = min(need, key=need.get)
    return {**need, "sessions": need[binding], "binding": binding, "budget_s": budget_s}


# ----------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------
def plan(cfg: Config | str, gpu: GPU | str = "H100-SXM", sessions: int = 1000,
         train_tokens: float | None = None, train_days: float = 30, train_mfu: float = 0.4,
         serve_mfu: float = 0.3, micro_batch_tokens: int = 4096, precision: Precision = BF16_ADAMW,
         budget_s: float | None = None, bandwidth_utilisation: float = 0.8,
         usable_memory: float = 0.9) -> dict:
    """Everything above for one config. train_tokens defaults to 20 per parameter (total):
    Chinchilla's compute-optimal ratio for dense models, a round assumption for a MoE."""
    cfg, gpu = _config(cfg), get_gpu(gpu)
    _check("train_days", train_days)
    counts = cfg.param_counts()
    tokens = 20 * counts["total"] if train_tokens is None else train_tokens
    serving = (budget_s, serve_mfu, bandwidth_utilisation, usable_memory, precision)
    serve = gpus_to_serve(cfg, sessions, gpu, *serving)
    try:  # None when one GPU cannot hold the weights and a session (the inputs were checked above)
        per_gpu = sessions_per_gpu(cfg, gpu, *serving)
    except ValueError:
        per_gpu = None
    return {
        "name": cfg.name, "gpu": gpu.name, "params": counts,
        "weight_bytes": counts["total"] * precision.weights,
        "train_state": training_state_bytes(cfg, precision),
        "activations": activations_per_token(cfg, precision, checkpointing=False),
        "activations_checkpointed": activations_per_token(cfg, precision, checkpointing=True),
        "kv_cache": kv_cache_bytes(cfg, precision.kv_cache),
        "flops_per_micro_turn": flops_per_micro_turn(cfg),
        "train_flops_per_token": train_flops_per_token(cfg),
        "train": gpus_to_train(cfg, tokens, train_days * 86400, gpu, train_mfu, micro_batch_tokens,
                               precision, usable_memory=usable_memory),
        "serve": serve, "per_gpu": per_gpu,
        "assumptions": {"train_mfu": train_mfu, "micro_batch_tokens": micro_batch_tokens,
                        "serve_mfu": serve_mfu, "budget_s": serve["budget_s"],
                        "bandwidth_utilisation": bandwidth_utilisation, "usable_memory": usable_memory},
    }


def format_plan(plans: list[dict]) -> str:
    """A table with one column per plan."""
    def row(label, cell):
        return f"{label:<34}" + "".join(f"{cell(p):>24}" for p in plans)

    def bound(d, key):
        return f"{d[key]:,} ({d['binding']})"

    first = plans[0]
    lines = [
        row("", lambda p: p["name"]),
        row("parameters, total / active", lambda p: f"{human(p['params']['total'])} / "
                                                    f"{human(p['params']['active'])}"),
        row("weights", lambda p: human(p["weight_bytes"], "B")),
        row("training state (w+master+grad+opt)", lambda p: human(p["train_state"]["total"], "B")),
        row("activations / token", lambda p: human(p["activations"]["total"], "B")),
        row("  with checkpointing", lambda p: human(p["activations_checkpointed"]["total"], "B")),
        row("KV cache / session", lambda p: human(p["kv_cache"], "B")),
        row("FLOPs / micro-turn", lambda p: human(p["flops_per_micro_turn"]["total"], "FLOP")),
        row("train FLOPs / token", lambda p: human(p["train_flops_per_token"], "FLOP")),
        row("train tokens", lambda p: human(p["train"]["tokens"])),
        row("GPU-days to train", lambda p: f"{p['train']['gpu_days']:,.0f}" if p["train"]["gpu_days"] >= 10
            else f"{p['train']['gpu_days']:.2g}"),
        row(f"GPUs to train in {first['train']['seconds'] / 86400:g} days",
            lambda p: bound(p["train"], "gpus")),
        row("GPUs to hold the weights", lambda p: f"{p['serve']['hold_weights']:,}"),
        row("sessions / GPU",
            lambda p: bound(p["per_gpu"], "sessions") if p["per_gpu"] else "(does not fit)"),
        row(f"GPUs for {first['serve']['sessions']:,} sessions", lambda p: bound(p["serve"], "gpus")),
    ]
    a = first["assumptions"]
    return "\n".join(lines + [
        f"GPU: {first['gpu']} (datasheet peaks). Training: {a['train_mfu']:.0%} MFU, micro-batches of "
        f"{a['micro_batch_tokens']} tokens, checkpointing.",
        f"Serving: each micro-turn within {a['budget_s']:g} s at {a['serve_mfu']:.0%} MFU and "
        f"{a['bandwidth_utilisation']:.0%} of the bandwidth. {a['usable_memory']:.0%} of memory usable."])
