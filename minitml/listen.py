"""Listening to the model: an offline speech recognizer for the toy world, and word error rate.

Full-Duplex-Bench does not trust a model's text: it runs a speech recognizer on
output.wav and scores what a listener *hears*. This module is that listener for
minitml. It uses pocketsphinx, whose wheel ships an English acoustic model and
the CMU pronunciation dictionary, so nothing is downloaded; what we add is the
knowledge of the toy world, built at run time from `minitml.world`:

    rec = Recognizer()
    rec.transcribe(audio)              # audio (N,) float32 in [-1, 1] at 16 kHz
    # -> e.g. [("it", 1.21, 1.35), ("is", 1.36, 1.52), ("green", 1.53, 1.98)]  (word, start s, end s)
    metrics.word_error_rate(["it", "is", "two"], ["it", "is", "twenty", "two"])    # 1/3

The choices, and why (word error rates measured on 27 held-out scenarios, seeds 100-102):

- Dictionary: only the world's words (`vocab.VOCAB` minus the "<...>" tokens), with all
  their CMUdict pronunciations: the recognizer cannot hear a word nobody in the world
  says. CMUdict has every world word today; `EXTRA_PRONUNCIATIONS` adds "AH AH" to its
  "uh-huh" (AH HH AH), because eSpeak's h is barely there. A word CMUdict lacks gets the
  table's pronunciation, else (if hyphenated) its parts' joined ("mm-hm" = "mm" + "hm"),
  else it is left out with a warning. The acoustic model's noise words ([SPEECH],
  [NOISE]) are left out too: [SPEECH] swallowed eSpeak's sentence-final "now".
- Language model: trigrams counted from what the *assistant* says, `facts.LINES`
  read when the recognizer is built, each line with `FILLS_PER_LINE` seeded slot
  fillings (numbers log-uniform in 0..9999). The user's `TEMPLATES` are left out on
  purpose: the recognizer listens to the model's channel, and user questions in the
  counts would only make it likelier to hear the user's words in the model's mouth.
  Not a grammar: each order keeps `BACKOFF` of its probability for what it has not
  seen (linear discounting, P(w | h) = (1 - BACKOFF) c(h, w) / c(h) for seen w, which
  does not care how big the counts are), and the unigrams mix in a uniform share of
  the whole vocabulary, so off-template words ("green dog seven") can still be heard.
- Where to listen: each stretch of sound between silences of `SPAN_GAP_S` or more
  (`speech_spans`) is decoded as its own utterance, so it starts and ends a sentence for
  the language model and its cepstral mean is taken over speech rather than over
  seconds of silence. Whole clips in one go: 6.5% word errors instead of 4% (scripted),
  22-25% instead of 12% (vocoded).
- Noise floor: eSpeak's (and the vocoders') silence is exactly zero, which pocketsphinx
  hears badly, so fixed, seeded white noise of standard deviation `NOISE_FLOOR` = 2e-3
  (-54 dBFS, 30 dB below the assistant's speech at about 0.064 RMS, like the toy
  world's room noise) is added to every sample. Scripted word errors: 16% with none,
  9% at 1e-4, 5% at 1e-3, 3.5% at 2e-3, 5% at 3e-3.
- No memory between clips: pocketsphinx keeps front-end state from one utterance to the
  next (its cepstral mean, `decoder.get_cmn()`, among it), so a clip is heard differently
  after another one. `transcribe` rebuilds the front end (`reinit_feat`) before every
  stretch and gives it the whole stretch at once (`full_utt=True`): transcribing A
  then B gives exactly what B alone gives.

The dictionary and the ARPA language model are written under
`minitml.world.dataset.cache_dir() / "listen"`, named by a hash of their text.
"""

from __future__ import annotations

import hashlib
import math
import os
import string
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from minitml.world.dataset import cache_dir
from minitml.world.facts import ANIMAL_LEGS, LINES, STORY_COLOURS, THING_COLOURS, an
from minitml.world.scenes import LIGHTS, OBJECTS, SHAPES
from minitml.world.vocab import VOCAB, spell, tokenize

