# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · The micro-turn loop: 200 ms in, 200 ms out, forever
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/05_micro_turn_loop.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F05_micro_turn_loop.ipynb)
#
# **One idea:** an interaction model is a loop against a clock. Every 200 ms a chunk of
# microphone audio (and a camera frame) arrives; the model hears it, says the next 200 ms,
# and has to be done before the next chunk is complete. There are no turn boundaries and no
# "wait until the user has finished": silence is a chunk that happens to be quiet, and the
# model's own silence is a micro-turn of PAD words and quiet frames.
#
# ```
# mic       | chunk 0 | chunk 1 | chunk 2 | chunk 3 |        input t: heard during [200t, 200(t+1)) ms
# model               ^step 0   ^step 1   ^step 2   ^        step t starts once chunk t is complete
# speaker             | out 0   | out 1   | out 2   |        output t: played during [200(t+1), 200(t+2)) ms
# ```
#
# Output $t$ cannot exist before input $t$ has *arrived*, so the model's channel runs one
# micro-turn behind the user's. Those 200 ms of buffering are part of every latency this
# project reports. A step also has a **budget** of 200 ms of compute: if it takes longer, the
# session falls behind real time, and something has to give.
#
# The loop lives in `minitml/session.py`: `Session.step` (one micro-turn), `Session.run` (a
# whole recording), around the model's streaming `Generator` (`minitml/generator.py`);
# `Timeline` (`minitml/timeline.py`) puts both channels on one clock and `EventTracker`
# (`minitml/events.py`) says what the model's speech *was*: a backchannel, taking the turn,
# yielding. This notebook drives them and watches the clock.
#
# **The model here is untrained, on purpose.** It is a randomly initialised tiny
# `InteractionModel`: it babbles (random word ids, and noise for audio), so that nothing it
# says distracts from the loop (the trained one, `data/tiny.pt`, talks from notebook 07 on;
# it costs exactly the same per step). Everything about
# *timing and mechanics* is real: what it hears and when, when each output is played, how
# long each step takes, what happens when a step is late. What it says is meaningless.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only: fetch the repository (code and checkpoint), install it
    subprocess.run("test -d /content/minitml || git clone -q --depth 1 https://github.com/minitml/minitml "
                   "/content/minitml; pip install -q -e /content/minitml", shell=True, check=True)
    sys.path.insert(0, "/content/minitml")

# %% tags=["parameters"]
import os

FAST = os.environ.get("MINITML_FAST") == "1"  # the test suite runs a shrunken version
REAL_TIME = not FAST  # pace the hand-written loop by the wall clock (sleep until each chunk is in)
LONG_TURNS = 25 if FAST else 300  # micro-turns of the compute-time run (300 = one minute)

# %%
import math
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import torch
from IPython.display import Audio, display

from minitml.config import get_config
from minitml.events import EventTracker
from minitml.exercises import check
from minitml.model import InteractionModel
from minitml.session import Session
from minitml.stream import PAD
from minitml.timeline import Timeline
from minitml.world.espeak import synthesize

torch.manual_seed(0)
torch.set_num_threads(1)  # see below: one thread keeps the step time steady

cfg = get_config("tiny")
model = InteractionModel(cfg).eval()  # random weights: it babbles
SR = cfg.audio.sample_rate  # 16 kHz
MICRO_TURN_MS = cfg.audio.micro_turn_ms  # 200
MICRO_TURN_S = MICRO_TURN_MS / 1000
N = cfg.audio.samples_per_micro_turn  # 3200 samples per chunk
A = cfg.audio.tokens_per_micro_turn  # 4 output tokens (50 ms each) per micro-turn
SLOT_S = MICRO_TURN_S / A  # 0.05 s

print(f"tiny model: {sum(p.numel() for p in model.parameters()):,} parameters, "
      f"{cfg.positions_per_micro_turn} positions per micro-turn {cfg.layout()}")
print(f"one chunk = {N} samples = {MICRO_TURN_MS} ms; the model says {A} tokens of "
      f"{1000 * SLOT_S:.0f} ms each; FAST={FAST}, REAL_TIME={REAL_TIME}")

