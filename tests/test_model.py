import math
from dataclasses import replace

import pytest
import torch

from minitml import checkpoint
from minitml.config import get_config
from minitml.model import InteractionModel, KVCache, rope_angles, sliding_window_mask
from minitml.session import Session
from minitml.stream import PAD, BlockLayout, Blocks, pack_conversation, random_blocks


def small_window(window_micro_turns=3, **model_fields):
    cfg = get_config("tiny")
    return cfg.replace(model=replace(cfg.model, window_micro_turns=window_micro_turns,
                                     **model_fields))


@pytest.mark.parametrize("mel_head, embed_norm", [("discrete", False), ("flow", False), ("discrete", True)])
def test_streaming_equals_full_forward_across_window_wraps(mel_head, embed_norm):
    cfg = small_window(3, mel_head=mel_head, embed_norm=embed_norm)  # window = 42 positions, 12 micro-turns
    torch.manual_seed(1)
    model = InteractionModel(cfg).eval()
    session = Session(model, temperature=1.0, mel_temperature=1.0, record_logits=True, seed=5,
                      overrun="ignore")  # no timing-dependent catch-up steps in a test
    g = torch.Generator().manual_seed(2)
    outs = []
    for t in range(12):  # 168 positions: the ring wraps four times
        audio = 0.3 * torch.randn(3200, generator=g)
        frame = torch.rand(80, 80, 3, generator=g)
        outs.append(session.step(audio, frame, [3, 4] if t % 4 == 1 else None, record=True))
    blocks = Blocks.cat(session.recorded, dim=1)
    assert blocks.n_turns == 12
    with torch.no_grad():
        full = model(blocks)
    streamed = torch.stack([o.text_logits for o in outs])  # (T, A, V)
    assert (full.text_logits[0] - streamed).abs().max() < 1e-4
    if mel_head == "discrete":
        streamed_mel = torch.stack([o.mel_logits for o in outs])
        assert (full.mel_logits[0] - streamed_mel).abs().max() < 1e-4
    # the outputs the session sampled are the ones the full pass was given
    assert torch.equal(blocks.out_text[0], torch.stack([o.text_ids for o in outs]))


def test_window_really_slides():
    """Each layer looks back less than W positions, so n_layers layers see < n_layers * W."""
    cfg = small_window(1)  # W = 14 positions; 4 layers see at most 4 * 13 = 52 back
    torch.manual_seed(0)
    model = InteractionModel(cfg).eval()
    blocks, changed = random_blocks(cfg, 8), random_blocks(cfg, 8)
    far = random_blocks(cfg, 8, seed=9)
    for name in ("patches", "user_audio", "text_in", "out_text", "out_audio"):
        getattr(changed, name)[:, 0] = getattr(far, name)[:, 0]  # change micro-turn 0 only
    with torch.no_grad():
        base, after = model(blocks).text_logits, model(changed).text_logits
    # micro-turn 5 starts at position 70, more than 52 after turn 0 ends (13): out of reach
    assert torch.allclose(base[:, 5:], after[:, 5:], atol=1e-6)
    assert not torch.allclose(base[:, 0], after[:, 0], atol=1e-4)


def test_no_output_depends_on_its_own_playback_interval():
    """Output t is played during input t + 1: changing input t + 1 must not change it."""
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = InteractionModel(cfg).eval()
    blocks = random_blocks(cfg, 5)
    other = random_blocks(cfg, 5, seed=3)
    t = 2
    changed = random_blocks(cfg, 5)
    changed.user_audio[:, t + 1] = other.user_audio[:, t + 1]
    changed.patches[:, t + 1] = other.patches[:, t + 1]
    changed.text_in[:, t + 1] = other.text_in[:, t + 1]
    with torch.no_grad():
        a, b = model(blocks), model(changed)
    assert torch.allclose(a.text_logits[:, : t + 1], b.text_logits[:, : t + 1], atol=1e-6)
    assert torch.allclose(a.mel_logits[:, : t + 1], b.mel_logits[:, : t + 1], atol=1e-6)
    assert not torch.allclose(a.text_logits[:, t + 1], b.text_logits[:, t + 1], atol=1e-4)


