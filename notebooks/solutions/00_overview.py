"""Solutions to the exercises of 00_overview (the tests run them through the notebook's checks)."""

import math


def my_took_turn(duration_s, n_words):
    # Full-Duplex-Bench v1: at least 1 s of speech, or more than 3 words
    return duration_s >= 1.0 or n_words > 3


def my_latency(words, turn_end):
    # the first word that starts after the end of the turn
    after = [start for _, start in words if start >= turn_end]
    return min(after) - turn_end if after else None


def my_output_playing(s):
    # output t plays during [0.2 (t + 1), 0.2 (t + 2)): t = floor(s / 0.2) - 1
    t = math.floor(s / 0.2) - 1
    return t if t >= 0 else None
