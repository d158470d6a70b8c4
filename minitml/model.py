"""The interaction model: one decoder-only transformer over interleaved 200 ms blocks.

Everything enters the same sequence (early fusion, no encoders):

    patches    --PatchEmbedding-->  \\
    user audio --DMelEmbedding-->    +  stream-type vector  ->  (B, T*L, d)  -> blocks -> norm
    text in    --text embedding-->  /
    model out  --text embedding + DMelEmbedding--/

and two heads read the hidden state at each *predictor* position (stream.py):
a text unembedding (the monologue word) and a mel head (the k dMel frames of
the next output token): per-channel 16-way logits, or a small flow-matching
network that turns noise into the k mel frames in a few steps. A third, the
heard head, names at each user-audio position the user word that ends there;
with `heard_feedback` the model reads that word back in the output slot of the
same index (its own transcript, one more embedding added to the slot). A fourth,
the seen head, names at each patch position what that patch shows; with
`seen_feedback` the output slot of the same index reads that word back too.

Attention is causal with a sliding window of W positions: position i sees
positions (i - W, i]. Training uses that mask on the whole sequence; a live
session keeps a ring buffer of exactly W keys and values per layer, so an hour
costs the same per micro-turn as a minute, and gives the same logits as the
full forward pass (tests/test_model.py checks it across several wraps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from minitml.config import Config
from minitml.dmel import DMelEmbedding, DMelHead
from minitml.flow import FlowHead, MelHead
from minitml.moe import MoE, SwiGLU
from minitml.patches import PatchEmbedding
from minitml.stream import MODEL_OUT, PAD, BlockLayout, Blocks


# ----------------------------------------------------------------------------
# Small parts: RMSNorm, rotary positions, the sliding-window mask, the ring cache
# ----------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float):
    """cos, sin of the rotary angles, each (N, head_dim / 2), for absolute positions (N,).

    angle[p, i] = p * theta^(-2i / head_dim). An hour of tiny micro-turns is
    252,000 positions; in float32, p * freq would be off by up to 0.01 rad there, so
    the product is taken in float64 and only cos / sin are rounded to float32.
    """
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    angles = positions.to(torch.float64)[:, None] * inv_freq.to(positions.device)  # (N, hd/2)
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + hd/2]) of (B, H, N, hd) by its position's angle."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (B, H, N, hd/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # bf16 stays bf16
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def sliding_window_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int) -> torch.Tensor:
    """(Nq, Nk) bool, True where query q may attend key k: q - window < k <= q (k >= 0)."""
    diff = q_pos[:, None] - k_pos[None, :]  # (Nq, Nk) how far back the key is
    return (k_pos[None, :] >= 0) & (diff >= 0) & (diff < window)


class KVCache:
    """One layer's ring buffer of the last `window` keys and values.

    Slot s holds the key/value of absolute position p with p % window == s, and
    `pos[s] = p` (-1 while empty). The attention mask is computed from those
    absolute positions, so the order inside the ring never matters.
    """

    def __init__(self, batch: int, n_kv_heads: int, window: int, head_dim: int,
                 device=None, dtype=torch.float32):
        self.window = window
        self.k = torch.zeros(batch, n_kv_heads, window, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.pos = torch.full((window,), -1, dtype=torch.long, device=device)

    def key_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """Absolute positions of the keys `update` will return for these new positions."""
        return torch.cat([self.pos, positions])  # (W + N,)

    def update(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor):
        """Add (B, Hkv, N, hd) new keys/values; return everything to attend over.

        The new block's first queries may still need keys that the block itself will
        overwrite in the ring, so attention runs over [old ring, new keys] (W + N keys)
        and the ring is written afterwards, keeping the newest W.
        """
        keys = torch.cat([self.k, k], dim=2)  # (B, Hkv, W + N, hd): the old ring, then the new
        values = torch.cat([self.v, v], dim=2)
        keep = positions[-self.window:]  # only the newest W can stay
        slots = keep % self.window
        self.k[:, :, slots] = k[:, :, -self.window:]
        self.v[:, :, slots] = v[:, :, -self.window:]
        self.pos[slots] = keep
        return keys, values

    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes + self.pos.nbytes


# ----------------------------------------------------------------------------
# The transformer block
# ----------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        m = cfg.model
        self.n_heads, self.n_kv_heads, self.head_dim = m.n_heads, m.n_kv_heads, m.head_dim
        self.q = nn.Linear(m.d_model, m.n_heads * m.head_dim, bias=False)
        self.k = nn.Linear(m.d_model, m.n_kv_heads * m.head_dim, bias=False)
        self.v = nn.Linear(m.d_model, m.n_kv_heads * m.head_dim, bias=False)
        self.o = nn.Linear(m.n_heads * m.head_dim, m.d_model, bias=False)

    def forward(self, x, cos, sin, mask, cache: KVCache | None = None, positions=None):
        """x (B, N, d); mask (N, S) from sliding_window_mask over the S keys attended."""
        B, N, _ = x.shape
        q = self.q(x).view(B, N, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, N, hd)
        k = self.k(x).view(B, N, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, N, hd)
        v = self.v(x).view(B, N, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = (k, v) if cache is None else cache.update(k, v, positions)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                           enable_gqa=self.n_heads != self.n_kv_heads)
        return self.o(y.transpose(1, 2).reshape(B, N, -1))  # (B, N, d)


class Block(nn.Module):
    """x + attn(norm(x)), then + ffn(norm(x)); the FFN is dense SwiGLU or MoE."""

    def __init__(self, cfg: Config, index: int):
        super().__init__()
        m = cfg.model
        self.attn_norm = RMSNorm(m.d_model, m.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(m.d_model, m.norm_eps)
        self.is_moe = m.is_moe_layer(index)
        self.ffn = MoE(cfg.moe, m.d_model) if self.is_moe else SwiGLU(m.d_model, m.d_ff)

    def forward(self, x, cos, sin, mask, cache=None, positions=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, positions)
        if self.is_moe:
            y, aux = self.ffn(self.ffn_norm(x))
            return x + y, aux.loss
        return x + self.ffn(self.ffn_norm(x)), x.new_zeros(())


REPLY_GAP_SLOTS = 12  # 600 ms of silent monologue: the next word starts a reply
#                      (words inside a reply are at most ~0.5 s apart)


def reply_starts(out_text: torch.Tensor, gap: int = REPLY_GAP_SLOTS) -> torch.Tensor:
    """(B, T, A) word targets -> (B, T, A) bool: a word after `gap` or more PAD slots.

    The conversation's start counts as silence, so its first word is a reply start."""
    B, T, A = out_text.shape
    spoken = (out_text.reshape(B, T * A) != PAD).float()
    before = F.pad(spoken, (gap, 0)).unfold(1, gap, 1)[:, : T * A].sum(-1)  # words in the gap slots
    return ((spoken > 0) & (before == 0)).view(B, T, A)


