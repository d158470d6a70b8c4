"""The mel heads: how a hidden state becomes the k dMel frames an output token says.

Two heads answer one interface (`MelHead`), so the model and the generator never ask
which one they hold:
- `minitml.dmel.DMelHead`: logits over the 16 bins of each of the 80 channels of each
  of the k frames, trained by cross-entropy, sampled (or argmax-ed) per channel;
- `FlowHead` (below): rectified flow, a small MLP that walks from noise to the frames
  in a few Euler steps, trained by regressing the velocity.
Notebook 04b trains both on a toy echo task.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from minitml.config import AudioConfig


class MelHead(Protocol):
    """What the model and the generator ask of a mel head; `DMelHead` and `FlowHead` answer.

    h is the hidden state of predictor positions (..., d); tokens and frames are dMel
    bins (..., k, 80).
    """

    keeps_torch_init: bool  # True: the model's N(0, 0.02) init leaves the head's weights alone

    def logits(self, h: torch.Tensor) -> torch.Tensor | None:
        """The logits (..., k, 80, 16) the frames are drawn from, or None (a flow has none)."""

    def sample(self, h: torch.Tensor, temperature: float,
               rng: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(frames (..., k, 80) on h's device, the logits they came from or None); rng on the CPU."""

    def loss(self, h: torch.Tensor, tokens: torch.Tensor,
             logits: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar training loss against the target bins; logits: what `logits(h)` gave, if any."""


class FlowHead(nn.Module):
    """Generate the k mel frames of an output token from its hidden state by flow matching.

    Rectified flow: draw noise x0, let x1 be the target mel (scaled to about
    [-1, 1]), and train v(x_t, t, h) to predict x1 - x0 at x_t = (1 - t) x0 + t x1.
    Sampling walks from noise along v in `steps` Euler steps; the result is
    snapped back to dMel bins so it can be fed back like any other output.
    """

    keeps_torch_init = True  # the MLP keeps PyTorch's default (fan-in) init

    def __init__(self, cfg: AudioConfig, d_model: int, hidden: int, steps: int):
        super().__init__()
        self.cfg, self.steps = cfg, steps
        self.n = cfg.frames_per_token * cfg.n_mels  # k * 80 numbers per token
        self.net = nn.Sequential(
            nn.Linear(self.n + 1 + d_model, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, self.n),
        )
        self.centre = (cfg.log_max + cfg.log_min) / 2  # -2.5
        self.scale = (cfg.log_max - cfg.log_min) / 2  # 4.5

    def velocity(self, x_t, t, h):
        """x_t (..., n), t (..., 1), h (..., d) -> (..., n)."""
        return self.net(torch.cat([x_t, t, h], dim=-1))

    def logits(self, h: torch.Tensor) -> None:
        """None: a flow head draws its frames without logits."""
        return None

    def loss(self, h: torch.Tensor, tokens: torch.Tensor, logits: None = None) -> torch.Tensor:
        """Mean squared velocity error; h (..., d), tokens (..., k, 80); logits is unused."""
        centres = torch.linspace(self.cfg.log_min, self.cfg.log_max, self.cfg.n_bins,
                                 device=h.device)
        x1 = (centres[tokens].flatten(-2) - self.centre) / self.scale  # (..., n)
        x0 = torch.randn_like(x1)
        t = torch.rand(*x1.shape[:-1], 1, device=h.device)
        x_t = (1 - t) * x0 + t * x1
        return F.mse_loss(self.velocity(x_t, t, h), x1 - x0)

    @torch.no_grad()
    def sample(self, h: torch.Tensor, temperature: float = 0.0, rng: torch.Generator | None = None,
               noise_scale: float = 1.0) -> tuple[torch.Tensor, None]:
        """h (..., d) -> (tokens (..., k, 80), None).

        temperature is the discrete head's and is not used: a flow's randomness is its
        starting noise, drawn from `rng` on the CPU. noise_scale 0 starts from the mean
        (greedy-like)."""
        x = noise_scale * torch.randn(*h.shape[:-1], self.n, generator=rng).to(h.device)
        for i in range(self.steps):
            t = torch.full((*h.shape[:-1], 1), i / self.steps, device=h.device)
            x = x + self.velocity(x, t, h) / self.steps
        log_mel = (x * self.scale + self.centre).clamp(self.cfg.log_min, self.cfg.log_max)
        tokens = torch.round((log_mel - self.cfg.log_min) / self.cfg.bin_step).long()
        return tokens.view(*h.shape[:-1], self.cfg.frames_per_token, self.cfg.n_mels), None
