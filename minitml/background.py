"""The background model: slow thinking and tool calls, while the conversation goes on.

The interaction model has to answer every 200 ms; it cannot stop to multiply
thirty seven by forty nine. So it hands the job to a *background model* that runs
beside it, keeps talking ("let me check"), and weaves the result in when it
arrives and when it fits what the user is doing. Two clocks run at once: the
micro-turns tick every 200 ms, the background job takes as long as it takes.

    session = Session(model, vocab=VOCAB, background=ToolExecutor(latency_s=1.0))
    out = session.step(chunk)        # never waits for the background job
    session.handoff.calls            # every call: its words, status, latency

The handoff protocol, in the token stream (minitml/protocol.py names its tokens):

1. **Call.** The model says, in its monologue (silent tokens, one 50 ms slot
   each), `<call> thirty seven times forty nine </call>`. At `</call>` the
   session builds a `ContextPackage` (the call words, the recent monologue with
   times, the text-in heard so far, the micro-turn) and submits it. Event:
   `background_call`.
2. **Result.** The answer comes back word by word (partial results stream) and
   enters the model as text-in tokens, X per micro-turn (`BlockLayout.n_text_in`,
   2 in the tiny preset): `<result> one thousand eight hundred thirteen` fills
   three micro-turns (typed text shares the same queue, first come first
   served). Event: `background_result`, with the latency since the call
   (wall clock) and the time the last word is in (session clock).
3. **Order.** Calls may overlap. Results are delivered in the order the calls
   were issued, each exactly once: a later call that finishes first waits for
   the earlier one, so two results never interleave.
4. **Failure.** An exception in the background model, an answer that takes
   longer than `timeout_s` (counted from when the worker starts on it, so a call
   queued behind a slow one is not failed for waiting), an answer with words
   outside the vocabulary, or a worker that died delivers `<result> <fail>`
   (or just `<fail>` after the part of the result already delivered); the model
   hears the failure token and can say so. Event: `background_error`. The
   session itself never fails because of it.
5. **Cancellation.** `session.cancel_background()` (the user changed topic or
   said stop) cancels every call not yet fully delivered: a cancelled call
   delivers nothing more (nothing at all if none of it was delivered yet), and
   the worker drops it at its next word. Event: `background_cancelled`.

Where it runs. `BackgroundModel` is the interface: `submit(package) -> call id`
(never blocks), `results()` (drains what came back, never blocks: messages
`(call id, kind, words)`, kind "started", "words", "done" or "error" with the
error text as its one word), `cancel(call id)`, `close()`. A subclass only
writes `answer(package)`, a generator of words; one worker answers one call at
a time, in the order submitted, so `wait()` (a sleep that notices
cancellation) is how a slow tool should pass its time.
The answering happens in a worker: a thread (cheap; fine for a tool that mostly
waits) or a process (for a model that computes: a thread shares Python's
global interpreter lock with the loop; a process has its own and runs at idle
priority, so the loop always gets the CPU first; `bench/background.py`
measures both). Two implementations:

- `ToolExecutor` (minitml/world/tools.py): exact arithmetic over number words (times, plus, minus) and
  lookups over the toy world's facts (the colour of a thing, the legs of an
  animal), with an artificial latency to show slow and fast tools.
- `NeuralBackground` (minitml/neural_background.py): a small word-level transformer (`WordGPT`) trained on the
  toy world's question -> answer text (`train_word_gpt`, about 2 minutes on one
  CPU thread; weights shipped in data/background_gpt.pt). It samples several
  answers and says `<fail>` when they disagree (self-consistency), then streams
  the answer at a slow cadence.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minitml.protocol import CALL, END_CALL, FAIL, PAD, RESULT, Event


# ----------------------------------------------------------------------------
# The context package: what the background model is given
# ----------------------------------------------------------------------------
@dataclass
class ContextPackage:
    """The conversation as the interaction model knows it, not a bare query."""

    call: list[str]  # the request: the words between <call> and </call>
    issued_turn: int  # the micro-turn whose output said </call>
    issued_s: float  # when </call> is played, on the session clock (s)
    monologue: list[tuple[str, float]] = field(default_factory=list)  # recent (word, time s) said
    text_in: list[str] = field(default_factory=list)  # recent text-in words heard (typed, results)

    def __str__(self) -> str:
        said = " ".join(f"{w}@{t:.2f}" for w, t in self.monologue)
        return (f"ContextPackage(micro-turn {self.issued_turn}, {self.issued_s:.2f} s)\n"
                f"  call:      {' '.join(self.call)}\n"
                f"  monologue: {said or '-'}\n"
                f"  text in:   {' '.join(self.text_in) or '-'}")


# ----------------------------------------------------------------------------
# The interface and its worker
# ----------------------------------------------------------------------------
class Cancelled(Exception):
    """Raised inside a worker when the call it is answering was cancelled."""


class _WorkerState:
    """The worker's side of the queues: jobs waiting, calls cancelled, the current call."""

    def __init__(self, inbox):
        self.inbox, self.waiting, self.cancelled = inbox, deque(), set()
        self.current, self.stopping = None, False
        self.thread = threading.get_ident()  # checks only count inside the worker itself

    def take(self, message):
        if message[0] == "cancel":
            self.cancelled.add(message[1])
        elif message[0] == "stop":
            self.stopping = True
        else:
            self.waiting.append(message)

    def drain(self):
        while True:
            try:
                self.take(self.inbox.get_nowait())
            except queue.Empty:
                return

    def check(self):
        self.drain()
        if self.stopping or self.current in self.cancelled:
            raise Cancelled


