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
# # 10 · The live demo: talk to the model inside the notebook
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/10_live_demo.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F10_live_demo.ipynb)
#
# **One idea:** a duplex model is only convincing live. You speak, it says "mm-hm"; you pause
# mid-sentence and it waits; you stop and it answers; you cut it off and it stops; you change
# the light and it notices. This notebook puts the shipped checkpoint behind a widget that
# listens to your microphone (or plays a scripted user, if you have none) and answers every
# 200 ms, and then opens the widget up: the messages it sends, the one `Session.step` each of
# them runs, and the small jitter buffer that makes 200 ms pieces of audio sound continuous.
#
# ```
# browser (owns the clock)                         kernel (the message handler)
# mic --AudioWorklet--> 200 ms chunk, 16 kHz ---->  chunk t: Session.step(audio, frame)
#                       (binary, 12,800 bytes)            hear 200 ms, say the next 200 ms
# speaker <-- scheduled at clock0 + 0.2 (t+1) <----  output t: 3200 samples, words, events
# ```
#
# The kernel never loops. Each chunk *message* runs one step and replies; between chunks the
# kernel is idle. A cell that looped over the microphone would keep the kernel busy, and a
# busy kernel does not process widget messages: the chunks would pile up unanswered.

# %%
import os
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only: fetch the repository (code and checkpoint), install it
    subprocess.run("test -d /content/minitml || git clone -q --depth 1 https://github.com/minitml/minitml "
                   "/content/minitml; pip install -q -e /content/minitml", shell=True, check=True)
    sys.path.insert(0, "/content/minitml")
    from google.colab import output

    output.enable_custom_widget_manager()  # Colab shows third-party widgets only with this

# %% tags=["parameters"]
FAST = os.environ.get("MINITML_FAST") == "1"  # the test suite runs a shrunken version
KIND = "interruption"  # the scenario of the by-hand run below (any of the nine kinds)
SEED = 0  # its held-out seed

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Audio, display

from minitml.demo import DemoEngine, DuplexDemo, load_demo_model, pick_device
from minitml.demo.engine import LEAD_S, level_db, playout_schedule
from minitml.exercises import check

device = pick_device()  # "cuda" when there is a GPU
if device == "cpu":
    torch.set_num_threads(1)  # steady step times (notebook 05 shows why)
model = load_demo_model(device=device)  # data/tiny.pt (or data/small.pt on a GPU, if it is there)
cfg = model.cfg
SR, N = cfg.audio.sample_rate, cfg.audio.samples_per_micro_turn  # 16 kHz, 3200 samples per chunk
print(f"{model.checkpoint}: {sum(p.numel() for p in model.parameters()):,} parameters on {device}")

# %% [markdown]
# ## The widget
# Press **start**. Two modes:
#
# - **scripted** (the default; no microphone needed, so it works on Binder, in a muted lab and
#   in CI): pick one of the nine scenario kinds of the toy world. Its user audio is played into
#   the model in real time, through exactly the path the microphone takes, and you hear both
#   sides: the user on the left, the model on the right.
# - **microphone**: speak. Use headphones, or the model hears itself (the browser's echo
#   cancellation helps, a little). Tick *webcam* to let it see you; the picture is scaled to the
#   preset's 80x80 frame. Without a webcam it sees the toy scene: a lamp, which **change the
#   light** switches to the next colour.
#
# Whatever the mode: **interrupt** makes the user barge in ("wait, what colour is the light"),
# **start a timer** makes them ask for one ("tell me when five seconds have passed"), and the
# text box says any sentence in the toy world's user voice. The model only knows the toy
# world's 241 words and eSpeak voices: expect it to understand little of *your* English, and
# to get the timing (when to speak, when to stop) better than the content.
#
# The timeline scrolls: the user's level above, the model's below, the model's monologue words
# under it, and the events (took turn, backchannel, yielded, background call and result,
# deadline misses). The line under it is the per-step compute time against the 200 ms budget.
#
# **Microphone permission.** Browsers offer the microphone and camera only to pages in a
# *secure context*: `https://...`, or `http://localhost` / `http://127.0.0.1`. JupyterLab on
# your own machine, Colab and Binder qualify. A lab opened by its IP address over plain http
# does not: the widget then says so; use scripted mode, or reach the lab through an SSH tunnel
# to localhost. The first start asks for permission; a refusal (or no microphone) is reported
# in the widget, and scripted mode still works.

# %%
demo = DuplexDemo(model)
display(demo)

