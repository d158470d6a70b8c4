"""Configs for every scale, from a CPU toy to the published 276B / 12B model.

Four small dataclasses describe the parts (audio, vision, mixture-of-experts,
transformer) and one `Config` holds them. Every field carries a comment; every
config checks itself when it is made, so a typo fails loudly at construction
instead of as a shape error deep inside a forward pass.

    cfg = get_config("tiny")
    cfg.param_counts()          # {"total": ..., "active": ...}
    cfg.layout()                # positions of one 200 ms micro-turn

`param_counts` is plain arithmetic over the fields below. It is the inventory of
every weight the interaction model owns; the tests build the same modules on
PyTorch's meta device (no memory) and check the two agree to the parameter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# ----------------------------------------------------------------------------
# Audio: the dMel recipe (minitml/dmel.py derives each step)
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16_000  # Hz; every waveform is mono at this rate
    n_fft: int = 1024  # STFT size -> n_fft // 2 + 1 = 513 frequency bins
    win_length: int = 800  # Hann window, 50 ms at 16 kHz
    hop_length: int = 200  # stride, 12.5 ms at 16 kHz -> 80 frames per second
    n_mels: int = 80  # mel channels per frame
    f_min: float = 80.0  # Hz, lowest mel filter edge
    f_max: float = 7600.0  # Hz, highest mel filter edge
    log_floor: float = 1e-10  # magnitudes are floored here before log10
    log_min: float = -7.0  # log10-mel is clamped to [log_min, log_max]
    log_max: float = 2.0
    n_bins: int = 16  # quantisation levels per channel (4 bits)
    frames_per_token: int = 4  # k: dMel frames carried by one audio token (50 ms)
    embed_dim: int = 32  # size of each per-channel bag-of-embeddings vector
    micro_turn_ms: int = 200  # one micro-turn of input (and of output)

    def __post_init__(self):
        _require(self.sample_rate > 0, f"sample_rate must be positive, got {self.sample_rate}")
        _require(
            0 < self.win_length <= self.n_fft,
            f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}",
        )
        _require(self.hop_length > 0, f"hop_length must be positive, got {self.hop_length}")
        _require(
            0 <= self.f_min < self.f_max <= self.sample_rate / 2,
            f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min}, "
            f"f_max={self.f_max}, sample_rate={self.sample_rate}",
        )
        _require(self.log_min < self.log_max, "log_min must be below log_max")
        _require(self.n_bins >= 2, f"n_bins must be at least 2, got {self.n_bins}")
        samples = self.sample_rate * self.micro_turn_ms / 1000
        _require(
            samples == int(samples) and int(samples) % self.hop_length == 0,
            f"a micro-turn of {self.micro_turn_ms} ms ({samples} samples) must hold a whole "
            f"number of {self.hop_length}-sample hops",
        )
        _require(
            self.frames_per_micro_turn % self.frames_per_token == 0,
            f"frames_per_token={self.frames_per_token} must divide the "
            f"{self.frames_per_micro_turn} frames of one micro-turn",
        )

    @property
    def frame_rate(self) -> float:
        """dMel frames per second (80 for the standard recipe)."""
        return self.sample_rate / self.hop_length

    @property
    def samples_per_micro_turn(self) -> int:
        return self.sample_rate * self.micro_turn_ms // 1000  # 3200

    @property
    def frames_per_micro_turn(self) -> int:
        return self.samples_per_micro_turn // self.hop_length  # 16

    @property
    def tokens_per_micro_turn(self) -> int:
        return self.frames_per_micro_turn // self.frames_per_token  # A = 4

    @property
    def bin_step(self) -> float:
        return (self.log_max - self.log_min) / (self.n_bins - 1)  # 0.6

    @property
    def bits_per_second(self) -> float:
        """Bitrate of the dMel token stream: channels x bits x frames per second."""
        return self.n_mels * math.log2(self.n_bins) * self.frame_rate


# ----------------------------------------------------------------------------
# Vision: 40x40 pixel patches straight into the transformer
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class VisionConfig:
    frame_height: int = 80  # pixels of the one video frame seen per micro-turn
    frame_width: int = 80
    patch_size: int = 40  # square patches, as in the reference system
    stem: str = "linear"  # "linear" (Fuyu-style projection) or "hmlp" (convs inside a patch)
    hmlp_channels: int = 0  # hidden width of the hMLP stem; 0 means d_model // 4

    def __post_init__(self):
        _require(self.stem in ("linear", "hmlp"), f"stem must be 'linear' or 'hmlp', got {self.stem!r}")
        _require(self.patch_size == 40 or self.stem == "linear",
                 f"the hMLP stem is built for 40x40 patches, got patch_size={self.patch_size}")
        for name in ("frame_height", "frame_width", "patch_size"):
            value = getattr(self, name)
            _require(value > 0, f"{name} must be positive, got {value}")
        _require(self.hmlp_channels >= 0, "hmlp_channels must be >= 0")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of patches for a frame, after padding up to whole patches."""
        return (-(-self.frame_height // self.patch_size), -(-self.frame_width // self.patch_size))

    @property
    def n_patches(self) -> int:
        rows, cols = self.grid
        return rows * cols  # P

    @property
    def patch_dim(self) -> int:
        return 3 * self.patch_size * self.patch_size  # 4800 numbers per RGB patch


# ----------------------------------------------------------------------------
# Mixture-of-Experts feed-forward
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MoEConfig:
    n_experts: int = 4  # routed experts per MoE layer
    top_k: int = 2  # experts each token is sent to
    d_expert: int = 256  # hidden width of one SwiGLU expert
    n_shared_experts: int = 0  # experts every token always uses (DeepSeek-style)
    router: str = "softmax"  # "softmax" (top-k, renormalised) or "sigmoid" (+ balancing bias)
    bias_update_rate: float = 1e-3  # step of the aux-loss-free balancing bias (sigmoid router)
    balance_loss_coef: float = 1e-2  # weight of the Switch/Mixtral load-balancing loss
    z_loss_coef: float = 1e-3  # weight of the router z-loss (keeps logits small)
    decode_max_tokens: int = 4  # at or below this many tokens, gather expert weights instead

    def __post_init__(self):
        _require(self.n_experts >= 1, f"n_experts must be >= 1, got {self.n_experts}")
        _require(
            1 <= self.top_k <= self.n_experts,
            f"top_k must be in [1, n_experts={self.n_experts}], got {self.top_k}",
        )
        _require(self.d_expert >= 1, f"d_expert must be >= 1, got {self.d_expert}")
        _require(self.n_shared_experts >= 0, "n_shared_experts must be >= 0")
        _require(
            self.router in ("softmax", "sigmoid"),
            f"router must be 'softmax' or 'sigmoid', got {self.router!r}",
        )


# ----------------------------------------------------------------------------
# The transformer
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 128  # width of the residual stream
    n_layers: int = 4  # transformer blocks
    n_heads: int = 4  # query heads
    n_kv_heads: int = 4  # key/value heads (fewer than n_heads = grouped-query attention)
    d_ff: int = 512  # hidden width of a dense SwiGLU FFN (layers without MoE)
    moe_every: int = 0  # every n-th block uses MoE (1 = all, 0 = none); others are dense
    n_dense_first: int = 0  # the first blocks stay dense even when moe_every says MoE
    text_vocab_size: int = 256  # word-level vocabulary of the monologue / text-in streams
    text_in_slots: int = 2  # X: text-in positions per micro-turn (tool results, typed text)
    window_micro_turns: int = 32  # sliding attention window, in micro-turns
    rope_theta: float = 10_000.0  # base of the rotary position angles
    norm_eps: float = 1e-5  # RMSNorm epsilon
    n_stream_types: int = 4  # learned type embedding: patch, user audio, text-in, model output
    max_patch_rows: int = 16  # size of the learned row / column position tables for patches
    max_patch_cols: int = 16
    mel_head: str = "discrete"  # "discrete" (80 x 16-way logits per frame) or "flow" (flow matching)
    flow_hidden: int = 256  # width of the flow head's MLP
    flow_steps: int = 4  # Euler steps the flow head takes from noise to mel
    heard_head: bool = False  # a second word head on the user-audio positions, trained to name
    #                           each user word where it ends (dense listening signal; minitml/train.py)
    heard_feedback: bool = False  # the model reads back its own transcript: output slot j also
    #                               embeds the word the heard head named at user-audio token j
    embed_norm: bool = False  # each kind of embedding (patches, dMel, words) goes through its own
    #                           RMSNorm before they add up: one scale for all (InteractionModel.scaled)
    seen_head: bool = False  # a word head on the patch positions, trained to name what each patch
    #                          shows (the lamp's colour, the shape, the object): dense seeing signal
    seen_feedback: bool = False  # the model reads back what it sees: output slot j also embeds the
    #                              word the seen head named at patch j (as many patches as slots)

    def __post_init__(self):
        _require(self.d_model >= 1 and self.n_layers >= 1, "d_model and n_layers must be >= 1")
        _require(
            self.d_model % self.n_heads == 0,
            f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}",
        )
        _require(
            self.n_heads % self.n_kv_heads == 0,
            f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}",
        )
        _require((self.d_model // self.n_heads) % 2 == 0, "head_dim must be even for rotary angles")
        _require(self.moe_every >= 0 and self.n_dense_first >= 0, "moe_every, n_dense_first >= 0")
        _require(self.window_micro_turns >= 1, "window_micro_turns must be >= 1")
        _require(self.text_vocab_size >= 2, "text_vocab_size must be >= 2 (PAD and one word)")
        _require(self.mel_head in ("discrete", "flow"),
                 f"mel_head must be 'discrete' or 'flow', got {self.mel_head!r}")
        _require(self.flow_hidden >= 1 and self.flow_steps >= 1, "flow_hidden, flow_steps >= 1")
        _require(self.heard_head or not self.heard_feedback,
                 "heard_feedback reads back what the heard head names: it needs heard_head=True")
        _require(self.seen_head or not self.seen_feedback,
                 "seen_feedback reads back what the seen head names: it needs seen_head=True")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def is_moe_layer(self, i: int) -> bool:
        """Whether block i (0-based) has a MoE feed-forward instead of a dense one."""
        return self.moe_every > 0 and i >= self.n_dense_first and (i + 1) % self.moe_every == 0


# ----------------------------------------------------------------------------
# The whole model
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    name: str = "tiny"
    audio: AudioConfig = field(default_factory=AudioConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        rows, cols = self.vision.grid
        _require(
            rows <= self.model.max_patch_rows and cols <= self.model.max_patch_cols,
            f"a {self.vision.frame_height}x{self.vision.frame_width} frame has a {rows}x{cols} "
            f"patch grid, larger than the position tables "
            f"({self.model.max_patch_rows}x{self.model.max_patch_cols})",
        )
        P, A = self.vision.n_patches, self.audio.tokens_per_micro_turn
        _require(not self.model.seen_feedback or P == A,
                 f"seen_feedback reads patch j back into output slot j: it needs as many patches as "
                 f"output slots per micro-turn, got {P} patches and {A} slots")

    # -- the micro-turn block -------------------------------------------------
    def layout(self) -> dict[str, int]:
        """Positions of one 200 ms micro-turn (minitml/stream.py, `BlockLayout`)."""
        P = self.vision.n_patches
        A = self.audio.tokens_per_micro_turn
        X = self.model.text_in_slots
        return {
            "patches": P,
            "user_audio": A,
            "text_in": X,
            "model_out": A,
            "total": P + A + X + A,
        }

    @property
    def positions_per_micro_turn(self) -> int:
        return self.layout()["total"]

    @property
    def window(self) -> int:
        """Sliding attention window in positions (= ring-buffer KV cache length)."""
        return self.model.window_micro_turns * self.positions_per_micro_turn

    # -- parameter inventory --------------------------------------------------
    def param_groups(self) -> dict[str, dict[str, int]]:
        """Every weight of the model by group: {"group": {"total": n, "active": n}}.

        Active = the parameters one token's forward pass touches: all of them,
        except the routed experts a token is not sent to.
        """
        a, v, m, e = self.audio, self.vision, self.model, self.moe
        d, hd = m.d_model, m.head_dim
        groups: dict[str, dict[str, int]] = {}

        def add(name: str, total: int, active: int | None = None) -> None:
            groups[name] = {"total": total, "active": total if active is None else active}

        # Inputs: text ids, dMel bag of embeddings, patches, stream types.
        add("text_embedding", m.text_vocab_size * d)
        add(
            "dmel_embedding",  # one (n_bins x embed_dim) table per channel, then k frames -> d
            a.n_mels * a.n_bins * a.embed_dim + a.frames_per_token * a.embed_dim * d,
        )
        add("patch_embedding", patch_embedding_params(v, d))
        add("patch_positions", (m.max_patch_rows + m.max_patch_cols) * d)
        add("stream_type_embedding", m.n_stream_types * d)

        # Blocks: RMSNorm, attention (no biases), FFN.
        attn = d * m.n_heads * hd + 2 * d * m.n_kv_heads * hd + m.n_heads * hd * d
        norms = 2 * d
        swiglu = 3 * d * e.d_expert  # gate, up, down of one expert
        dense_total = moe_total = moe_active = 0
        n_moe = sum(m.is_moe_layer(i) for i in range(m.n_layers))
        n_dense = m.n_layers - n_moe
        dense_total = n_dense * 3 * d * m.d_ff
        router = d * e.n_experts
        moe_total = n_moe * (router + (e.n_experts + e.n_shared_experts) * swiglu)
        moe_active = n_moe * (router + (e.top_k + e.n_shared_experts) * swiglu)
        add("attention", m.n_layers * attn)
        add("norms", m.n_layers * norms + d)  # + the final norm
        add("dense_ffn", dense_total)
        add("moe_ffn", moe_total, moe_active)

        # Outputs: text unembedding, per-channel dMel head (k frames x 80 x 16 logits).
        add("text_head", d * m.text_vocab_size)
        if m.heard_head:  # the word each user-audio token finishes hearing (a training signal)
            add("heard_head", d * m.text_vocab_size)
        if m.heard_feedback:  # the heard word read back into each output slot
            add("heard_embedding", m.text_vocab_size * d)
        if m.embed_norm:  # one RMSNorm gain each for patches, dMel and words
            add("embed_norms", 3 * d)
        if m.seen_head:  # the thing each patch shows (a training signal)
            add("seen_head", d * m.text_vocab_size)
        if m.seen_feedback:  # the seen word read back into each output slot
            add("seen_embedding", m.text_vocab_size * d)
        if m.mel_head == "discrete":
            add("dmel_head", d * a.frames_per_token * a.n_mels * a.n_bins)
        else:  # flow head: MLP([noisy mel, time, hidden state]) -> velocity, with biases
            mel, hf = a.frames_per_token * a.n_mels, m.flow_hidden
            add("flow_head", (mel + 1 + d) * hf + hf + hf * hf + hf + hf * mel + mel)
        return groups

    def param_counts(self) -> dict[str, int]:
        """Exact total and active parameter counts: {"total": int, "active": int}."""
        groups = self.param_groups().values()
        return {
            "total": sum(g["total"] for g in groups),
            "active": sum(g["active"] for g in groups),
        }

    def replace(self, **parts) -> Config:
        """A copy with some parts replaced, e.g. cfg.replace(moe=MoEConfig(n_experts=8))."""
        return replace(self, **parts)

    def to_dict(self) -> dict:
        return asdict(self)

    def diff(self, other: Config) -> list[str]:
        """What `other` changes, field by field: ['model.d_model: expected 128, got 256', ...]."""
        a, b = self.to_dict(), other.to_dict()
        out = []
        for part in a:
            if isinstance(a[part], dict):
                for key in a[part]:
                    if a[part][key] != b[part].get(key):
                        out.append(f"{part}.{key}: expected {a[part][key]!r}, got {b[part].get(key)!r}")
            elif a[part] != b[part]:
                out.append(f"{part}: expected {a[part]!r}, got {b[part]!r}")
        return out

    @staticmethod
    def from_dict(d: dict) -> Config:
        return Config(
            name=d["name"],
            audio=AudioConfig(**d["audio"]),
            vision=VisionConfig(**d["vision"]),
            moe=MoEConfig(**d["moe"]),
            model=ModelConfig(**d["model"]),
        )


def patch_embedding_params(v: VisionConfig, d_model: int) -> int:
    """Weights of the patch stem (see minitml.patches)."""
    if v.stem == "linear":
        return v.patch_dim * d_model + d_model
    c = v.hmlp_channels or d_model // 4
    # conv 4x4/4 (3 -> c), conv 5x5/5 (c -> c), conv 2x2/2 (c -> d), each with a bias.
    return (3 * 16 * c + c) + (c * 25 * c + c) + (c * 4 * d_model + d_model)


# ----------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------
def _tiny() -> Config:
    # Trains on a 2-core CPU in hours: 2.87M parameters, 4 experts in two layers, a heard head.
    return Config(
        name="tiny",
        audio=AudioConfig(),
        vision=VisionConfig(frame_height=80, frame_width=80),
        moe=MoEConfig(n_experts=4, top_k=2, d_expert=256),
        model=ModelConfig(
            d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, d_ff=512,
            moe_every=2, text_vocab_size=256, window_micro_turns=32, heard_head=True,
        ),
    )


def _small() -> Config:
    # A GPU demo size: ~0.1B parameters, a third of them active.
    return Config(
        name="small",
        audio=AudioConfig(),
        vision=VisionConfig(frame_height=160, frame_width=160, stem="hmlp"),
        moe=MoEConfig(n_experts=8, top_k=2, d_expert=1024),
        model=ModelConfig(
            d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, d_ff=2048,
            moe_every=1, text_vocab_size=1024, window_micro_turns=64, heard_head=True,
        ),
    )


def _tml_small() -> Config:
    # The published scale of TML-Interaction-Small: 276B total, 12B active.
    # The layout (width, depth, expert count) is our own choice that lands on
    # both figures; only the two totals are public. Build it on the meta device.
    return Config(
        name="tml_small",
        audio=AudioConfig(),
        vision=VisionConfig(frame_height=240, frame_width=320, stem="hmlp"),
        moe=MoEConfig(
            n_experts=128, top_k=4, n_shared_experts=0, d_expert=3712, router="sigmoid",
        ),
        model=ModelConfig(
            d_model=4096, n_layers=48, n_heads=32, n_kv_heads=8, d_ff=14336,
            moe_every=1, n_dense_first=1, text_vocab_size=131_072, window_micro_turns=300,
        ),
    )


PRESETS = {"tiny": _tiny, "small": _small, "tml_small": _tml_small}


def get_config(name: str) -> Config:
    """One of the presets: "tiny" (CPU), "small" (GPU demo), "tml_small" (276B / 12B)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()