def word_weights(out_text: torch.Tensor, word_weight: float = 1.0, reply_weight: float = 1.0,
                 decision_ids: tuple[int, ...] = (), values: torch.Tensor | None = None,
                 value_weight: float = 1.0) -> torch.Tensor:
    """(B, T, A) word targets -> (B, T, A) their weights in the word loss:

        PAD                                                      1
        a word                                                   word_weight
        a reply's first word (reply_starts), or a decision_id    word_weight * reply_weight
        an asked-for value word (values, (B, T, A) bool)         that times value_weight
    """
    weights = torch.where(out_text == PAD, 1.0, word_weight)
    if reply_weight != 1.0:
        decisive = reply_starts(out_text)
        for i in decision_ids:
            decisive |= out_text == i
        weights = torch.where(decisive, weights * reply_weight, weights)
    if values is not None and value_weight != 1.0:
        weights = torch.where(values & (out_text != PAD), weights * value_weight, weights)
    return weights


def dense_weights(targets: torch.Tensor, pad_weight: float = 0.1) -> torch.Tensor:
    """The weights of a dense head's targets, a word at every position: (B, T, A) heard words
    or (B, T, P) seen ones -> the same shape, 1 for a word and pad_weight for PAD."""
    return torch.where(targets == PAD, pad_weight, 1.0)


def dense_words(logits: torch.Tensor, pad_weight: float = 0.1) -> torch.Tensor:
    """(..., V) logits of a dense head -> (...) word ids: what the model says it heard (the
    heard head) or saw (the seen head).

    Trained with PAD targets weighing pad_weight against words, the head's odds of a
    word come out 1 / pad_weight times the data's (the argument of
    `generator.calibrated_threshold`); adding log(1 / pad_weight) to PAD's logit undoes
    that, so a word is named only where the data would name one."""
    logits = logits.float().clone()
    logits[..., PAD] += math.log(1.0 / pad_weight)
    return logits.argmax(-1)


# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------
@dataclass
class ModelOutput:
    hidden: torch.Tensor  # (B, T, A, d) hidden states at the predictor positions
    text_logits: torch.Tensor  # (B, T, A, V) next monologue word
    mel_logits: torch.Tensor | None  # (B, T, A, k, 80, 16), None with the flow head
    aux_loss: torch.Tensor  # scalar, MoE balance + z losses summed over layers
    heard_logits: torch.Tensor | None = None  # (B, T, A, V) the word each heard token ends, if any
    seen_logits: torch.Tensor | None = None  # (B, T, P, V) the thing each patch shows, if any