# %% [markdown]
# After a conversation, the widget keeps it as a `Timeline` (the same object as
# `Session.run` returns in notebook 05): plot it, listen to it.

# %%
def show_timeline(timeline, title):
    if not timeline.outputs:
        print("nothing played yet: press start above, then run this cell again")
        return
    fig, ax = plt.subplots(figsize=(13, 3.2))
    timeline.plot(ax=ax)
    ax.set_title(title, pad=50, fontsize=10)
    plt.show()
    display(Audio(timeline.stereo().clamp(-1, 1).numpy(), rate=SR, normalize=False))


show_timeline(demo.timeline(), "the last conversation in the widget (user above, model below)")

# %% [markdown]
# ## The same messages, without a browser
# The widget is a thin pipe: `DuplexDemo` hands every message from the page to a
# `DemoEngine` and sends back what it returns. Driving the engine by hand shows the whole
# protocol (the docstring of `minitml/demo/engine.py` lists every message). A conversation
# starts with a `start` message; in scripted mode each `chunk` message carries no audio, the
# engine takes the scenario's next 200 ms itself.

# %%
engine = DemoEngine(model)
(started, _), = engine.handle({"type": "start", "mode": "scripted", "kind": KIND, "seed": SEED})
print({k: v for k, v in started.items() if k != "transcript"})
print("\n".join(f"{a:5.2f}-{b:5.2f} {who:>9}: {text}" for who, a, b, text in started["transcript"]))

# %% [markdown]
# One chunk, one reply. The reply's binary buffers are named in `buffers`: the model's next
# 200 ms ("model", float32), the user's 200 ms ("user": scripted mode plays both sides), and the
# frame the model saw ("frame", RGB bytes), sent only when it changed.

# %%
(reply, buffers), = engine.handle({"type": "chunk", "seq": 0})
print({k: v for k, v in reply.items()})
print("buffers:", [(name, len(b)) for name, b in zip(reply["buffers"], buffers)], "bytes")

# %% [markdown]
# The rest of the scenario, one message per chunk, as the page would send them every 200 ms:

# %%
replies = [engine.handle({"type": "chunk", "seq": seq})[0][0] for seq in range(1, started["n_turns"])]
compute = np.array([reply["compute_ms"]] + [r["compute_ms"] for r in replies])
print(f"{len(compute)} micro-turns; compute per step: median {np.median(compute):.1f} ms, "
      f"max {compute.max():.1f} ms of the {cfg.audio.micro_turn_ms} ms budget (measured here)")
for r in [reply] + replies:
    for e in r["events"]:
        print(f"  {e['time']:5.2f} s  {e['kind']:18s} {e['detail']}")
show_timeline(engine.timeline(), f"{KIND}, held-out seed {SEED}: the engine driven by hand")

# %% [markdown]
# ## A bad chunk
# A microphone can deliver garbage: a chunk of the wrong length, NaN samples, integers where
# floats were promised. The engine refuses it with an `error` message that says what was
# expected and what came, steps on silence instead (the conversation's clock must not stop),
# and the next good chunk goes on as if nothing happened.

# %%
engine.handle({"type": "start", "mode": "microphone"})
bad = {
    "too short": ({"dtype": "float32"}, np.zeros(1000, "<f4").tobytes()),
    "NaN": ({"dtype": "float32"}, np.full(N, np.nan, "<f4").tobytes()),
    "int16": ({"dtype": "int16"}, np.zeros(N, "<i2").tobytes()),
}
for seq, (name, (content, raw)) in enumerate(bad.items()):
    replies = engine.handle({"type": "chunk", "seq": seq, **content}, [raw])
    print(f"{name:10s} -> {[r['type'] for r, _ in replies]}: {replies[0][0]['message']}")
(reply, _), = engine.handle({"type": "chunk", "seq": 3}, [np.zeros(N, "<f4").tobytes()])
print(f"a good chunk after them -> {reply['type']} of micro-turn {reply['turn']}")
engine.close()