# %% [markdown]
# Why one thread? PyTorch splits each matrix product over all cores by default. The tiny
# model's products are small, so a second thread buys almost nothing; but when the other core
# is busy (a browser, another notebook), a step has to wait for it, and a 20 ms step can
# turn into a 1 s one. A real-time loop cares about its *slowest* step, so one steady thread
# is the better choice here.
#
# ## A user sentence, cut into micro-turns
# eSpeak NG says a question; we put 0.4 s of silence before it and 1.4 s after it, then cut
# the waveform into 3200-sample chunks, exactly what a microphone would deliver every 200 ms.

# %%
speech = synthesize("Could you tell me what the weather is like today?")
lead = 0.4  # s of silence before the user speaks
wave = torch.cat([torch.zeros(int(lead * SR)), speech.wave, torch.zeros(int(1.4 * SR))])
wave = torch.nn.functional.pad(wave, (0, -wave.numel() % N))  # whole chunks only
chunks = wave.view(-1, N)  # (T, 3200): chunk t is what the microphone heard in [0.2t, 0.2(t+1)) s
words_at = [(w, round(lead + s, 2)) for w, s in speech.words]
print(f"{wave.numel() / SR:.1f} s of audio = {chunks.shape[0]} micro-turns; user words: {words_at}")
display(Audio(wave.numpy(), rate=SR))

# %% [markdown]
# ## The loop, by hand
# This is the whole of a live session: wait for a chunk, step, play. `step(chunk)` hears the
# chunk (16 causal dMel frames, no look-ahead), runs the input block through the model into
# the KV cache, generates the $A = 4$ output tokens one after another (a word id or PAD, and
# 4 dMel frames each) and vocodes them into the 3200 samples to play next.
#
# The clock: chunk $t$ is complete at $0.2(t+1)$ s, so step $t$ can start then, at the
# earliest, and its output is ready `compute_ms` later. With `REAL_TIME` the loop sleeps
# until each chunk has "arrived" and reads the wall clock; in FAST mode the same clock is
# simulated (no sleeping): a step starts at `max(chunk arrived, previous step done)`.

# %%
def level_db(x):
    """RMS level of a chunk in dB full scale (digital silence shows as -100)."""
    return 20 * math.log10(x.pow(2).mean().sqrt().item() + 1e-5)


def said(out):
    """The 4 monologue slots of one output: a word id, or PAD (silence)."""
    return " ".join("PAD" if i == PAD else f"<{i}>" for i in out.text_ids.tolist())


session = Session(model)  # temperature 0: greedy (greedy_word for words, argmax bins): deterministic
outputs, ready = [], []  # every MicroTurnOutput; when each output was ready (s on the clock)
print(" t  heard (s)     level     said (word ids / PAD)    compute / budget   ready at  (after arrival)")
start, clock = time.perf_counter(), 0.0
for t, chunk in enumerate(chunks):
    arrived = (t + 1) * MICRO_TURN_S  # the last sample of chunk t is in
    if REAL_TIME:
        time.sleep(max(0.0, arrived - (time.perf_counter() - start)))
        clock = time.perf_counter() - start
    else:
        clock = max(clock, arrived)  # simulated: the step waits for its chunk
    out = session.step(chunk)  # hear 200 ms, say the next 200 ms
    clock = time.perf_counter() - start if REAL_TIME else clock + out.compute_ms / 1000
    outputs.append(out)
    ready.append(clock)
    print(f"{t:2d}  [{t * MICRO_TURN_S:.1f}, {arrived:.1f})  {level_db(chunk):6.1f} dB   {said(out):24s}"
          f"{out.compute_ms:6.1f} / {session.budget_ms:.0f} ms   {clock:6.3f} s  (+{1000 * (clock - arrived):3.0f} ms)")

# %% [markdown]
# Read a row: micro-turn $t$ heard $[0.2t, 0.2(t+1))$ s (quiet, then the question, then quiet
# again); the four word ids it said are played from $0.2(t+1)$ s on, one 50 ms slot each; the
# step took a few tens of ms of a 200 ms budget. The untrained model talks through everything,
# silence included: a trained one would say PAD and quiet frames while the user speaks.
#
# Two clocks are in play, and it pays to keep them apart:
#
# - the **nominal clock** (what `Timeline`, the events and training use): output $t$ occupies
#   exactly $[0.2(t+1), 0.2(t+2))$ s, and its word in slot $j$ is played at $0.2(t+1) + 0.05j$;
# - the **wall clock**: output $t$ is ready `compute_ms` after chunk $t$ arrived. A real player
#   holds a small fixed playout delay (a jitter buffer) of at least the slowest step, so the
#   speaker sounds continuous; every latency therefore carries 200 ms of buffering *plus* compute.