FILLS_PER_LINE = 20  # seeded slot fillings of each assistant line counted for the language model
ORDER = 3  # trigrams
BACKOFF = 0.1  # probability each order leaves to the next lower one (and unigrams to the uniform)
NOISE_FLOOR = 2e-3  # std of the white noise added to every clip (full scale = 1.0): about -54 dBFS
NOISE_SEED = 0
FRAME_RATE = 100  # pocketsphinx frames per second: word times are frame / 100
SPAN_DB = 40.0  # a 10 ms frame within this many dB of the loudest one has sound in it ...
SPAN_FLOOR_DB = -70.0  # ... if it is also above this level (dB of full scale)
SPAN_GAP_S = 0.3  # silences shorter than this stay inside one span
SPAN_PAD_S = 0.2  # context kept before and after each span
SILENT_TOKENS = ("<s>", "</s>", "<sil>")  # pocketsphinx's silence words, dropped from transcripts

# ARPAbet pronunciations added to (or, for a word it lacks, instead of) CMUdict's.
EXTRA_PRONUNCIATIONS: dict[str, list[str]] = {"uh-huh": ["AH AH"]}


# ----------------------------------------------------------------------------
# What the world says: sentences, and the words' pronunciations
# ----------------------------------------------------------------------------
def slot_fillers(rng: np.random.Generator) -> dict[str, Callable[[], str]]:
    """Slot name in a LINES string -> a function drawing one filling (a string)."""
    def pick(options):
        return lambda: options[int(rng.integers(len(options)))]

    def number():  # log-uniform over 0..9999: as many one-digit numbers as four-digit ones
        return spell(int(math.exp(rng.uniform(0, math.log(10_000)))) - 1)

    colours = sorted(set(STORY_COLOURS) | set(LIGHTS[1:]) | set(THING_COLOURS.values()))
    return {
        "a": number, "b": number, "r": number, "m": number, "n": number,
        "colour": pick(colours), "thing": pick(sorted(THING_COLOURS)), "animal": pick(sorted(ANIMAL_LEGS)),
        "shape": pick(SHAPES[1:]), "an_object": pick([an(o) for o in OBJECTS[1:]]),
        "numbers": lambda: " ".join(spell(i) for i in range(1, int(rng.integers(2, 21)) + 1)),
        "colours": lambda: " ".join(rng.permutation(STORY_COLOURS)[: int(rng.integers(2, 9))]),
    }


def world_sentences(fills_per_line: int = FILLS_PER_LINE, seed: int = 0) -> list[list[str]]:
    """The assistant's lines (`facts.LINES`), each filled `fills_per_line` times -> word lists.

    A slot this module has no filler for splits its line in two: the pieces are counted
    as separate sentences, so a new slot never breaks the recognizer.
    """
    rng = np.random.default_rng(seed)
    fillers = slot_fillers(rng)
    sentences = []
    for group in sorted(LINES):
        for line in LINES[group]:
            for _ in range(fills_per_line):
                pieces, text = [], ""
                for literal, slot, _, _ in string.Formatter().parse(line):
                    text += literal
                    if slot is None:
                        continue
                    if slot in fillers:
                        text += " " + fillers[slot]() + " "
                    else:
                        pieces.append(text)
                        text = ""
                pieces.append(text)
                sentences += [tokenize(p) for p in pieces if tokenize(p)]
    return sentences


def world_words() -> list[str]:
    """Every speakable word of the toy world: `VOCAB` without the special "<...>" tokens."""
    return [w for w in VOCAB if not (w.startswith("<") and w.endswith(">"))]


def pronunciations(words: list[str]) -> dict[str, list[str]]:
    """word -> its ARPAbet pronunciations (CMUdict, else EXTRA_PRONUNCIATIONS, else hyphen parts)."""
    import pocketsphinx

    wanted = set(words) | {p for w in words for p in w.split("-")}
    cmudict: dict[str, list[str]] = defaultdict(list)
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    with open(path, encoding="utf-8") as f:
        for line in f:  # "the(2) DH IY": the word, "(k)" for its k-th variant, then the phones
            head, _, phones = line.strip().partition(" ")
            word = head.split("(")[0]
            if word in wanted:
                cmudict[word].append(phones.split("#")[0].strip())
    found = {}
    for w in words:
        if w in cmudict or w in EXTRA_PRONUNCIATIONS:
            found[w] = list(dict.fromkeys(cmudict.get(w, []) + EXTRA_PRONUNCIATIONS.get(w, [])))
        elif "-" in w and all(p in cmudict for p in w.split("-")):
            found[w] = [" ".join(cmudict[p][0] for p in w.split("-"))]
        else:
            warnings.warn(f"listen: no pronunciation for {w!r} (not in CMUdict); it cannot be heard. "
                          f"Add one to minitml.listen.EXTRA_PRONUNCIATIONS", stacklevel=2)
    return found


