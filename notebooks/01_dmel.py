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
# # 01 · dMel: hearing in 4-bit tokens
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/minitml/minitml/blob/main/notebooks/01_dmel.ipynb)
# [![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/minitml/minitml/HEAD?labpath=notebooks%2F01_dmel.ipynb)
#
# An interaction model listens and speaks at the same time, so audio has to go *into* the
# transformer and come *out* of it as tokens. The reference system uses **dMel**: no neural
# codec, no encoder to train. Every 12.5 ms, the sound becomes 80 small integers:
#
# 1. a short-time Fourier transform (50 ms Hann window, 12.5 ms hop) gives the magnitude of
#    each frequency,
# 2. 80 mel filters pool those into a perceptual scale,
# 3. $\log_{10}$, clamped to $[-7, 2]$,
# 4. each channel snaps to the nearest of 16 levels $-7.0, -6.4, \dots, 2.0$: **4 bits**.
#
# Decoding is a table lookup; a vocoder turns the mel back into a waveform. This notebook
# builds that chain with `minitml.dmel` and lets you hear every step.

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
GRIFFIN_LIM_ITERS = 8 if FAST else 64

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import Audio, display

from minitml.config import get_config
from minitml.dmel import DMel, DMelEmbedding, DMelHead, mel_filterbank
from minitml.world.espeak import synthesize

cfg = get_config("tiny").audio
dmel = DMel(cfg)
print(cfg)

# %% [markdown]
# ## A sentence to listen to
# The project makes its own speech with eSpeak NG (shipped inside the `espeakng-loader`
# wheel). Besides the waveform, eSpeak tells us when each word starts: free ground truth.

# %%
speech = synthesize("Tell me when the light turns green.")
wave = speech.wave  # (T,) float32 at 16 kHz
print(f"{wave.shape[0]} samples = {speech.duration:.2f} s")
print(speech.words)
display(Audio(wave.numpy(), rate=cfg.sample_rate))

# %% [markdown]
# ## Step 1 — the STFT magnitude
# Frame $t$ is centred on sample $200t$; `DMel.stft` keeps exactly `T // 200` frames, so a
# 200 ms micro-turn (3200 samples) is always **16 frames**.

# %%
spec = dmel.stft(wave)  # (513, frames) complex
magnitude = spec.abs()
print("STFT:", tuple(spec.shape), "-> 200 ms gives", dmel.stft(wave[:3200]).shape[1], "frames")
plt.figure(figsize=(10, 3))
plt.imshow(torch.log10(magnitude + 1e-6).numpy(), origin="lower", aspect="auto", cmap="magma")
plt.xlabel("frame (12.5 ms)")
plt.ylabel("frequency bin (15.6 Hz)")
plt.title("log STFT magnitude")
plt.show()

# %% [markdown]
# ## Step 2 — 80 mel filters
# Each filter is a triangle; their edges are evenly spaced on the Slaney mel scale
# (linear below 1 kHz, logarithmic above), and each is scaled to the same area.
# `mel = magnitude.T @ filterbank`.

# %%
fb = mel_filterbank(cfg)  # (513, 80)
freqs = torch.linspace(0, cfg.sample_rate / 2, fb.shape[0])
plt.figure(figsize=(10, 2.5))
for i in range(0, cfg.n_mels, 4):
    plt.plot(freqs.numpy(), fb[:, i].numpy())
plt.xlabel("Hz")
plt.title("every 4th mel filter: narrow and tall at low frequency, wide and flat at high")
plt.show()

# %% [markdown]
# ## Steps 3 and 4 — log, clamp, 16 levels

# %%
log_mel = dmel.log_mel(wave)  # (frames, 80) in [-7, 2]
tokens = dmel.quantize(log_mel)  # (frames, 80) integers in [0, 16)
assert torch.equal(tokens, dmel.encode(wave))
print("tokens:", tuple(tokens.shape), tokens.dtype, "levels:", dmel.centres.tolist())

fig, axes = plt.subplots(1, 2, figsize=(11, 3))
axes[0].hist(log_mel.flatten().numpy(), bins=120, color="gray")
for c in dmel.centres:
    axes[0].axvline(c.item(), color="tab:red", lw=0.6)
axes[0].set_title("log10-mel values and the 16 bin centres")
error = dmel.decode(tokens) - log_mel
axes[1].hist(error.flatten().numpy(), bins=60)
axes[1].set_title(f"quantisation error: max |e| = {error.abs().max():.3f} (half a step = 0.3)")
plt.show()

fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
axes[0].imshow(log_mel.T.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-7, vmax=2)
axes[0].set_title("log10-mel (continuous)")
axes[1].imshow(tokens.T.numpy(), origin="lower", aspect="auto", cmap="magma")
axes[1].set_title("dMel tokens (4 bits per channel)")
for word, start in speech.words:
    axes[0].text(start * cfg.frame_rate, 72, word, color="white", fontsize=8)
