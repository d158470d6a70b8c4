import json

import pytest
import torch

from minitml.config import get_config
from minitml.wav import read_wav
from minitml.world.dataset import load_dataset, make_dataset, to_blocks
from minitml.world.export import export_fdb
from minitml.world.scenarios import KINDS, make_scenario
from minitml.world.scenes import SceneState, seen_names
from minitml.world.vocab import word_id


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "train"
    return make_dataset("train", n=18, seed=3, folder=folder, workers=2, progress=False)


def test_dataset_is_reproducible_bit_for_bit(dataset, tmp_path):
    again = make_dataset("train", n=18, seed=3, folder=tmp_path / "again", workers=1,
                         progress=False)
    for a, b in zip(sorted(dataset.glob("shard-*.pt")), sorted(again.glob("shard-*.pt"))):
        assert a.read_bytes() == b.read_bytes()
    assert (dataset / "index.json").read_text() == (again / "index.json").read_text()


def test_dataset_contents(dataset):
    examples = load_dataset(dataset)
    assert [e["kind"] for e in examples] == [KINDS[i % 9] for i in range(18)]
    index = json.loads((dataset / "index.json").read_text())
    assert index["n"] == 18 and abs(index["seconds"] - sum(e["seconds"] for e in examples)) < 1e-6
    cfg = get_config("tiny")
    for e in examples[:9]:
        assert e["user_tokens"].dtype == torch.uint8 and e["user_tokens"].shape[1] == 80
        assert e["user_tokens"].shape == e["assistant_tokens"].shape
        blocks = to_blocks(e, cfg)
        assert blocks.n_turns == e["user_tokens"].shape[0] // 16
        assert blocks.patches.shape[2:] == (4, 4800)
        # the seen targets name the scene of each micro-turn, patch by patch
        state = SceneState(*map(int, e["scene"][blocks.n_turns - 1].tolist()))
        assert blocks.seen_text[0, -1].tolist() == [0 if n is None else word_id(n) for n in seen_names(state)]
        # the monologue words land in the output slots, shifted one micro-turn
        assert (blocks.out_text != 0).sum().item() == (
            (e["assistant_word_times"] >= 0.2) & (e["assistant_word_times"] < blocks.n_turns * 0.2 + 0.2)
        ).sum().item()


