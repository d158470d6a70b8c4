"""The streaming generator alone: hear, prefill, speak, play, with no clock around it."""

from dataclasses import replace
from functools import partial

import pytest
import torch

from minitml.config import get_config
from minitml.generator import Generator, greedy_word, sample_word
from minitml.model import InteractionModel
from minitml.session import Session
from minitml.stream import PAD


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return InteractionModel(get_config("tiny")).eval()


def inputs(n_turns, seed=0):
    """n_turns of (wave (3200,), patches (P, 3*40*40), X text-in ids)."""
    g = torch.Generator().manual_seed(seed)
    cfg = get_config("tiny")
    return [(0.3 * torch.randn(3200, generator=g),
             torch.rand(cfg.vision.n_patches, cfg.vision.patch_dim, generator=g),
             [5, 6] if t % 3 == 1 else [PAD, PAD]) for t in range(n_turns)]


def converse(generator, turns):
    """Each micro-turn through the four phases -> [(word ids (A,), frames (16, 80), audio (3200,))]."""
    said = []
    for wave, patches, slots in turns:
        blk, _ = generator.hear(wave, patches, slots)
        generator.speak(blk, generator.prefill(blk))
        said.append((blk.out_text[0, 0].clone(), Generator.frames_said(blk), generator.play(blk)))
    return said


