"""The micro-turn block: how 200 ms of seeing, hearing and speaking become positions.

Every micro-turn t is one fixed block of L positions (docs/design.md follows one through the model):

    [ P patches | A user audio | X text in | A model out ]      L = P + A + X + A
      the frame   200 ms heard    tool       what the model says
      seen        (k dMel frames  results,   in the next 200 ms:
                  per token)      typed text  a word id + k dMel frames each

A whole conversation is the blocks of its micro-turns one after another, so the
sequence is `input 0, output 0, input 1, output 1, ...`. Nothing marks a turn
boundary: silence is simply PAD words and quiet dMel frames.

Time, exactly. Input block t holds what was seen and heard during
[200t, 200(t+1)) ms. Output block t can only be computed once input t has
arrived, so it is *played* during [200(t+1), 200(t+2)) ms. When a recorded
conversation is packed for training, the assistant's channel is therefore
shifted one micro-turn against the user's: output block t holds the assistant's
audio and words from [200(t+1), 200(t+2)). `pack_conversation` does exactly
this, and a test checks that no output depends on input from its own playback
interval.

Prediction. The model is autoregressive over positions: the hidden state at a
position predicts the content of the next one. Only model-out contents are
predicted, so the *predictor* of output token j of block t is the position just
before it: the last text-in slot for j = 0, the model-out slot j - 1 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from minitml.config import Config
from minitml.protocol import PAD  # the word id of "no word": silence, an empty text-in slot

# Stream types: a learned vector added to every position says which stream it carries.
PATCH, USER_AUDIO, TEXT_IN, MODEL_OUT = 0, 1, 2, 3
STREAM_NAMES = {PATCH: "patch", USER_AUDIO: "user audio", TEXT_IN: "text in", MODEL_OUT: "model out"}


@dataclass(frozen=True)
class BlockLayout:
    """Offsets of one micro-turn block; every number is a position inside the block."""

    n_patches: int  # P
    n_audio: int  # A: audio tokens per micro-turn (user and model alike)
    n_text_in: int  # X
    frames_per_token: int  # k

    @staticmethod
    def from_config(cfg: Config) -> BlockLayout:
        return BlockLayout(cfg.vision.n_patches, cfg.audio.tokens_per_micro_turn,
                           cfg.model.text_in_slots, cfg.audio.frames_per_token)

    @property
    def n_inputs(self) -> int:
        return self.n_patches + self.n_audio + self.n_text_in  # P + A + X

    @property
    def length(self) -> int:
        return self.n_inputs + self.n_audio  # L

    @property
    def out_start(self) -> int:
        return self.n_inputs  # first model-out position

    def stream_types(self) -> torch.Tensor:
        """(L,) stream type of each position of a block."""
        return torch.tensor([PATCH] * self.n_patches + [USER_AUDIO] * self.n_audio
                            + [TEXT_IN] * self.n_text_in + [MODEL_OUT] * self.n_audio)

    def predictor_offsets(self) -> torch.Tensor:
        """(A,) position (in the block) whose hidden state predicts output token j."""
        return torch.arange(self.n_audio) + self.out_start - 1

    def positions(self, turn: int) -> torch.Tensor:
        """(L,) absolute positions of micro-turn `turn`."""
        return torch.arange(self.length) + turn * self.length


@dataclass
class Blocks:
    """A batch of conversations, micro-turn by micro-turn (B conversations, T micro-turns).

    Every tensor is (B, T, ...). The model embeds these into a (B, T * L, d) sequence.
    """

    patches: torch.Tensor  # (B, T, P, 3*40*40) float in [0, 1]
    user_audio: torch.Tensor  # (B, T, A, k, 80) dMel tokens heard
    text_in: torch.Tensor  # (B, T, X) word ids, PAD when empty
    out_text: torch.Tensor  # (B, T, A) monologue word ids, PAD when silent
    out_audio: torch.Tensor  # (B, T, A, k, 80) dMel tokens the model says
    heard_text: torch.Tensor  # (B, T, A) the user word that ends in each heard token, else PAD:
    #                           the heard head's target; with heard_feedback, also read back
    #                           into output slot j (the truth in training, the head's own
    #                           words in a session)
    seen_text: torch.Tensor  # (B, T, P) the word for what each patch shows (the lamp's colour,
    #                          the shape, the object held up), else PAD: the seen head's target

    @property
    def batch_size(self) -> int:
        return self.user_audio.shape[0]

    @property
    def n_turns(self) -> int:
        return self.user_audio.shape[1]

    def to(self, device) -> Blocks:
        return Blocks(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def turns(self, start: int, stop: int) -> Blocks:
        """Micro-turns [start, stop) of every conversation."""
        return Blocks(**{f.name: getattr(self, f.name)[:, start:stop] for f in fields(self)})

    @staticmethod
    def cat(items: list[Blocks], dim: int = 0) -> Blocks:
        """Join batches: dim=0 stacks conversations, dim=1 appends micro-turns."""
        return Blocks(**{f.name: torch.cat([getattr(b, f.name) for b in items], dim=dim)
                         for f in fields(Blocks)})


def empty_blocks(cfg: Config, n_turns: int, batch_size: int = 1) -> Blocks:
    """Silence, darkness and PAD everywhere: a batch to fill in."""
    lay = BlockLayout.from_config(cfg)
    B, T, A, k = batch_size, n_turns, lay.n_audio, lay.frames_per_token
    return Blocks(
        patches=torch.zeros(B, T, lay.n_patches, cfg.vision.patch_dim),
        user_audio=torch.zeros(B, T, A, k, cfg.audio.n_mels, dtype=torch.long),
        text_in=torch.full((B, T, lay.n_text_in), PAD, dtype=torch.long),
        out_text=torch.full((B, T, A), PAD, dtype=torch.long),
        out_audio=torch.zeros(B, T, A, k, cfg.audio.n_mels, dtype=torch.long),
        heard_text=torch.full((B, T, A), PAD, dtype=torch.long),
        seen_text=torch.full((B, T, lay.n_patches), PAD, dtype=torch.long),
    )


def random_blocks(cfg: Config, n_turns: int, batch_size: int = 1, seed: int = 0) -> Blocks:
    """Random content of the right shapes and ranges (for tests and benchmarks)."""
    g = torch.Generator().manual_seed(seed)
    b = empty_blocks(cfg, n_turns, batch_size)
    V, n_bins = cfg.model.text_vocab_size, cfg.audio.n_bins
    return Blocks(
        patches=torch.rand(b.patches.shape, generator=g),
        user_audio=torch.randint(0, n_bins, b.user_audio.shape, generator=g),
        text_in=torch.randint(0, V, b.text_in.shape, generator=g),
        out_text=torch.randint(0, V, b.out_text.shape, generator=g),
        out_audio=torch.randint(0, n_bins, b.out_audio.shape, generator=g),
        heard_text=torch.randint(0, V, b.heard_text.shape, generator=g),
        seen_text=torch.randint(0, V, b.seen_text.shape, generator=g),
    )


def output_slot(cfg: Config, start_s: float) -> int:
    """The output token (counted over the whole conversation, A per micro-turn) whose
    target is a monologue word starting at `start_s`: the 50 ms slot the word starts in,
    shifted one micro-turn earlier, because output t is played during input t + 1.
    Negative for words in the first 200 ms, which are never targets."""
    A = cfg.audio.tokens_per_micro_turn
    slot_s = cfg.audio.micro_turn_ms / 1000 / A
    return int(start_s / slot_s + 1e-9) - A


def pack_conversation(
    cfg: Config,
    user_tokens: torch.Tensor,
    model_tokens: torch.Tensor,
    model_words: list[tuple[int, float]] | None = None,
    frames: torch.Tensor | None = None,
    text_in: dict[int, list[int]] | None = None,
    user_words: list[tuple[int, float]] | None = None,
    seen: torch.Tensor | None = None,
) -> Blocks:
    """One recorded conversation -> Blocks (B = 1), with the output shifted one micro-turn.

    user_tokens:  (F, 80) causal dMel of what the user side heard, F frames at 80 per second
    model_tokens: (F, 80) causal dMel of what the assistant said, on the same clock
    model_words:  [(word id, start time in s)] of the assistant's monologue
    frames:       (T, P, 3*p*p) patchified video, one frame per micro-turn (None: dark)
    text_in:      {micro-turn: [word ids]} text arriving in that micro-turn (at most X)
    user_words:   [(word id, end time in s)] of the user, for the heard head's targets
    seen:         (T, P) word ids of what each patch shows, PAD for nothing (the seen head's targets)

    T = F // 16 micro-turns. Output block t gets the assistant's frames and words of
    [200(t+1), 200(t+2)) ms, because that is when output t is played; the assistant's
    first 200 ms is never a target (nothing has been heard yet when it plays).
    """
    lay = BlockLayout.from_config(cfg)
    fpt = cfg.audio.frames_per_micro_turn  # 16
    k, A = lay.frames_per_token, lay.n_audio
    if user_tokens.shape != model_tokens.shape:
        raise ValueError(f"user and model tokens must share a clock, got {tuple(user_tokens.shape)} "
                         f"and {tuple(model_tokens.shape)}")
    T = user_tokens.shape[0] // fpt
    b = empty_blocks(cfg, T)
    b.user_audio[0] = user_tokens[: T * fpt].reshape(T, A, k, -1)  # input t: [200t, 200(t+1))
    shifted = model_tokens[fpt: T * fpt]  # from 200 ms on
    b.out_audio[0, : T - 1] = shifted.reshape(T - 1, A, k, -1)  # output t: [200(t+1), 200(t+2))
    slot_s = cfg.audio.micro_turn_ms / 1000 / A  # 50 ms per output token
    for word, start in model_words or []:
        slot = output_slot(cfg, start)
        if 0 <= slot < T * A:
            b.out_text[0, slot // A, slot % A] = word
    if frames is not None:
        b.patches[0] = frames[:T]
    for turn, words in (text_in or {}).items():
        if len(words) > lay.n_text_in:
            raise ValueError(f"micro-turn {turn} has {len(words)} text-in words, the layout holds "
                             f"{lay.n_text_in}; spread them over several micro-turns")
        if turn < T:
            b.text_in[0, turn, : len(words)] = torch.tensor(words)
    for word, end in user_words or []:  # heard token j of input t covers [200t + 50j, +50) ms
        slot = int(end / slot_s + 1e-9)  # the token that hears the word's last sound (no shift)
        if 0 <= slot < T * A:  # two words ending in one 50 ms token: the second is kept
            b.heard_text[0, slot // A, slot % A] = word
    if seen is not None:
        b.seen_text[0] = seen[:T]
    return b
