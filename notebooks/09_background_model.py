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
# # 09 · The background model: thinking while talking
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/09_background_model.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F09_background_model.ipynb)
#
# **One idea:** an interaction model must answer every 200 ms, so it cannot stop to think.
# When a question needs real work ("what is thirty seven times forty nine?"), it hands the
# job to a second model that runs *beside* it, keeps the conversation alive ("let me
# check"), and weaves the result in when it arrives and when the user is not talking.
# Two clocks run at once: the micro-turns tick every 200 ms, the background job takes as long
# as it takes.
#
# ```
# micro-turns  |t0 |t1 |t2 |t3 |t4 |t5 |t6 |t7 |t8 |t9 |...     every 200 ms, never waiting
# monologue     let me check <call> thirty seven times forty nine </call>
# background                             [===== working =====]   its own clock
# text-in                                                  <result> one | thousand eight | ...
# ```
#
# The handoff lives in `minitml/background.py` (its docstring is the protocol):
#
# 1. **call**: the model says `<call> ... </call>` in its monologue (silent tokens); at
#    `</call>` the session builds a **context package** (the conversation, not a bare query)
#    and submits it; `submit` returns at once;
# 2. **result**: the answer streams back word by word and enters the model as text-in tokens,
#    $X = 2$ per micro-turn: `<result> one thousand eight hundred thirteen`;
# 3. **order**: overlapping calls are answered in the order they were issued, each exactly once;
# 4. **failure**: an exception or a timeout delivers `<result> <fail>`, and the session goes on;
# 5. **cancellation**: a cancelled call delivers nothing.
#
# The interaction model here is untrained, so it cannot say a call by itself yet;
# `script_monologue` makes its text channel say one (its audio is still its own). Everything
# else is the real path: the session, the handoff, a worker thread or process, the text-in slots.

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
TURNS = 14 if FAST else 25  # micro-turns of each paced run (real time: 0.2 s each)
SLOW_TOOL_S, FAST_TOOL_S = 1.0, 0.1  # latency of a slow and of a fast tool (s)
EVAL_PER_KIND = 20 if FAST else 100  # held-out requests per kind for the neural model's accuracy
N_SCENARIOS = 8 if FAST else 60  # background dialogues of the toy world for "woven in"
DEADLINE_STEPS = 40 if FAST else 300  # steps per condition in the deadline check
CALL_TRIES = 10 if FAST else 50  # held-out background dialogues tried until the trained model calls

# %%
import time
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from minitml import checkpoint
from minitml.background import script_monologue, weave_time
from minitml.config import get_config
from minitml.evaluate import run_scenario
from minitml.exercises import check
from minitml.metrics import score
from minitml.model import InteractionModel
from minitml.neural_background import (
    NeuralBackground,
    deadline_under_load,
    evaluate_neural,
    sample_answers,
    vote,
)
from minitml.session import Session
from minitml.world.scenarios import make_scenario
from minitml.world.tools import TOOLS, ToolExecutor, use_tools
from minitml.world.vocab import VOCAB

torch.manual_seed(0)
torch.set_num_threads(1)  # notebook 05: one steady thread for the loop

cfg = get_config("tiny")
model = InteractionModel(cfg).eval()  # random weights: it babbles (we script its monologue)
model.vocab = list(VOCAB)  # calls and results travel as words: a session with a background needs them
N = cfg.audio.samples_per_micro_turn  # 3200 samples per chunk
TURN_S = cfg.audio.micro_turn_ms / 1000  # 0.2 s
X = cfg.model.text_in_slots  # 2 text-in slots per micro-turn
print(f"micro-turn {TURN_S} s, {X} text-in slots per micro-turn, FAST={FAST}")

# %% [markdown]
# ## Tools: exact answers from the words of a call
# The first background model is not a model at all: a `ToolExecutor` parses the call's words
# and runs a tool. `arithmetic` reads number words on both sides of `times`, `plus` or `minus`
# (`parse_number` / `number_words` from the toy world's vocabulary) and answers exactly;
# `colour_of` and `legs_of` look facts up in the toy world's own tables. A tool returns
# `None` when the request is not for it; when no tool understands a request, that is an
# error, and the caller will hear `<fail>`.