def _serve(model: BackgroundModel, inbox, outbox, in_process: bool):
    """The worker loop: answer jobs one at a time; stream words; never let an error escape."""
    if in_process:
        torch.set_num_threads(1)  # one core for the background, the others for the loop
        if model.idle and hasattr(os, "SCHED_IDLE"):  # Linux: only CPU time nobody else wants
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif model.nice:
            os.nice(model.nice)  # lower priority: the micro-turn loop wins the CPU
    state = model._state = _WorkerState(inbox)
    while not state.stopping:
        if not state.waiting:
            state.take(inbox.get())  # blocks: an idle worker costs nothing
            continue
        _, call_id, package = state.waiting.popleft()
        if call_id in state.cancelled:
            continue
        state.current = call_id
        outbox.put((call_id, "started", []))
        try:
            for word in model.answer(package):
                state.check()
                outbox.put((call_id, "words", [word]))
            state.check()
            outbox.put((call_id, "done", []))
        except Cancelled:
            pass
        except Exception as err:  # reported to the session, which delivers <fail>
            outbox.put((call_id, "error", [f"{type(err).__name__}: {err}"]))
        state.current = None


class BackgroundModel:
    """Answers calls in a worker, off the micro-turn loop. Subclasses write `answer`.

    worker: "thread" or "process" (a process needs the model to be picklable when the
    platform cannot fork). timeout_s: a call not answered within it (from the moment
    the worker starts on it) delivers <fail>. Process workers only: idle runs the
    worker under SCHED_IDLE (Linux), so it only gets CPU time that the loop and every
    other program leave over (on a machine with a free core: all of it; on a saturated
    one: little, and answers come late); otherwise it runs `nice` steps lower.
    """

    def __init__(self, worker: str = "thread", timeout_s: float = 5.0, idle: bool = True,
                 nice: int = 10):
        if worker not in ("thread", "process"):
            raise ValueError(f"worker must be 'thread' or 'process', got {worker!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.worker, self.timeout_s, self.idle, self.nice = worker, timeout_s, idle, nice
        self._handle = None  # the thread or process, once started
        self._next_id = 1
        self._state: _WorkerState | None = None  # set inside the worker

    # -- what a subclass writes ---------------------------------------------------
    def answer(self, package: ContextPackage) -> Iterator[str]:
        """Yield the answer's words, one at a time (a partial result streams)."""
        raise NotImplementedError

    def check(self):
        """Inside the worker: raise Cancelled if the current call was cancelled (else nothing)."""
        state = self._state
        if state is not None and state.thread == threading.get_ident():
            state.check()

    def wait(self, seconds: float):
        """Sleep inside `answer` (slow tools, a slow cadence); wakes up when cancelled."""
        end = time.monotonic() + seconds
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.02))

    # -- the session's side: never blocks --------------------------------------------
    def start(self):
        if self._handle is not None:
            return
        if self.worker == "thread":
            self._inbox, self._outbox = queue.Queue(), queue.Queue()
            self._handle = threading.Thread(target=_serve, args=(self, self._inbox, self._outbox, False),
                                            daemon=True, name=f"{type(self).__name__} worker")
        else:
            import multiprocessing

            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)
            self._inbox, self._outbox = ctx.Queue(), ctx.Queue()
            self._handle = ctx.Process(target=_serve, args=(self, self._inbox, self._outbox, True),
                                       daemon=True, name=f"{type(self).__name__} worker")
        self._handle.start()

    def submit(self, package: ContextPackage) -> int:
        """Queue a call; return its id at once."""
        self.start()
        call_id, self._next_id = self._next_id, self._next_id + 1
        self._inbox.put(("job", call_id, package))
        return call_id

    def results(self) -> list[tuple[int, str, list[str]]]:
        """Everything that came back since the last look: (call id, kind, words)."""
        if self._handle is None:
            return []
        out = []
        while True:
            try:
                out.append(self._outbox.get_nowait())
            except queue.Empty:
                return out

    def cancel(self, call_id: int):
        if self._handle is not None:
            self._inbox.put(("cancel", call_id))

    def alive(self) -> bool:
        """Is the worker running (started and not stopped or crashed)?"""
        return self._handle is not None and self._handle.is_alive()

    def close(self):
        """Stop the worker (a process that does not stop within 2 s is terminated)."""
        if self._handle is None:
            return
        self._inbox.put(("stop",))
        self._handle.join(timeout=2.0)
        if self.worker == "process" and self._handle.is_alive():
            self._handle.terminate()
        self._handle = None

    @property
    def pid(self) -> int | None:
        """The worker process's id (None for a thread worker)."""
        return getattr(self._handle, "pid", None) if self.worker == "process" else None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker has used so far, from /proc (Linux; else 0)."""
        if self._handle is None:
            return 0.0
        task = self.pid if self.worker == "process" else f"self/task/{self._handle.native_id}"
        try:
            fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def __getstate__(self):  # a spawned worker process gets the model, not the queues
        state = dict(self.__dict__)
        for name in ("_handle", "_inbox", "_outbox", "_state"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._handle = self._state = None


# ----------------------------------------------------------------------------
# The session's side: collecting calls, delivering results in order
# ----------------------------------------------------------------------------
@dataclass
class Call:
    """One call, from the monologue's </call> to its delivery."""

    id: int
    words: list[str]  # the request
    package: ContextPackage
    submitted_wall: float  # time.monotonic() at submit
    started_wall: float | None = None  # when a poll learnt that the worker started on it
    status: str = "running"  # running, done, failed, timeout, cancelled
    received: list[str] = field(default_factory=list)  # answer words streamed back so far
    delivered: list[str] = field(default_factory=list)  # what went into the text-in queue so far
    error: str = ""
    done_wall: float | None = None  # when a poll found the answer complete (wall clock)
    delivered_turn: int | None = None  # the micro-turn whose text-in queue got the last word
    heard_by_s: float | None = None  # session time by which the last word has been heard
    latency_ms: float | None = None  # wall clock, call to delivery

    @property
    def result(self) -> list[str]:
        """What the model hears for this call (so far), <result> included."""
        return list(self.delivered)


