"""The real-time loop: 200 ms in, 200 ms out, forever.

    session = Session(model)
    while True:
        out = session.step(mic_chunk, frame=camera_frame)   # 3200 samples in
        speaker.play(out.audio)                              # 3200 samples out

Each `step` does what one micro-turn of the interaction model does:

1. hear: the 200 ms chunk becomes 16 causal dMel frames (no look-ahead), i.e.
   A = 4 audio tokens; the frame becomes P patches; queued text fills X slots;
2. prefill: that input block (plus the last output token of the previous
   micro-turn, not yet in the cache) goes through the model in one call, into
   the ring-buffer KV cache;
3. speak: A output tokens are generated one after another, each fed back: a
   monologue word (or PAD) and k dMel frames;
4. play: the 16 frames are vocoded to the 200 ms of audio played next.

Output t is played during [200(t+1), 200(t+2)) ms: the 200 ms of buffering is
part of every latency this project reports.

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
from dataclasses import dataclass, field

import torch

from minitml.background import Handoff
from minitml.dmel import DMel, DMelHead, DMelStream, StreamVocoder, check_wave
from minitml.model import InteractionModel
from minitml.patches import patchify
from minitml.protocol import CALL, Event, is_takeover, unnamed
from minitml.stream import PAD, Blocks, empty_blocks


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


class EventTracker:
    """Turns the two channels into conversational events, one 50 ms slot at a time.

    A slot is *speech* when it has a word or audible frames. A speech segment
    ends after `gap_s` of silence. Full-Duplex-Bench's rule decides what a segment
    was: at least 1 s or more than 3 words is taking the turn; less is a
    backchannel. A segment that ends while the user is talking is a yield.
    """

    def __init__(self, gap_s: float = 0.25, level: float = 2.0):
        self.gap_s, self.level = gap_s, level
        self.start: float | None = None  # start of the current segment
        self.last_speech = -1.0
        self.n_words = 0
        self.took_turn = False

    def update(self, slot_time: float, slot_s: float, word: bool, frames: torch.Tensor,
               user_speaking: bool, events: list[Event]):
        speaking = word or bool(frames.float().mean(-1).max() > self.level)
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


def greedy_word(logits: torch.Tensor, speak_threshold: float = 0.5) -> int:
    """Greedy decoding of one monologue slot, (V,) logits -> word id, in two questions.

    "Speak now?" is yes when P(speak) = 1 - P(PAD) exceeds speak_threshold (one half:
    the likelier choice); only then "which word?" picks the most likely non-PAD word.
    A plain argmax over all words splits the "yes" between "sure", "okay", "well", ...
    and lets PAD win even when speaking is the likelier choice: at a turn end P(speak)
    may be 0.7 while no single word has 0.3. A lower threshold makes a readier speaker.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    if 1 - probs[PAD] <= speak_threshold:
        return PAD
    return int(probs[PAD + 1:].argmax()) + PAD + 1