# %%
for call in ["thirty seven times forty nine", "twelve plus thirty", "one hundred minus one",
             "colour of a cherry", "legs of an ant", "after twenty nine"]:
    try:
        print(f"{call:32s} -> {' '.join(use_tools(call.split()))}")
    except ValueError as err:
        print(f"{call:32s} -> ValueError: {err}")

# %% [markdown]
# Nobody taught the tools "after": exercise 1 adds that tool.
#
# ## The handoff in a live loop
# A session with a background model: `Session(model, background=ToolExecutor(latency_s=...))`
# (the model carries the vocabulary, as a loaded checkpoint does; else pass `vocab=`).
# We drive it as a live loop (notebook 05): chunk $t$ is complete at $0.2(t+1)$ s on the wall
# clock, and the step runs then. So the session clock and the wall clock agree, and the
# tool's latency shows up as the number of micro-turns that pass before the result arrives.
# The model says "let me check" and a call; the table shows each micro-turn: what it said
# (4 slots), what entered its text-in slots (2 slots), and the events.

# %%
def paced_run(session, n_turns, script=None, on_turn=None):
    """Step in real time; return the outputs, each step's (start, end) and the start time.

    Times are on the wall clock (time.monotonic), relative to t0 = the start of the run.
    on_turn(t, session) runs before step t (to cancel a call, say).
    """
    if script:
        script_monologue(session, script)
    outs, spans, t0 = [], [], time.monotonic()
    for t in range(n_turns):
        time.sleep(max(0.0, TURN_S * (t + 1) - (time.monotonic() - t0)))  # wait for chunk t
        if on_turn:
            on_turn(t, session)
        start = time.monotonic() - t0
        outs.append(session.step(torch.zeros(N), record=True))
        spans.append((start, time.monotonic() - t0))
    return outs, spans, t0


def text_in_of(session, t):
    """The words in the text-in slots of micro-turn t ('.' for an empty slot)."""
    return [VOCAB[i] if i else "." for i in session.recorded[t].text_in.flatten().tolist()]


def show(outs, session):
    print(" t   said (4 slots of 50 ms)                 text-in (X=2)          events")
    for out in outs:
        said = " ".join(w for w, _ in out.words) or "-"
        events = "; ".join(f"{e.kind} {e.detail}" for e in out.events
                           if e.kind.startswith("background"))
        print(f"{out.turn:2d}  {said:40s} {' '.join(text_in_of(session, out.turn)):22s} {events}")


CALL = "let me check <call> thirty seven times forty nine </call>"
slow = Session(model, background=ToolExecutor(latency_s=SLOW_TOOL_S), overrun="ignore")
slow_outs, slow_spans, slow_t0 = paced_run(slow, TURNS, CALL)
show(slow_outs, slow)

# %% [markdown]
# Read it top to bottom: the monologue says "let me check", then the call (the silent
# `<call>` tokens take one slot each, like words). The call is submitted when `</call>` is
# said; the loop goes on stepping; about `SLOW_TOOL_S` later the result is found by the step's
# poll and enters the text-in slots, two words per micro-turn. A trained model would then
# say "it is one thousand eight hundred thirteen".
#
# ## The context package
# The background model receives the conversation as the interaction model knows it: its own
# recent words with their times, the text-in heard so far, and the call, stamped with the
# micro-turn. (The user's speech is audio, not words: it is in the interaction model's
# context, not in the package. A larger system would add a transcript.)

# %%
call = slow.handoff.calls[0]
print(call.package)
print(f"\nstatus {call.status}; heard: {' '.join(call.result)}; latency {call.latency_ms:.0f} ms (wall); "
      f"in the text-in by {call.heard_by_s:.2f} s (session clock)")