def test_pack_conversation_shifts_the_assistant_by_one_micro_turn():
    cfg = get_config("tiny")
    F = 16 * 5  # five micro-turns of frames
    frame_id = torch.arange(F)[:, None].expand(F, 80) % 16  # each frame tagged by its index
    user = frame_id.clone()
    model_tokens = (frame_id + 1) % 16
    words = [(7, 0.25), (9, 0.61)]  # word 7 starts at 250 ms, word 9 at 610 ms
    b = pack_conversation(cfg, user, model_tokens, words)
    # input t holds frames [16t, 16(t+1)): the audio of [200t, 200(t+1)) ms
    assert torch.equal(b.user_audio[0, 1].reshape(16, 80), user[16:32])
    # output t holds the assistant's frames of [200(t+1), 200(t+2)) ms
    assert torch.equal(b.out_audio[0, 0].reshape(16, 80), model_tokens[16:32])
    assert torch.equal(b.out_audio[0, 3].reshape(16, 80), model_tokens[64:80])
    assert b.out_audio[0, 4].sum() == 0  # nothing after the end
    # word 7 at 250 ms is in output 0 (played from 200 ms), slot 1 (250-300 ms)
    assert b.out_text[0, 0].tolist() == [PAD, 7, PAD, PAD]
    # word 9 at 610 ms: output 1 (played 400-600 ms)? no: 600-800 ms is output 2, slot 0
    assert b.out_text[0, 2].tolist() == [9, PAD, PAD, PAD]


def test_heard_words_are_targets_where_they_end_without_a_shift():
    cfg = get_config("tiny")
    F = 16 * 5
    silence = torch.zeros(F, 80, dtype=torch.long)
    heard = [(7, 0.26), (9, 0.61), (11, 0.99)]  # user words ending at 260, 610 and 990 ms
    b = pack_conversation(cfg, silence, silence, user_words=heard)
    # input t, token j hears [200t + 50j, 200t + 50(j+1)) ms: 260 ms is input 1, token 1
    assert b.heard_text[0, 1].tolist() == [PAD, 7, PAD, PAD]
    assert b.heard_text[0, 3].tolist() == [9, PAD, PAD, PAD]  # 610 ms: input 3, token 0
    assert b.heard_text[0, 4].tolist() == [PAD, PAD, PAD, 11]  # 990 ms: the last token
    assert (b.out_text == PAD).all()  # heard words are never something to say


def test_reply_starts_follow_silence():
    from minitml.model import REPLY_GAP_SLOTS, reply_starts

    words = torch.full((1, 10, 4), PAD)
    words[0, 0, 2] = 5  # the first word of the conversation: a reply start
    words[0, 1, 1] = 6  # 3 slots later: the same reply
    words[0, 5, 1] = 8  # 16 slots after word 6: a new reply
    words[0, 8, 0] = 9  # 11 slots after word 8: the same reply
    assert REPLY_GAP_SLOTS == 12
    starts = reply_starts(words)
    assert starts.nonzero().tolist() == [[0, 0, 2], [0, 5, 1]]


def test_loss_weights_and_the_heard_head():
    from dataclasses import replace

    cfg = get_config("tiny")
    torch.manual_seed(0)
    blocks = random_blocks(cfg, 3, batch_size=2)
    model = InteractionModel(cfg.replace(model=replace(cfg.model, heard_head=False)))
    with pytest.raises(ValueError, match="heard_head"):
        model.loss(blocks, heard_weight=1.0)
    plain = model.loss(blocks)
    weighted = model.loss(blocks, word_weight=5.0, reply_weight=2.0, decision_ids=(1, 2))
    assert not torch.equal(plain["text"], weighted["text"])
    assert "heard" not in plain
    listening = InteractionModel(cfg)  # the tiny preset has the heard head
    out = listening(blocks)
    assert out.heard_logits.shape == (2, 3, 4, 256)
    losses = listening.loss(blocks, heard_weight=0.5, out=out)
    # the heard loss: a weighted mean over every user-audio token, PAD weighing 0.1
    targets = blocks.heard_text.flatten()
    ce = torch.nn.functional.cross_entropy(out.heard_logits.flatten(0, -2), targets, reduction="none")
    w = torch.where(targets == PAD, 0.1, 1.0)
    assert torch.allclose(losses["heard"], (ce * w).sum() / w.sum())
    rest = listening.loss(blocks, out=out)["loss"]
    assert torch.allclose(losses["loss"], rest + 0.5 * losses["heard"])


