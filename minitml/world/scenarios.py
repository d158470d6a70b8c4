"""Scenarios: two-channel conversations with exact ground truth for every behaviour.

`make_scenario(kind, seed, split)` writes one short dialogue (about 5-10 s):
what the microphone hears (the user, maybe a bystander, room noise), what an
ideal assistant says on the same clock (its audio and its inner-monologue
words), the video (one `SceneState` per 200 ms micro-turn), text arriving in
the text-in slots, and the ground truth a metric needs (`annotations`).

The nine kinds and what the scripted assistant does:

    smooth_turn    a question -> the answer after a gap ~ N(0.2, 0.08) s, clipped to [0.05, 0.5]
    pause          "so tell me, <0.6-1.5 s> what is ..." -> silent in the pause, answers after the end
    backchannel    a story of 3-4 phrases -> "uh-huh", "yeah" at some phrase ends, a reply at the end
    interruption   the assistant is talking, the user barges in -> it stops 0.15-0.3 s after the
                   barge-in starts, then answers the new request once it has ended
    hesitation     "um ... uh ..." then silence -> "do you need some help" after 1.0-2.0 s
    visual_cue     "tell me when the light turns green" -> speaks 0.2-0.4 s after the frame changes
    timer          "tell me when five seconds have passed" -> speaks 0.0-0.1 s after the target
    background     "what is thirty seven times forty nine" -> "let me check", a <call>, the result
                   arrives as text-in 0.8-2 s later, spoken once the user is not talking
    other_speaker  a quieter bystander talks to someone else -> silence (a user question after
                   it, in half the dialogues, is answered)

The dialogue is written on a `builder.DialogueBuilder` (the timing conventions
are there); the phrasings and the world's facts are in facts.py (the train /
held-out split is explained there).

Randomness comes only from numpy Generators seeded with (kind, seed, split), so
a scenario is the same, bit for bit, on every run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from minitml.config import Config, get_config
from minitml.protocol import CALL, END_CALL, FAIL, RESULT
from minitml.world.builder import DialogueBuilder, Scenario
from minitml.world.facts import ANIMAL_LEGS, NAMES, PEOPLE, STORY_COLOURS, THING_COLOURS, an
from minitml.world.scenes import COLOURS, LIGHTS, OBJECTS, SHAPES
from minitml.world.vocab import number_words, spell, tokenize
from minitml.world.voices import SPLITS, sample_other_voice

KINDS = ("smooth_turn", "pause", "backchannel", "interruption", "hesitation", "visual_cue", "timer",
         "background", "other_speaker")

BACKCHANNEL_MAX_OVERLAP = 0.2  # s a backchannel may run on into the user's next phrase
STOP_DELAY = (0.15, 0.3)  # s from barge-in start to the assistant falling silent
BARGE_AFTER = (1.5, 2.5)  # s from the start of the long answer to the barge-in: a model that
                          # answers at all, up to a second late, is still speaking
PAUSE_RANGE = (0.6, 1.5)  # s of a mid-sentence pause
HELP_WAIT = (1.0, 2.0)  # s of silence before offering help after a hesitation
CUE_DELAY = (0.2, 0.4)  # s from a visual change to the assistant's first word
TIMER_DELAY = (0.0, 0.1)  # s from the timer target to the assistant's first word
RESULT_LATENCY = (0.8, 2.0)  # s from the call to the result's arrival
FAIL_RATE = 0.1  # share of background calls that fail ("<fail>" instead of a result)
# ----------------------------------------------------------------------------
# The nine kinds: each writes its dialogue and returns the time its content ends
# ----------------------------------------------------------------------------
def _smooth_turn(tl: DialogueBuilder) -> float:
    a_end = tl.u(0.0, 1.0)
    while not tl.ann["turn_ends"] or (len(tl.ann["turn_ends"]) < 2 and a_end < 5.0):  # 1 or 2 exchanges
        question, answer, value, topic = tl.question()
        _, e = tl.user(question, a_end + tl.u(0.5, 1.0))
        _, a_end = tl.assistant(answer, e + tl.gap())
        tl.ann["turn_ends"].append(e)
        tl.asked(e, value, topic)
        tl.ann["expected_words"] = tokenize(answer)  # the answer to the last turn
    return a_end


def _pause(tl: DialogueBuilder) -> float:
    lead = tl.template("pause_lead")
    question, answer, value, topic = tl.question()
    _, e1 = tl.user(lead + ",", tl.u(0.4, 1.0))  # the comma gives continuation intonation
    s2, e2 = tl.user(question, e1 + tl.u(*PAUSE_RANGE))
    _, a_end = tl.assistant(answer, e2 + tl.gap())
    tl.asked(e2, value, topic)
    tl.ann.update(pauses=[(e1, s2)], turn_ends=[e2], expected_words=tokenize(answer))
    return a_end


def _story_slots(tl: DialogueBuilder) -> dict:
    return dict(person=tl.choice(PEOPLE), colour=tl.choice(STORY_COLOURS),
                n=spell(int(tl.rng.integers(2, 10))))


def _backchannel(tl: DialogueBuilder) -> float:
    middles = [tl.template("story_middle", **_story_slots(tl)) for _ in range(2 if tl.chance(0.3) else 1)]
    opening = tl.template("story_open", **_story_slots(tl))
    phrases = [opening, *dict.fromkeys(middles), tl.template("story_close")]  # no phrase twice
    ends = list(range(len(phrases) - 1))
    with_bc = [i for i in ends if tl.chance(0.6)] or [tl.choice(ends)]  # at least one backchannel
    t, backchannels, phrase_ends = tl.u(0.4, 1.0), [], []
    for i, phrase in enumerate(phrases):
        last = i == len(phrases) - 1
        _, e = tl.user(phrase + ("" if last else ","), t)
        phrase_ends.append(e)
        if last:
            break
        t = e + tl.u(0.45, 0.8)  # the user's breath between phrases
        if i in with_bc:
            span = tl.assistant(tl.line("backchannel"), e + tl.u(0.1, 0.3))
            backchannels.append(span)
            t = max(t, span[1] - BACKCHANNEL_MAX_OVERLAP + 0.001)  # run on into the next phrase a little
    reply = tl.line("story_reply")
    _, a_end = tl.assistant(reply, phrase_ends[-1] + tl.gap())
    tl.ann.update(backchannels=backchannels, phrase_ends=phrase_ends, turn_ends=[phrase_ends[-1]],
                  expected_words=tokenize(reply))
    return a_end


def _interruption(tl: DialogueBuilder) -> float:
    kind = tl.choice(("req_count", "req_story", "req_colours"))
    if kind == "req_count":
        n = int(tl.rng.integers(10, 21))
        request = tl.template(kind, n=spell(n))
        long_answer = tl.line("a_count", numbers=" ".join(spell(i) for i in range(1, n + 1)))
    elif kind == "req_story":
        request = tl.template(kind)
        long_answer = tl.line("a_story", colour=tl.choice(STORY_COLOURS), animal=tl.choice(list(ANIMAL_LEGS)))
    else:
        request = tl.template(kind)
        order = tl.rng.permutation(len(STORY_COLOURS))[:8]
        long_answer = tl.line("a_colours", colours=" ".join(STORY_COLOURS[i] for i in order))
    _, e = tl.user(request, tl.u(0.4, 1.0))
    a_start = e + tl.gap()
    length = tl.assistant_duration(long_answer)
    question, answer, value, topic = tl.question()
    bs, be = tl.user(tl.template("barge", q=question), a_start + min(tl.u(*BARGE_AFTER), length - 0.6))
    stop = bs + tl.u(*STOP_DELAY)
    tl.assistant(long_answer, a_start, stop=stop)
    _, a_end = tl.assistant(answer, be + tl.gap())
    tl.asked(be, value, topic)
    tl.ann.update(barge_in=(bs, be), assistant_stop=stop, turn_ends=[e, be], expected_words=tokenize(answer))
    return a_end


def _hesitation(tl: DialogueBuilder) -> float:
    chunks = [c.strip() for c in tl.template("hesitation").split("|")]
    t, spans = tl.u(0.4, 1.0), []
    for chunk in chunks:
        spans.append(tl.user(chunk, t))
        t = spans[-1][1] + tl.u(0.4, 0.9)
    wait = tl.u(*HELP_WAIT)
    help_line = tl.line("help")
    _, a_end = tl.assistant(help_line, spans[-1][1] + wait)
    turn_ends = [spans[-1][1]]
    expected = tokenize(help_line)
    if tl.chance(0.5):  # the user takes the offer
        question, answer, value, topic = tl.question()
        _, e = tl.user(tl.template("hesitation_reply", q=question), a_end + tl.gap())
        _, a_end = tl.assistant(answer, e + tl.gap())
        tl.asked(e, value, topic)
        turn_ends.append(e)
        expected = tokenize(answer)
    tl.ann.update(hesitations=spans, pauses=[(a[1], b[0]) for a, b in zip(spans, spans[1:])],
                  help_wait=wait, turn_ends=turn_ends, expected_words=expected)
    return a_end


def _visual_cue(tl: DialogueBuilder) -> float:
    tl.scene_locked = True
    what = tl.choice(("light", "shape", "object"))
    r = tl.rng
    if what == "light":
        target = int(r.integers(1, len(LIGHTS)))
        others = [i for i in range(len(LIGHTS)) if i != target]
        tl.scene = replace(tl.scene, light=tl.choice(others))
        change = {"light": target}
        decoy = {"light": tl.choice([i for i in others if i != tl.scene.light])}
        slots = dict(colour=LIGHTS[target])
    elif what == "shape":
        target = int(r.integers(1, len(SHAPES)))
        tl.scene = replace(tl.scene, shape=0)
        change = {"shape": target, "shape_colour": int(r.integers(len(COLOURS)))}
        decoy = {"shape": tl.choice([i for i in range(1, len(SHAPES)) if i != target]),
                 "shape_colour": int(r.integers(len(COLOURS)))}
        slots = dict(shape=SHAPES[target])
    else:
        target = int(r.integers(1, len(OBJECTS)))
        tl.scene = replace(tl.scene, object=0)
        change = {"object": target}
        decoy = {"object": tl.choice([i for i in range(1, len(OBJECTS)) if i != target])}
        slots = dict(an_object=an(OBJECTS[target]))
    _, e = tl.user(tl.template("cue_" + what, **slots), tl.u(0.4, 1.0))
    _, ack_end = tl.assistant(tl.line("ack_cue"), e + tl.gap())
    cue = tl.show(ack_end + tl.u(1.2, 3.0), **change)
    distractors = []
    if tl.chance(0.5) and cue - 0.6 > ack_end + 0.2:  # something else changes first: stay silent
        distractors.append(tl.show(tl.u(ack_end + 0.2, cue - 0.6), **decoy))
    said = tl.line("said_" + what, **slots)
    _, a_end = tl.assistant(said, cue + tl.u(*CUE_DELAY))
    names = {"light": LIGHTS, "shape": SHAPES, "object": OBJECTS}[what]
    tl.asked(cue, tokenize(names[target]), "lookup")
    tl.ann.update(cue_time=cue, cue_turn=round(cue / tl.turn_s), cue={"what": what, "value": names[target]},
                  distractors=distractors, turn_ends=[e], expected_words=tokenize(said))
    return a_end


def _timer(tl: DialogueBuilder) -> float:
    n = int(tl.rng.integers(2, 7))
    group = tl.choice(("timer_tell", "timer_stop"))
    _, e = tl.user(tl.template(group, n=spell(n)), tl.u(0.4, 1.0))
    tl.assistant(tl.line("ack_timer"), e + tl.gap())
    target = e + n
    said = tl.line("said_" + group, n=spell(n))
    _, a_end = tl.assistant(said, target + tl.u(*TIMER_DELAY))
    tl.ann.update(timer_target=target, timer_seconds=n, turn_ends=[e], expected_words=tokenize(said))
    return a_end


def _background(tl: DialogueBuilder) -> float:
    a, b = (int(x) for x in tl.rng.integers(11, 100, 2))
    _, e = tl.user(tl.template("bg_question", a=spell(a), b=spell(b)), tl.u(0.4, 1.0))
    _, check_end = tl.assistant(tl.line("check"), e + tl.gap())
    request = tokenize(f"{spell(a)} times {spell(b)}")
    issued = tl.monologue([CALL, *request, END_CALL], check_end + 0.05)
    failed = tl.chance(FAIL_RATE)
    result = [FAIL] if failed else number_words(a * b)
    first, last = tl.text_input([RESULT, *result], issued + tl.u(*RESULT_LATENCY))
    delivered = (last + 1) * tl.turn_s  # the whole result is in once input block `last` is
    speak_at = delivered + tl.u(0.05, 0.2)
    turn_ends = [e]
    if tl.chance(0.5):  # the user says something meanwhile: wait until they are done
        _, aside_end = tl.user(tl.template("bg_aside"), max(check_end + 0.3, delivered - tl.u(0.2, 0.9)))
        speak_at = max(speak_at, aside_end + tl.gap())
        turn_ends.append(aside_end)
    answer = (tl.line("bg_fail") if failed
              else tl.line("bg_answer", a=spell(a), b=spell(b), r=spell(a * b)))
    _, a_end = tl.assistant(answer, speak_at)
    if not failed:
        tl.asked(delivered, result, "tool")
    tl.ann.update(call={"text": request, "issued": issued, "result": result,
                        "arrived": first * tl.turn_s, "delivered": delivered, "operands": (a, b),
                        "result_turns": (first, last)},
                  turn_ends=turn_ends, expected_words=tokenize(answer))
    return a_end


def _other_speaker(tl: DialogueBuilder) -> float:
    other = sample_other_voice(tl.rng, tl.split, tl.user_voice, speakers=tl.speakers)
    line = tl.template("other_line", name=tl.choice(NAMES), thing=tl.choice(list(THING_COLOURS)))
    _, end = tl.user(line, tl.u(0.4, 1.0), voice=other)
    if tl.chance(0.5):  # a second bystander answers
        second = sample_other_voice(tl.rng, tl.split, tl.user_voice, other, speakers=tl.speakers)
        _, end = tl.user(tl.template("other_reply"), end + tl.u(0.3, 0.7), voice=second)
    expected: list[str] = []
    if tl.chance(0.5):  # then the user asks the assistant something
        question, answer, value, topic = tl.question()
        _, e = tl.user(question, end + tl.u(0.6, 1.2))
        _, end = tl.assistant(answer, e + tl.gap())
        tl.asked(e, value, topic)
        tl.ann["turn_ends"] = [e]
        expected = tokenize(answer)
    else:
        end += tl.u(1.5, 2.5)  # a stretch of silence in which the assistant stays quiet
    tl.ann["expected_words"] = expected
    return end


_WRITERS = {
    "smooth_turn": _smooth_turn, "pause": _pause, "backchannel": _backchannel,
    "interruption": _interruption, "hesitation": _hesitation, "visual_cue": _visual_cue,
    "timer": _timer, "background": _background, "other_speaker": _other_speaker,
}


def make_scenario(kind: str, seed: int, split: str = "train", cfg: Config | None = None,
                  speakers: str = "few") -> Scenario:
    """One dialogue of `kind`, a pure function of (kind, seed, split, speakers) and the audio/layout
    config. speakers "many" draws training users from 348 voices instead of 66 (voices.py).

    annotations (times in s; keys present where they apply):
      turn_ends [t]                 end of each user turn the assistant answers
      expected_words [w]            the words of the key reply (the answer; [] when it should stay silent)
      asked [{after, value, topic}] each reply that must carry a value: the words said from `after` on
                                    (to the next user turn) must hold `value` (metrics.holds)
      pauses [(start, end)]         silences inside a user turn (pause, hesitation): hold the floor
      barge_in (start, end)         the interrupting utterance;  assistant_stop: when it falls silent
      backchannels [(start, end)]   the assistant's "uh-huh"s;  phrase_ends [t] of the story
      hesitations [(start, end)]    the fillers;  help_wait: silence before the offer of help
      cue_time, cue {what, value}   the frame change to report;  distractors [t]: changes to ignore
      timer_target, timer_seconds   when to speak
      call {text, issued, result, arrived, delivered, operands}   the background call
      user_speech, other_speech, assistant_speech [(start, end)]  speech spans (trimmed audio)
      noise_rms, voices, templates, transcript [(who, start, end, text)]
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}; expected one of {KINDS}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([KINDS.index(kind), int(seed), SPLITS.index(split)])
    tl = DialogueBuilder(kind, int(seed), split, cfg or get_config("tiny"), rng, speakers)
    end = _WRITERS[kind](tl)
    return tl.build(end + tl.u(0.6, 1.2))