# %% [markdown]
# ## Two clocks on one timeline
# Top: the micro-turn clock, one bar per step (its compute time; the gray lines are the chunk
# boundaries, every 200 ms). Middle: the background job on its own clock, from the call
# to the poll that found its answer. Bottom: the words of the conversation, the monologue
# (orange, when played) and the text-in slots (blue, when fed). The loop never pauses for the
# job: the steps keep their 200 ms rhythm while the job runs.

# %%
def plot_two_clocks(ax, outs, spans, t0, session, title):
    for t, (a, b) in enumerate(spans):
        ax.broken_barh([(a, max(b - a, 0.004))], (2.6, 0.6), color="tab:green")
        ax.axvline(TURN_S * (t + 1), color="gray", lw=0.3)
    for c in session.handoff.calls:
        start = c.submitted_wall - t0
        end = (c.done_wall or time.monotonic()) - t0  # still running: up to now
        ax.broken_barh([(start, end - start)], (1.6, 0.6), color="tab:purple", alpha=0.7)
        ax.text(start, 2.25, f"#{c.id} {' '.join(c.words)}", fontsize=7)
    for out in outs:
        for w, when in out.words:
            ax.text(when, 0.85, w, fontsize=7, rotation=60, color="tab:orange")
        fed = [w for w in text_in_of(session, out.turn) if w != "."]
        if fed:
            ax.text(spans[out.turn][0], 0.05, " ".join(fed), fontsize=7, rotation=60, color="tab:blue")
    ax.set_yticks([2.9, 1.9, 1.0, 0.3], ["micro-turns", "background", "monologue", "text-in"])
    ax.set_ylim(-0.1, 3.4)
    ax.set_xlim(0, TURN_S * (len(outs) + 1))
    ax.set_title(title, fontsize=10)


fig, ax = plt.subplots(figsize=(13, 3.6))
plot_two_clocks(ax, slow_outs, slow_spans, slow_t0, slow, f"a {SLOW_TOOL_S} s tool, paced in real time")
ax.set_xlabel("wall clock (s) since the first chunk started")
plt.show()
slow.close()

# %% [markdown]
# ## A slow tool and a fast one
# The same call, with a tool that answers in `FAST_TOOL_S` and one that takes `SLOW_TOOL_S`.
# Two numbers matter: when the result is *heard* (all of it in the text-in slots) after the
# call, and whether any step got slower while the job ran. The first is the tool's latency
# plus the wait for the next poll plus $\lceil (n+1)/X \rceil$ micro-turns to feed $n$
# answer words and `<result>`; the second should not change at all.

# %%
fast = Session(model, background=ToolExecutor(latency_s=FAST_TOOL_S), overrun="ignore")
fast_outs, fast_spans, fast_t0 = paced_run(fast, TURNS, CALL)
fast.close()
print(f"{'tool':>6s} {'wall latency':>13s} {'heard after the call':>21s} {'max step':>9s} {'median step':>12s}")
for name, session, outs in (("fast", fast, fast_outs), ("slow", slow, slow_outs)):
    c = session.handoff.calls[0]
    steps = torch.tensor([o.compute_ms for o in outs])
    print(f"{name:>6s} {c.latency_ms:10.0f} ms {c.heard_by_s - c.package.issued_s:18.2f} s "
          f"{steps.max():6.1f} ms {steps.median():9.1f} ms")

