"""Solutions to the exercises of 09_background_model (the tests run them through the notebook's checks)."""

import math

from minitml.world.vocab import number_words, parse_number


def my_after_tool(words):
    # Only requests that start with "after" are ours; the rest is number words.
    if not words or words[0] != "after":
        return None
    return number_words(parse_number(words[1:]) + 1)


def my_result_turns(n_words, n_slots):
    # <result> and the n answer words fill n_slots per micro-turn.
    return math.ceil((n_words + 1) / n_slots)


def my_weave_time(ready_s, user_speech, quiet_s):
    # Walk through the speech in order of start; any span that started before t and ended
    # less than quiet_s before t pushes t to its end plus quiet_s.
    t = ready_s
    for start, end in sorted(user_speech):
        if start < t and end > t - quiet_s:
            t = end + quiet_s
    return t