def same(a, b):
    return all(torch.equal(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


def test_reset_gives_the_same_conversation_twice(model):
    generator = Generator(model, partial(sample_word, temperature=1.0), mel_temperature=1.0, seed=3)
    turns = inputs(6)
    first = converse(generator, turns)
    assert generator.state.next_position == 6 * model.layout.length - 1  # the last output pending
    generator.reset()
    assert generator.state.next_position == 0 and generator.state.pending is None
    assert same(first, converse(generator, turns))
    other = Generator(model, partial(sample_word, temperature=1.0), mel_temperature=1.0, seed=4)
    assert not same(first, converse(other, turns))  # the seed is what the randomness depends on


def test_the_text_sampler_is_a_parameter(model):
    calls = []

    def always_seven(logits, rng=None):
        calls.append((logits.shape, rng))
        return 7

    generator = Generator(model, always_seven)
    said = converse(generator, inputs(3))
    assert all((ids == 7).all() for ids, _, _ in said)
    V, A = model.cfg.model.text_vocab_size, model.layout.n_audio
    assert len(calls) == 3 * A and all(shape == (V,) for shape, _ in calls)
    assert all(rng is generator.state.rng for _, rng in calls)  # it draws from the generator's randomness


def test_a_silent_prefill_says_nothing_and_keeps_the_context(model):
    generator = Generator(model)
    (wave, patches, slots), = inputs(1)
    blk, _ = generator.hear(wave, patches, slots)
    generator.prefill_silent(blk)
    assert (blk.out_text == PAD).all() and (blk.out_audio == 0).all()
    assert generator.state.next_position == model.layout.length - 1  # the last output pending
    assert generator.state.pending.shape == (1, 1, model.cfg.model.d_model)


def test_a_session_is_its_generator_on_a_clock(model):
    """Session.step with sampling says exactly what the bare generator says for the same inputs."""
    turns = inputs(4, seed=1)
    session = Session(model, temperature=1.0, top_k=20, mel_temperature=1.0, seed=9, overrun="ignore")
    outs = [session.step(wave, text_in=slots) for wave, _, slots in turns]
    dark = torch.zeros_like(turns[0][1])  # no frame: darkness
    generator = Generator(model, partial(sample_word, temperature=1.0, top_k=20), mel_temperature=1.0, seed=9)
    said = converse(generator, [(wave, dark, slots) for wave, _, slots in turns])
    for out, (ids, frames, audio) in zip(outs, said):
        assert torch.equal(out.text_ids, ids) and torch.equal(out.tokens, frames)
        assert torch.equal(out.audio, audio)


@pytest.mark.parametrize("mel_head", ["discrete", "flow"])
def test_both_mel_heads_speak_through_one_interface(mel_head):
    """The generator calls the mel head without asking which one it is: each head draws its
    frames from the generator's randomness, and only the discrete head has logits to show."""
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = InteractionModel(cfg.replace(model=replace(cfg.model, mel_head=mel_head))).eval()
    turns = inputs(3)
    generator = Generator(model, mel_temperature=1.0, seed=3)
    first = converse(generator, turns)
    generator.reset()
    assert same(first, converse(generator, turns))
    assert not same(first, converse(Generator(model, mel_temperature=1.0, seed=4), turns))
    blk, _ = generator.hear(*turns[0])
    _, mel_logits = generator.speak(blk, generator.prefill(blk))
    A, k, n_mels, n_bins = 4, 4, 80, 16
    said = blk.out_audio[0, 0]  # (A, k, 80) the bins it said
    assert said.shape == (A, k, n_mels) and 0 <= said.min() <= said.max() < n_bins
    assert (mel_logits is None) == (mel_head == "flow")
    if mel_logits is not None:
        assert mel_logits.shape == (A, k, n_mels, n_bins)


def test_greedy_word_asks_speak_now_before_which_word():
    # PAD 0.4, three words 0.2 each: plain argmax says PAD, but speaking is likelier (0.6)
    probs = torch.tensor([0.4, 0.2, 0.2, 0.2 - 1e-3])
    assert int(probs.argmax()) == PAD
    assert greedy_word(probs.log()) == 1
    assert greedy_word(torch.tensor([0.55, 0.25, 0.2]).log()) == PAD
    assert greedy_word(torch.tensor([0.55, 0.25, 0.2]).log(), speak_threshold=0.4) == 1
    assert greedy_word(torch.tensor([0.1, 0.2, 0.7]).log()) == 2


def test_the_calibrated_threshold_undoes_the_word_weight():
    """A model trained with words weighing w says q(word) proportional to w * p(word) (the
    weighted cross-entropy's optimum); greedy decoding at w / (1 + w) then speaks exactly
    when the data's P(speak) is above one half."""
    from minitml.generator import calibrated_threshold

    assert calibrated_threshold(1.0) == 0.5 and calibrated_threshold(5.0) == pytest.approx(5 / 6)
    for w in (1.0, 2.0, 5.0, 10.0):
        for p_speak in (0.2, 0.45, 0.49, 0.51, 0.55, 0.8):
            p = torch.tensor([1 - p_speak, 0.6 * p_speak, 0.4 * p_speak])  # PAD, two words
            q = p * torch.tensor([1.0, w, w])
            q = q / q.sum()
            said = greedy_word(q.log(), speak_threshold=calibrated_threshold(w))
            assert (said != PAD) == (p_speak > 0.5), (w, p_speak)
            assert said in (PAD, 1)


def test_a_session_decodes_at_its_models_calibrated_threshold_when_asked(model):

    assert Session(model, warmup=False, speak_threshold="calibrated").speak_threshold == 0.5
    model.word_weight = 5.0  # as checkpoint.load sets it from the file's TrainConfig
    try:
        assert Session(model, warmup=False, speak_threshold="calibrated").speak_threshold == 5 / 6
        assert Session(model, warmup=False).speak_threshold == 0.5  # the default stays one half
    finally:
        model.word_weight = 1.0
    with pytest.raises(ValueError, match="speak_threshold"):
        Session(model, warmup=False, speak_threshold="high")


def streamed(model, seed: int, n_turns: int = 4):
    """n_turns micro-turns through a Generator -> (the blocks it filled, joined: (1, T, ...);
    the text logits it spoke from, (T, A, V))."""
    from minitml.stream import Blocks

    generator = Generator(model)
    blocks, logits = [], []
    for wave, patches, slots in inputs(n_turns, seed=seed):
        blk, _ = generator.hear(wave, patches, slots)
        text_logits, _ = generator.speak(blk, generator.prefill(blk))
        blocks.append(blk)
        logits.append(text_logits)
    return Blocks.cat(blocks, dim=1), torch.stack(logits)


@pytest.mark.parametrize("embed_norm", [False, True])
def test_reading_back_what_was_heard_streams_as_the_full_forward_does(embed_norm):
    """heard_feedback: the generator names the heard words of each input block and its output
    slots read them back; the full forward pass given those words says the same logits."""
    from minitml.model import dense_words

    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = InteractionModel(cfg.replace(model=replace(cfg.model, heard_feedback=True,
                                                       embed_norm=embed_norm))).eval()
    model.heard_pad_weight = 1e6  # PAD never wins: every slot reads back a word (untrained logits)
    whole, logits = streamed(model, seed=2)
    assert (whole.heard_text != PAD).all()
    with torch.no_grad():
        full = model(whole)  # reads back whole.heard_text: what the generator named
        assert torch.allclose(full.text_logits[0], logits, atol=1e-4)
        assert torch.equal(dense_words(full.heard_logits, 1e6), whole.heard_text)
        other = model(whole, heard=torch.full_like(whole.heard_text, PAD))
    assert not torch.allclose(other.text_logits[0], logits, atol=1e-4)  # it is read


def test_reading_back_what_was_seen_streams_as_the_full_forward_does():
    """seen_feedback: the generator names what each patch of an input block shows and the
    output slot of the same index reads it back; the full forward pass given those words
    says the same logits, and other words would change them."""
    from minitml.model import dense_words

    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = InteractionModel(cfg.replace(model=replace(cfg.model, seen_head=True, seen_feedback=True,
                                                       embed_norm=True))).eval()
    model.heard_pad_weight = 1e6  # PAD never wins: every patch names a word (untrained logits)
    whole, logits = streamed(model, seed=3)
    assert (whole.seen_text != PAD).all() and (whole.heard_text == PAD).all()
    with torch.no_grad():
        full = model(whole)  # reads back whole.seen_text: what the generator named
        assert torch.allclose(full.text_logits[0], logits, atol=1e-4)
        assert torch.equal(dense_words(full.seen_logits, 1e6), whole.seen_text)
        whole.seen_text = torch.full_like(whole.seen_text, PAD)
        other = model(whole)
    assert not torch.allclose(other.text_logits[0], logits, atol=1e-4)  # it is read


def test_a_session_reports_the_words_its_model_read_back():
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = InteractionModel(cfg.replace(model=replace(cfg.model, heard_feedback=True))).eval()
    model.heard_pad_weight = 1e6  # every user-audio token names a word
    session = Session(model, overrun="ignore")
    outs = [session.step(wave, text_in=slots) for wave, _, slots in inputs(2)]
    assert [when for _, when in outs[1].heard] == pytest.approx([0.25, 0.3, 0.35, 0.4])
    assert len(session.run(torch.zeros(3 * 3200)).heard) == 12
    assert Session(InteractionModel(cfg).eval()).step(torch.zeros(3200)).heard == []  # no read-back
