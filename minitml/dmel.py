"""dMel: audio as 4-bit tokens, and back.

The interaction model hears and speaks through *dMel* (discretised log-mel):

    wave (16 kHz mono)
      -> STFT magnitude (n_fft 1024, Hann window 800 = 50 ms, hop 200 = 12.5 ms)
      -> 80 mel filters (Slaney scale and normalisation, 80-7600 Hz)
      -> log10, clamped to [-7, 2]
      -> each of the 80 channels snaps to the nearest of 16 centres -7.0, -6.4, ..., 2.0
    = a (frames, 80) grid of integers in [0, 16): 4 bits per channel, 80 frames per second.

No codec is trained: decoding a token is a table lookup of its centre, and a
waveform comes back through a vocoder (here Griffin-Lim on the mel, via the
filterbank's pseudo-inverse). Inside the model, a frame enters as a *bag of
embeddings* (one small table per channel, summed) and leaves through a head that
predicts all 80 channels of a frame in parallel, each a 16-way choice.

    dmel = DMel(get_config("tiny").audio)
    tokens = dmel.encode(wave)       # (frames, 80) int64, frames = len(wave) // 200
    log_mel = dmel.decode(tokens)    # (frames, 80) float, the bin centres
    audio = dmel.vocode(tokens)      # (frames * 200,) float waveform
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from minitml.config import AudioConfig


# ----------------------------------------------------------------------------
# The mel filterbank (Slaney scale, Slaney normalisation)
# ----------------------------------------------------------------------------
def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    f = torch.as_tensor(f, dtype=torch.float64)
    linear = f / (200.0 / 3.0)  # 1000 Hz -> 15 mel
    log = 15.0 + torch.log(f.clamp_min(1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(f < 1000.0, linear, log)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(m, dtype=torch.float64)
    linear = m * (200.0 / 3.0)
    log = 1000.0 * torch.exp((m - 15.0) * (math.log(6.4) / 27.0))
    return torch.where(m < 15.0, linear, log)


def mel_filterbank(cfg: AudioConfig) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) matrix: STFT magnitudes @ filterbank = mel energies.

    Filter i is a triangle rising from edge i to its peak at edge i+1 and falling
    to edge i+2, where the n_mels + 2 edges are evenly spaced in mel between
    f_min and f_max. Slaney normalisation scales each triangle by 2 / its width
    in Hz, so every filter has the same area.
    """
    n_freqs = cfg.n_fft // 2 + 1
    freqs = torch.linspace(0, cfg.sample_rate / 2, n_freqs, dtype=torch.float64)  # (n_freqs,)
    edges_mel = torch.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2,
                               dtype=torch.float64)
    edges = mel_to_hz(edges_mel)  # (n_mels + 2,) in Hz
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # each (n_mels,)
    f = freqs[:, None]  # (n_freqs, 1)
    rising = (f - lower) / (centre - lower)  # (n_freqs, n_mels)
    falling = (upper - f) / (upper - centre)
    triangles = torch.clamp(torch.minimum(rising, falling), min=0.0)
    area_norm = 2.0 / (upper - lower)  # Slaney: equal area per filter
    return (triangles * area_norm).to(torch.float32)


# ----------------------------------------------------------------------------
# Checking audio
# ----------------------------------------------------------------------------
def check_wave(wave, cfg: AudioConfig, sample_rate: int | None = None) -> torch.Tensor:
    """Return `wave` as a float32 (T,) tensor, or raise a ValueError saying what is wrong."""
    if isinstance(wave, np.ndarray):
        wave = torch.from_numpy(wave)
    if not isinstance(wave, torch.Tensor):
        raise ValueError(f"expected audio as a torch tensor or numpy array, got {type(wave).__name__}")
    if sample_rate is not None and sample_rate != cfg.sample_rate:
        raise ValueError(
            f"expected audio at {cfg.sample_rate} Hz, got {sample_rate} Hz; resample it first "
            f"with minitml.wav.resample(wave, {sample_rate}, {cfg.sample_rate})"
        )
    if wave.dim() != 1:
        hint = ""
        if wave.dim() == 2 and min(wave.shape) <= 8:
            n_ch = min(wave.shape)
            hint = f" ({n_ch} channels: mix down with wave.mean(dim={wave.shape.index(n_ch)}))"
        raise ValueError(f"expected mono audio of shape (T,), got shape {tuple(wave.shape)}{hint}")
    if not wave.is_floating_point():
        scale = {torch.int16: "32768", torch.int32: "2147483648", torch.uint8: "128 after -128"}
        raise ValueError(
            f"expected float samples in [-1, 1], got {wave.dtype}; convert integer PCM first "
            f"(divide by {scale.get(wave.dtype, 'its full-scale value')})"
        )
    min_len = cfg.win_length
    if wave.numel() < min_len:
        raise ValueError(
            f"audio too short: got {wave.numel()} samples, need at least one analysis window "
            f"of {min_len} samples ({1000 * min_len / cfg.sample_rate:.0f} ms)"
        )
    peak = wave.abs().max().item()  # one pass: NaN and inf propagate into the max
    if not math.isfinite(peak):
        bad = (~torch.isfinite(wave)).sum().item()
        raise ValueError(f"audio contains {bad} NaN or infinite samples")
    if peak > 4.0:
        raise ValueError(
            f"expected float samples in about [-1, 1], got a peak of {peak:.1f}; this looks like "
            f"integer PCM stored as float: divide by 32768"
        )
    return wave.float()


