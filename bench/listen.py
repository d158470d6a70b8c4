"""The listener: how well the offline speech recognizer (minitml.listen) hears the toy world.

    .venv/bin/python bench/listen.py [N]

N held-out scenarios per kind (default 10, all nine kinds). Pooled word error rate
(edit distance over all clips / reference words) of the recognizer on the assistant's
channel:

    scripted   the scripted assistant's eSpeak audio
    griffin    the same audio as dMel tokens, back through Griffin-Lim (DMel.vocode)
    stream     causal dMel tokens (what the model learns to say) through StreamVocoder,
               one micro-turn at a time, as a live Session plays them

against the words it speaks (the monologue without "<...>" tokens and without the silent
request between "<call>" and "</call>"). Two controls, where nothing should be heard:

    babble     an untrained tiny InteractionModel run on the scenario (evaluate.run_model)
    noise      the scenario's room noise alone (white noise of its noise_rms)

For every condition: words heard per clip, how many of them are words of the
scenario's expected reply (annotations["expected_words"]), and in how many clips the
whole expected reply is heard (metrics.holds: whole words, in order). Seconds of
recognizer time per clip. The last line is JSON.
"""

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minitml.config import get_config  # noqa: E402
from minitml.dmel import DMel, StreamVocoder  # noqa: E402
from minitml.evaluate import run_model  # noqa: E402
from minitml.listen import Recognizer  # noqa: E402
from minitml.metrics import holds, word_errors  # noqa: E402
from minitml.model import InteractionModel  # noqa: E402
from minitml.world.scenarios import KINDS, make_scenario  # noqa: E402

CONDITIONS = ("scripted", "griffin", "stream", "babble", "noise")


def spoken_words(assistant_words) -> list[str]:
    """The monologue as heard: no "<...>" tokens, nothing between "<call>" and "</call>"."""
    out, silent = [], False
    for w, _ in assistant_words:
        if w == "<call>":
            silent = True
        elif w == "</call>":
            silent = False
        elif not silent and not w.startswith("<"):
            out.append(w)
    return out


def stream_vocode(dmel: DMel, audio: torch.Tensor, frames_per_turn: int) -> torch.Tensor:
    """Causal tokens of `audio`, played through StreamVocoder one micro-turn at a time."""
    tokens = dmel.encode(audio, causal=True)  # (frames, 80)
    vocoder = StreamVocoder(dmel)
    return torch.cat([vocoder.push(tokens[i:i + frames_per_turn])
                      for i in range(0, tokens.shape[0], frames_per_turn)])


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    torch.set_num_threads(1)
    cfg = get_config("tiny")
    dmel = DMel(cfg.audio)
    frames_per_turn = cfg.audio.samples_per_micro_turn // cfg.audio.hop_length  # 16
    torch.manual_seed(0)
    babbler = InteractionModel(cfg).eval()  # untrained: fresh initialisation, seed 0
    start = time.perf_counter()
    rec = Recognizer()
    build_s = time.perf_counter() - start

    stats = {c: dict(errors=0, ref_words=0, clips=0, heard=0, answer_words=0, answer_clips=0,
                     whole_answer=0, asr_s=0.0, audio_s=0.0) for c in CONDITIONS}
    examples = {}
    for kind in KINDS:
        for seed in range(n):
            s = make_scenario(kind, seed, "heldout")
            ref = spoken_words(s.assistant_words)
            expected = s.annotations["expected_words"]
            noise_gen = torch.Generator().manual_seed(1000 * KINDS.index(kind) + seed)
            audio = {
                "scripted": s.assistant_audio,
                "griffin": dmel.vocode(dmel.encode(s.assistant_audio)),
                "stream": stream_vocode(dmel, s.assistant_audio, frames_per_turn),
                "babble": run_model(babbler, s)[1].float(),
                "noise": s.annotations["noise_rms"] * torch.randn(s.assistant_audio.shape[0],
                                                                  generator=noise_gen),
            }
            for c, a in audio.items():
                t0 = time.perf_counter()
                heard = [w for w, _, _ in rec.transcribe(a.contiguous(), s.sample_rate)]
                st = stats[c]
                st["asr_s"] += time.perf_counter() - t0
                st["audio_s"] += a.shape[0] / s.sample_rate
                st["clips"] += 1
                st["heard"] += len(heard)
                if c in ("scripted", "griffin", "stream"):
                    e, r = word_errors(ref, heard)
                    st["errors"] += e
                    st["ref_words"] += r
                if expected:
                    st["answer_clips"] += 1
                    st["answer_words"] += sum(w in expected for w in heard)
                    st["whole_answer"] += holds(heard, expected)
                if seed == 0 and kind in ("smooth_turn", "background"):
                    examples.setdefault(f"{kind}/said", " ".join(ref))
                    examples[f"{kind}/{c}"] = " ".join(heard)

    table = {}
    for c, st in stats.items():
        table[c] = {
            "wer": round(st["errors"] / st["ref_words"], 4) if st["ref_words"] else None,
            "ref_words": st["ref_words"], "clips": st["clips"],
            "words_per_clip": round(st["heard"] / st["clips"], 3),
            "answer_word_share": round(st["answer_words"] / st["heard"], 3) if st["heard"] else None,
            "whole_answer_rate": round(st["whole_answer"] / st["answer_clips"], 3),
            "answer_clips": st["answer_clips"],
            "asr_s_per_clip": round(st["asr_s"] / st["clips"], 3),
            "real_time_factor": round(st["asr_s"] / st["audio_s"], 4),
        }
    wall = time.perf_counter() - start
    print(f"speech recognizer (minitml.listen) on {n} held-out scenarios per kind "
          f"({len(KINDS) * n} clips); recognizer built in {build_s:.2f} s")
    print(f"{'condition':10s} {'WER':>6s} {'ref words':>9s} {'words/clip':>10s} {'answer share':>12s} "
          f"{'whole answer':>12s} {'asr s/clip':>10s}")
    for c, row in table.items():
        wer = "-" if row["wer"] is None else f"{row['wer']:.3f}"
        share = "-" if row["answer_word_share"] is None else f"{row['answer_word_share']:.3f}"
        print(f"{c:10s} {wer:>6s} {row['ref_words']:>9d} {row['words_per_clip']:>10.2f} {share:>12s} "
              f"{row['whole_answer_rate']:>12.3f} {row['asr_s_per_clip']:>10.3f}")
    for k, v in examples.items():
        print(f"  {k:22s} {v}")
    print(f"wall time {wall:.1f} s ({wall / (len(KINDS) * n):.2f} s per scenario, all conditions)")
    print(json.dumps({"bench": "listen", "n_per_kind": n, "table": table, "build_s": round(build_s, 3),
                      "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