# ----------------------------------------------------------------------------
# The n-gram language model, written as ARPA text
# ----------------------------------------------------------------------------
def ngram_arpa(sentences: list[list[str]], vocab: list[str], order: int = ORDER,
               backoff: float = BACKOFF) -> str:
    """A back-off n-gram model with linear discounting, as ARPA text (log10 probabilities).

    Counts: every k-gram (k <= order) of "<s> w1 .. wn </s>". Then, for a context h seen
    c(h) times, a word w seen after it c(h, w) times:

        P(w | h) = (1 - backoff) * c(h, w) / c(h)            w seen after h
                 = alpha(h) * P(w | h minus its first word)  otherwise
        alpha(h) = backoff / (1 - sum over seen w of P(w | h minus its first word))

    so each distribution sums to one. The unigrams mix the counts with a uniform share
    over `vocab` (every word, counted or not): P(w) = (1 - backoff) c(w) / N + backoff / |V|.
    """
    known = set(vocab) | {"<s>", "</s>"}
    counts = [Counter() for _ in range(order + 1)]  # counts[k][(w1, .., wk)]
    for s in sentences:
        padded = ["<s>", *s, "</s>"]
        for k in range(1, order + 1):
            for i in range(len(padded) - k + 1):
                if known.issuperset(padded[i:i + k]):  # a word outside vocab: not counted
                    counts[k][tuple(padded[i:i + k])] += 1
    context = [Counter() for _ in range(order + 1)]  # context[k][h]: how often h (k-1 words) has a follower
    for k in range(2, order + 1):
        for gram, c in counts[k].items():
            context[k][gram[:-1]] += c

    targets = sorted(set(vocab) - {"<s>", "</s>"}) + ["</s>"]  # every word that can be predicted
    n_tokens = sum(c for (w,), c in counts[1].items() if w != "<s>")
    prob = [dict() for _ in range(order + 1)]  # prob[k][gram] = P(last | rest), written to the file
    for w in targets:
        prob[1][(w,)] = (1 - backoff) * counts[1][(w,)] / n_tokens + backoff / len(targets)
    alpha: dict[tuple, float] = {}  # back-off weight of each context

    def p(gram: tuple) -> float:  # P(gram[-1] | gram[:-1]) with back-off
        if gram in prob[len(gram)]:
            return prob[len(gram)][gram]
        return alpha.get(gram[:-1], 1.0) * p(gram[1:])

    for k in range(2, order + 1):
        followers = defaultdict(list)
        for gram, c in counts[k].items():
            prob[k][gram] = (1 - backoff) * c / context[k][gram[:-1]]
            followers[gram[:-1]].append(gram)
        for h, grams in followers.items():  # alpha of the (k-1)-word contexts, needed by order k+1
            lower = sum(p(g[1:]) for g in grams)
            alpha[h] = backoff / max(1.0 - lower, 1e-12)

    lines = ["\\data\\"] + [f"ngram {k}={len(prob[k]) + (k == 1)}" for k in range(1, order + 1)]
    for k in range(1, order + 1):
        lines += ["", f"\\{k}-grams:"]
        if k == 1:  # <s> is never predicted, only a context
            lines.append(f"-99.0000 <s> {math.log10(alpha.get(('<s>',), 1.0)):.4f}")
        for gram in sorted(prob[k]):
            row = f"{math.log10(prob[k][gram]):.4f} {' '.join(gram)}"
            if k < order and gram in alpha:
                row += f" {math.log10(alpha[gram]):.4f}"
            lines.append(row)
    return "\n".join(lines + ["", "\\end\\", ""])


def _cached(text: str, suffix: str) -> Path:
    """Write `text` once under the cache dir, named by its hash; return the path."""
    folder = cache_dir() / "listen"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}{suffix}"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # atomic: a parallel process never reads half a file
    return path


