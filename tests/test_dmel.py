import math
import wave as wavefile

import numpy as np
import pytest
import torch
import torchaudio

from minitml.dmel import DMel, DMelEmbedding, DMelHead, mel_filterbank
from minitml.wav import read_wav, resample, write_wav


@pytest.fixture(scope="module")
def dmel():
    from minitml.config import get_config

    return DMel(get_config("tiny").audio)


def torchaudio_log_mel(wave, cfg):
    """The independent reference: torchaudio's MelSpectrogram with the same recipe."""
    mel = torchaudio.transforms.MelSpectrogram(
        cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
        f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=1.0, norm="slaney",
        mel_scale="slaney", center=True, pad_mode="reflect",
    )(wave)  # (80, T // hop + 1)
    log = torch.log10(mel.clamp_min(cfg.log_floor)).clamp(cfg.log_min, cfg.log_max)
    return log.T[: wave.numel() // cfg.hop_length]


def test_filterbank_matches_torchaudio(dmel):
    c = dmel.cfg
    ref = torchaudio.functional.melscale_fbanks(
        c.n_fft // 2 + 1, c.f_min, c.f_max, c.n_mels, c.sample_rate, norm="slaney",
        mel_scale="slaney",
    )
    ours = mel_filterbank(c)
    assert ours.shape == ref.shape == (513, 80)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    # Slaney normalisation: every triangle has area ~ 1 in Hz (2 / width * width / 2).
    hz_per_bin = c.sample_rate / c.n_fft
    assert torch.allclose(ours.sum(0) * hz_per_bin, torch.ones(80), atol=0.05)


def test_log_mel_matches_torchaudio(dmel, speech):
    ours = dmel.log_mel(speech.wave)
    ref = torchaudio_log_mel(speech.wave, dmel.cfg)
    assert ours.shape == ref.shape == (speech.wave.numel() // 200, 80)
    assert (ours - ref).abs().max() < 1e-4


def test_frames_per_micro_turn(dmel):
    wave = 0.1 * torch.randn(3200)  # 200 ms
    assert dmel.encode(wave).shape == (16, 80)


def test_bin_centres_exact(dmel):
    expected = torch.tensor([-7.0 + 0.6 * i for i in range(16)], dtype=torch.float64)
    assert dmel.centres.dtype == torch.float32
    assert torch.equal(dmel.centres, expected.float())
    assert dmel.centres[0].item() == -7.0 and dmel.centres[-1].item() == 2.0
    assert dmel.cfg.bits_per_second == 80 * 4 * 80


def test_dequantised_within_half_step(dmel):
    x = torch.empty(2000, 80).uniform_(-9.0, 3.0)  # also beyond the clamp range
    tokens = dmel.quantize(x)
    assert tokens.dtype == torch.int64 and tokens.min() >= 0 and tokens.max() <= 15
    err = (dmel.decode(tokens) - x.clamp(-7, 2)).abs()
    assert err.max() <= 0.3 + 1e-5
    # and it is the *nearest* centre: no other centre is closer
    dist = (x.clamp(-7, 2)[..., None] - dmel.centres).abs()  # (2000, 80, 16)
    assert torch.all(dist.gather(-1, tokens[..., None])[..., 0] <= dist.min(-1).values + 1e-6)


def test_round_trip_keeps_most_tokens(dmel, speech):
    tokens = dmel.encode(speech.wave)
    audio = dmel.vocode(tokens)
    assert audio.shape == (tokens.shape[0] * 200,)
    again = dmel.encode(audio)
    exact = (again == tokens).float().mean().item()
    near = ((again - tokens).abs() <= 1).float().mean().item()
    loud = tokens.float().mean(1) > 4  # frames with speech energy, not floor-clamped silence
    exact_loud = (again[loud] == tokens[loud]).float().mean().item()
    assert exact > 0.75 and near > 0.9 and exact_loud > 0.4, (exact, near, exact_loud)


def test_vocode_is_deterministic(dmel, speech):
    tokens = dmel.encode(speech.wave[:16000])
    assert torch.equal(dmel.vocode(tokens, n_iter=4), dmel.vocode(tokens, n_iter=4))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(2, 16000), "mono.*2 channels"),
        (torch.randn(16000, 2), "mono.*2 channels"),
        ((torch.randn(16000) * 1000).to(torch.int16), "int16"),
        (torch.randn(16000) * 20000, "integer PCM"),
        (torch.tensor([0.0] * 100 + [float("nan")] * 900), "NaN"),
        (torch.tensor([0.0] * 999 + [float("inf")]), "NaN or infinite"),
        (torch.zeros(0), "too short"),
        (torch.zeros(100), "too short"),
        ([0.0] * 2000, "torch tensor or numpy"),
    ],
)
def test_bad_audio_is_refused(dmel, bad, message):
    with pytest.raises(ValueError, match=message):
        dmel.encode(bad)


def test_wrong_sample_rate_is_refused(dmel):
    wave = 0.1 * torch.randn(22050)
    with pytest.raises(ValueError, match="expected audio at 16000 Hz, got 22050 Hz"):
        dmel.encode(wave, sample_rate=22050)
    assert dmel.encode(resample(wave, 22050, 16000), sample_rate=16000).shape == (80, 80)


