"""The offline speech recognizer (minitml.listen): it hears the assistant, forgets between
clips, hears nothing in noise, and counts word errors right."""

import math
from collections import defaultdict

import pytest
import torch

from minitml.listen import (
    EXTRA_PRONUNCIATIONS,
    Recognizer,
    ngram_arpa,
    pronunciations,
    speech_spans,
    world_sentences,
    world_words,
)
from minitml.metrics import word_error_rate, word_errors
from minitml.world.vocab import tokenize
from minitml.world.voices import ASSISTANT_VOICE, speak

SENTENCES = ("a spider has eight legs", "the answer is two thousand forty one", "okay, let me check",
             "i see a triangle now", "seven plus five is twelve")


@pytest.fixture(scope="module")
def rec():
    torch.set_num_threads(1)
    return Recognizer()


def said(text: str, pad_s: float = 0.5) -> torch.Tensor:
    """The assistant's voice saying `text`, with digital silence around it (as in a scenario)."""
    pad = torch.zeros(round(pad_s * 16_000))
    return torch.cat([pad, speak(text, ASSISTANT_VOICE).wave, pad])


def test_hears_the_assistant(rec):
    errors = words = 0
    for text in SENTENCES:
        audio = said(text)
        heard = rec.transcribe(audio)
        e, n = word_errors(tokenize(text), [w for w, _, _ in heard])
        errors, words = errors + e, words + n
        for _, start, end in heard:  # times on the clip's clock, inside the speech
            assert 0.3 <= start < end <= audio.shape[0] / 16_000, (text, heard)
    assert errors / words <= 0.2, f"{errors} word errors in {words} words"  # measured: 0 of 24


def test_no_memory_between_clips(rec):
    """pocketsphinx's front end keeps state across utterances; transcribe must reset it."""
    b = said("i see a triangle now")
    alone = rec.transcribe(b)
    g = torch.Generator().manual_seed(1)
    for a in (said("the answer is two thousand forty one"), 0.5 * torch.randn(48_000, generator=g),
              torch.zeros(16_000)):
        rec.transcribe(a)
        assert rec.transcribe(b) == alone  # the same words and the same times, exactly


def test_silence_and_room_noise_are_not_words(rec):
    assert rec.transcribe(torch.zeros(48_000)) == []
    g = torch.Generator().manual_seed(0)
    for std in (0.001, 0.003, 0.005):  # the toy world's room noise levels
        heard = rec.transcribe(std * torch.randn(48_000, generator=g))
        assert len(heard) <= 1, (std, heard)


