"""Solutions to the exercises of 05_micro_turn_loop (the tests run them through the notebook's checks)."""

import math


def my_play_time(t, j):
    # Output t is played during [0.2(t+1), 0.2(t+2)) s; token j fills the j-th 50 ms slot of it.
    micro_turn_s, n_audio = 0.2, 4
    return (t + 1) * micro_turn_s + j * micro_turn_s / n_audio


def my_earliest_answer(end_s, compute_ms):
    # The end falls in micro-turn floor(end / 0.2); that chunk is complete at 0.2 (t + 1),
    # and the step that hears it is done compute_ms later.
    turn = math.floor(end_s / 0.2)
    return (turn + 1) * 0.2 + compute_ms / 1000


def my_late_ms(compute_ms, budget_ms):
    # late_t = max(0, late_{t-1} + c_t - budget); step t is a catch-up step when late_{t-1} > 0.
    late, out = 0.0, []
    for c in compute_ms:
        late = max(0.0, late + c - budget_ms)
        out.append(late)
    return out
