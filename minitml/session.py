"""The real-time loop: 200 ms in, 200 ms out, forever.

    session = Session(model)
    while True:
        out = session.step(mic_chunk, frame=camera_frame)   # 3200 samples in
        speaker.play(out.audio)                              # 3200 samples out

Each `step` does what one micro-turn of the interaction model does, with the
streaming `Generator` (minitml/generator.py) doing the model's part:

1. hear: the 200 ms chunk becomes 16 causal dMel frames (no look-ahead), i.e.
   A = 4 audio tokens; the frame becomes P patches; queued text fills X slots;
2. prefill: that input block (plus the last output token of the previous
   micro-turn, not yet in the cache) goes through the model in one call, into
   the ring-buffer KV cache;
3. speak: A output tokens are generated one after another, each fed back: a
   monologue word (or PAD) and k dMel frames;
4. play: the 16 frames are vocoded to the 200 ms of audio played next.

Output t is played during [200(t+1), 200(t+2)) ms: the 200 ms of buffering is
part of every latency this project reports. Around those four phases the session
owns what makes the loop real-time: the clock, the deadline, the checks on its
input, the events (minitml/events.py) and the background model's handoff.

A step has a deadline: the micro-turn's 200 ms. Compute time is measured on
every step. When a step overruns, the session falls behind real time by the
excess; `overrun="catch_up"` (the default) then runs the *next* step as a
catch-up step: it still hears its input (context is never dropped) but says
silence without generating, in one forward call, until the session is back
on time. `overrun="ignore"` only records the lag. Either way every miss is an
event in the log, never hidden.

A background model (`background=ToolExecutor()` or `NeuralBackground()`, see
minitml/background.py, minitml/world/tools.py and minitml/neural_background.py) runs beside the loop:
the words the model says between `<call>` and `</call>` are submitted with a
context package, and each step first collects what came back into the text-in
queue. The step never waits
for it; calls, results, cancellations and failures are events.
"""

from __future__ import annotations

import time
from collections import deque
from functools import partial

import torch

from minitml.background import Handoff
from minitml.dmel import check_wave
from minitml.events import EventTracker
from minitml.generator import Generator, calibrated_threshold, greedy_word, sample_word
from minitml.model import InteractionModel
from minitml.patches import patchify
from minitml.protocol import CALL, Event, unnamed
from minitml.stream import PAD, Blocks
from minitml.timeline import MicroTurnOutput, Timeline


