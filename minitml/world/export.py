"""Export a scenario (or a model's run on it) in Full-Duplex-Bench v1's folder format.

A dialogue is cut into the benchmark's samples (`minitml.clips.cut`: one per
question, a pause sample that ends with the pause, ...) and each sample is one
folder, as that benchmark's scripts read it, under root/<kind>/<sample>/:

    input.wav          the user's channel on the clip (16 kHz mono, the clip's own clock)
    output.wav         the model's channel on the same clock
    output.json        {"text": ..., "chunks": [{"text": word, "timestamp": [start, end]}]}:
                       the words the benchmark judges (from the monologue, or from the
                       recognizer with `recognizer=`, as the benchmark's own pipeline
                       transcribes output.wav); an interruption's from its end on
    turn_taking.json   turn_taking:  [{"text": "[TURN-TAKING]", "timestamp": [end_of_turn, clip_end]}]
                       (also the "answer" clip after a pause)
    pause.json         pause:        [{"text": "[PAUSE]", "timestamp": [pause_start, pause_end]}]
    interrupt.json     interruption: [{"context": ..., "interrupt": ..., "timestamp": [start, end]}]
    minitml.json       our own: the clip (where it lies, what scores it, the asked-for value),
                       its views (`clips.View`: monologue, and heard), and the dialogue's ground truth

Run the benchmark's scripts on one task's folders, e.g. `--root_dir out/eval/fdb/smooth_turn`;
`minitml.metrics.score_folder` scores a folder from these files alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minitml.clips import cut, heard_view, monologue_view
from minitml.wav import write_wav


def export_fdb(scenario, root: str | Path, output_audio: torch.Tensor | None = None,
               output_words: list[tuple[str, float]] | None = None, recognizer=None) -> list[Path]:
    """Write every sample of one dialogue under root; returns the folders, in order.

    Without output_audio / output_words, the scripted assistant is exported (the
    ground truth: the ceiling a model aims at); with them, a model's run. With a
    recognizer (minitml.listen.Recognizer), output.json holds what it hears."""
    root = Path(root)
    audio = scenario.assistant_audio if output_audio is None else output_audio
    words = list(scenario.assistant_words if output_words is None else output_words)
    folders = []
    for clip in cut(scenario):
        folder = root / clip.folder
        folder.mkdir(parents=True, exist_ok=True)
        views = {"monologue": monologue_view(clip, words, audio)}
        if recognizer is not None:
            views["heard"] = heard_view(clip, audio, recognizer)
        chunks = views["heard" if recognizer is not None else "monologue"].chunks
        write_wav(folder / "input.wav", scenario.user_audio[clip.samples()], clip.sample_rate)
        write_wav(folder / "output.wav", audio[clip.samples()], clip.sample_rate)
        _write_json(folder / "output.json", {"text": " ".join(c["text"] for c in chunks), "chunks": chunks})
        m = clip.marks
        if clip.task in ("turn_taking", "answer"):
            _write_json(folder / "turn_taking.json",
                        [{"text": "[TURN-TAKING]", "timestamp": [m["turn_end"], clip.duration]}])
        if clip.task == "pause":
            _write_json(folder / "pause.json", [{"text": "[PAUSE]", "timestamp": m["pause"]}])
        if clip.task == "interruption":
            start, end = scenario.annotations["barge_in"]
            before = " ".join(w for w, s, _ in scenario.user_words if s < start)
            during = " ".join(w for w, s, _ in scenario.user_words if start <= s < end)
            _write_json(folder / "interrupt.json",
                        [{"context": before, "interrupt": during, "timestamp": m["barge_in"]}])
        _write_json(folder / "minitml.json", {
            "clip": clip.to_json(), "views": {k: v.to_json() for k, v in views.items()},
            "split": scenario.split, "annotations": scenario.annotations,
            "user_words": scenario.user_words, "output_words": words,
            "text_in": {str(k): v for k, v in scenario.text_in.items()},
        })
        folders.append(folder)
    return folders


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")
