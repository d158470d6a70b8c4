"""The toy world's facts and phrasings: what people say, what the assistant says, what is true.

The train / held-out split. Every user line comes from a template group in
`TEMPLATES` with separate "train" and "heldout" phrasings (no phrasing is in
both), and user voices come from `voices.user_voices(split)`. The assistant's
lines (`LINES`) and voice are the same in both splits: held-out dialogues test
new speakers and new phrasings, not a new assistant. Slot fillers (numbers,
colours, names) are shared.

The facts (`THING_COLOURS`, `ANIMAL_LEGS`) are also what the background tools
(tools.py, neural_background.py) and the recognizer's language model (listen.py) know.
"""

import re

# ----------------------------------------------------------------------------
# What people say: user templates, split into train and held-out phrasings
# ----------------------------------------------------------------------------
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    # questions (smooth_turn, pause, interruption, hesitation, other_speaker)
    "q_add": {"train": ("what is {a} plus {b}", "can you add {a} and {b}"),
              "heldout": ("how much is {a} plus {b}",)},
    "q_minus": {"train": ("what is {a} minus {b}",), "heldout": ("how much is {a} take away {b}",)},
    "q_after": {"train": ("what number comes after {n}",), "heldout": ("which number is after {n}",)},
    "q_colour": {"train": ("what colour is a {thing}", "tell me the colour of a {thing}"),
                 "heldout": ("which colour does a {thing} have",)},
    "q_legs": {"train": ("how many legs does a {animal} have",),
               "heldout": ("count the legs of a {animal} for me",)},
    "q_light": {"train": ("what colour is the light",), "heldout": ("which colour is the light now",)},
    "q_shape": {"train": ("what shape do you see",), "heldout": ("which shape can you see",)},
    "q_holding": {"train": ("what am i holding", "what do i have in my hand"),
                  "heldout": ("can you see what i am holding",)},
    # pause: the fragment before the pause (a comma is added: continuation intonation)
    "pause_lead": {"train": ("so tell me", "my question is", "okay so", "quick question"),
                   "heldout": ("let me think", "i want to know")},
    # backchannel: a story in phrases
    "story_open": {"train": ("yesterday i went to the park with my {person}",
                             "last week my {person} and i went to the shop",
                             "this morning i went to the city with my {person}"),
                   "heldout": ("on sunday i went to the lake with my {person}",
                               "this week i went to see my {person}")},
    "story_middle": {"train": ("we saw a big {colour} dog", "it was running after a {colour} ball",
                               "then it started to rain", "we bought {n} {colour} apples",
                               "there were so many people there", "i found a little {colour} bird"),
                     "heldout": ("the water was very cold", "we had some tea there",
                                 "i saw a {colour} duck")},
    "story_close": {"train": ("so we went back home", "and then we had dinner", "it was a really good day"),
                    "heldout": ("after that we went home", "that was a very good day")},
    # interruption: a request with a long answer, then the barge-in
    "req_count": {"train": ("can you count to {n}",), "heldout": ("please count up to {n}",)},
    "req_story": {"train": ("tell me a story",), "heldout": ("can you tell me a short story",)},
    "req_colours": {"train": ("name some colours",), "heldout": ("which colours do you know",)},
    "barge": {"train": ("wait, {q}", "stop, {q}", "sorry, {q}"), "heldout": ("hold on, {q}", "no wait, {q}")},
    # hesitation: chunks separated by "|" are spoken with a short silence between them
    "hesitation": {"train": ("um | uh", "so, um | uh", "well, um | i was | uh", "i want to, um | uh"),
                   "heldout": ("hmm | um", "okay, uh | um | so")},
    "hesitation_reply": {"train": ("yes, {q}", "yes please, {q}"), "heldout": ("oh yes, {q}",)},
    # visual_cue
    "cue_light": {"train": ("tell me when the light turns {colour}",
                            "say something when the light goes {colour}"),
                  "heldout": ("let me know when the light turns {colour}",)},
    "cue_shape": {"train": ("tell me when you see a {shape}",),
                  "heldout": ("let me know when you see a {shape}",)},
    "cue_object": {"train": ("tell me when i hold up {an_object}",),
                   "heldout": ("say something when i show you {an_object}",)},
    # timer
    "timer_tell": {"train": ("tell me when {n} seconds have passed", "tell me when {n} seconds are over"),
                   "heldout": ("let me know when {n} seconds are up",)},
    "timer_stop": {"train": ("say stop after {n} seconds",), "heldout": ("wait {n} seconds, then say stop",)},
    # background
    "bg_question": {"train": ("what is {a} times {b}", "can you work out {a} times {b}"),
                    "heldout": ("how much is {a} times {b}", "please multiply {a} by {b}")},
    "bg_aside": {"train": ("take your time", "no hurry, i am making tea"),
                 "heldout": ("that is fine, i can wait",)},
    # other_speaker: a bystander talking to someone else
    "other_line": {"train": ("hey {name}, did you see the game", "{name}, can you pass me the {thing}",
                             "are you coming to dinner, {name}"),
                   "heldout": ("{name}, where did you put my book", "hey {name}, it is time to go home")},
    "other_reply": {"train": ("yes, it was great", "sure, here you go", "no, not yet"),
                    "heldout": ("not now",)},
}