class Session:
    """One live conversation with a model, 200 ms at a time (see the module docstring).

    temperature 0 decodes words with `greedy_word` (and speak_threshold; "calibrated": the
    model's `calibrated_threshold`, which undoes the word weight it was trained with), above 0 samples
    them (top_k); mel_temperature does the same for the dMel frames; seed fixes every draw.
    vocab names the word ids (default: the checkpoint's). overrun and budget_ms set the
    deadline policy; vocode=False skips the vocoder; record_logits keeps each step's logits.
    """

    def __init__(self, model: InteractionModel, *, temperature: float = 0.0, top_k: int = 0,
                 mel_temperature: float = 0.0, seed: int = 0, vocab: list[str] | None = None,
                 vocode: bool = True, overrun: str = "catch_up", budget_ms: float | None = None,
                 record_logits: bool = False, call_word: str = CALL, warmup: bool = True,
                 background=None, speak_threshold: float | str = 0.5):
        if overrun not in ("catch_up", "ignore"):
            raise ValueError(f"overrun must be 'catch_up' or 'ignore', got {overrun!r}")
        self.model = model.eval()
        self.cfg = model.cfg
        self.layout = model.layout
        if speak_threshold == "calibrated":
            speak_threshold = calibrated_threshold(model.word_weight)
        if not isinstance(speak_threshold, (int, float)) or not 0 <= speak_threshold < 1:
            raise ValueError(f"speak_threshold must be a number in [0, 1) or 'calibrated', "
                             f"got {speak_threshold!r}")
        self.speak_threshold = speak_threshold
        if temperature <= 0:  # greedy: see greedy_word
            sample_text = partial(greedy_word, speak_threshold=speak_threshold)
        else:
            sample_text = partial(sample_word, temperature=temperature, top_k=top_k)
        self.generator = Generator(model, sample_text, mel_temperature, seed)
        self.vocab = vocab if vocab is not None else model.vocab
        self.vocode, self.overrun, self.record_logits = vocode, overrun, record_logits
        self.budget_ms = budget_ms if budget_ms is not None else self.cfg.audio.micro_turn_ms
        self.call_id = self.vocab.index(call_word) if self.vocab and call_word in self.vocab else None
        self.handoff = None  # the background model's handoff (minitml.background.Handoff)
        self._background_events: list[Event] = []  # events for the next step's output
        if background is not None:
            if self.vocab is None:  # calls and results travel as words
                raise ValueError("a background model needs the vocabulary: pass Session(..., vocab=...) "
                                 "or a model loaded from a checkpoint that carries one")
            self.handoff = Handoff(background, self.cfg.audio.micro_turn_ms / 1000,
                                   self.layout.n_text_in, self.vocab)
            background.start()
        self.reset()
        if warmup:  # the first call pays for allocations and kernel setup: not on the clock
            self.step(torch.zeros(self.cfg.audio.samples_per_micro_turn))
            self.reset()

    def reset(self):
        """Forget everything: a new conversation."""
        self.generator.reset()
        self.tracker = EventTracker()
        self.turn = 0
        self.text_queue: deque[int] = deque()
        self.late_ms = 0.0
        self.recorded: list[Blocks] = []  # what the model saw and said, when record=True
        if self.handoff is not None:  # pending calls belong to the old conversation
            self.handoff.reset()
            self._background_events = []

    @property
    def now_s(self) -> float:
        """The session clock: the start of the micro-turn the next step hears."""
        return self.turn * self.cfg.audio.micro_turn_ms / 1000

    def cancel_background(self, call_id: int | None = None) -> list[Event]:
        """Cancel a background call (all pending calls with None): it delivers nothing more."""
        if self.handoff is None:
            return []
        events = self.handoff.cancel(call_id, self.now_s)
        self._background_events += events
        return events

    def close(self):
        """Stop the background model's worker (if any)."""
        if self.handoff is not None:
            self.handoff.background.close()

    def _background_error(self, what: str, err: Exception) -> Event:
        """A fault in the handoff is an event, never the end of the session."""
        return Event("background_error", self.now_s, f"{what}: {type(err).__name__}: {err}")

    # -- checking input ---------------------------------------------------------------
    def _check_audio(self, audio, sample_rate):
        n = self.cfg.audio.samples_per_micro_turn
        wave = check_wave(audio, self.cfg.audio, sample_rate)
        if wave.shape[0] != n:
            raise ValueError(f"expected one micro-turn of audio: {n} samples "
                             f"({self.cfg.audio.micro_turn_ms} ms at {self.cfg.audio.sample_rate} Hz), "
                             f"got {wave.shape[0]}")
        return wave

    def _check_frame(self, frame) -> torch.Tensor:
        v = self.cfg.vision
        if frame is None:
            return torch.zeros(v.n_patches, v.patch_dim)  # darkness
        shape = tuple(frame.shape)
        if len(shape) == 3 and shape[:2] != (v.frame_height, v.frame_width) and shape[-1] == 3:
            raise ValueError(f"expected a {v.frame_height}x{v.frame_width}x3 frame (the preset's "
                             f"frame size), got {'x'.join(map(str, shape))}; resize it first")
        patches, _ = patchify(frame, v.patch_size)  # checks dtype, range, channels
        return patches

    def _words_to_ids(self, text_in) -> list[int]:
        if text_in is None:
            return []
        V = self.cfg.model.text_vocab_size
        if isinstance(text_in, str):
            text_in = text_in.split()
        if any(isinstance(w, str) for w in text_in):
            if self.vocab is None:
                raise ValueError("text_in as words needs a vocabulary; pass word ids instead")
            unknown = [w for w in text_in if w not in self.vocab]
            if unknown:
                raise ValueError(f"words not in the vocabulary: {unknown}")
            return [self.vocab.index(w) for w in text_in]
        ids = [int(i) for i in text_in]
        bad = [i for i in ids if not 0 <= i < V]
        if bad:
            raise ValueError(f"text_in word ids must lie in [0, {V}), got {bad}")
        return ids

    def _text_in_slots(self, new_text: list[int]) -> list[int]:
        """This micro-turn's X text-in ids: the queue (new text, then what the background
        model sent back) is fed X at a time, PAD when it runs dry."""
        self.text_queue.extend(new_text)
        if self.handoff is not None:
            try:
                results, events = self.handoff.poll(self.turn, len(self.text_queue))
                self.text_queue.extend(self.vocab.index(w) for w in results)
            except Exception as err:
                events = [self._background_error("poll", err)]
            self._background_events += events
        slots = [self.text_queue.popleft() if self.text_queue else PAD for _ in range(self.layout.n_text_in)]
        if self.handoff is not None:
            self.handoff.heard([self.vocab[i] for i in slots if i != PAD])
        return slots

    # -- one micro-turn ------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, audio, frame=None, text_in=None, sample_rate: int | None = None,
             record: bool = False) -> MicroTurnOutput:
        """Hear 200 ms (and a frame, and text), say the next 200 ms.

        audio: (3200,) float in [-1, 1] at 16 kHz; frame: (H, W, 3) uint8 or float, the
        preset's frame size, or None; text_in: word ids or a string of vocabulary words,
        queued and fed X per micro-turn. Bad input raises ValueError and changes nothing.
        """
        wave = self._check_audio(audio, sample_rate)  # all checks first: a refused step
        patches = self._check_frame(frame)  # leaves the session exactly as it was
        new_text = self._words_to_ids(text_in)

        start = time.perf_counter()
        gen = self.generator
        blk, heard = gen.hear(wave, patches, self._text_in_slots(new_text))  # 1. hear
        catch_up = self.overrun == "catch_up" and self.late_ms > 0
        if catch_up:  # 2 and 3: say silence for the whole block, in the prefill's call
            gen.prefill_silent(blk)
            text_logits = mel_logits = None
        else:
            h = gen.prefill(blk)  # 2. prefill
            text_logits, mel_logits = gen.speak(blk, h)  # 3. speak
        out_audio = gen.play(blk) if self.vocode else torch.zeros(wave.shape[0])  # 4. play
        if record:
            self.recorded.append(blk.to("cpu"))

        compute_ms = 1000 * (time.perf_counter() - start)
        self.late_ms = max(0.0, self.late_ms + compute_ms - self.budget_ms)
        out = self._log(blk, heard, out_audio, compute_ms, catch_up)
        if self.record_logits and not catch_up:
            out.text_logits = text_logits.cpu()
            out.mel_logits = mel_logits.cpu() if mel_logits is not None else None
        return out

    def _log(self, blk, heard, out_audio, compute_ms, catch_up) -> MicroTurnOutput:
        """The step's output: the words on the session clock, and the events they make."""
        A = self.layout.n_audio
        t = self.turn
        slot_s = self.cfg.audio.micro_turn_ms / 1000 / A
        play_start = (t + 1) * self.cfg.audio.micro_turn_ms / 1000  # output t is played from 200(t+1) ms on
        events, self._background_events = self._background_events, []
        if catch_up:
            events.append(Event("catch_up", play_start, "said silence to get back on time"))
        if compute_ms > self.budget_ms:
            events.append(Event("deadline_miss", play_start,
                                f"{compute_ms:.0f} ms > {self.budget_ms:.0f} ms"))
        user_speaking = self.tracker.audible(heard)
        words = []
        for j in range(A):
            word = int(blk.out_text[0, 0, j])
            when = play_start + j * slot_s
            if word != PAD:
                name = self._name(word)
                words.append((name, when))
                if self.handoff is not None:  # collects the call words; submits at </call>
                    try:
                        events += self.handoff.observe(name, when, t)
                    except Exception as err:
                        events.append(self._background_error("observe", err))
                elif word == self.call_id:
                    events.append(Event("background_call", when))
            self.tracker.update(when, slot_s, word != PAD, blk.out_audio[0, 0, j].cpu(),
                                user_speaking, events)
        self.turn += 1
        return MicroTurnOutput(
            turn=t, audio=out_audio, tokens=Generator.frames_said(blk),
            text_ids=blk.out_text[0, 0].cpu(), words=words, events=events,
            compute_ms=compute_ms, late_ms=self.late_ms, catch_up=catch_up,
            heard=self._heard(blk, t))

    def _heard(self, blk, t: int) -> list[tuple[str, float]]:
        """(word, time it ended) for each word the heard head named and the model read back:
        user-audio token j of micro-turn t ends at 200 t + 50 (j + 1) ms."""
        if self.generator.model.heard_embedding is None:
            return []
        token_s = self.cfg.audio.micro_turn_ms / 1000 / self.layout.n_audio
        return [(self._name(w), (t * self.layout.n_audio + j + 1) * token_s)
                for j, w in enumerate(blk.heard_text[0, 0].tolist()) if w != PAD]

    def _name(self, word: int) -> str:
        """A word id -> its word, or a placeholder for an id the vocabulary does not name."""
        return self.vocab[word] if self.vocab and word < len(self.vocab) else unnamed(word)

    def step_or_silence(self, audio, frame=None, text_in=None,
                        record: bool = False) -> tuple[MicroTurnOutput, Event | None]:
        """`step`, or, when it refuses the input, a step that hears silence and darkness and
        no text, so the clock goes on -> (the output, the "error" event or None)."""
        try:
            return self.step(audio, frame, text_in, record=record), None
        except (ValueError, RuntimeError) as err:
            error = Event("error", self.now_s, str(err))
            return self.step(torch.zeros(self.cfg.audio.samples_per_micro_turn), record=record), error

    # -- a whole recorded input --------------------------------------------------------
    def run(self, audio, frames=None, text_in: dict | None = None, record: bool = False,
            progress: bool = False) -> Timeline:
        """Drive a whole recording through `step`, 200 ms at a time; return the timeline.

        audio: (T,) waveform, padded with silence to whole micro-turns; frames: one
        (H, W, 3) frame per micro-turn (None, or past their end: darkness); text_in:
        {micro-turn: words or ids}. A step that fails is logged as an "error" event and
        replaced by silence (`step_or_silence`); the session goes on.
        (`minitml.evaluate.run_scenario` feeds it a scenario of the toy world.)
        """
        text_in = text_in or {}
        audio = torch.as_tensor(audio).float()
        n = self.cfg.audio.samples_per_micro_turn
        n_turns = -(-audio.shape[-1] // n)
        audio = torch.nn.functional.pad(audio, (0, n_turns * n - audio.shape[-1]))
        timeline = Timeline(self.cfg.audio.sample_rate, self.cfg.audio.micro_turn_ms, audio)
        turns = range(n_turns)
        if progress:
            from tqdm.auto import tqdm

            turns = tqdm(turns, desc="micro-turns")
        for t in turns:
            frame = frames[t] if frames is not None and t < len(frames) else None
            out, error = self.step_or_silence(audio[t * n:(t + 1) * n], frame, text_in.get(t), record)
            if error is not None:
                timeline.events.append(error)
            timeline.add(out)
        return timeline