# %% [markdown]
# ## Playing 200 ms pieces without gaps
# Output $t$ belongs in $[0.2(t+1), 0.2(t+2))$ s of the conversation. The page maps that clock
# onto its audio clock with one number, `clock0`, set by the first reply: reply $t$ is played
# from `clock0 + 0.2 (t + 1)`, so consecutive replies join exactly, sample for sample, however
# irregularly they arrive, as long as each one arrives before its slot. The first reply is
# played `LEAD_S` = 0.15 s after it arrives: that is the jitter buffer, the slack a slow step
# or a slow network may use. A reply that comes too late re-anchors `clock0` to itself: one
# audible gap, and every later reply is played that much later. (In scripted mode the page
# also plays the user's chunk $t$, 200 ms before the model's output $t$, so there the user's
# chunk is what the first reply anchors: the whole conversation is heard 200 ms later, in
# step.)
#
# `playout_schedule` is the page's rule in Python. Below, microphone mode: replies arrive
# 30 ms after their chunk is complete (a 30 ms step), except one step that takes 400 ms.

# %%
arrivals = [0.2 * (t + 1) + 0.03 for t in range(15)]
arrivals[7] += 0.37  # one slow step: 400 ms instead of 30
starts, gaps = playout_schedule(arrivals)
print(f"gaps: {gaps}; time from arrival to playback (ms):",
      [round(1000 * (s - a)) for s, a in zip(starts, arrivals)])
before, after = starts[0] - arrivals[0], starts[-1] - arrivals[-1]
print(f"wait before playback: {1000 * before:.0f} ms before the slow step, {1000 * after:.0f} ms after it, "
      f"so every later answer is heard {after - before:.2f} s later than it could be")
fig, ax = plt.subplots(figsize=(12, 2.2))
for t, (a, s) in enumerate(zip(arrivals, starts)):
    ax.plot([a], [0.5], "k|", ms=12)
    ax.broken_barh([(s, 0.2)], (0.8, 0.4), color="tab:orange" if t % 2 else "tab:red")
ax.set_yticks([0.5, 1.0], ["reply arrives", "played"])
ax.set_xlabel("audio clock (s)")
ax.set_title(f"jitter buffer of {1000 * LEAD_S:.0f} ms: one late reply, one gap", fontsize=10)
plt.show()

# %% [markdown]
# After the slow step every reply waits longer before it is played (the last line above):
# the model's answers come later than they could, for the rest of the conversation, by
# what the slow step overran its slack. A live system trades a little
# latency (a bigger `LEAD_S`) against gaps; the session's own overrun policy (notebook 05)
# keeps the *compute* on time by saying silence after a late step.
#
# ## On a GPU
# `pick_device()` chooses CUDA when there is one, and `load_demo_model` then prefers a larger
# checkpoint (`data/small.pt`) if it has been trained and copied there. The tiny model is
# latency-bound, not compute-bound: four output tokens are generated one after another, each a
# handful of small kernels, so a GPU buys less than its FLOPs suggest (notebook 05 measures
# where a step's time goes).
#
# ## Exercises
# Replace each `raise NotImplementedError` with your code and re-run the cell; `check`
# compares your answer with the package's.
#
# **1.** How many bytes does one chunk message carry: one micro-turn of float32 samples, for a
# sample rate (Hz) and micro-turn length (ms)?

# %%
def my_chunk_bytes(sample_rate, micro_turn_ms):
    raise NotImplementedError  # your code here


check(my_chunk_bytes, [((16_000, 200), 12_800), ((24_000, 80), 7_680), ((8_000, 200), 6_400)])

# %% [markdown]
# **2.** The timeline draws levels: the RMS level in dBFS, $20 \log_{10}(\mathrm{rms} + 10^{-5})$,
# of each of `parts` equal pieces of a chunk, rounded to 0.1 dB (a list of floats).

# %%
def my_level_db(x, parts):
    raise NotImplementedError  # your code here


rng = np.random.default_rng(0)
cases = [np.zeros(N, np.float32), 0.1 * np.ones(N, np.float32), rng.uniform(-0.5, 0.5, N).astype(np.float32)]
check(my_level_db, [((x, parts), level_db(x, parts)) for x in cases for parts in (1, 4)], atol=0.051)

# %% [markdown]
# **3.** The jitter buffer in microphone mode: given when each reply arrives, return the times
# the page starts playing them and the number of gaps (the rule in "Playing 200 ms pieces
# without gaps"; step 0.2 s, lead 0.15 s, margin 0.02 s).

# %%
def my_playout(arrivals):
    raise NotImplementedError  # your code here


check(my_playout, [((a,), playout_schedule(a)) for a in (
    [0.23, 0.43, 0.63],
    arrivals,
    [0.2 * (t + 1) + 0.05 * (t % 3) for t in range(12)],
    [0.3, 0.5, 1.5, 1.6, 1.8, 3.0],
)])