def test_speech_spans_cut_at_silences():
    sr = 16_000
    tone = 0.3 * torch.sin(torch.arange(sr // 2) * 0.2)  # 0.5 s of sound
    audio = torch.cat([torch.zeros(sr), tone, torch.zeros(sr), tone, torch.zeros(sr // 10), tone])
    spans = speech_spans(audio, sr)
    assert len(spans) == 2  # the 0.1 s gap stays inside the second span
    (a0, b0), (a1, b1) = spans
    assert abs(a0 / sr - 0.8) < 0.02 and abs(b0 / sr - 1.7) < 0.02  # 0.2 s of context each side
    assert abs(a1 / sr - 2.3) < 0.02 and b1 == audio.shape[0]


def test_word_error_rate():
    assert word_error_rate(["two"], ["twenty", "two"]) == 1.0  # one insertion
    assert word_error_rate(["twenty", "two"], ["two"]) == 0.5  # one deletion
    assert word_error_rate(["it", "is", "two"], ["it", "is", "twenty", "two"]) == pytest.approx(1 / 3)
    assert word_error_rate(["it", "is", "red"], ["it", "is", "green"]) == pytest.approx(1 / 3)
    assert word_error_rate(["a", "b", "c"], ["c", "b", "a"]) == pytest.approx(2 / 3)
    assert word_error_rate(["okay"], []) == 1.0
    assert word_error_rate([], []) == 0.0
    assert word_error_rate([], ["okay"]) == math.inf
    # pooled over clips: 1 error in 1 word and 0 in 3 is 1/4, not the mean of 1 and 0
    pairs = [(["two"], ["three"]), (["it", "is", "red"], ["it", "is", "red"])]
    e, n = map(sum, zip(*(word_errors(r, h) for r, h in pairs)))
    assert (e, n) == (1, 4)


def test_bad_input_is_refused(rec):
    good = torch.zeros(16_000)
    with pytest.raises(ValueError, match="expected float32 .* got torch.int16"):
        rec.transcribe(good.to(torch.int16))
    with pytest.raises(ValueError, match="expected float32 .* got torch.float64"):
        rec.transcribe(good.double())
    with pytest.raises(ValueError, match=r"expected mono audio of shape \(N,\), got shape \(2, 16000\)"):
        rec.transcribe(torch.zeros(2, 16_000))
    with pytest.raises(ValueError, match="expected audio at 16000 Hz, got 8000 Hz"):
        rec.transcribe(good, sample_rate=8000)
    with pytest.raises(ValueError, match="expected audio as a torch.Tensor, got ndarray"):
        rec.transcribe(good.numpy())
    with pytest.raises(ValueError, match="expected finite samples"):
        rec.transcribe(torch.full((16_000,), float("nan")))
    with pytest.raises(ValueError, match="divide by 32768"):
        rec.transcribe(good + 1000.0)


def _arpa_probability(arpa: str):
    """An independent reader of the ARPA text -> (P(word | context) with back-off, {gram: log10 p})."""
    logp, bow, k = {}, {}, 0
    for line in arpa.splitlines():
        if line.endswith("-grams:"):  # "\\2-grams:" starts the section of bigrams
            k = int(line[1:].split("-")[0])
        elif k and line.strip() and line != "\\end\\":
            parts = line.split()
            gram = tuple(parts[1:1 + k])
            logp[gram] = float(parts[0])
            if len(parts) > 1 + k:
                bow[gram] = float(parts[1 + k])

    def p(gram):
        if gram in logp:
            return 10 ** logp[gram]
        return 10 ** bow.get(gram[:-1], 0.0) * p(gram[1:])
    return p, logp


def test_language_model_sums_to_one_and_backs_off():
    words = ["a", "red", "dog", "cat", "sees", "blue"]
    sentences = [["a", "red", "dog"], ["a", "red", "cat"], ["a", "dog", "sees", "a", "cat"]]
    arpa = ngram_arpa(sentences, words, order=3, backoff=0.1)
    p, logp = _arpa_probability(arpa)
    targets = words + ["</s>"]
    contexts = {g[:-1] for g in logp if len(g) > 1} | {()}
    for h in contexts:
        assert sum(p((*h, w)) for w in targets) == pytest.approx(1.0, abs=1e-3), h
    assert p(("a", "red", "blue")) > 0  # never seen after "a red", never seen at all: still possible
    assert p(("a", "red", "dog")) == pytest.approx(0.9 * 1 / 2, rel=1e-3)  # linear discounting


def test_world_language_model_and_dictionary():
    words = world_words()
    assert words and not any(w.startswith("<") for w in words)
    prons = pronunciations(words)
    assert set(prons) == set(words)  # every word can be heard
    for w, extra in EXTRA_PRONUNCIATIONS.items():
        assert set(extra) <= set(prons[w])
    sentences = world_sentences()
    assert all(set(s) <= set(words) for s in sentences)  # slot fillers use world words only
    p, logp = _arpa_probability(ngram_arpa(sentences, words))
    targets = words + ["</s>"]
    by_order = defaultdict(list)
    for g in logp:
        by_order[len(g)].append(g[:-1])
    for h in [(), ("<s>",), by_order[3][0], by_order[3][-1]]:
        assert sum(p((*h, w)) for w in targets) == pytest.approx(1.0, abs=1e-3), h