class Handoff:
    """Between a Session and its BackgroundModel: calls out of the monologue, results into text-in.

    observe(word, when, turn): one monologue word; at </call> the call is submitted.
    heard(words): the text-in words the model was just fed (for the context package).
    poll(turn, queued): at the start of a step: the words to append to the text-in queue.
    """

    def __init__(self, background: BackgroundModel, micro_turn_s: float, n_text_in: int,
                 vocab: list[str], history: int = 32, max_call_words: int = 16):
        if not isinstance(background, BackgroundModel):
            raise ValueError(f"background must be a BackgroundModel (e.g. ToolExecutor()), "
                             f"got {type(background).__name__}")
        self.background, self.turn_s, self.n_text_in = background, micro_turn_s, n_text_in
        self.known = set(vocab)
        self.history, self.max_call_words = history, max_call_words
        self.calls: list[Call] = []  # every call of this conversation, in issue order
        self.reset()

    def reset(self):
        for call in getattr(self, "pending", ()):
            self.background.cancel(call.id)
        self.background.results()  # whatever was still on its way belongs to the old conversation
        self.calls = []
        self.pending: deque[Call] = deque()  # issued, not yet fully delivered
        self.monologue: deque[tuple[str, float]] = deque(maxlen=self.history)
        self.text_in: deque[str] = deque(maxlen=self.history)
        self.collecting: list[str] | None = None  # call words since <call>

    def heard(self, words: list[str]):
        self.text_in.extend(words)

    def observe(self, word: str, when: float, turn: int) -> list[Event]:
        self.monologue.append((word, when))
        if word == CALL:
            dropped = self.collecting is not None
            self.collecting = []
            return [Event("background_error", when, "a new <call> before </call>: the unfinished "
                                                    "call is dropped")] if dropped else []
        if word == END_CALL:
            words, self.collecting = self.collecting, None
            if not words:
                why = "an empty call" if words is not None else "</call> without <call>"
                return [Event("background_error", when, f"{why}: ignored")]
            return self.submit(words, when, turn)
        if self.collecting is not None:
            self.collecting.append(word)
            if len(self.collecting) > self.max_call_words:
                self.collecting = None
                return [Event("background_error", when, f"a call longer than {self.max_call_words} "
                                                        "words without </call>: dropped")]
        return []

    def submit(self, words: list[str], when: float, turn: int) -> list[Event]:
        package = ContextPackage(list(words), turn, when, list(self.monologue), list(self.text_in))
        call_id = self.background.submit(package)
        call = Call(call_id, list(words), package, time.monotonic())
        self.calls.append(call)
        self.pending.append(call)
        return [Event("background_call", when, f"#{call_id} {' '.join(words)}")]

    def cancel(self, call_id: int | None, now_s: float) -> list[Event]:
        """Cancel one pending call (or all of them with None)."""
        events = []
        for call in list(self.pending):
            if call_id is None or call.id == call_id:
                self.background.cancel(call.id)
                call.status = "cancelled"
                self.pending.remove(call)
                events.append(Event("background_cancelled", now_s, f"#{call.id} {' '.join(call.words)}"))
        return events

    def poll(self, turn: int, queued: int = 0) -> tuple[list[str], list[Event]]:
        """Collect what came back; return the words for the text-in queue and the events."""
        now, now_s, events = time.monotonic(), turn * self.turn_s, []
        by_id = {c.id: c for c in self.pending}
        for call_id, kind, words in self.background.results():
            call = by_id.get(call_id)
            if call is None or call.status != "running":
                continue  # cancelled, timed out or from an earlier conversation: dropped
            if kind == "started":
                call.started_wall = now
                continue
            error = words[0] if kind == "error" else ""
            unknown = [w for w in words if w not in self.known] if kind == "words" else []
            if unknown:
                error = f"answer words outside the vocabulary: {unknown}"
            if error:
                call.status, call.error = "failed", error
                self.background.cancel(call_id)
                events.append(Event("background_error", now_s, f"#{call_id} {error}"))
                continue
            call.received += words
            if kind == "done":
                call.status, call.done_wall = "done", now
        alive = self.background.alive()
        for call in self.pending:
            if call.status != "running":
                continue
            if not alive:
                call.status, call.error = "failed", "the background worker is not running"
            elif call.started_wall is not None and now - call.started_wall > self.background.timeout_s:
                call.status, call.error = "timeout", f"no answer within {self.background.timeout_s:g} s"
            else:
                continue
            self.background.cancel(call.id)
            events.append(Event("background_error", now_s, f"#{call.id} {call.error}"))
        out: list[str] = []
        while self.pending:  # in issue order; a later call waits for the earlier ones
            call = self.pending[0]
            if call.status in ("failed", "timeout"):  # what was delivered stays; then <fail>
                new = [FAIL] if call.delivered else [RESULT, FAIL]
            elif call.received or call.status == "done":  # stream what came back
                new = ([RESULT, *call.received] if call.received else [RESULT, FAIL])[len(call.delivered):]
            else:
                new = []
            out += new
            call.delivered += new
            if call.status == "running":
                break
            self.pending.popleft()
            call.delivered_turn = turn
            call.latency_ms = 1000 * (now - call.submitted_wall)
            call.heard_by_s = (turn + math.ceil((queued + len(out)) / self.n_text_in)) * self.turn_s
            events.append(Event("background_result", now_s,
                                f"#{call.id} {' '.join(call.result[1:])}: {call.latency_ms:.0f} ms after "
                                f"the call (wall clock); heard by {call.heard_by_s:.2f} s, "
                                f"{call.heard_by_s - call.package.issued_s:.2f} s after the call "
                                "(session clock)"))
        return out, events