plt.show()

# %% [markdown]
# ## Back to sound: decode and vocode
# `decode` replaces each token by its bin centre. To get a waveform we undo the mel
# (multiply by the filterbank's pseudo-inverse, which smears energy back over the
# frequencies) and then need a *phase*: Griffin-Lim finds one by alternating between
# "keep the magnitude we know" and "be the STFT of an actual signal".

# %%
audio = dmel.vocode(tokens, n_iter=GRIFFIN_LIM_ITERS)
again = dmel.encode(audio)
exact = (again == tokens).float().mean().item()
near = ((again - tokens).abs() <= 1).float().mean().item()
print(f"tokens kept through vocode -> encode: {100 * exact:.1f}% exact, {100 * near:.1f}% within one level")
print("original:")
display(Audio(wave.numpy(), rate=cfg.sample_rate))
print(f"rebuilt from 4-bit tokens (Griffin-Lim, {GRIFFIN_LIM_ITERS} iterations):")
display(Audio(audio.numpy(), rate=cfg.sample_rate))

# %% [markdown]
# The rebuilt audio is intelligible but "phasey": Griffin-Lim is the simplest vocoder there
# is. A neural vocoder (or the reference system's flow head) would sound better; the
# *tokens* barely change, which is what the model cares about.
#
# ## How many bits?
# dMel sends $80 \text{ channels} \times 4 \text{ bits} \times 80 \text{ frames/s}$.
# The codec figures below are their published nominal bitrates, for scale (not measured
# here); dMel trades bits for having nothing to train.

# %%
rates = {  # kbit/s
    "16-bit PCM, 16 kHz": 16 * cfg.sample_rate / 1000,
    "dMel (this recipe)": cfg.bits_per_second / 1000,
    "Opus, wideband speech": 16.0,
    "EnCodec, 6 kbit/s mode": 6.0,
    "Mimi (Moshi), 12.5 Hz": 1.1,
}
for name, kbps in rates.items():
    print(f"{name:26s} {kbps:7.1f} kbit/s")
plt.figure(figsize=(7, 2.5))
plt.barh(list(rates), list(rates.values()), color=["gray", "tab:red", "gray", "gray", "gray"])
plt.xscale("log")
plt.xlabel("kbit/s (log)")
plt.show()

# %% [markdown]
# ## Inside the model
# One **audio token** carries $k = 4$ frames (50 ms), so 200 ms of sound is 4 tokens.
# In: each channel has its own little table of 16 vectors; a frame is the *sum* of its
# 80 looked-up vectors (a bag of embeddings); the 4 frames are concatenated and projected.
# Out: one linear layer gives $4 \times 80 \times 16$ logits, every channel a 16-way choice,
# all predicted at once.

# %%
d_model = get_config("tiny").model.d_model
embed, head = DMelEmbedding(cfg, d_model), DMelHead(cfg, d_model)
audio_tokens = tokens[: (tokens.shape[0] // 4) * 4].view(-1, 4, 80)  # (n_tokens, k, 80)
vectors = embed(audio_tokens)  # (n_tokens, d_model)
logits = head(vectors)  # (n_tokens, k, 80, 16)
print("frames", tuple(tokens.shape), "-> tokens", tuple(audio_tokens.shape),
      "-> vectors", tuple(vectors.shape), "-> logits", tuple(logits.shape))
print("untrained loss:", DMelHead.cross_entropy(logits, audio_tokens).item(),
      "~ ln 16 =", torch.log(torch.tensor(16.0)).item())

# %% [markdown]
# ## Exercises
# Fill in each function, then run the cell: `check` compares your answer with the package.
#
# 1. The bitrate of a dMel stream for any `AudioConfig` (in bits per second).
# 2. Quantise a log-mel by hand: the index of the nearest of the 16 centres.
# 3. How many audio tokens does `seconds` of audio become (frames // k)?

# %%
from minitml.config import AudioConfig
from minitml.exercises import check


def my_bitrate(audio_cfg):
    # your code here: channels x bits per channel x frames per second
    raise NotImplementedError


check(my_bitrate, [((cfg,), cfg.bits_per_second),
                   ((AudioConfig(n_bins=8),), AudioConfig(n_bins=8).bits_per_second)])


# %%
def my_quantize(log_mel):
    # your code here: clamp to [-7, 2], then the nearest of -7.0, -6.4, ..., 2.0
    raise NotImplementedError


sample = torch.linspace(-8, 3, 160).view(2, 80)  # also outside the clamp range
check(my_quantize, [((sample,), dmel.quantize(sample)), ((log_mel,), tokens)])


# %%
def my_audio_tokens(seconds, audio_cfg):
    # your code here
    raise NotImplementedError


check(my_audio_tokens, [((0.2, cfg), 4), ((3.0, cfg), 60), ((1.0, AudioConfig(frames_per_token=2)), 40)])