class InteractionModel(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        d = m.d_model
        self.layout = BlockLayout.from_config(cfg)
        self.text_embedding = nn.Embedding(m.text_vocab_size, d)
        self.dmel_embedding = DMelEmbedding(cfg.audio, d)
        self.patch_embedding = PatchEmbedding(cfg.vision, d, m.max_patch_rows, m.max_patch_cols)
        self.stream_type = nn.Embedding(m.n_stream_types, d)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(m.n_layers))
        self.norm = RMSNorm(d, m.norm_eps)
        self.text_head = nn.Linear(d, m.text_vocab_size, bias=False)
        # Listening, supervised densely: at every user-audio position, which word just ended.
        self.heard_head = nn.Linear(d, m.text_vocab_size, bias=False) if m.heard_head else None
        # Reading back what was heard (heard_feedback): a word table of its own, added to
        # output slot j with the word the heard head named at user-audio token j.
        self.heard_embedding = nn.Embedding(m.text_vocab_size, d) if m.heard_feedback else None
        # Seeing, supervised densely: at every patch position, the name of what it shows.
        self.seen_head = nn.Linear(d, m.text_vocab_size, bias=False) if m.seen_head else None
        # Reading back what was seen (seen_feedback): output slot j adds the word named at patch j.
        self.seen_embedding = nn.Embedding(m.text_vocab_size, d) if m.seen_feedback else None
        # One scale for every kind of input (embed_norm): see `scaled`.
        self.embed_norms = nn.ModuleDict({kind: RMSNorm(d, m.norm_eps) for kind in ("patch", "audio", "word")}
                                         ) if m.embed_norm else None
        self.mel_head: MelHead = (DMelHead(cfg.audio, d) if m.mel_head == "discrete"
                                  else FlowHead(cfg.audio, d, m.flow_hidden, m.flow_steps))
        self.register_buffer("types", self.layout.stream_types(), persistent=False)  # (L,)
        self.register_buffer("predictors", self.layout.predictor_offsets(), persistent=False)
        self.vocab: list[str] | None = None  # set by checkpoint.load when the file has one
        # The weight its word targets had in training (TrainConfig.word_weight), set by the
        # trainer and by checkpoint.load; greedy decoding undoes it (calibrated_threshold).
        self.word_weight = 1.0
        # And the weight of a PAD target in the heard loss (dense_words undoes it).
        self.heard_pad_weight = 0.1
        # Training option: keep only each block's input for backward and recompute the rest.
        self.activation_checkpointing = False
        self._init_weights()

    @staticmethod
    def from_config(cfg: Config) -> InteractionModel:
        return InteractionModel(cfg)

    def _init_weights(self):
        # GPT-2 style: every weight matrix N(0, 0.02), the MoE experts' stacked matrices as
        # much as any nn.Linear or nn.Embedding, and every projection back into the residual
        # stream (attention output, FFN down, each expert's down) N(0, 0.02 / sqrt(2 n_layers)):
        # 2 n_layers of them add into the stream, and this keeps its variance from growing
        # with depth. Dense and expert FFNs start alike. (A MoE layer built on its own keeps
        # MoE.reset_parameters, nn.Linear's fan-in uniform.)
        kept = set(self.mel_head.modules()) if self.mel_head.keeps_torch_init else set()
        for module in self.modules():
            if module in kept:  # the flow MLP keeps PyTorch's default (fan-in) init
                continue
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        residual = 0.02 / math.sqrt(2 * len(self.blocks))
        for block in self.blocks:
            nn.init.normal_(block.attn.o.weight, std=residual)
            if block.is_moe:
                moe = block.ffn
                nn.init.normal_(moe.w_gate, std=0.02)  # (E, d, h)
                nn.init.normal_(moe.w_up, std=0.02)  # (E, d, h)
                nn.init.normal_(moe.w_down, std=residual)  # (E, h, d)
                if moe.shared is not None:
                    nn.init.normal_(moe.shared.w_down.weight, std=residual)
            else:
                nn.init.normal_(block.ffn.w_down.weight, std=residual)

    # -- embedding the streams ---------------------------------------------------
    def scaled(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        """(..., d) embeddings of one kind ("patch", "audio", "word") -> the same, on one scale.

        The three kinds grow at different speeds. A patch vector is a sum over 4800 pixel
        weights and a dMel vector one over 80 channel tables, while a word vector is a single
        row that moves only when its word comes up. In a trained tiny model the patches'
        vectors are about 1000 times as long as the words', the dMel ones 7 times. An output
        slot adds a word to its dMel frames, so there the word is a small part of the sum.
        With embed_norm, each kind has its own RMSNorm (a learned gain per channel, 1 at the
        start), and every kind starts and stays at one scale. Without it: x unchanged."""
        return x if self.embed_norms is None else self.embed_norms[kind](x)

    def embed_inputs(self, patches, user_audio, text_in) -> torch.Tensor:
        """(B, T, P, 4800), (B, T, A, k, 80), (B, T, X) -> (B, T, P + A + X, d)."""
        x = torch.cat([
            self.scaled("patch", self.patch_embedding(patches, self.cfg.vision.grid)),  # (B, T, P, d)
            self.scaled("audio", self.dmel_embedding(user_audio)),  # (B, T, A, d)
            self.scaled("word", self.text_embedding(text_in)),  # (B, T, X, d)
        ], dim=2)
        return x + self.stream_type(self.types[: self.layout.n_inputs])

    def embed_outputs(self, out_text, out_audio, heard=None, seen=None) -> torch.Tensor:
        """(B, T, A), (B, T, A, k, 80) -> (B, T, A, d): a word and k frames per slot.

        With heard_feedback, heard (B, T, A) adds the word heard at each slot's user-audio
        token (PAD where none ended): the model's transcript, read back in the same
        micro-turn, so that later positions find what was said as a word at the bottom of
        the stack instead of as a deep feature of the audio. With seen_feedback, seen
        (B, T, A) adds in the same way the word seen at each slot's patch (slot j, patch j)."""
        words = self.scaled("word", self.text_embedding(out_text))  # (B, T, A, d)
        x = words + self.scaled("audio", self.dmel_embedding(out_audio))
        for table, read in ((self.heard_embedding, heard), (self.seen_embedding, seen)):
            if table is not None:
                read = read if read is not None else torch.full_like(out_text, PAD)
                x = x + self.scaled("word", table(read))
        return x + self.stream_type.weight[MODEL_OUT]

    def embed(self, blocks: Blocks, said: torch.Tensor | None = None,
              heard: torch.Tensor | None = None) -> torch.Tensor:
        """Blocks -> (B, T * L, d), micro-turn after micro-turn. said: (B, T, A, k, 80) the
        dMel frames fed back as the model's own speech, if not blocks.out_audio; heard:
        (B, T, A) the words read back (heard_feedback), if not blocks.heard_text. What was
        seen is read back from blocks.seen_text (seen_feedback; P = A)."""
        inputs = self.embed_inputs(blocks.patches, blocks.user_audio, blocks.text_in)
        outputs = self.embed_outputs(blocks.out_text, blocks.out_audio if said is None else said,
                                     blocks.heard_text if heard is None else heard, blocks.seen_text)
        x = torch.cat([inputs, outputs], dim=2)  # (B, T, L, d)
        return x.flatten(1, 2)  # (B, T * L, d)

    # -- the transformer ------------------------------------------------------------
    def run(self, x: torch.Tensor, positions: torch.Tensor, caches: list[KVCache] | None = None):
        """(B, N, d) at absolute `positions` (N,) -> normed hidden (B, N, d), aux loss.

        Without caches, the N positions attend to each other (training, full
        forward). With caches, they also attend to the cached window, and are
        added to it (streaming).
        """
        cos, sin = rope_angles(positions, self.cfg.model.head_dim, self.cfg.model.rope_theta)
        # Every layer attends over the same key positions: one mask serves them all.
        key_pos = positions if caches is None else caches[0].key_positions(positions)
        mask = sliding_window_mask(positions, key_pos, self.cfg.window)  # (N, S)
        aux = x.new_zeros(())
        recompute = self.activation_checkpointing and caches is None and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            if recompute:
                x, block_aux = torch.utils.checkpoint.checkpoint(
                    block, x, cos, sin, mask, use_reentrant=False)
            else:
                x, block_aux = block(x, cos, sin, mask, None if caches is None else caches[i],
                                     positions)
            aux = aux + block_aux
        return self.norm(x), aux

    def new_cache(self, batch_size: int = 1, device=None) -> list[KVCache]:
        m = self.cfg.model
        device = device or self.text_head.weight.device
        dtype = self.text_head.weight.dtype
        return [KVCache(batch_size, m.n_kv_heads, self.cfg.window, m.head_dim, device, dtype)
                for _ in range(m.n_layers)]

    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.text_head(hidden)  # (..., V)

    def forward(self, blocks: Blocks, said: torch.Tensor | None = None,
                heard: torch.Tensor | None = None) -> ModelOutput:
        """The full forward pass over whole conversations (training, evaluation).

        said: (B, T, A, k, 80) what the model hears itself say, in place of the recorded
        blocks.out_audio (which stays the target): `own_speech` gives the model's own.
        heard: (B, T, A) the words read back with heard_feedback, in place of the true
        blocks.heard_text (which stays the heard head's target)."""
        B, T, L = blocks.batch_size, blocks.n_turns, self.layout.length
        x = self.embed(blocks, said, heard)  # (B, T*L, d)
        positions = torch.arange(T * L, device=x.device)
        h, aux = self.run(x, positions)
        h = h.view(B, T, L, -1)
        heard = None
        if self.heard_head is not None:
            start = self.layout.n_patches
            heard = self.heard_head(h[:, :, start:start + self.layout.n_audio])  # (B, T, A, V)
        seen = self.seen_head(h[:, :, :self.layout.n_patches]) if self.seen_head is not None else None
        h = h[:, :, self.predictors]  # (B, T, A, d) predictor positions
        return ModelOutput(hidden=h, text_logits=self.text_head(h), mel_logits=self.mel_head.logits(h),
                           aux_loss=aux, heard_logits=heard, seen_logits=seen)  # seen: (B, T, P, V)

    def loss(self, blocks: Blocks, text_weight: float = 1.0, mel_weight: float = 1.0,
             out: ModelOutput | None = None, word_weight: float = 1.0,
             reply_weight: float = 1.0, decision_ids: tuple[int, ...] = (),
             heard_weight: float = 0.0, heard_pad_weight: float = 0.1, seen_weight: float = 0.0,
             denominators: dict[str, float] | None = None, values: torch.Tensor | None = None,
             value_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """Cross-entropy on the monologue words and the dMel bins (or the flow loss).

        The word loss is a weighted mean over the (B, T, A) word targets (`word_weights`):
        PAD targets weigh 1, words `word_weight`, and a reply's first word or one of
        `decision_ids` (<call>, </call>) `word_weight * reply_weight`. These few targets
        decide when the model speaks and what about; weighting them up makes them faster
        to learn. The words of an asked-for value (values: (B, T, A) bool, the colour, the
        sum) weigh value_weight times more again: they are what the reply is for.

        heard_weight > 0 adds the heard head's loss (the model needs `cfg.model.heard_head`):
        at every user-audio token, the user word that ends there, PAD elsewhere (PAD
        targets weigh heard_pad_weight). Every user word is a target, ten times more
        listening signal per dialogue than the assistant's answer words. seen_weight > 0
        adds the seen head's loss the same way (`cfg.model.seen_head`): at every patch, the
        name of what it shows (the lamp's colour, the shape, the object), PAD where nothing
        is, weighing heard_pad_weight.

        denominators: {"text": ..., "heard": ..., "seen": ...} divide the weighted sums instead of this
        batch's own sums of weights (a sharded run passes the whole global batch's share,
        so that the mean over processes is the mean over the global batch)."""
        out = out if out is not None else self(blocks)
        denominators = denominators or {}
        targets = blocks.out_text.flatten()
        text = F.cross_entropy(out.text_logits.flatten(0, -2), targets, reduction="none")
        weights = word_weights(blocks.out_text, word_weight, reply_weight, decision_ids, values,
                               value_weight).flatten()
        weights = weights.to(text.dtype)
        text = (text * weights).sum() / denominators.get("text", weights.sum())
        mel = self.mel_head.loss(out.hidden, blocks.out_audio, out.mel_logits)
        total = text_weight * text + mel_weight * mel + out.aux_loss
        losses = {"text": text.detach(), "mel": mel.detach(), "aux": out.aux_loss.detach()}
        # The two dense heads, the heard words and the seen ones: (name, weight, logits, targets, flag).
        for name, weight, logits, targets, head in (
                ("heard", heard_weight, out.heard_logits, blocks.heard_text, "heard_head"),
                ("seen", seen_weight, out.seen_logits, blocks.seen_text, "seen_head")):
            if weight <= 0:
                continue
            if logits is None:
                raise ValueError(f"{name}_weight > 0 needs a model with cfg.model.{head}=True")
            ce = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none")
            w = dense_weights(targets, heard_pad_weight).flatten().to(ce.dtype)
            dense = (ce * w).sum() / denominators.get(name, w.sum())
            total = total + weight * dense
            losses[name] = dense.detach()
        return {"loss": total, **losses}