# ----------------------------------------------------------------------------
# Helpers for notebooks and tests
# ----------------------------------------------------------------------------
class ScriptedWords:
    """A text sampler (minitml/generator.py) that says queued word ids, one per 50 ms slot,
    then PAD, whatever the logits say; it draws no random numbers."""

    def __init__(self):
        self.queue: deque[int] = deque()

    def __call__(self, logits: torch.Tensor, rng: torch.Generator | None = None) -> int:
        return self.queue.popleft() if self.queue else PAD


def script_monologue(session, words):
    """Make a `minitml.session.Session`'s monologue say `words`, one per 50 ms slot, then stay silent.

    An untrained model cannot say a call yet; this puppets its text channel (the audio
    still comes from the model): the session's generator gets a `ScriptedWords` sampler.
    Calling it again queues more words.
    """
    if isinstance(words, str):
        words = words.split()
    vocab = session.vocab
    if vocab is None:
        raise ValueError("script_monologue needs the session's vocabulary: Session(model, vocab=...)")
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise ValueError(f"words not in the vocabulary: {unknown}")
    generator = session.generator
    if not isinstance(generator.sample_text, ScriptedWords):
        generator.sample_text = ScriptedWords()
    generator.sample_text.queue.extend(vocab.index(w) for w in words)


def weave_time(ready_s: float, user_speech: list[tuple[float, float]], quiet_s: float = 0.25) -> float:
    """The first moment >= ready_s at which the user has been silent for quiet_s seconds.

    ready_s: when the result is in; user_speech: (start, end) spans in seconds. Speaking
    then weaves the result in without talking over the user.
    """
    t = ready_s
    for start, end in sorted(user_speech):  # t only moves later, so one pass in start order does
        if start < t and end > t - quiet_s:  # the user spoke within quiet_s before t: wait
            t = end + quiet_s
    return t