# ----------------------------------------------------------------------------
# The recognizer
# ----------------------------------------------------------------------------
class Recognizer:
    """pocketsphinx with the toy world's dictionary and language model; one clip at a time."""

    sample_rate = 16_000  # Hz: the acoustic model's rate (and the toy world's)

    def __init__(self, fills_per_line: int = FILLS_PER_LINE, order: int = ORDER, backoff: float = BACKOFF):
        import pocketsphinx

        words = world_words()
        prons = pronunciations(words)
        dictionary = "".join(f"{w}{'' if i == 0 else f'({i + 1})'} {ph}\n"
                             for w, phones in prons.items() for i, ph in enumerate(phones))
        arpa = ngram_arpa(world_sentences(fills_per_line), list(prons), order, backoff)
        fillers = "".join(f"{w} SIL\n" for w in SILENT_TOKENS)  # silence only: no [SPEECH], [NOISE]
        self.dict_path, self.lm_path = _cached(dictionary, ".dict"), _cached(arpa, ".arpa")
        self.filler_path = _cached(fillers, ".filler")
        self.words = list(prons)
        self.decoder = pocketsphinx.Decoder(
            hmm=str(Path(pocketsphinx.get_model_path()) / "en-us" / "en-us"), dict=str(self.dict_path),
            fdict=str(self.filler_path), lm=str(self.lm_path), samprate=self.sample_rate, loglevel="ERROR")

    def transcribe(self, audio: torch.Tensor, sample_rate: int = 16_000) -> list[tuple[str, float, float]]:
        """(N,) float32 audio in [-1, 1] -> [(word, start s, end s)], silences and fillers dropped."""
        if not isinstance(audio, torch.Tensor):
            raise ValueError(f"expected audio as a torch.Tensor, got {type(audio).__name__}")
        if audio.dtype != torch.float32:
            hint = "" if audio.is_floating_point() else " (integer PCM: divide by 32768 first)"
            raise ValueError(f"expected float32 samples in [-1, 1], got {audio.dtype}{hint}")
        if audio.dim() != 1:
            raise ValueError(f"expected mono audio of shape (N,), got shape {tuple(audio.shape)}")
        if sample_rate != self.sample_rate:
            raise ValueError(f"expected audio at {self.sample_rate} Hz, got {sample_rate} Hz; resample "
                             f"it with minitml.wav.resample(audio, {sample_rate}, {self.sample_rate})")
        peak = float(audio.abs().max()) if audio.numel() else 0.0  # NaN and inf propagate
        if not math.isfinite(peak) or peak > 4.0:
            raise ValueError(f"expected finite samples in [-1, 1], got a peak of {peak}"
                             + ("; integer PCM stored as float? divide by 32768" if peak > 4.0 else ""))
        noise = torch.randn(audio.shape[0], generator=torch.Generator().manual_seed(NOISE_SEED))  # (N,)
        pcm = ((audio.detach().cpu() + NOISE_FLOOR * noise).clamp(-1, 1) * 32767).round()
        pcm = pcm.to(torch.int16).numpy()  # (N,) 16-bit PCM, what pocketsphinx reads
        words = []
        for a, b in speech_spans(audio.detach().cpu(), sample_rate):  # sample indices
            self.decoder.reinit_feat()  # a fresh front end: nothing is carried over from before
            self.decoder.start_utt()
            self.decoder.process_raw(pcm[a:b].tobytes(), full_utt=True)  # the whole span: its own mean
            self.decoder.end_utt()
            t0 = a / sample_rate
            words += [(seg.word.split("(")[0], t0 + seg.start_frame / FRAME_RATE,
                       t0 + (seg.end_frame + 1) / FRAME_RATE)  # end_frame is inclusive
                      for seg in self.decoder.seg() if seg.word not in SILENT_TOKENS]
        return words


def speech_spans(audio: torch.Tensor, sample_rate: int = 16_000) -> list[tuple[int, int]]:
    """Where to listen: [(first sample, end sample)] of the stretches with sound in them.

    A 10 ms frame has sound when its level is within SPAN_DB of the clip's loudest frame
    and above SPAN_FLOOR_DB (dB of full scale); frames with sound closer than SPAN_GAP_S
    join one span, and each span gets SPAN_PAD_S of context on both sides.
    """
    hop = sample_rate // FRAME_RATE
    n = audio.shape[0] // hop
    if n == 0:
        return []
    level = 10 * audio[: n * hop].reshape(n, hop).pow(2).mean(1).clamp_min(1e-12).log10()  # (n,) dB
    loud = torch.nonzero(level > max(float(level.max()) - SPAN_DB, SPAN_FLOOR_DB)).flatten().tolist()
    spans: list[list[int]] = []  # [first frame, end frame)
    for i in loud:
        if spans and i - spans[-1][1] < SPAN_GAP_S * FRAME_RATE:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    pad = round(SPAN_PAD_S * FRAME_RATE)
    return [(max(0, a - pad) * hop, min(n, b + pad) * hop) for a, b in spans]