# %%
for out in outputs[:3]:
    print(f"output {out.turn}: words (word, played at s) = {[(w, round(s, 3)) for w, s in out.words]}")

# %% [markdown]
# ## The same thing with `Session.run`
# `run` is that loop without the sleeping: it cuts a recording into chunks and calls `step`
# for each (a step that raises is logged as an `error` event and replaced by silence, and the
# session goes on). A fresh session on the same audio says the same thing, because the
# sampling is greedy, unless a step missed its deadline in one of the two runs (then a
# catch-up step said silence instead, see below).

# %%
timeline = Session(model).run(wave)
same = all(torch.equal(a.text_ids, b.text_ids) and torch.equal(a.tokens, b.tokens)
           for a, b in zip(outputs, timeline.outputs))
n_catch_up = sum(o.catch_up for o in outputs + timeline.outputs)
print(f"{len(timeline.outputs)} micro-turns; same words and frames as the hand loop: {same} "
      f"(catch-up steps in the two runs: {n_catch_up})")
print("events:", [(e.kind, round(e.time, 2)) for e in timeline.events])


def for_display(tl):
    """A copy of a timeline with the model's audio scaled to a peak of 1, for plotting."""
    peak = max(o.audio.abs().max().item() for o in tl.outputs) or 1.0
    return Timeline(tl.sample_rate, tl.micro_turn_ms, tl.user_audio,
                    [replace(o, audio=o.audio / peak) for o in tl.outputs], tl.events)


def plot_timeline(tl, title):
    fig, ax = plt.subplots(figsize=(14, 3.8))
    for_display(tl).plot(ax=ax)
    ax.set_title(title, pad=55, fontsize=10)  # room for the event labels above the axes
    return ax


ax = plot_timeline(timeline, "user (top) and the untrained model (bottom) on one clock; "
                             "dotted: end of the user's speech")
ax.axvline(lead + speech.duration, color="tab:blue", lw=0.8, ls=":")
plt.show()

# %% [markdown]
# The model's channel starts at 0.2 s: output 0 can only be played once chunk 0 is in. It
# "takes the turn" at once and never lets go, which is what an untrained model does.
#
# Its audio is far too loud: an untrained dMel head picks middle bins on all 80 channels, which
# is broadband noise at a high level, and Griffin-Lim turns it into samples far outside
# $[-1, 1]$ (`Timeline.plot` draws samples as they are, so the plots here scale the model's
# channel first). To listen to both channels at once (user left, model right), each channel is
# scaled to its own peak; played together, the user would be inaudible.

# %%
stereo = timeline.stereo()  # (2, N): user, model
peaks = stereo.abs().amax(dim=1, keepdim=True)  # (2, 1)
print(f"peak |sample|: user {peaks[0].item():.2f}, model {peaks[1].item():.1f}")
display(Audio((stereo / peaks.clamp_min(1e-9)).numpy(), rate=SR, normalize=False))

# %% [markdown]
# ## Compute time against the budget
# A step must finish within its 200 ms, *every* step: the mean does not matter much, the
# slowest step does. Here is a longer run (the sentence again and again), step by step and
# as a histogram, against the budget. The **real-time factor** is compute time over audio
# time, $\mathrm{RTF} = \sum_t c_t / (200\,\text{ms} \cdot T)$; below 1 the loop can keep up on
# average, and $1/\mathrm{RTF}$ is the headroom.
#
# The cost per step is flat by construction: the ring-buffer KV cache always holds
# `window` slots (empty ones are masked), so step 0 pays the same attention as step 10,000.

