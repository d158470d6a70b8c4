"""dMel encode speed against torchaudio, and how much survives encode -> vocode -> encode.

    .venv/bin/python bench/dmel.py

Both encoders run the same recipe (STFT 1024 / 800 / 200, magnitude, 80 Slaney
mels, log10, clamp, 16 bins) on the same synthesized speech in the same run;
only the implementation differs: ours is `minitml.dmel.DMel.encode`, the baseline
is `torchaudio.transforms.MelSpectrogram` followed by the same quantisation.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml.config import get_config  # noqa: E402
from minitml.dmel import DMel  # noqa: E402
from minitml.world.espeak import synthesize  # noqa: E402

SENTENCES = [
    "Tell me when the light turns green.",
    "What is thirty seven times forty nine?",
    "I went to the market this morning, and it was very busy.",
    "Hold on, let me think about that for a second.",
    "The red square moved to the left of the blue circle.",
    "Can you remind me in five seconds?",
]


def timeit(fn, repeats=7):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    cfg = get_config("tiny").audio
    dmel = DMel(cfg)
    voices = [("en-us", 50), ("en", 40), ("en-us+f3", 70)]
    parts = [synthesize(s, voice=v, pitch=p).wave for v, p in voices for s in SENTENCES]
    wave = torch.cat(parts)
    wave = torch.cat([wave] * max(1, int(60 * cfg.sample_rate / wave.numel())))  # ~60 s
    seconds = wave.numel() / cfg.sample_rate

    reference = torchaudio.transforms.MelSpectrogram(
        cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
        f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=1.0, norm="slaney",
        mel_scale="slaney",
    )

    def torchaudio_encode():
        mel = reference(wave).T[: wave.numel() // cfg.hop_length]
        return dmel.quantize(torch.log10(mel.clamp_min(cfg.log_floor)))

    ours_tokens, ref_tokens = dmel.encode(wave), torchaudio_encode()
    same = (ours_tokens == ref_tokens).float().mean().item()

    with torch.inference_mode():
        # Interleaved rounds: a slow moment of the shared machine hits both alike.
        times = {"ours": [], "torchaudio": []}
        candidates = [("ours", lambda: dmel.encode(wave)), ("torchaudio", torchaudio_encode)]
        for round_ in range(41):
            for name, fn in candidates[:: 1 if round_ % 2 else -1]:  # alternate who goes first
                t = time.perf_counter()
                fn()
                if round_ > 0:  # round 0 warms up
                    times[name].append(time.perf_counter() - t)
        t_ours, t_ref = statistics.median(times["ours"]), statistics.median(times["torchaudio"])
        # 200 ms chunks, one at a time, as a live session feeds them
        chunk = cfg.samples_per_micro_turn
        chunks = wave[: (wave.numel() // chunk) * chunk].view(-1, chunk)[:100]
        t_chunk = timeit(lambda: [dmel.encode(c) for c in chunks], repeats=3) / len(chunks)

    # Round trip on the first voices' sentences (not the repeated copies).
    speech = torch.cat(parts)
    tokens = dmel.encode(speech)
    t = time.perf_counter()
    audio = dmel.vocode(tokens)
    t_vocode = time.perf_counter() - t
    again = dmel.encode(audio)
    speech_frames = tokens.float().mean(1) > 4  # frames above the clamped silence floor
    exact = (again == tokens).float().mean().item()
    within_one = ((again - tokens).abs() <= 1).float().mean().item()
    exact_speech = (again[speech_frames] == tokens[speech_frames]).float().mean().item()
    logmel_err = (dmel.decode(again) - dmel.decode(tokens)).abs().mean().item()

    rows = [
        ("minitml DMel.encode", t_ours, seconds / t_ours),
        ("torchaudio MelSpectrogram + same quantise", t_ref, seconds / t_ref),
    ]
    print(f"dMel encode of {seconds:.1f} s of eSpeak speech, CPU, {torch.get_num_threads()} threads")
    print(f"{'encoder':45s} {'time (s)':>9s} {'x real-time':>12s}")
    for name, t, xrt in rows:
        print(f"{name:45s} {t:9.4f} {xrt:12.0f}")
    print(f"speed ratio ours / torchaudio (x real-time): {t_ref / t_ours:.2f}  (goal >= 1)")
    print(f"tokens identical to the torchaudio pipeline: {100 * same:.2f}%")
    print(f"one 200 ms chunk: {1000 * t_chunk:.2f} ms ({0.2 / t_chunk:.0f}x real time)")
    print(f"bitrate: {cfg.bits_per_second / 1000:.1f} kbit/s "
          f"(16-bit PCM at 16 kHz: {16 * cfg.sample_rate / 1000:.0f} kbit/s)")
    print(f"\nencode -> Griffin-Lim vocode (32 iterations) -> encode, {speech.numel() / 16000:.1f} s:")
    print(f"  tokens kept exactly: {100 * exact:.1f}%  (speech frames only: {100 * exact_speech:.1f}%)")
    print(f"  tokens within one bin: {100 * within_one:.1f}%")
    print(f"  mean |log10-mel error|: {logmel_err:.3f}  (one bin = {cfg.bin_step:.1f})")
    print(f"  vocoder speed: {speech.numel() / 16000 / t_vocode:.0f}x real time")
    print(json.dumps({
        "bench": "dmel", "audio_seconds": round(seconds, 2),
        "ours_x_realtime": round(seconds / t_ours, 1),
        "torchaudio_x_realtime": round(seconds / t_ref, 1),
        "speed_ratio_vs_torchaudio": round(t_ref / t_ours, 3),
        "tokens_identical_to_torchaudio": round(same, 5),
        "chunk_200ms_ms": round(1000 * t_chunk, 3),
        "roundtrip_exact": round(exact, 4), "roundtrip_exact_speech_frames": round(exact_speech, 4),
        "roundtrip_within_one_bin": round(within_one, 4),
        "roundtrip_logmel_mae": round(logmel_err, 4),
        "vocoder_x_realtime": round(speech.numel() / 16000 / t_vocode, 1),
    }))


if __name__ == "__main__":
    main()