def test_the_seen_head_names_each_patch_and_adds_its_loss():
    from dataclasses import replace

    cfg = get_config("tiny")
    torch.manual_seed(0)
    blocks = random_blocks(cfg, 3, batch_size=2)
    blocks.seen_text[:, :, 2] = PAD  # some patches show nothing
    with pytest.raises(ValueError, match="seen_head"):
        InteractionModel(cfg).loss(blocks, seen_weight=1.0)
    seeing = InteractionModel(cfg.replace(model=replace(cfg.model, seen_head=True)))
    out = seeing(blocks)
    assert out.seen_logits.shape == (2, 3, 4, 256)  # (B, T, P, V)
    losses = seeing.loss(blocks, seen_weight=0.5, out=out)
    targets = blocks.seen_text.flatten()
    ce = torch.nn.functional.cross_entropy(out.seen_logits.flatten(0, -2), targets, reduction="none")
    w = torch.where(targets == PAD, 0.1, 1.0)
    assert torch.allclose(losses["seen"], (ce * w).sum() / w.sum())
    assert torch.allclose(losses["loss"], seeing.loss(blocks, out=out)["loss"] + 0.5 * losses["seen"])
    losses["loss"].backward()
    assert seeing.seen_head.weight.grad.abs().sum() > 0
    assert seeing.patch_embedding.proj.weight.grad.abs().sum() > 0  # the signal reaches the patches


def test_value_words_weigh_value_weight_more():
    from minitml.model import word_weights

    out_text = torch.tensor([[[PAD, 7, 8, PAD]]])  # (B, T, A): a reply of two words
    values = torch.tensor([[[True, False, True, False]]])  # the second word carries the value
    assert word_weights(out_text, 5.0).tolist() == [[[1.0, 5.0, 5.0, 1.0]]]
    assert word_weights(out_text, 5.0, values=values, value_weight=3.0).tolist() == [[[1.0, 5.0, 15.0, 1.0]]]


def test_layout_predictors():
    lay = BlockLayout.from_config(get_config("tiny"))
    assert lay.length == 14 and lay.out_start == 10
    assert lay.predictor_offsets().tolist() == [9, 10, 11, 12]
    assert lay.stream_types().tolist() == [0] * 4 + [1] * 4 + [2] * 2 + [3] * 4


def test_mask_is_causal_and_windowed():
    q = torch.arange(10)
    mask = sliding_window_mask(q, q, window=3)
    for i in range(10):
        assert mask[i].nonzero().flatten().tolist() == list(range(max(0, i - 2), i + 1))
    empty = sliding_window_mask(q[:1], torch.tensor([-1, 0]), 3)
    assert empty.tolist() == [[False, True]]


def test_rope_stays_accurate_for_an_hour():
    p = torch.tensor([252_000])  # an hour of tiny micro-turns (14 positions x 5 per second)
    cos, sin = rope_angles(p, 32, 10_000.0)
    exact = [(252_000 * 10_000.0 ** (-i / 32)) % (2 * math.pi) for i in range(0, 32, 2)]
    assert torch.allclose(cos[0], torch.tensor([math.cos(a) for a in exact]), atol=1e-6)
    assert torch.allclose(sin[0], torch.tensor([math.sin(a) for a in exact]), atol=1e-6)
    # the naive float32 product would be off by far more
    naive = torch.cos(p.float()[:, None] * 10_000.0 ** (-torch.arange(0, 32, 2).float() / 32))
    assert (naive[0] - torch.tensor([math.cos(a) for a in exact])).abs().max() > 1e-3


def test_cache_never_grows():
    cfg = small_window(2)
    model = InteractionModel(cfg).eval()
    session = Session(model, vocode=False)
    sizes = []
    for _ in range(20):
        session.step(0.1 * torch.randn(3200))
        sizes.append(sum(c.nbytes() for c in session.generator.state.caches))
    state = session.generator.state
    assert len(set(sizes)) == 1
    assert state.caches[0].k.shape[2] == cfg.window
    assert sorted(state.caches[0].pos.tolist()) == list(
        range(state.next_position - cfg.window, state.next_position))


def test_ring_cache_slots():
    cache = KVCache(1, 1, 4, 2)
    for p in range(6):
        cache.update(torch.full((1, 1, 1, 2), float(p)), torch.zeros(1, 1, 1, 2), torch.tensor([p]))
    assert cache.pos.tolist() == [4, 5, 2, 3]
    assert cache.k[0, 0, :, 0].tolist() == [4.0, 5.0, 2.0, 3.0]