# ----------------------------------------------------------------------------
# Encoder / decoder / vocoder
# ----------------------------------------------------------------------------
class DMel:
    """The dMel tokenizer for one AudioConfig (no learned weights)."""

    def __init__(self, cfg: AudioConfig):
        self.cfg = cfg
        self.filterbank = mel_filterbank(cfg)  # (513, 80)
        self.window = torch.hann_window(cfg.win_length)  # periodic Hann, 800 samples
        # Bin centres -7.0, -6.4, ..., 2.0, computed in float64 then rounded once.
        self.centres = torch.tensor(
            [round(cfg.log_min + i * cfg.bin_step, 10) for i in range(cfg.n_bins)]
        )  # (16,)
        self._inverse_filterbank = None

    # -- analysis --------------------------------------------------------------
    def stft(self, wave: torch.Tensor, keep_last: bool = False) -> torch.Tensor:
        """(T,) -> complex (n_fft // 2 + 1, T // hop) STFT with centred frames."""
        c = self.cfg
        spec = torch.stft(
            wave, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
            window=self.window.to(wave.device), center=True, pad_mode="reflect",
            return_complex=True,
        )  # (513, T // hop + 1): frame t is centred on sample t * hop
        # Keep T // hop frames so that 200 ms (3200 samples) gives exactly 16 frames.
        return spec if keep_last else spec[:, : wave.shape[-1] // c.hop_length]

    def log_mel(self, wave, sample_rate: int | None = None) -> torch.Tensor:
        """(T,) waveform -> (T // hop, n_mels) log10-mel, clamped to [log_min, log_max]."""
        wave = check_wave(wave, self.cfg, sample_rate)
        magnitude = self.stft(wave, keep_last=True).abs()  # (513, frames + 1), not power
        mel = magnitude.mT @ self.filterbank.to(wave.device)  # (frames + 1, 80)
        mel = mel[: wave.shape[-1] // self.cfg.hop_length]  # (frames, 80)
        return torch.log10(mel.clamp_min(self.cfg.log_floor)).clamp(self.cfg.log_min,
                                                                    self.cfg.log_max)

    def quantize(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log10-mel -> index of the nearest bin centre, int64 in [0, n_bins)."""
        c = self.cfg
        x = log_mel.clamp(c.log_min, c.log_max)
        return torch.round((x - c.log_min) / c.bin_step).long().clamp(0, c.n_bins - 1)

    def encode(self, wave, sample_rate: int | None = None, causal: bool = False) -> torch.Tensor:
        """(T,) float waveform at cfg.sample_rate -> (T // hop, n_mels) int64 tokens.

        causal=True uses the streaming framing (see `causal_log_mel`): what the
        interaction model hears, identical to feeding 200 ms chunks to `DMelStream`.
        """
        if causal:
            return self.quantize(self.causal_log_mel(wave, sample_rate))
        return self.quantize(self.log_mel(wave, sample_rate))

    # -- streaming ---------------------------------------------------------------
    @property
    def causal_history(self) -> int:
        """Past samples a causal frame needs before its hop: 712 for the standard recipe.

        A centred frame t looks at samples [200t - 400, 200t + 400): 25 ms into the
        future, which a live microphone has not delivered yet. A *causal* frame t looks
        at [200t - 600, 200t + 200), the window that ends with its own hop, so 200 ms of
        audio gives its 16 frames with nothing from the future. It equals the centred
        frame t - 1: the price of streaming is 12.5 ms of delay, nothing else.
        (torch.stft centres the 800-sample window inside the 1024-sample FFT frame,
        leaving (1024 - 800) / 2 = 112 zeros each side; hence 600 + 112.)
        """
        c = self.cfg
        return (c.win_length - c.hop_length) + (c.n_fft - c.win_length) // 2

    def _causal_frames(self, padded: torch.Tensor) -> torch.Tensor:
        """STFT magnitude -> log-mel of an already padded signal, uncentred frames."""
        c = self.cfg
        spec = torch.stft(padded, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                          window=self.window.to(padded.device), center=False, return_complex=True)
        mel = spec.abs().mT @ self.filterbank.to(padded.device)  # (frames, 80)
        return torch.log10(mel.clamp_min(c.log_floor)).clamp(c.log_min, c.log_max)

    def causal_log_mel(self, wave, sample_rate: int | None = None) -> torch.Tensor:
        """(T,) -> (T // hop, n_mels) log10-mel with causal frames (zeros before the start)."""
        wave = check_wave(wave, self.cfg, sample_rate)
        c = self.cfg
        n = wave.shape[0] // c.hop_length * c.hop_length  # whole hops only
        tail = (c.n_fft - c.win_length) // 2  # zeros that only meet the window's zero part
        padded = F.pad(wave[:n], (self.causal_history, tail))
        return self._causal_frames(padded)

    # -- synthesis -------------------------------------------------------------
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., n_mels) tokens -> (..., n_mels) log10-mel: each token's bin centre."""
        tokens = torch.as_tensor(tokens)
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"expected integer dMel tokens, got {tokens.dtype}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.n_bins):
            raise ValueError(
                f"dMel tokens must lie in [0, {self.cfg.n_bins}), got "
                f"[{tokens.min().item()}, {tokens.max().item()}]"
            )
        if tokens.shape[-1] != self.cfg.n_mels:
            raise ValueError(f"expected {self.cfg.n_mels} channels last, got shape "
                             f"{tuple(tokens.shape)}")
        return self.centres.to(tokens.device)[tokens.long()]

    def mel_to_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(frames, 80) log10-mel -> (513, frames) linear magnitude via the pseudo-inverse."""
        if self._inverse_filterbank is None:
            self._inverse_filterbank = torch.linalg.pinv(self.filterbank.double()).float()  # (80, 513)
        mel = torch.pow(10.0, log_mel)  # undo log10
        return (mel @ self._inverse_filterbank.to(mel.device)).clamp_min(0.0).T  # (513, frames)

    def griffin_lim(self, magnitude: torch.Tensor, n_iter: int = 32, momentum: float = 0.99,
                    seed: int = 0) -> torch.Tensor:
        """(513, frames) magnitude -> (frames * hop,) waveform whose STFT has that magnitude.

        Griffin-Lim alternates between the two things we know: the magnitude
        (keep it, take the phase of the current estimate) and consistency (a
        spectrogram must be the STFT of some signal: istft, then stft again).
        The momentum term is the "fast Griffin-Lim" of Perraudin et al. (2013).
        """
        c = self.cfg
        frames = magnitude.shape[1]
        length = frames * c.hop_length
        window = self.window.to(magnitude.device)
        g = torch.Generator().manual_seed(seed)
        phase = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=g)).to(magnitude.device)

        def istft(spec):
            # Pad one frame back on: stft() above dropped the final centred frame.
            spec = F.pad(spec, (0, 1))
            return torch.istft(spec, n_fft=c.n_fft, hop_length=c.hop_length,
                               win_length=c.win_length, window=window, center=True,
                               length=length)

        previous = torch.zeros_like(phase)
        for _ in range(n_iter):
            rebuilt = self.stft(istft(magnitude * phase))  # (513, frames), consistent
            accelerated = rebuilt + momentum * (rebuilt - previous)
            previous = rebuilt
            phase = accelerated / accelerated.abs().clamp_min(1e-8)
        return istft(magnitude * phase)

    def vocode(self, tokens: torch.Tensor, n_iter: int = 32) -> torch.Tensor:
        """(frames, 80) tokens -> (frames * hop,) waveform."""
        return self.griffin_lim(self.mel_to_magnitude(self.decode(tokens)), n_iter=n_iter)


# ----------------------------------------------------------------------------
# Inside the model: bag-of-embeddings in, per-channel logits out
# ----------------------------------------------------------------------------
class DMelEmbedding(nn.Module):
    """k dMel frames (one audio token) -> one d_model vector.

    Each channel c has its own table of n_bins vectors (embed_dim each); a frame's
    vector is the sum of its 80 looked-up vectors (a "bag of embeddings"); the k
    frame vectors of a token are concatenated and projected to d_model.
    """

    def __init__(self, cfg: AudioConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        # All 80 tables stored as one (80 * 16, embed_dim) matrix; channel c uses rows c*16 ...
        self.tables = nn.Embedding(cfg.n_mels * cfg.n_bins, cfg.embed_dim)
        self.proj = nn.Linear(cfg.frames_per_token * cfg.embed_dim, d_model, bias=False)
        self.register_buffer("offsets", torch.arange(cfg.n_mels) * cfg.n_bins, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., k, n_mels) int64 -> (..., d_model)."""
        c = self.cfg
        lead = tokens.shape[:-2]
        ids = (tokens + self.offsets).reshape(-1, c.n_mels)  # (N*k, 80) rows into the tables
        frames = F.embedding_bag(ids, self.tables.weight, mode="sum")  # (N*k, embed_dim)
        frames = frames.view(*lead, c.frames_per_token * c.embed_dim)  # (..., k*embed_dim)
        return self.proj(frames)  # (..., d_model)


class DMelHead(nn.Module):
    """d_model vector -> logits for k frames x 80 channels x 16 bins, all in parallel.

    One of the interaction model's two mel heads (the other is `minitml.flow.FlowHead`).
    Both answer `logits`, `sample` and `loss`, so the model and the generator call a head
    without asking which one it is.
    """

    keeps_torch_init = False  # the model's N(0, 0.02) initialises the projection

    def __init__(self, cfg: AudioConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(d_model, cfg.frames_per_token * cfg.n_mels * cfg.n_bins, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d_model) -> (..., k, n_mels, n_bins) logits."""
        c = self.cfg
        return self.proj(h).view(*h.shape[:-1], c.frames_per_token, c.n_mels, c.n_bins)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d_model) -> (..., k, n_mels, n_bins): the logits the frames are drawn from."""
        return self(h)

    def sample(self, h: torch.Tensor, temperature: float = 0.0,
               rng: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., d_model) -> ((..., k, n_mels) bins, on h's device; the logits they came from).

        The bins are picked on the CPU, where `rng` lives, so a model on a GPU draws the
        same frames as on the CPU."""
        logits = self(h)
        return self.pick(logits.cpu(), temperature, rng).to(h.device), logits

    def loss(self, h: torch.Tensor, tokens: torch.Tensor,
             logits: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of the target bins (..., k, n_mels); logits: `logits(h)` if already at hand."""
        return self.cross_entropy(self(h) if logits is None else logits, tokens)

    @staticmethod
    def cross_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every (frame, channel): a 16-way choice each."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))

    @staticmethod
    def pick(logits: torch.Tensor, temperature: float = 0.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Pick one bin per channel: argmax at temperature 0, else sample."""
        if temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, dim=-1)
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return flat.view(probs.shape[:-1])


# ----------------------------------------------------------------------------
# Streaming: 200 ms in, tokens out; tokens in, 200 ms out
# ----------------------------------------------------------------------------
class DMelStream:
    """Encode a live stream chunk by chunk, exactly as `DMel.encode(causal=True)` would.

    It keeps the last `causal_history` samples of what it was fed; each chunk of
    hop-multiple length gives chunk_len // hop frames.
    """

    def __init__(self, dmel: DMel):
        self.dmel = dmel
        self.history = torch.zeros(dmel.causal_history)  # silence before the start

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """(n * hop,) samples -> (n, n_mels) tokens."""
        c = self.dmel.cfg
        if chunk.shape[-1] % c.hop_length:
            raise ValueError(f"stream chunks must hold whole {c.hop_length}-sample hops, "
                             f"got {chunk.shape[-1]} samples")
        tail = (c.n_fft - c.win_length) // 2
        padded = torch.cat([self.history, chunk, chunk.new_zeros(tail)])
        self.history = padded[-(tail + self.dmel.causal_history):-tail].clone()
        return self.dmel.quantize(self.dmel._causal_frames(padded))


class StreamVocoder:
    """Tokens in, audio out, 200 ms at a time: Griffin-Lim over a short context.

    Each call vocodes the `context` previous frames together with the new ones
    (the phase of the new frames then continues from what was already played)
    and returns only the new samples. A toy vocoder: clicks at chunk edges are
    possible; it is here so a live session can be heard.
    """

    def __init__(self, dmel: DMel, context: int = 6, n_iter: int = 12):
        self.dmel, self.context, self.n_iter = dmel, context, n_iter
        self.previous = torch.zeros(0, dmel.cfg.n_mels, dtype=torch.long)

    def push(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, n_mels) tokens -> (n * hop,) samples."""
        frames = torch.cat([self.previous, tokens.cpu()])  # (context + n, 80)
        self.previous = frames[-self.context:] if self.context else frames[:0]
        if bool((tokens == 0).all()):  # silence (every channel at the floor): skip the work
            return torch.zeros(tokens.shape[0] * self.dmel.cfg.hop_length)
        audio = self.dmel.griffin_lim(self.dmel.mel_to_magnitude(self.dmel.decode(frames)),
                                      n_iter=self.n_iter)
        # Playback clips at full scale (loud babble from an untrained model would not).
        return audio[-tokens.shape[0] * self.dmel.cfg.hop_length:].clamp(-1.0, 1.0)
