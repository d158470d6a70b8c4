"""A session on one clock: what each micro-turn said, both channels, and a plot of them.

`Session.step` returns a `MicroTurnOutput`; `Session.run` collects them into a
`Timeline`, which lays the model's channel on the user's clock (output t is
played from 200(t+1) ms on) and draws both with their words and events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from minitml.protocol import Event


@dataclass
class MicroTurnOutput:
    turn: int  # t: this step heard [200t, 200(t+1)) ms and is played in the next 200 ms
    audio: torch.Tensor  # (3200,) float samples to play during [200(t+1), 200(t+2)) ms
    tokens: torch.Tensor  # (16, 80) the dMel frames said
    text_ids: torch.Tensor  # (A,) monologue word ids, PAD = silence
    words: list[tuple[str, float]]  # (word, time it is played in s)
    events: list[Event]
    compute_ms: float  # wall time of this step
    late_ms: float  # how far behind real time the session is after this step
    catch_up: bool = False  # a silent catch-up step after an overrun
    text_logits: torch.Tensor | None = None  # (A, V) when the session records logits
    mel_logits: torch.Tensor | None = None  # (A, k, 80, 16)
    heard: list[tuple[str, float]] = field(default_factory=list)  # (word, time it ended in s): what
    #                                 the model read back of the user (heard_feedback models only)


@dataclass
class Timeline:
    """Both channels of a session on one clock, with words, events and compute times."""

    sample_rate: int
    micro_turn_ms: int
    user_audio: torch.Tensor  # (N,) what the user side heard
    outputs: list[MicroTurnOutput] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def add(self, out: MicroTurnOutput):
        self.outputs.append(out)
        self.events.extend(out.events)

    @property
    def words(self) -> list[tuple[str, float]]:
        return [w for out in self.outputs for w in out.words]

    @property
    def heard(self) -> list[tuple[str, float]]:
        """The user's words as the model heard them (its transcript; heard_feedback only)."""
        return [w for out in self.outputs for w in out.heard]

    @property
    def compute_ms(self) -> list[float]:
        return [out.compute_ms for out in self.outputs]

    @property
    def model_audio(self) -> torch.Tensor:
        """(N,) the model's channel on the user's clock: output t starts at 200(t+1) ms."""
        n = self.sample_rate * self.micro_turn_ms // 1000
        said = torch.cat([o.audio for o in self.outputs]) if self.outputs else torch.zeros(0)
        return torch.cat([torch.zeros(n), said])[: self.user_audio.shape[0]]

    def stereo(self) -> torch.Tensor:
        """(2, N): user on the left, model on the right."""
        return torch.stack([self.user_audio, self.model_audio])

    def plot(self, ax=None, title: str = ""):
        """Both waveforms, the model's words and the events on one time axis."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(12, 3))
        plot_channels(ax, self.user_audio, self.model_audio, self.sample_rate, self.words, "model")
        colours = {"took_turn": "green", "backchannel": "purple", "yielded": "red",
                   "background_call": "black", "background_result": "teal",
                   "background_cancelled": "gray", "background_error": "crimson",
                   "deadline_miss": "crimson", "catch_up": "gray", "error": "crimson"}
        for e in self.events:
            if e.kind in colours:
                ax.axvline(e.time, color=colours[e.kind], lw=0.8, ls="--")
                ax.text(e.time, 0.0, " " + e.kind, fontsize=7, color=colours[e.kind], rotation=90,
                        va="center")
        if title:
            ax.set_title(title)
        return ax


def plot_channels(ax, user_audio: torch.Tensor, system_audio: torch.Tensor, sample_rate: int,
                  words: list[tuple[str, float]], system: str = "model") -> None:
    """The user's waveform above (around +1), the system's below (around -1), its words under it.

    Special tokens (<call>, <result>, ...) are black, spoken words orange."""
    t = (torch.arange(max(user_audio.shape[0], system_audio.shape[0])) / sample_rate).numpy()
    ax.plot(t[: user_audio.shape[0]], (user_audio + 1.0).numpy(), lw=0.4, color="tab:blue")
    ax.plot(t[: system_audio.shape[0]], (system_audio - 1.0).numpy(), lw=0.4, color="tab:orange")
    for word, when in words:
        ax.text(when, -2.15, word, fontsize=7, rotation=45, ha="left", va="top",
                color="black" if word.startswith("<") else "tab:orange")
    ax.set_yticks([1.0, -1.0], ["user", system])
    ax.set_ylim(-2.9, 2.1)
    ax.set_xlabel("time (s)")
