"""WAV files and sample rates: read and write PCM wav with the standard library, and resample.

    audio, rate = read_wav("input.wav")            # (T,) float32 in [-1, 1], resampled to 16 kHz
    write_wav("out.wav", audio, 16_000)            # 16-bit PCM, (T,) mono or (channels, T)
    wave = resample(wave, 22_050, 16_000)          # band-limited, e.g. eSpeak's rate -> the model's
"""

from __future__ import annotations

import wave as wavefile
from pathlib import Path

import numpy as np
import torch


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited (windowed sinc) resampling, e.g. eSpeak's 22050 Hz -> 16 kHz."""
    import torchaudio.functional as AF

    if orig_rate == new_rate:
        return wave
    return AF.resample(wave, orig_rate, new_rate)


def read_wav(path: str | Path, sample_rate: int | None = 16_000, mono: bool = True):
    """Read a PCM wav file with the standard library -> (float32 tensor, sample rate).

    mono=True returns (T,) and refuses multi-channel files; mono=False returns
    (channels, T). With sample_rate set, the audio is resampled to it.
    """
    with wavefile.open(str(path), "rb") as f:
        n_ch, width, rate, n = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
        raw = f.readframes(n)
    if width == 1:  # 8-bit wav is unsigned
        pcm = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        pcm = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:  # 24-bit: pad each sample to 4 bytes, little-endian
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        i32 = np.zeros((b.shape[0], 4), np.uint8)
        i32[:, 1:] = b
        pcm = i32.view("<i4").ravel().astype(np.float32) / 2147483648.0
    elif width == 4:
        pcm = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"{path}: unsupported sample width of {width} bytes")
    audio = torch.from_numpy(pcm.reshape(-1, n_ch).T.copy())  # (channels, T)
    if mono:
        if n_ch != 1:
            raise ValueError(
                f"{path}: expected a mono file, got {n_ch} channels; "
                f"read it with mono=False and mix down with wave.mean(0)"
            )
        audio = audio[0]
    if sample_rate is not None and rate != sample_rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, rate


def write_wav(path: str | Path, wave: torch.Tensor, sample_rate: int) -> Path:
    """Write (T,) mono or (channels, T) float audio in [-1, 1] as 16-bit PCM (clipped)."""
    wave = torch.as_tensor(wave).detach().float().cpu()
    if wave.dim() == 1:
        wave = wave[None]
    pcm = (wave * 32768).round().clamp(-32768, 32767).to(torch.int16).T.contiguous()  # (T, channels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wavefile.open(str(path), "wb") as f:
        f.setnchannels(wave.shape[0])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.numpy().tobytes())
    return path
