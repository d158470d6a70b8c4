"""The toy duplex world: conversations minitml synthesises itself, with exact ground truth.

    from minitml.world import KINDS, make_scenario
    s = make_scenario("pause", seed=0)          # split="train" | "heldout"
    s.stereo()                                  # (2, N) user channel, assistant channel
    s.frames(cfg.vision)                        # (n_turns, H, W, 3) uint8 video
    s.annotations["pauses"]                     # [(start, end)] in seconds

Modules: `espeak` (the speech engine), `voices` (who speaks, timed speech),
`scenes` (the video), `vocab` (the word list), `facts` (the phrasings and the world's facts),
`builder` (a dialogue on the clock, `Scenario`), `scenarios` (the nine kinds).
"""

from minitml.world.facts import LINES, TEMPLATES
from minitml.world.scenarios import KINDS, Scenario, make_scenario
from minitml.world.scenes import COLOURS, LIGHTS, OBJECTS, SHAPES, SceneState, render, render_all
from minitml.world.vocab import VOCAB, ids, normalize, number_words, word_id
from minitml.world.voices import ASSISTANT_VOICE, Voice, sample_user_voice, speak, user_voices

__all__ = [
    "ASSISTANT_VOICE", "COLOURS", "KINDS", "LIGHTS", "LINES", "OBJECTS", "SHAPES", "TEMPLATES", "VOCAB",
    "Scenario", "SceneState", "Voice", "ids", "make_scenario", "normalize", "number_words", "render",
    "render_all", "sample_user_voice", "speak", "user_voices", "word_id",
]