# %%
reps = -(-LONG_TURNS // chunks.shape[0])
long_wave = wave.repeat(reps)[: LONG_TURNS * N]
long_timeline = Session(model).run(long_wave)
c = torch.tensor(long_timeline.compute_ms)  # (T,) ms per step
rtf = c.sum().item() / (len(c) * MICRO_TURN_MS)
misses = sum(e.kind == "deadline_miss" for e in long_timeline.events)
print(f"{len(c)} steps ({len(c) * MICRO_TURN_S:.0f} s of audio): median {c.median():.1f} ms, "
      f"95th percentile {c.quantile(0.95):.1f} ms, max {c.max():.1f} ms; deadline misses: {misses}")
print(f"real-time factor {rtf:.3f}: {1 / rtf:.0f}x faster than real time (measured here)")
paced = torch.tensor([o.compute_ms for o in outputs]).median().item()
print(f"the hand loop above ({'paced in real time' if REAL_TIME else 'back to back'}): median {paced:.1f} ms")

fig, axes = plt.subplots(1, 2, figsize=(12, 3))
axes[0].plot(c.numpy(), lw=0.8)
axes[0].axhline(MICRO_TURN_MS, color="crimson", ls="--", label="budget: 200 ms")
axes[0].axvline(cfg.model.window_micro_turns, color="gray", ls=":", label="window full")
axes[0].set_xlabel("micro-turn")
axes[0].set_ylabel("compute (ms)")
axes[0].set_ylim(0, max(220.0, c.max().item() * 1.1))
axes[0].legend(fontsize=8)
axes[1].hist(c.numpy(), bins=torch.linspace(0, max(220.0, c.max().item()), 45).numpy())
axes[1].axvline(MICRO_TURN_MS, color="crimson", ls="--")
axes[1].set_xlabel("compute per step (ms)")
axes[1].set_title(f"RTF {rtf:.3f}", fontsize=10)
plt.show()

# %% [markdown]
# Paced in real time, a step is often slower than back to back: between steps the core sits
# idle, its caches go cold and its clock may drop. A live loop should be budgeted with the paced
# number, not the benchmark one.
#
# Where does the time go? Two sessions step through the same chunks in turn, one with the
# vocoder and one without (it then returns silence for audio), so both see the same machine
# load; the difference is what Griffin-Lim costs.

# %%
with_vocoder, without_vocoder = Session(model), Session(model, vocode=False)
c_both, c_model = [], []
for chunk in chunks:
    c_both.append(with_vocoder.step(chunk).compute_ms)
    c_model.append(without_vocoder.step(chunk).compute_ms)
c_all, c_model = torch.tensor(c_both).median().item(), torch.tensor(c_model).median().item()
print(f"median step: {c_all:.1f} ms with the vocoder, {c_model:.1f} ms without: the transformer "
      f"takes {c_model:.1f} ms, the toy vocoder about {c_all - c_model:.1f} ms (measured here)")

# %% [markdown]
# ## When a step overruns
# Suppose a step takes longer than its budget: the session is now behind real time by the
# excess, `late_ms`. Every later output would be played late by that much, and lateness only
# adds up. The session's policy (`overrun="catch_up"`, the default) is to run the **next**
# step as a *catch-up step*: it still hears its chunk (context is never dropped) but says
# silence for the whole micro-turn, in one forward call with nothing to generate and nothing
# to vocode, so it is cheap. It repeats until `late_ms` is back to 0:
#
# $$\text{late}_t = \max(0,\ \text{late}_{t-1} + c_t - \text{budget}), \qquad
#   \text{step } t \text{ is a catch-up step} \iff \text{late}_{t-1} > 0$$
#
# Every miss is an event (`deadline_miss`, then `catch_up`), never hidden. To make steps
# overrun on demand, we shrink `session.budget_ms` to 1 ms for three steps (as if the machine
# had suddenly become very slow), then give it back its 200 ms.

# %%
demo = Session(model)
print(" t  budget   compute    late   catch-up  said                      events")
for t, chunk in enumerate(chunks[:11]):
    demo.budget_ms = 1.0 if 3 <= t < 6 else float(MICRO_TURN_MS)
    out = demo.step(chunk)
    events = ", ".join(f"{e.kind} @ {e.time:.1f} s" for e in out.events
                       if e.kind in ("deadline_miss", "catch_up"))
    print(f"{t:2d}  {demo.budget_ms:5.0f}  {out.compute_ms:6.1f} ms {out.late_ms:6.1f} ms  "
          f"{str(out.catch_up):8s}  {said(out):24s}  {events}")
    if out.catch_up:
        assert (out.text_ids == PAD).all() and (out.tokens == 0).all() and (out.audio == 0).all()

# %% [markdown]
# Step 3 overran (its budget was 1 ms), so step 4 was a catch-up: PAD words, silent frames,
# zero audio, and a fraction of the compute. It still overran the impossible 1 ms budget, so
# step 5 caught up too. Step 6 had its 200 ms again: one cheap catch-up step brought `late_ms`
# back to 0, and step 7 spoke normally. The model *heard* every chunk throughout.
#
# A machine that is only a little too slow shows the policy's cost: with a budget of 3/4 of the
# median step, normal steps overrun and the catch-up steps that follow pay the lag back, so the
# model can speak in only about every other micro-turn. (Shaded: the catch-up outputs.)

# %%
slow_budget = 0.75 * c_all
slow = Session(model, budget_ms=slow_budget).run(wave)
n_cu = sum(o.catch_up for o in slow.outputs)
print(f"budget {slow_budget:.1f} ms: {n_cu} of {len(slow.outputs)} steps were catch-up steps")
ax = plot_timeline(slow, f"a machine 4/3 too slow (budget {slow_budget:.0f} ms): catch-up outputs shaded")
for o in slow.outputs:
    if o.catch_up:
        ax.axvspan((o.turn + 1) * MICRO_TURN_S, (o.turn + 2) * MICRO_TURN_S, color="crimson", alpha=0.12)
plt.show()

# %% [markdown]
# The alternative, `overrun="ignore"`, keeps talking and lets `late_ms` grow: every word comes
# later and later. Dropping speech is the lesser evil for a conversation; dropping *input*
# would be worse still, because the model would stop knowing what was said.
#
# ## The latency budget: the earliest possible answer
# When can an answer start, at the earliest, if the user's turn ends at time $s$?
#
# - **The interaction model** hears $s$ inside micro-turn $t_s = \lfloor s / 0.2 \rfloor$. Its
#   output $t_s$ is the first that can react, and it is ready when chunk $t_s$ is complete plus
#   one step of compute: $0.2(t_s + 1) + c$. That is between $s + c$ and $s + 0.2 + c$
#   (on average $s + 0.1 + c$). Whether the model *does* answer then is learned (it can
#   anticipate the end of a question from its words and intonation); this is the floor.
# - **A walkie-talkie pipeline** (energy VAD, then speech recognition, an LLM, speech synthesis)
#   only starts once it has heard enough silence to declare the turn over: common voice
#   stacks wait 0.5 s to 0.8 s. Its floor is $s + \text{threshold} + c$, even if we give it the
#   answer for free and the same compute per step.
#
# The energy VAD is the baseline's own (`minitml.evaluate.vad`): 20 ms frames, a frame is
# speech when its level is within 35 dB of the loudest frame (and clear of the noise floor);
# `turn_ends` declares a turn over after `threshold` seconds of non-speech.

# %%
from minitml.evaluate import turn_ends, vad


def energy_vad(x, threshold_s):
    """(end of speech, time the end is declared) in s, or None if the speech never ends."""
    ends = turn_ends(vad(x, SR), threshold_s, x.numel() / SR)
    return ends[0] if ends else None


s_end, _ = energy_vad(wave, 0.5)
t_s = int(s_end / MICRO_TURN_S)  # the micro-turn that heard the end
c_step = outputs[t_s].compute_ms / 1000  # that step's measured compute
# The interaction model's output t_s was ready at ready[t_s] on the hand loop's clock (measured).
floors = {"interaction model": (s_end, (t_s + 1) * MICRO_TURN_S, ready[t_s])}
for threshold in (0.5, 0.8):
    _, declared = energy_vad(wave, threshold)
    floors[f"walkie-talkie, {threshold} s VAD"] = (s_end, declared, declared + c_step)
print(f"the user's turn ends at {s_end:.2f} s (energy VAD); it falls in micro-turn {t_s}, whose "
      f"step took {1000 * c_step:.1f} ms (measured here)")
for name, (s, waited, answer) in floors.items():
    print(f"{name:28s} earliest answer at {answer:.3f} s: {1000 * (answer - s):4.0f} ms after the end "
          f"({1000 * (waited - s):.0f} ms waiting + {1000 * (answer - waited):.0f} ms compute)")

# %%
fig, (ax, ax_pub) = plt.subplots(1, 2, figsize=(14, 3.8), gridspec_kw={"width_ratios": [3, 1]})
t_axis = torch.arange(wave.numel()) / SR
ax.plot(t_axis.numpy(), (3 + 0.6 * wave / wave.abs().max()).numpy(), lw=0.4, color="tab:blue")
for row, (s, waited, answer) in enumerate(floors.values()):
    y = 2 - row
    ax.broken_barh([(s, waited - s)], (y - 0.3, 0.6), color="lightgray")
    ax.broken_barh([(waited, answer - waited)], (y - 0.3, 0.6), color="crimson")
    ax.plot([answer], [y], marker=">", color="black")
    ax.text(answer + 0.03, y, f"{1000 * (answer - s):.0f} ms", va="center", fontsize=9)
ax.axvline(s_end, color="tab:blue", ls=":", lw=0.8)
for t in range(chunks.shape[0] + 1):
    ax.axvline(t * MICRO_TURN_S, color="gray", lw=0.2)
ax.set_yticks([3, 2, 1, 0], ["user", *floors])
ax.set_xlim(s_end - 1.0, s_end + 1.3)
ax.set_xlabel("time (s); gray bars: waiting (buffering / silence threshold), red: compute (measured "
              "here); thin lines: micro-turn boundaries")
ax.set_title("earliest possible answer after the end of the user's turn", fontsize=10)
published = {"reference system": 0.40, "Gemini live": 0.57, "GPT-realtime": 1.18}
ax_pub.barh(list(published), list(published.values()), color=["tab:green", "gray", "gray"])
for i, v in enumerate(published.values()):
    ax_pub.text(v + 0.02, i, f"{v:.2f} s", va="center", fontsize=9)
ax_pub.set_xlim(0, 1.5)
ax_pub.set_title("published, not measured here:\nFull-Duplex-Bench v1 mean latency", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# The walkie-talkie has lost 0.5 to 0.8 s before it even starts to think; the interaction
# model's floor is one micro-turn of buffering plus one step. The published averages on
# Full-Duplex-Bench v1 (not measured here) are 0.40 s for the reference interaction model
# against 0.57 s for Gemini live and 1.18 s for GPT-realtime. Those are what trained models
# *chose* to do, on real benchmark audio, on their own hardware; the bars on the left are only
# the mechanical floor of each design, with the compute this notebook measured.
#
# ## Events: what the model's speech was
# The session feeds every 50 ms output slot to an `EventTracker`. A slot is *speech* when it
# carries a word or audible frames (mean bin above `level` = 2). A speech segment ends after
# `gap_s` = 0.25 s of silence. Then Full-Duplex-Bench's rule decides what it was:
#
# | event | when |
# | --- | --- |
# | `speech_start` | the first speech slot of a segment |
# | `took_turn` | the segment lasts **at least 1 s or has more than 3 words** (its time is the segment's start, the moment latency is measured to) |
# | `backchannel` | the segment ended before it took the turn: an "mm-hm" |
# | `yielded` | a segment that took the turn ended while the user was speaking: the model gave the floor back |
#
# A turn that ends while the user is quiet is just the end of a turn: no event. Below, hand-made
# slot sequences go straight into `EventTracker.update`, one character per 50 ms slot:
# `w` a word starts, `-` audible frames, `.` silence; and for the user, `u` speaking.

# %%
loud_frames = torch.full((cfg.audio.frames_per_token, cfg.audio.n_mels), 12)  # (k, 80) bins
quiet_frames = torch.zeros_like(loud_frames)


def track(model_slots, user_slots=""):
    """Feed one slot per character to a fresh EventTracker; return its events."""
    tracker, events = EventTracker(), []
    for i, ch in enumerate(model_slots):
        user_speaking = i < len(user_slots) and user_slots[i] == "u"
        tracker.update(i * SLOT_S, SLOT_S, ch == "w", loud_frames if ch in "w-" else quiet_frames,
                       user_speaking, events)
    return events


scenarios = {
    "mm-hm in a pause": ("....w----..........", ""),
    "three short words": ("w--w--w--.........", ""),
    "four short words": ("w--w--w--w--.......", ""),
    "0.90 s of sound, no words": ("-" * 18 + "." * 8, ""),
    "1.05 s of sound, no words": ("-" * 21 + "." * 8, ""),
    "talks, user barges in": ("w-w--w---w--w--w---w--w-" + "." * 8, "." * 18 + "u" * 14),
    "talks, then stops": ("w-w--w---w--w--w---w--w-" + "." * 8, ""),
}
fig, axes = plt.subplots(len(scenarios), 1, figsize=(11, 0.9 * len(scenarios)), sharex=True)
for ax, (name, (model_slots, user_slots)) in zip(axes, scenarios.items()):
    events = track(model_slots, user_slots)
    print(f"{name:26s} {[(e.kind, round(e.time, 2), e.detail) for e in events]}")
    for i, ch in enumerate(model_slots):
        if ch in "w-":
            ax.broken_barh([(i * SLOT_S, SLOT_S)], (0, 0.4), color="tab:orange")
        if ch == "w":
            ax.text(i * SLOT_S + 0.005, 0.42, "w", fontsize=7, va="bottom")
    for i, ch in enumerate(user_slots):
        if ch == "u":
            ax.broken_barh([(i * SLOT_S, SLOT_S)], (-0.5, 0.4), color="tab:blue")
    for e in events:
        if e.kind != "speech_start":
            ax.axvline(e.time, color="black", lw=1)
            ax.text(e.time + 0.01, -0.3, f"{e.kind} {e.detail}", fontsize=8, va="center")
    ax.set_ylim(-0.6, 0.75)
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
axes[-1].set_xlabel("time (s); orange: the model's speech slots, blue: the user speaking")
plt.show()

# %% [markdown]
# The untrained model of this notebook took the turn at 0.2 s and never stopped. A trained model
# should show `took_turn` shortly after the end of each question, `backchannel`s (if anything)
# during the user's pauses, and `yielded` soon after a barge-in. These events are what an
# evaluation turns into Full-Duplex-Bench's numbers: turn-taking latency (`took_turn` time minus
# the end of the user's turn), the takeover rate in pauses, and how fast the model yields.
#
# ## Exercises
# Replace each `raise NotImplementedError` with your code and re-run the cell; `check`
# compares your answer with the package's (or with the definition stated above).
#
# **1.** When is output token $j$ ($0 \le j < 4$) of micro-turn $t$ played, in seconds on the
# session clock? The cases include the word times the session itself reported above.

# %%
def my_play_time(t, j):
    raise NotImplementedError  # your code here


spoken = [((o.turn, j), when)  # (micro-turn, slot) -> the time the session says it is played
          for o in outputs[:4]
          for j, (_, when) in zip([j for j, i in enumerate(o.text_ids.tolist()) if i != PAD], o.words)]
check(my_play_time, [((0, 0), 0.2), ((3, 2), 0.9), ((10, 3), 2.35), *spoken])

# %% [markdown]
# **2.** The earliest time, in seconds, at which the interaction model's answer can start when the
# user's turn ends at `end_s` seconds and one step takes `compute_ms`: the first output that has
# heard the end is ready once its chunk is complete, plus the compute (see "The latency budget").

# %%
def my_earliest_answer(end_s, compute_ms):
    raise NotImplementedError  # your code here


check(my_earliest_answer, [((1.13, 25.0), 1.225), ((2.05, 40.0), 2.24), ((0.61, 0.0), 0.8),
                           ((3.99, 150.0), 4.15)])

# %% [markdown]
# **3.** The overrun policy: given the compute time of each step and a fixed budget (both in
# ms), return how late the session is after each step (`late_ms`, the recurrence in "When a
# step overruns"). The last case is the "4/3 too slow" session above. Then: which steps of that
# session were catch-up steps, according to your list?

# %%
def my_late_ms(compute_ms, budget_ms):
    raise NotImplementedError  # your code here


check(my_late_ms, [
    (([50.0, 250.0, 120.0, 300.0, 10.0, 10.0], 200.0), [0.0, 50.0, 0.0, 100.0, 0.0, 0.0]),
    (([30.0, 30.0, 5.0, 30.0], 20.0), [10.0, 20.0, 5.0, 15.0]),
    ((slow.compute_ms, slow_budget), [o.late_ms for o in slow.outputs]),
])