def test_many_speakers_have_their_own_cache_name(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("MINITML_CACHE", str(tmp_path))
    many = make_dataset("train", n=3, seed=3, workers=1, progress=False, speakers="many")
    assert many.name == "train-n3-seed3-all-many"
    assert json.loads((many / "index.json").read_text())["speakers"] == "many"
    few = load_dataset(dataset)[:3]
    for a, b in zip(few, load_dataset(many)):  # the same dialogues, spoken by other voices
        assert json.loads(a["annotations"])["templates"] == json.loads(b["annotations"])["templates"]
        assert json.loads(b["annotations"])["voices"] != json.loads(a["annotations"])["voices"]
    with pytest.raises(ValueError, match="speakers must be one of"):
        make_dataset("train", 2, folder=tmp_path / "x", speakers="some")


def test_a_kind_named_twice_is_drawn_twice_as_often(tmp_path):
    mix = ["smooth_turn", "smooth_turn", "pause"]
    folder = make_dataset("train", n=6, seed=3, kinds=mix, workers=1, progress=False, folder=tmp_path / "mix")
    assert [e["kind"] for e in load_dataset(folder)] == mix * 2
    with pytest.raises(ValueError, match="unknown scenario kinds"):
        make_dataset("train", 2, kinds=["smooth_turn", "small_talk"], folder=tmp_path / "x")


def test_dataset_refuses_another_vocabulary(dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    index = json.loads((copy / "index.json").read_text())
    index["vocab_sha256"] = "0" * 64
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="another vocabulary"):
        load_dataset(copy)
    with pytest.raises(ValueError, match="not a minitml dataset"):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        make_dataset("test", 2, folder=tmp_path / "x")


def test_export_pause_is_cut_at_the_end_of_the_pause(tmp_path):
    s = make_scenario("pause", 4, "heldout")
    folder, answer = export_fdb(s, tmp_path)
    assert folder == tmp_path / "pause" / "4" and answer == tmp_path / "pause_answer" / "4"
    start, end = s.annotations["pauses"][0]
    pause = json.loads((folder / "pause.json").read_text())
    assert pause == [{"text": "[PAUSE]", "timestamp": [start, end]}]
    audio, rate = read_wav(folder / "input.wav")
    assert abs(audio.numel() / rate - end) < 1e-3
    out = json.loads((folder / "output.json").read_text())
    assert all(c["timestamp"][1] <= end + 1e-6 for c in out["chunks"])
    # the answer after the pause is a turn-taking sample on its own clock, from the pause's end
    tt = json.loads((answer / "turn_taking.json").read_text())[0]["timestamp"]
    audio, rate = read_wav(answer / "input.wav")
    assert tt[0] == pytest.approx(s.annotations["turn_ends"][0] - end, abs=1e-4)
    assert audio.numel() / rate == pytest.approx(s.duration - end, abs=1e-3)


def test_export_one_sample_per_question_and_interrupt(tmp_path):
    seed = next(i for i in range(20) if len(make_scenario("smooth_turn", i).annotations["turn_ends"]) == 2)
    s = make_scenario("smooth_turn", seed)
    folders = export_fdb(s, tmp_path)
    assert [f.name for f in folders] == [f"{seed}_0", f"{seed}_1"]
    ends, starts = s.annotations["turn_ends"], [a for a, _ in s.annotations["user_speech"]]
    clip_end = min(a for a in starts if a > ends[0])  # the first clip ends where the user speaks again
    tt = [json.loads((f / "turn_taking.json").read_text())[0] for f in folders]
    assert tt[0]["text"] == "[TURN-TAKING]" and tt[0]["timestamp"][0] == pytest.approx(ends[0], abs=1e-6)
    assert tt[0]["timestamp"][1] == pytest.approx(clip_end, abs=1e-4)
    assert tt[1]["timestamp"][0] == pytest.approx(ends[1] - clip_end, abs=1e-4)  # its own clock
    for f, (a, b) in zip(folders, [(0.0, clip_end), (clip_end, s.duration)]):
        audio, rate = read_wav(f / "input.wav")
        assert abs(audio.numel() / rate - (b - a)) < 1e-3
        out = json.loads((f / "output.json").read_text())
        words = [w for w, t in s.assistant_words if not w.startswith("<") and a <= t < b]
        assert words and [c["text"] for c in out["chunks"]] == words and out["text"] == " ".join(words)
        assert all(c["timestamp"][0] < c["timestamp"][1] <= b - a + 1e-3 for c in out["chunks"])

    s = make_scenario("interruption", 2)
    (folder,) = export_fdb(s, tmp_path)
    intr = json.loads((folder / "interrupt.json").read_text())
    assert intr[0]["timestamp"] == list(s.annotations["barge_in"]) and intr[0]["interrupt"]
    # output.json holds what the benchmark transcribes: the output from the barge-in's end on
    out = json.loads((folder / "output.json").read_text())["chunks"]
    be = s.annotations["barge_in"][1]
    assert out and all(c["timestamp"][0] >= be for c in out)
    assert [c["text"] for c in out] == [w for w, t in s.assistant_words if not w.startswith("<") and t >= be]


def test_scenario_exports_itself(tmp_path):
    import minitml.world as world

    s = world.make_scenario("pause", 1, split="heldout")
    folder = s.export_fdb(tmp_path)[0]
    assert (folder / "pause.json").exists() and (folder / "input.wav").exists()
    assert len(world.KINDS) == 9


def test_export_a_model_run(tmp_path):
    s = make_scenario("smooth_turn", 5)
    audio = torch.zeros_like(s.assistant_audio)
    folder = export_fdb(s, tmp_path, output_audio=audio,
                        output_words=[("<call>", 1.0), ("four", 1.05), ("</call>", 1.1), ("seven", 2.0),
                                      ("nine", 2.3)])[0]
    out = json.loads((folder / "output.json").read_text())
    assert [c["text"] for c in out["chunks"]] == ["seven", "nine"]  # a call's request is not spoken
    assert out["chunks"][0]["timestamp"] == [2.0, 2.3]
    back, _ = read_wav(folder / "output.wav")
    assert back.abs().max() == 0


def test_many_dialogues_from_workers_do_not_exhaust_open_files(tmp_path):
    """Workers hand back bytes, not tensors: tensors would travel as one open file each."""
    import subprocess
    import sys

    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))\n"
        "from minitml.world.dataset import make_dataset, load_dataset\n"
        f"p = make_dataset('train', 40, 7, folder={str(tmp_path / 'd')!r}, workers=2, progress=False)\n"
        "print(len(load_dataset(p)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "40"