def test_embed_norm_puts_every_kind_of_input_on_one_scale():
    """Untrained, a patch vector is about 50 times as long as a word vector; with
    embed_norm every kind has an RMS of 1 (its gain), and the gains learn."""
    cfg = get_config("tiny")
    blocks = random_blocks(cfg, 3, batch_size=2)
    for norm in (False, True):
        torch.manual_seed(0)
        model = InteractionModel(cfg.replace(model=replace(cfg.model, embed_norm=norm)))
        rms = {kind: model.scaled(kind, x).pow(2).mean(-1).sqrt().mean().item() for kind, x in (
            ("patch", model.patch_embedding(blocks.patches, cfg.vision.grid)),
            ("audio", model.dmel_embedding(blocks.user_audio)),
            ("word", model.text_embedding(blocks.out_text)))}
        if norm:
            assert all(abs(r - 1) < 0.02 for r in rms.values()), rms  # (RMSNorm eps)
            model.loss(blocks)["loss"].backward()
            assert all(p.grad.abs().sum() > 0 for p in model.embed_norms.parameters())
        else:
            assert rms["patch"] > 20 * rms["word"] and rms["audio"] > rms["word"], rms


def test_training_step_lowers_the_loss_and_reaches_every_parameter():
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = InteractionModel(cfg)
    blocks = random_blocks(cfg, 4, batch_size=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model.loss(blocks, heard_weight=1.0)  # every head, the heard head too
    first["loss"].backward()
    untouched = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    # only experts that received no tokens in this batch may have no gradient
    assert all(".ffn.w_" in n for n in untouched), untouched
    for _ in range(30):
        opt.step()
        opt.zero_grad()
        model.loss(blocks, heard_weight=1.0)["loss"].backward()
    assert model.loss(blocks, heard_weight=1.0)["loss"].item() < first["loss"].item() - 1.0


def test_checkpoint_round_trip_and_refusals(tmp_path):
    cfg = get_config("tiny")
    model = InteractionModel(cfg).eval()
    vocab = ["<pad>"] + [f"w{i}" for i in range(255)]
    path = checkpoint.save(model, tmp_path / "m.pt", vocab=vocab, step=7)
    loaded = checkpoint.load(path, expect=cfg, vocab=vocab)
    blocks = random_blocks(cfg, 2)
    with torch.no_grad():
        assert torch.equal(model(blocks).text_logits, loaded(blocks).text_logits)
    assert loaded.vocab == vocab
    other = cfg.replace(model=replace(cfg.model, d_model=64))
    with pytest.raises(ValueError, match=r"model\.d_model: expected 64, got 128"):
        checkpoint.load(path, expect=other)
    with pytest.raises(ValueError, match="word 3 is 'w2', expected 'x'"):
        checkpoint.load(path, vocab=vocab[:3] + ["x"] + vocab[4:])
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a minitml checkpoint"):
        checkpoint.load(tmp_path / "bad.pt")


def test_flow_head_samples_deterministically():
    cfg = small_window(3, mel_head="flow")
    model = InteractionModel(cfg).eval()
    h = torch.randn(2, 128)
    a, no_logits = model.mel_head.sample(h, rng=torch.Generator().manual_seed(0))
    b, _ = model.mel_head.sample(h, 1.0, torch.Generator().manual_seed(0))  # temperature: unused
    assert a.shape == (2, 4, 80) and torch.equal(a, b) and a.min() >= 0 and a.max() < 16
    assert no_logits is None and model.mel_head.logits(h) is None
    loss = model.loss(random_blocks(cfg, 2))
    assert torch.isfinite(loss["loss"]) and loss["mel"] > 0


def test_dense_and_expert_ffns_start_alike():
    """One init: gate and up N(0, 0.02), every projection into the residual stream (attention
    output, dense and expert down) N(0, 0.02 / sqrt(2 n_layers))."""
    torch.manual_seed(0)
    model = InteractionModel(get_config("tiny"))
    residual = 0.02 / math.sqrt(2 * len(model.blocks))
    kinds = set()
    for block in model.blocks:
        ffn = block.ffn
        if block.is_moe:
            gate, up, down = ffn.w_gate, ffn.w_up, ffn.w_down
        else:
            gate, up, down = ffn.w_gate.weight, ffn.w_up.weight, ffn.w_down.weight
        kinds.add(block.is_moe)
        for w, std in ((gate, 0.02), (up, 0.02), (down, residual), (block.attn.o.weight, residual)):
            w = w.detach()
            assert abs(float(w.std()) - std) < 0.05 * std and abs(float(w.mean())) < 0.1 * std
    assert kinds == {True, False}  # the tiny preset has both kinds of FFN
