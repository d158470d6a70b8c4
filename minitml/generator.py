"""The interaction model, streamed: one micro-turn in, one micro-turn out, and nothing else.

    generator = Generator(model)
    blk, heard = generator.hear(wave, patches, slots)  # 1. the input block of micro-turn t
    h = generator.prefill(blk)                         # 2. into the KV cache, in one call
    generator.speak(blk, h)                            # 3. A output tokens, each fed back
    audio = generator.play(blk)                        # 4. the 16 frames said -> 3200 samples

The four steps are the four phases of a micro-turn (docs/design.md follows one
through them). `Generator` knows no clock, no deadline and no events: the real-time
`minitml.session.Session` wraps it in those. Everything it remembers of a
conversation is one `GeneratorState`; `reset()` starts a new one, so two generators
with the same seed, given the same inputs, say the same thing.

The text sampler is a parameter: any function `(V,) logits, rng=... -> word id`.
The default is `greedy_word`; `sample_word` samples at a temperature; a script
(`minitml.background.script_monologue`) can stand in for either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minitml.dmel import DMel, DMelStream, StreamVocoder
from minitml.model import InteractionModel, KVCache, dense_words
from minitml.stream import PAD, Blocks, empty_blocks


def greedy_word(logits: torch.Tensor, speak_threshold: float = 0.5,
                rng: torch.Generator | None = None) -> int:
    """Greedy decoding of one monologue slot, (V,) logits -> word id, in two questions.

    "Speak now?" is yes when P(speak) = 1 - P(PAD) exceeds speak_threshold (one half:
    the likelier choice); only then "which word?" picks the most likely non-PAD word.
    A plain argmax over all words splits the "yes" between "sure", "okay", "well", ...
    and lets PAD win even when speaking is the likelier choice: at a turn end P(speak)
    may be 0.7 while no single word has 0.3. A lower threshold makes a readier speaker.
    rng is not used (greedy draws nothing); every sampler takes it.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    if 1 - probs[PAD] <= speak_threshold:
        return PAD
    return int(probs[PAD + 1:].argmax()) + PAD + 1


def calibrated_threshold(word_weight: float) -> float:
    """The speak threshold that undoes a training word weight w: w / (1 + w).

    Trained with word targets weighing w against PAD targets, the model's probabilities
    are not the data's: the weighted cross-entropy is least where q(word) is proportional
    to w * p(word), so the odds of speaking, q(speak) / q(PAD), come out w times the
    data's. "Speak when the data's P(speak) exceeds one half" is then "speak when
    q(speak) > w q(PAD)", that is q(speak) > w / (1 + w): 0.5 for w = 1, 0.83 for w = 5.
    (A reply's first word weighs more again, reply_weight; its odds keep that much
    more, so the calibrated model stays a little readier to answer than to interrupt.)
    """
    return word_weight / (1 + word_weight)


def sample_word(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                rng: torch.Generator | None = None) -> int:
    """One word id drawn from softmax(logits / temperature), (V,) -> int; top_k > 0 keeps
    only the k likeliest words."""
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float().cpu(), dim=-1)
    return int(torch.multinomial(probs, 1, generator=rng))


@dataclass
class GeneratorState:
    """All a generator remembers of one conversation."""

    caches: list[KVCache]  # one ring of the last W positions per layer
    pending: torch.Tensor | None  # (1, 1, d) the last output token said, not yet in the cache
    next_position: int  # the absolute position of the next token into the model
    listener: DMelStream  # the tail of the audio heard, for causal dMel frames
    vocoder: StreamVocoder  # the frames said lately, so the phase continues
    rng: torch.Generator  # every random draw: words (when sampled) and dMel frames


