"""Export a scenario (or a model's run on it) in Full-Duplex-Bench v1's folder format.

One folder per sample, as that benchmark's scripts read it:

    input.wav          the user's channel (16 kHz mono)
    output.wav         the model's channel on the same clock
    output.json        {"text": ..., "chunks": [{"text": word, "timestamp": [start, end]}]}
    turn_taking.json   smooth_turn:   [{"text": "[TURN-TAKING]", "timestamp": [end_of_turn, clip_end]}]
    pause.json         pause:         [{"text": "[PAUSE]", "timestamp": [pause_start, pause_end]}]
    interrupt.json     interruption:  [{"context": ..., "interrupt": ..., "timestamp": [start, end]}]
    minitml.json       our own ground truth (kind, seed, annotations, both word lists)

A pause sample is cut at the end of the pause, before the user resumes, the
way the benchmark's clips are cut: its scripts judge the whole output.json, so
only what the model says inside the pause may count. Latency is measured from
turn_taking's timestamp[0] and from interrupt's timestamp[1].
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minitml.dmel import write_wav

SPECIAL = ("<pad>", "<call>", "</call>", "<result>", "<fail>")


def word_chunks(words: list[tuple[str, float]], audio: torch.Tensor, sample_rate: int,
                max_word_s: float = 0.8) -> list[dict]:
    """[(word, start)] -> benchmark chunks with an end time for each spoken word.

    A word ends where the next one starts, or earlier where its audio falls
    silent for 100 ms (20 ms frames more than 40 dB below the loudest), and
    lasts at most `max_word_s`. Special tokens (<call>, <result>, ...) are not
    speech and are left out.
    """
    spoken = [(w, t) for w, t in words if w not in SPECIAL and not w.startswith("<")]
    frame = sample_rate // 50  # 20 ms
    n = audio.shape[0] // frame
    level = audio[: n * frame].view(n, frame).pow(2).mean(1).clamp_min(1e-12).log10() * 10
    loud = (level > level.max() - 40).tolist() if n else []
    chunks = []
    for i, (word, start) in enumerate(spoken):
        limit = start + max_word_s
        if i + 1 < len(spoken):
            limit = min(limit, spoken[i + 1][1])
        f, quiet = int(start * 50) + 2, 0  # let the word begin before looking for its end
        while f < n and (f + 1) / 50 < limit:
            quiet = 0 if loud[f] else quiet + 1
            if quiet == 5:  # 100 ms of silence: the word ended where it began
                break
            f += 1
        end = min(limit, (f + 1 - quiet) / 50) if quiet == 5 else limit
        chunks.append({"text": word, "timestamp": [round(start, 3), round(max(end, start + 0.05), 3)]})
    return chunks


def export_fdb(scenario, folder: str | Path, output_audio: torch.Tensor | None = None,
               output_words: list[tuple[str, float]] | None = None) -> Path:
    """Write one Full-Duplex-Bench v1 sample folder.

    Without output_audio / output_words, the scripted assistant is exported (the
    ground truth: the ceiling a model aims at); with them, a model's run.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sr = scenario.sample_rate
    user = scenario.user_audio
    out_audio = scenario.assistant_audio if output_audio is None else output_audio
    out_words = ([(w, t) for w, t in scenario.assistant_words] if output_words is None
                 else list(output_words))
    a = scenario.annotations
    clip_end = user.shape[0] / sr
    if scenario.kind == "pause" and a.get("pauses"):
        clip_end = a["pauses"][0][1]  # cut before the user resumes
    if scenario.kind == "smooth_turn" and a.get("turn_ends"):
        # One user turn per sample, as the benchmark's clips: cut before the next question.
        later = [s for s, _ in a.get("user_speech", []) if s > a["turn_ends"][0] + 1e-6]
        if later:
            clip_end = min(later)
    n = int(round(clip_end * sr))
    user, out_audio = user[:n], out_audio[:n]
    out_words = [(w, t) for w, t in out_words if t < clip_end]

    write_wav(folder / "input.wav", user, sr)
    write_wav(folder / "output.wav", out_audio, sr)
    chunks = word_chunks(out_words, out_audio, sr)
    for c in chunks:
        c["timestamp"][1] = min(c["timestamp"][1], round(clip_end, 3))
    _write_json(folder / "output.json",
                {"text": " ".join(c["text"] for c in chunks), "chunks": chunks})

    if scenario.kind == "smooth_turn" and a.get("turn_ends"):
        _write_json(folder / "turn_taking.json",
                    [{"text": "[TURN-TAKING]", "timestamp": [a["turn_ends"][0], round(clip_end, 3)]}])
    if scenario.kind == "pause" and a.get("pauses"):
        start, end = a["pauses"][0]
        _write_json(folder / "pause.json", [{"text": "[PAUSE]", "timestamp": [start, end]}])
    if scenario.kind == "interruption" and a.get("barge_in"):
        start, end = a["barge_in"]
        before = " ".join(w for w, s, _ in scenario.user_words if s < start)
        during = " ".join(w for w, s, _ in scenario.user_words if start <= s < end)
        _write_json(folder / "interrupt.json",
                    [{"context": before, "interrupt": during, "timestamp": [start, end]}])
    _write_json(folder / "minitml.json", {
        "kind": scenario.kind, "seed": scenario.seed, "split": scenario.split,
        "annotations": a, "user_words": scenario.user_words,
        "assistant_words": scenario.assistant_words,
        "text_in": {str(k): v for k, v in scenario.text_in.items()},
    })
    return folder


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")