class Session:
    def __init__(self, model: InteractionModel, *, temperature: float = 0.0, top_k: int = 0,
                 mel_temperature: float = 0.0, seed: int = 0, vocab: list[str] | None = None,
                 vocode: bool = True, overrun: str = "catch_up", budget_ms: float | None = None,
                 record_logits: bool = False, call_word: str = CALL, warmup: bool = True,
                 background=None, speak_threshold: float = 0.5):
        if overrun not in ("catch_up", "ignore"):
            raise ValueError(f"overrun must be 'catch_up' or 'ignore', got {overrun!r}")
        self.model = model.eval()
        self.cfg = model.cfg
        self.layout = model.layout
        self.device = model.text_head.weight.device
        self.temperature, self.top_k, self.mel_temperature = temperature, top_k, mel_temperature
        self.speak_threshold = speak_threshold  # greedy decoding: see greedy_word
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
        self.dmel = DMel(self.cfg.audio)
        self.seed = seed
        self.reset()
        if warmup:  # the first call pays for allocations and kernel setup: not on the clock
            self.step(torch.zeros(self.cfg.audio.samples_per_micro_turn))
            self.reset()

    def reset(self):
        """Forget everything: a new conversation."""
        self.caches = self.model.new_cache(1, self.device)
        self.listener = DMelStream(self.dmel)
        self.vocoder = StreamVocoder(self.dmel)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.tracker = EventTracker()
        self.turn = 0
        self.next_position = 0
        self.pending: torch.Tensor | None = None  # (1, 1, d) last output token, not yet cached
        self.text_queue: deque[int] = deque()
        self.late_ms = 0.0
        self.recorded: list[Blocks] = []  # what the model saw and said, when record=True
        if self.handoff is not None:  # pending calls belong to the old conversation
            self.handoff.reset()
            self._background_events = []

    def cancel_background(self, call_id: int | None = None) -> list[Event]:
        """Cancel a background call (all pending calls with None): it delivers nothing more."""
        if self.handoff is None:
            return []
        events = self.handoff.cancel(call_id, self.turn * self.cfg.audio.micro_turn_ms / 1000)
        self._background_events += events
        return events

    def close(self):
        """Stop the background model's worker (if any)."""
        if self.handoff is not None:
            self.handoff.background.close()

    def _background_error(self, what: str, err: Exception) -> Event:
        """A fault in the handoff is an event, never the end of the session."""
        now = self.turn * self.cfg.audio.micro_turn_ms / 1000
        return Event("background_error", now, f"{what}: {type(err).__name__}: {err}")

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

    # -- sampling ------------------------------------------------------------------------
    def _sample_text(self, logits: torch.Tensor) -> int:
        if self.temperature <= 0:
            return greedy_word(logits, self.speak_threshold)
        logits = logits / self.temperature
        if self.top_k > 0:
            kth = torch.topk(logits, min(self.top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits.float().cpu(), dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _speak_one(self, h: torch.Tensor):
        """Hidden state (1, 1, d) of a predictor -> (word id, (k, 80) frames, logits)."""
        text_logits = self.model.text_logits(h)[0, 0]  # (V,)
        word = self._sample_text(text_logits)
        head = self.model.mel_head
        if isinstance(head, DMelHead):
            mel_logits = head(h)[0, 0]  # (k, 80, 16)
            frames = DMelHead.sample(mel_logits.cpu(), self.mel_temperature, self.generator)
        else:
            mel_logits = None
            frames = head.sample(h, self.generator)[0, 0].cpu()
        return word, frames, text_logits, mel_logits

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        positions = torch.arange(self.next_position, self.next_position + n, device=self.device)
        self.next_position += n
        h, _ = self.model.run(x, positions, self.caches)
        return h

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
        lay, cfg = self.layout, self.cfg
        A, k = lay.n_audio, lay.frames_per_token
        self.text_queue.extend(new_text)
        if self.handoff is not None:  # results that came back join the text-in queue
            try:
                results, events = self.handoff.poll(self.turn, len(self.text_queue))
                self.text_queue.extend(self.vocab.index(w) for w in results)
            except Exception as err:
                events = [self._background_error("poll", err)]
            self._background_events += events
        slots = [self.text_queue.popleft() if self.text_queue else PAD for _ in range(lay.n_text_in)]
        if self.handoff is not None:
            self.handoff.heard([self.vocab[i] for i in slots if i != PAD])
        heard = self.listener.push(wave)  # (16, 80) causal dMel
        blk = empty_blocks(cfg, 1)
        blk.patches[0, 0] = patches
        blk.user_audio[0, 0] = heard.view(A, k, -1)
        blk.text_in[0, 0] = torch.tensor(slots)
        blk = blk.to(self.device)

        catch_up = self.overrun == "catch_up" and self.late_ms > 0
        x = self.model.embed_inputs(blk.patches, blk.user_audio, blk.text_in)[:, 0]  # (1, P+A+X, d)
        if self.pending is not None:
            x = torch.cat([self.pending, x], dim=1)
        text_logits, mel_logits = [], []
        if catch_up:  # say silence for the whole block, in the same forward call
            outs = self.model.embed_outputs(blk.out_text, blk.out_audio)[:, 0]  # (1, A, d)
            self._forward(torch.cat([x, outs[:, :-1]], dim=1))
            self.pending = outs[:, -1:]
        else:
            h = self._forward(x)[:, -1:]  # (1, 1, d) predictor of output token 0
            for j in range(A):
                word, frames, t_logits, m_logits = self._speak_one(h)
                blk.out_text[0, 0, j] = word
                blk.out_audio[0, 0, j] = frames.to(self.device)
                text_logits.append(t_logits)
                mel_logits.append(m_logits)
                emb = self.model.embed_outputs(blk.out_text[:, :, j:j + 1],
                                               blk.out_audio[:, :, j:j + 1])[:, 0]  # (1, 1, d)
                if j < A - 1:
                    h = self._forward(emb)
                else:
                    self.pending = emb  # enters the cache with the next input block
        said = blk.out_audio[0, 0].reshape(A * k, -1).cpu()  # (16, 80)
        out_audio = self.vocoder.push(said) if self.vocode else torch.zeros(wave.shape[0])
        if record:
            self.recorded.append(blk.to("cpu"))

        compute_ms = 1000 * (time.perf_counter() - start)
        self.late_ms = max(0.0, self.late_ms + compute_ms - self.budget_ms)
        return self._finish(blk, heard, out_audio, compute_ms, catch_up, text_logits, mel_logits)

    def _finish(self, blk, heard, out_audio, compute_ms, catch_up, text_logits, mel_logits):
        A, k = self.layout.n_audio, self.layout.frames_per_token
        t = self.turn
        ms = self.cfg.audio.micro_turn_ms
        slot_s = ms / 1000 / A
        play_start = (t + 1) * ms / 1000  # output t is played from 200(t+1) ms on
        events, self._background_events = self._background_events, []
        if catch_up:
            events.append(Event("catch_up", play_start, "said silence to get back on time"))
        if compute_ms > self.budget_ms:
            events.append(Event("deadline_miss", play_start,
                                f"{compute_ms:.0f} ms > {self.budget_ms:.0f} ms"))
        user_speaking = bool(heard.float().mean(-1).max() > self.tracker.level)
        words = []
        for j in range(A):
            word = int(blk.out_text[0, 0, j])
            when = play_start + j * slot_s
            if word != PAD:
                name = self.vocab[word] if self.vocab and word < len(self.vocab) else unnamed(word)
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
        record = self.record_logits and not catch_up
        return MicroTurnOutput(
            turn=t, audio=out_audio, tokens=blk.out_audio[0, 0].reshape(A * k, -1).cpu(),
            text_ids=blk.out_text[0, 0].cpu(), words=words, events=events,
            compute_ms=compute_ms, late_ms=self.late_ms, catch_up=catch_up,
            text_logits=torch.stack(text_logits).cpu() if record else None,
            mel_logits=torch.stack(mel_logits).cpu() if record and mel_logits[0] is not None
            else None,
        )

    # -- a whole recorded input --------------------------------------------------------
    def run(self, source, frames=None, text_in: dict | None = None, record: bool = False,
            progress: bool = False) -> Timeline:
        """Drive a whole input through `step`, 200 ms at a time; return the timeline.

        source: a (T,) waveform, or an object with `.user_audio` (and optionally
        `.frames` (n_turns, H, W, 3) and `.text_in` {micro-turn: words}). A step
        that fails is logged as an "error" event and replaced by silence; the
        session goes on.
        """
        audio = getattr(source, "user_audio", source)
        frames = getattr(source, "frames", frames)
        if callable(frames):  # a Scenario draws its frames for a given frame size
            frames = frames(self.cfg.vision)
        text_in = getattr(source, "text_in", text_in) or {}
        call = getattr(source, "annotations", {}).get("call")
        if self.handoff is not None and call is not None:
            # the attached background model answers the call itself: the scenario's
            # scripted result is not fed as well
            first, last = call["result_turns"]
            text_in = {t: words for t, words in text_in.items() if not first <= t <= last}
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
            chunk = audio[t * n:(t + 1) * n]
            frame = frames[t] if frames is not None and t < len(frames) else None
            try:
                out = self.step(chunk, frame, text_in.get(t), record=record)
            except (ValueError, RuntimeError) as err:
                timeline.events.append(Event("error", t * n / self.cfg.audio.sample_rate, str(err)))
                out = self.step(torch.zeros(n), None, None, record=record)
            timeline.add(out)
        return timeline


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