class Generator:
    def __init__(self, model: InteractionModel, sample_text=greedy_word, mel_temperature: float = 0.0,
                 seed: int = 0):
        self.model = model
        self.cfg = model.cfg
        self.layout = model.layout
        self.device = model.text_head.weight.device
        self.sample_text = sample_text  # (V,) logits, rng=... -> word id
        self.mel_temperature = mel_temperature
        self.seed = seed
        self.dmel = DMel(self.cfg.audio)
        self.reset()

    def reset(self):
        """Forget everything: a new conversation."""
        self.state = GeneratorState(
            caches=self.model.new_cache(1, self.device), pending=None, next_position=0,
            listener=DMelStream(self.dmel), vocoder=StreamVocoder(self.dmel),
            rng=torch.Generator().manual_seed(self.seed))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, n, d) embeddings at the next n positions -> (1, n, d) hidden states, cached."""
        s = self.state
        positions = torch.arange(s.next_position, s.next_position + x.shape[1], device=self.device)
        s.next_position += x.shape[1]
        h, _ = self.model.run(x, positions, s.caches)
        return h

    # -- 1. hear ------------------------------------------------------------------------
    def hear(self, wave: torch.Tensor, patches: torch.Tensor,
             slots: list[int]) -> tuple[Blocks, torch.Tensor]:
        """(3200,) samples, (P, 3*40*40) patches and X text-in ids -> this micro-turn's block
        (B = T = 1, on the model's device; its outputs still PAD and silence) and the
        (16, 80) causal dMel frames heard."""
        A, k = self.layout.n_audio, self.layout.frames_per_token
        heard = self.state.listener.push(wave)  # (16, 80), no look-ahead
        blk = empty_blocks(self.cfg, 1)
        blk.patches[0, 0] = patches
        blk.user_audio[0, 0] = heard.view(A, k, -1)  # (A, k, 80)
        blk.text_in[0, 0] = torch.tensor(slots)
        return blk.to(self.device), heard

    # -- 2. prefill -----------------------------------------------------------------------
    def _inputs(self, blk: Blocks) -> torch.Tensor:
        """The pending output token, then the block's P + A + X inputs: (1, 1 + P+A+X, d)."""
        x = self.model.embed_inputs(blk.patches, blk.user_audio, blk.text_in)[:, 0]  # (1, P+A+X, d)
        if self.state.pending is not None:
            x = torch.cat([self.state.pending, x], dim=1)
        return x

    @torch.inference_mode()
    def prefill(self, blk: Blocks) -> torch.Tensor:
        """The input block into the cache in one call -> (1, 1, d), the predictor of output token 0.

        With heard_feedback it also writes what the heard head names at the block's A
        user-audio tokens into blk.heard_text, and with seen_feedback what the seen head names
        at its P patches into blk.seen_text, for the output slots to read back."""
        x = self._inputs(blk)
        h = self._forward(x)
        lay = self.layout
        first = x.shape[1] - lay.n_inputs  # the block's first patch, after the pending token
        if self.model.heard_embedding is not None:
            start = first + lay.n_patches
            logits = self.model.heard_head(h[:, start:start + lay.n_audio])  # (1, A, V)
            blk.heard_text[0, 0] = dense_words(logits[0], self.model.heard_pad_weight)
        if self.model.seen_embedding is not None:  # PAD weighed as in the heard loss
            logits = self.model.seen_head(h[:, first:first + lay.n_patches])  # (1, P, V)
            blk.seen_text[0, 0] = dense_words(logits[0], self.model.heard_pad_weight)
        return h[:, -1:]

    @torch.inference_mode()
    def prefill_silent(self, blk: Blocks):
        """Prefill, and say silence for the whole block (a catch-up step): the block's
        outputs stay PAD and quiet frames; one call, or two when the silent slots read
        back what was heard or seen."""
        if self.model.heard_embedding is not None or self.model.seen_embedding is not None:
            self.prefill(blk)
            x = None
        else:
            x = self._inputs(blk)
        outs = self.model.embed_outputs(blk.out_text, blk.out_audio, blk.heard_text,
                                        blk.seen_text)[:, 0]  # (1, A, d)
        self._forward(outs[:, :-1] if x is None else torch.cat([x, outs[:, :-1]], dim=1))
        self.state.pending = outs[:, -1:]  # enters the cache with the next input block

    # -- 3. speak -------------------------------------------------------------------------
    def _speak_one(self, h: torch.Tensor):
        """Hidden state (1, 1, d) of a predictor -> (word id, (k, 80) frames, (V,) text logits,
        (k, 80, 16) mel logits or None for a flow head)."""
        text_logits = self.model.text_logits(h)[0, 0]  # (V,)
        word = self.sample_text(text_logits, rng=self.state.rng)
        frames, mel_logits = self.model.mel_head.sample(h, self.mel_temperature, self.state.rng)
        return word, frames[0, 0], text_logits, None if mel_logits is None else mel_logits[0, 0]

    @torch.inference_mode()
    def speak(self, blk: Blocks, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A output tokens, one after another, each fed back before the next; they are written
        into the block's outputs -> the (A, V) text logits and (A, k, 80, 16) mel logits
        (None for a flow head) they were drawn from."""
        A = self.layout.n_audio
        text_logits, mel_logits = [], []
        for j in range(A):
            word, frames, t_logits, m_logits = self._speak_one(h)
            blk.out_text[0, 0, j] = word
            blk.out_audio[0, 0, j] = frames
            text_logits.append(t_logits)
            mel_logits.append(m_logits)
            emb = self.model.embed_outputs(blk.out_text[:, :, j:j + 1], blk.out_audio[:, :, j:j + 1],
                                           blk.heard_text[:, :, j:j + 1],
                                           blk.seen_text[:, :, j:j + 1])[:, 0]  # (1, 1, d)
            if j < A - 1:
                h = self._forward(emb)
            else:
                self.state.pending = emb  # enters the cache with the next input block
        return torch.stack(text_logits), torch.stack(mel_logits) if mel_logits[0] is not None else None

    # -- 4. play --------------------------------------------------------------------------
    @staticmethod
    def frames_said(blk: Blocks) -> torch.Tensor:
        """(A * k, 80) the dMel frames of the block's outputs, on the CPU."""
        out = blk.out_audio[0, 0]  # (A, k, 80)
        return out.reshape(-1, out.shape[-1]).cpu()

    def play(self, blk: Blocks) -> torch.Tensor:
        """The 16 frames said -> (3200,) samples, played during the next 200 ms."""
        return self.state.vocoder.push(self.frames_said(blk))