def test_numpy_input_matches_tensor(dmel, speech):
    assert torch.equal(dmel.encode(speech.wave.numpy()), dmel.encode(speech.wave))


def test_decode_rejects_bad_tokens(dmel):
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        dmel.decode(torch.full((3, 80), 16))
    with pytest.raises(ValueError, match="integer"):
        dmel.decode(torch.zeros(3, 80))
    with pytest.raises(ValueError, match="80 channels"):
        dmel.decode(torch.zeros(3, 40, dtype=torch.long))


def test_wav_io_round_trip(tmp_path, speech):
    path = write_wav(tmp_path / "a.wav", speech.wave, 16000)
    back, rate = read_wav(path)
    assert rate == 16000 and back.shape == speech.wave.shape
    assert (back - speech.wave).abs().max() <= 0.5 / 32768 + 1e-7
    # resampling on read
    back8k, rate8k = read_wav(path, sample_rate=8000)
    assert rate8k == 8000 and abs(back8k.numel() - speech.wave.numel() / 2) <= 1


def test_wav_stereo_is_refused_unless_asked(tmp_path):
    stereo = torch.stack([torch.zeros(1600), 0.5 * torch.ones(1600)])
    path = write_wav(tmp_path / "s.wav", stereo, 16000)
    with pytest.raises(ValueError, match="expected a mono file, got 2 channels"):
        read_wav(path)
    both, _ = read_wav(path, mono=False)
    assert both.shape == (2, 1600) and abs(both[1].mean().item() - 0.5) < 1e-3


def test_wav_24_bit(tmp_path):
    x = np.array([0, 2**22, -(2**23)], dtype=np.int64)
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in x)
    with wavefile.open(str(tmp_path / "b.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(3)
        f.setframerate(16000)
        f.writeframes(raw)
    back, _ = read_wav(tmp_path / "b.wav")
    assert torch.allclose(back, torch.tensor([0.0, 0.5, -1.0]))


def test_embedding_is_a_bag_per_channel(tiny):
    emb = DMelEmbedding(tiny.audio, d_model=64)
    c = tiny.audio
    n = c.n_mels * c.n_bins * c.embed_dim + c.frames_per_token * c.embed_dim * 64
    assert sum(p.numel() for p in emb.parameters()) == n
    tokens = torch.randint(0, 16, (2, 3, 4, 80))  # (B, T, k, 80)
    out = emb(tokens)
    assert out.shape == (2, 3, 64)
    # hand computation for one token: sum of each channel's row, frames concatenated
    rows = emb.tables.weight[torch.arange(80) * 16 + tokens[1, 2]]  # (k, 80, e)
    by_hand = emb.proj(rows.sum(1).reshape(-1))
    assert torch.allclose(out[1, 2], by_hand, atol=1e-5)
    # the same bin in different channels uses different vectors
    same = torch.zeros(1, 4, 80, dtype=torch.long)
    shifted = same.clone()
    shifted[0, 0, 5] = 1
    assert not torch.allclose(emb(same), emb(shifted))


def test_head_predicts_channels_in_parallel(tiny):
    head = DMelHead(tiny.audio, d_model=64)
    h = torch.randn(5, 64, requires_grad=True)
    logits = head(h)
    assert logits.shape == (5, 4, 80, 16)
    target = torch.randint(0, 16, (5, 4, 80))
    loss = DMelHead.cross_entropy(logits, target)
    assert abs(loss.item() - math.log(16)) < 0.5  # near uniform at init
    loss.backward()
    assert h.grad is not None and head.proj.weight.grad.abs().sum() > 0
    assert torch.equal(DMelHead.pick(logits, 0.0), logits.argmax(-1))
    g = torch.Generator().manual_seed(1)
    s = DMelHead.pick(logits, 1.0, generator=g)
    assert s.shape == (5, 4, 80) and s.min() >= 0 and s.max() < 16


def test_head_answers_the_mel_head_interface(tiny):
    """logits, sample and loss over hidden states: the pure functions on its logits."""
    head = DMelHead(tiny.audio, d_model=64)
    h = torch.randn(5, 64)
    target = torch.randint(0, 16, (5, 4, 80))
    assert torch.equal(head.logits(h), head(h))
    assert torch.equal(head.loss(h, target), DMelHead.cross_entropy(head(h), target))
    assert torch.equal(head.loss(h, target, logits=head(h)), head.loss(h, target))
    frames, logits = head.sample(h, 0.0)
    assert torch.equal(logits, head(h)) and torch.equal(frames, logits.argmax(-1))
    frames, _ = head.sample(h, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(frames, DMelHead.pick(head(h), 1.0, torch.Generator().manual_seed(1)))


def test_espeak_output_does_not_depend_on_what_came_before():
    from minitml.world.espeak import synthesize

    first = synthesize("tell me when the light turns green", voice="en", rate=170)
    synthesize("hello there how are you", voice="en-us+f3", rate=220, pitch=80, volume=60)
    again = synthesize("tell me when the light turns green", voice="en", rate=170)
    assert torch.equal(first.wave, again.wave) and first.words == again.words
