"""What the model did in a conversation, as the benchmark would call it.

The session feeds every 50 ms output slot to an `EventTracker`, which turns the
model's channel into events: speech_start, took_turn, backchannel, yielded.
Full-Duplex-Bench's rule (`protocol.is_takeover`) decides what a stretch of
speech was; the metrics apply the same rule and the same GAP_S to a finished run.
"""

from __future__ import annotations

import torch

from minitml.protocol import Event, is_takeover

GAP_S = 0.25  # s of silence that end a speech segment
LEVEL = 2.0  # a frame whose mean dMel bin exceeds this is audible


class EventTracker:
    """Turns the two channels into conversational events, one 50 ms slot at a time.

    A slot is *speech* when it has a word or audible frames. A speech segment
    ends after `gap_s` of silence. Full-Duplex-Bench's rule decides what a segment
    was: at least 1 s or more than 3 words is taking the turn; less is a
    backchannel. A segment that ends while the user is talking is a yield.
    """

    def __init__(self, gap_s: float = GAP_S, level: float = LEVEL):
        self.gap_s, self.level = gap_s, level
        self.start: float | None = None  # start of the current segment
        self.last_speech = -1.0
        self.n_words = 0
        self.took_turn = False

    def audible(self, frames: torch.Tensor) -> bool:
        """(n, 80) dMel frames -> is any of them above the level?"""
        return bool(frames.float().mean(-1).max() > self.level)

    def update(self, slot_time: float, slot_s: float, word: bool, frames: torch.Tensor,
               user_speaking: bool, events: list[Event]):
        speaking = word or self.audible(frames)
        if speaking:
            if self.start is None:
                self.start, self.n_words, self.took_turn = slot_time, 0, False
                events.append(Event("speech_start", slot_time))
            self.last_speech = slot_time
            self.n_words += int(word)
            if is_takeover(slot_time + slot_s - self.start, self.n_words) and not self.took_turn:
                self.took_turn = True
                events.append(Event("took_turn", self.start))
        elif self.start is not None and slot_time - self.last_speech >= self.gap_s - 1e-6:
            end = self.last_speech + slot_s
            if user_speaking and self.took_turn:
                events.append(Event("yielded", end))
            elif not self.took_turn:
                events.append(Event("backchannel", self.start, f"{end - self.start:.2f} s"))
            self.start = None