fig, axes = plt.subplots(2, 1, figsize=(13, 6), sharex=True)
plot_two_clocks(axes[0], fast_outs, fast_spans, fast_t0, fast, f"a {FAST_TOOL_S} s tool")
plot_two_clocks(axes[1], slow_outs, slow_spans, slow_t0, slow, f"a {SLOW_TOOL_S} s tool")
axes[1].set_xlabel("wall clock (s)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A neural background model
# Tools are exact but only answer what they were written for. The second background model is
# learned: `WordGPT`, a two-layer word-level transformer over the same vocabulary, trained on
# the toy world's requests and answers (`<call> twelve plus thirty </call> <result> forty two`),
# about 2 minutes on one CPU thread (`python -m minitml.neural_background train`); the weights ship in
# `data/background_gpt.pt`. Ten percent of the number pairs are held out of training.
#
# A small model *will* be wrong sometimes, and a wrong number said confidently is worse than
# "I could not work that out". So `NeuralBackground` samples several answers and only speaks
# the majority if enough of them agree (self-consistency); otherwise it answers `<fail>`.

# %%
neural = NeuralBackground(n_samples=16, min_agreement=0.75, word_delay_s=0.3)  # a process worker
print(f"WordGPT: {sum(p.numel() for p in neural.model.parameters()):,} parameters")
g = torch.Generator().manual_seed(0)
for request in ["legs of a spider", "twelve plus nine", "eighty seven times sixty three"]:
    votes = Counter(sample_answers(neural.model, request.split(), 16, generator=g))
    top = ", ".join(f"{' '.join(a) or '(none)'} x{n}" for a, n in votes.most_common(3))
    print(f"{request:32s} votes: {top:70s} -> {' '.join(vote(list(votes.elements()), 0.75))}")

# %% [markdown]
# Measured on held-out requests (lookups have no held-out facts: there are only six things and
# seven animals, so those rows measure memory): *answered* is the share not `<fail>`, *right*
# and *wrong* are shares of all requests. The same model answering greedily, with no vote,
# is the row below each: it always answers, and is wrong much more often.

# %%
guessing = NeuralBackground(neural.model, n_samples=1, temperature=0.0, min_agreement=0.0)
voted, greedy = evaluate_neural(neural, per_kind=EVAL_PER_KIND), evaluate_neural(guessing, per_kind=EVAL_PER_KIND)
print(f"{'kind':8s} {'':8s} answered  right  wrong   (n)")
for kind in voted:
    for name, r in (("vote", voted[kind]), ("greedy", greedy[kind])):
        print(f"{kind if name == 'vote' else '':8s} {name:8s} {r['answered']:7.0%} {r['right']:6.0%} "
              f"{r['wrong']:6.0%}   ({r['n']})")

# %% [markdown]
# The lookups and small sums are learned; two-digit multiplication is not (a model this size,
# trained this briefly, gets almost none right). With the vote it says `<fail>` there instead
# of a wrong number, which is the honest answer; where the tool executor is available, it is
# the better choice for arithmetic.
#
# In a session the neural model runs in a **process** of its own (a thread would compete with
# the loop for Python's interpreter lock; see "The deadline" below) and streams its answer
# back at a slow cadence (`word_delay_s` = 0.3 s per word, standing in for a big model), so
# the result trickles into the text-in slots over several micro-turns.

# %%
session = Session(model, background=neural, overrun="ignore")
outs, spans, t0 = paced_run(session, TURNS, "<call> legs of a spider </call> "
                                          "<call> eighty seven times sixty three </call>")
show(outs, session)
fig, ax = plt.subplots(figsize=(13, 3.6))
plot_two_clocks(ax, outs, spans, t0, session, "the neural background model, two overlapping calls")
plt.show()
session.close()

# %% [markdown]
# The two calls overlap: the second is issued while the first is still being answered, and
# its result comes after the first one's, never mixed into it.
#
# ## When things go wrong
# Three sessions, each stepped until its calls are settled: a tool that raises, a tool slower
# than the background model's `timeout_s`, and a call cancelled by the application (the user
# said "stop", say) before its answer came. The first two are heard as `<result> <fail>`; the
# cancelled one delivers nothing. In every case the session simply goes on.

# %%
def broken(words):
    """A tool whose service is down."""
    if "time" in words:
        raise RuntimeError("the clock service is down")
    return None


def settle(session, script, cancel_at=None, max_s=5.0):
    script_monologue(session, script)
    outs, start = [], time.monotonic()
    while time.monotonic() - start < max_s:
        if cancel_at is not None and len(outs) == cancel_at:
            session.cancel_background()
        outs.append(session.step(torch.zeros(N), record=True))
        calls = session.handoff.calls
        if calls and not session.handoff.pending and len(outs) > 10:
            break
        time.sleep(0.03)
    session.close()
    heard = [w for t in range(len(outs)) for w in text_in_of(session, t) if w != "."]
    events = [f"{e.kind}: {e.detail}" for o in outs for e in o.events if e.kind.startswith("background")]
    return heard, events


cases = {
    "an exception": (ToolExecutor(tools=(broken, *TOOLS)), "<call> time </call>", None),
    "a timeout": (ToolExecutor(latency_s=3.0, timeout_s=0.5), "<call> two times two </call>", None),
    "cancelled": (ToolExecutor(latency_s=0.5), "<call> two times three </call>", 4),
}
for name, (background, script, cancel_at) in cases.items():
    heard, events = settle(Session(model, background=background, overrun="ignore"), script, cancel_at)
    print(f"{name}: text-in heard {heard}")
    for e in events:
        print("   ", e)

# %% [markdown]
# ## Woven in at the right moment, measured
# A result can arrive while the user is talking ("no hurry, I am making tea"). Saying it
# at once talks over them; a good assistant waits until they are done. The rule we can
# measure, `weave_time`: speak at the first moment after the result is in at which the user
# has been quiet for 0.25 s. Below, on the toy world's own `background` dialogues (half of
# them have such an aside), three policies: **blurt** (speak as soon as the result is in),
# **weave** (`weave_time`), and the toy world's scripted assistant (the timing a trained model
# learns to imitate). We count how often each would start speaking while the user is talking,
# and how long after the result it starts.

# %%
def talking_at(t, spans):
    return any(a <= t < b for a, b in spans)


rows = []
for seed in range(N_SCENARIOS):
    sc = make_scenario("background", seed)
    ann = sc.annotations
    ready = ann["call"]["delivered"]  # the whole result is in the text-in slots
    user = [(a, b) for a, b in ann["user_speech"] if b > ann["call"]["issued"]]
    scripted = min(t for w, t in sc.assistant_words if t >= ready)  # its first word after the result
    rows.append(dict(seed=seed, ready=ready, user=user, aside=bool(user),
                     blurt=ready, weave=weave_time(ready, user), scripted=scripted))

print(f"{N_SCENARIOS} background dialogues, {sum(r['aside'] for r in rows)} with an aside by the user")
for policy in ("blurt", "weave", "scripted"):
    over = sum(talking_at(r[policy], r["user"]) for r in rows)
    delay = torch.tensor([r[policy] - r["ready"] for r in rows])
    print(f"{policy:9s} starts while the user talks: {over:2d} of {len(rows)};  "
          f"delay after the result: mean {delay.mean():.2f} s, max {delay.max():.2f} s")
agree = torch.tensor([abs(r["weave"] - r["scripted"]) for r in rows])
print(f"weave vs the scripted assistant: median difference {agree.median():.2f} s")

# %%
r = next((r for r in rows if r["aside"]), rows[0])
sc = make_scenario("background", r["seed"])
fig, ax = plt.subplots(figsize=(13, 2.8))
t = torch.arange(sc.user_audio.numel()) / sc.sample_rate
ax.plot(t.numpy(), (sc.user_audio / sc.user_audio.abs().max() + 1.2).numpy(), lw=0.4, color="tab:blue")
ax.plot(t.numpy(), (sc.assistant_audio / sc.assistant_audio.abs().max() - 1.2).numpy(), lw=0.4,
        color="tab:orange")
call_info = sc.annotations["call"]
marks = {"call issued": (call_info["issued"], "black"), "result in": (r["ready"], "tab:purple"),
         "blurt": (r["blurt"], "crimson"), "weave": (r["weave"], "tab:green")}
for i, (name, (when, colour)) in enumerate(marks.items()):
    ax.axvline(when, color=colour, ls="--", lw=1)
    ax.text(when + 0.03, 2.0 - 0.45 * i, name, color=colour, fontsize=8)
ax.set_yticks([1.2, -1.2], ["user", "scripted\nassistant"])
ax.set_xlabel("time (s)")
ax.set_title(f"background dialogue {r['seed']}: " + sc.transcript().replace("\n", " | ")[:150], fontsize=8)
plt.show()

# %% [markdown]
# With a trained checkpoint, the evaluation measures the same thing on the model's own speech.
# `minitml.metrics.score(scenario, words, audio)` cuts a dialogue into Full-Duplex-Bench's
# samples (a background dialogue is one) and returns a row per sample: `called` (a `<call>`
# token in the monologue), `over_user` (seconds it spoke over the user after the call) and,
# where the call succeeded, `right`: whether the product's words, whole and in order, are among
# the words it says once the whole result is in the text-in slots (`reply`, checked for
# `value`). A failed call asks for no value, so its row has no `right`. The row of the scripted
# assistant on the dialogue above:

# %%
(row,) = score(sc, sc.assistant_words, sc.assistant_audio)
print(row)

# %% [markdown]
# ## The trained model calls for itself
# Everything above scripted the model's call. The shipped `data/tiny.pt` was trained on the
# background dialogues too, where the script says "let me check `<call>` ... `</call>`" and then
# reads out the result, and it learned to say `<call>` itself in some of them (the README's
# benchmark counts how many of 50). Here it runs on held-out background dialogues with the exact
# `ToolExecutor` attached: the words of its call are what gets computed, and the result it hears
# in its text-in slots answers its own call (`run_scenario` feeds the scripted result only to a
# session without a background model). We try held-out dialogues in order until it calls, and
# score that run like any other.

# %%
trained = checkpoint.load(Path("..") / "data" / "tiny.pt").eval()
for call_seed in range(CALL_TRIES):
    dialogue = make_scenario("background", call_seed, "heldout")
    own = Session(trained, background=ToolExecutor(), overrun="ignore")
    timeline = run_scenario(own, dialogue, record=True)
    called = any(w == "<call>" for w, _ in timeline.words)
    if called:
        break
print(dialogue.transcript())
print(f"\nheld-out background dialogue {call_seed}: " + (
    f"the first of the {call_seed + 1} tried in which the model calls" if called else
    f"the model called in none of the {CALL_TRIES} tried; here is the last") + ". Second by second:")
for second in range(int(dialogue.duration) + 1):
    said = [w for w, t in timeline.words if second <= t < second + 1]
    heard = [w for out in timeline.outputs if second <= (out.turn + 1) * TURN_S < second + 1
             for w in text_in_of(own, out.turn) if w != "."]
    if said or heard:
        print(f"  {second:2d} s  said: {' '.join(said):45s} text-in: {' '.join(heard)}")
for event in timeline.events:
    if event.kind.startswith("background"):
        print(f"{event.time:5.2f} s  {event.kind} {event.detail}")
(row,) = score(dialogue, timeline.words, timeline.model_audio)
print({k: row[k] for k in ("called", "over_user", "value", "reply", "right") if k in row})

# %% [markdown]
# Read the three parts: the words between `<call>` and `</call>` are the model's own (from what
# it heard: the operands are right only when it heard them right), the tool's answer arrives
# in the text-in slots a few micro-turns later, and what the model says after it is scored for
# the product's words (`right`). Where it does not call, or calls with the wrong numbers, it
# cannot read out the right result; the README's benchmark has the rates.

# %% [markdown]
# ## The deadline while the background model is busy
# The whole point of the split is that the loop keeps its 200 ms deadline whatever the
# background does. Here the neural model is flooded with multiplications (256 sampled answers
# per call, no pause), and we compare the step time with and without that load, in alternating
# blocks. With a **thread** worker, the job runs in the same Python process: torch releases
# the interpreter lock inside its kernels, but the many small Python steps between them hold
# it, and the loop has to wait its turn. A **process** worker has its own interpreter and runs
# at idle priority (Linux `SCHED_IDLE`): it only gets CPU time that nothing else wants, so on a
# machine with a free core it runs at full speed there, and on a busy machine it yields to the
# loop. `deadline_under_load` (in `minitml/neural_background.py`) does the stepping;
# `bench/background.py` runs it properly (hundreds of steps each, p99), and this is a small
# run of it. The loop's own CPU time per step is printed too: when it stays put while the step's
# wall time grows, the step was waiting for a core, not doing more work.

# %%
print(f"load average of this machine: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
for worker in ("process", "thread"):
    run = deadline_under_load(model, worker, DEADLINE_STEPS, block=20)
    ms, own = ({k: torch.tensor(v) for k, v in run[key].items()} for key in ("ms", "own_ms"))
    print(f"{worker:7s} worker: median step {ms['idle'].median():5.1f} ms idle, {ms['busy'].median():5.1f} ms busy "
          f"(own CPU {own['idle'].median():4.1f} / {own['busy'].median():4.1f} ms); "
          f"p99 {ms['idle'].quantile(0.99):5.1f} ms idle, {ms['busy'].quantile(0.99):5.1f} ms busy")

# %% [markdown]
# What to look for: with the thread worker the busy steps take longer (they wait for the
# interpreter lock); with the process worker they should not, as long as the machine has a core
# to spare. On a machine whose cores are all taken by other programs every extra piece of work
# competes for them, and the p99 of a few dozen steps is mostly noise: run the bench for the
# real figure.
#
# ## Exercises
# Replace each `raise NotImplementedError` with your code and re-run the cell; `check`
# compares your answer with the package's (or with the definition stated above).
#
# **1. Add a tool.** Write `my_after_tool(words)`: for a request like `after twenty nine` it
# returns `["thirty"]` (the number after, in number words, see `minitml.world.vocab`); for any
# request that does not start with `after` it returns `None`, so that the other tools get their
# turn. The second check runs it among the executor's tools, as `ToolExecutor(tools=(*TOOLS,
# my_after_tool))` would.

# %%
def my_after_tool(words):
    raise NotImplementedError  # your code here


check(my_after_tool, [((["after", "twenty", "nine"],), ["thirty"]),
                      ((["after", "ninety", "nine"],), ["one", "hundred"]),
                      ((["after", "zero"],), ["one"]),
                      ((["colour", "of", "a", "frog"],), None)])
check(lambda request: use_tools(request.split(), (*TOOLS, my_after_tool)),
      [(("after nineteen",), ["twenty"]), (("thirty seven times forty nine",), use_tools(
          "thirty seven times forty nine".split()))], name="tools with my_after_tool")

# %% [markdown]
# **2.** How many micro-turns does a result of `n_words` answer words take to enter the
# model, with `n_slots` text-in slots per micro-turn (remember `<result>`), when nothing else is
# queued? The last case is the slow tool's call above, counted from its recording.

# %%
def my_result_turns(n_words, n_slots):
    raise NotImplementedError  # your code here


c = slow.handoff.calls[0]
measured = sum(any(w != "." for w in text_in_of(slow, t)) for t in range(len(slow_outs)))
check(my_result_turns, [((5, 2), 3), ((1, 2), 1), ((2, 2), 2), ((4, 3), 2),
                        ((len(c.result) - 1, X), measured)])

# %% [markdown]
# **3.** Write `my_weave_time(ready_s, user_speech, quiet_s)`: the first moment at or after
# `ready_s` at which the user has been silent for `quiet_s` seconds, given the user's speech as
# `(start, end)` spans (speech that starts later does not count: nobody can see the future).
# The last cases are the toy world's dialogues measured above.

# %%
def my_weave_time(ready_s, user_speech, quiet_s):
    raise NotImplementedError  # your code here


check(my_weave_time, [((2.0, [], 0.25), 2.0), ((2.0, [(0.5, 1.5)], 0.25), 2.0),
                      ((2.0, [(1.0, 1.9)], 0.25), 2.15), ((2.0, [(1.8, 2.6), (2.7, 3.0)], 0.25), 3.25),
                      ((2.0, [(2.5, 3.0)], 0.25), 2.0),
                      *[((r["ready"], r["user"], 0.25), r["weave"]) for r in rows]])