# What the assistant says (the same in both splits).
LINES: dict[str, tuple[str, ...]] = {
    "a_add": ("{a} plus {b} is {r}", "the answer is {r}", "so that makes {r}"),
    "a_minus": ("{a} minus {b} is {r}", "the answer is {r}"),
    "a_after": ("{m} comes after {n}", "the number is {m}"),
    "a_colour": ("a {thing} is {colour}", "the colour is {colour}"),
    "a_legs": ("a {animal} has {n} legs", "it has {n} legs"),
    "a_light": ("the light is {colour}", "it is {colour} now"),
    "a_shape": ("i see a {shape}", "it is a {colour} {shape}"),
    "a_holding": ("you are holding {an_object}", "that is {an_object}"),
    "a_count": ("sure, {numbers}",),
    "a_story": ("a little {colour} {animal} went to the park one day and saw a big dog",
                "there was a {colour} {animal} who lived in a big house with a cat"),
    "a_colours": ("sure, {colours}",),
    "backchannel": ("uh-huh", "yeah", "okay", "right", "i see"),
    "story_reply": ("that sounds nice", "that sounds like fun", "what a day", "oh, that is a good story"),
    "ack_cue": ("okay", "sure", "okay, i will watch", "i will tell you"),
    "ack_timer": ("okay", "sure", "okay, starting now"),
    "said_light": ("it is {colour} now", "the light is {colour} now", "now it is {colour}"),
    "said_shape": ("i see a {shape} now", "there is the {shape}"),
    "said_object": ("that is {an_object}", "now you are holding {an_object}"),
    "said_timer_tell": ("{n} seconds have passed", "time is up", "now"),
    "said_timer_stop": ("stop",),
    "help": ("do you need some help", "can i help you with something", "are you okay there"),
    "check": ("let me check", "okay, let me check", "let me work that out"),
    "bg_answer": ("it is {r}", "the answer is {r}"),
    "bg_fail": ("sorry, i could not work that out",),
}

# Slot fillers (shared by both splits).
NAMES = ("sam", "anna", "tom", "maria", "ben", "lucy")
PEOPLE = ("mum", "dad", "sister", "brother", "friend")
THING_COLOURS = {"banana": "yellow", "tomato": "red", "lemon": "yellow", "frog": "green",
                 "carrot": "orange", "cherry": "red"}
ANIMAL_LEGS = {"dog": 4, "cat": 4, "bird": 2, "spider": 8, "horse": 4, "duck": 2, "ant": 6}
STORY_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "pink", "black", "brown")
QUESTION_GROUPS = ("q_add", "q_minus", "q_after", "q_colour", "q_legs", "q_light", "q_shape", "q_holding")
# What answering takes: working a number out, or knowing / seeing a fact.
TOPICS = {"q_add": "arithmetic", "q_minus": "arithmetic", "q_after": "arithmetic", "q_colour": "lookup",
          "q_legs": "lookup", "q_light": "lookup", "q_shape": "lookup", "q_holding": "lookup"}


def _pattern(template: str) -> re.Pattern:
    """'what is {a} plus {b}' -> a regex matching a filled-in line that ends with it."""
    fixed = re.split(r"\{\w+\}", template)
    return re.compile(r"(^|\b)" + r"[a-z' -]+?".join(re.escape(part) for part in fixed) + r"$")


_GROUP_PATTERNS = [(group, _pattern(t)) for group in QUESTION_GROUPS
                   for split in ("train", "heldout") for t in TEMPLATES[group][split]]


def question_group(line: str) -> str | None:
    """The template group of a question a user said ('q_legs'), from its words, in either
    split; a barge-in's lead ('wait, ') is skipped. None: not a question of QUESTION_GROUPS."""
    line = line.lower().strip()
    return next((group for group, pattern in _GROUP_PATTERNS if pattern.search(line)), None)


def an(noun: str) -> str:
    """'an apple', 'a banana'."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"

