"""Solutions to the exercises of 10_live_demo (the tests run them through the notebook's checks)."""

import numpy as np


def my_chunk_bytes(sample_rate, micro_turn_ms):
    # samples in one micro-turn, 4 bytes each (float32)
    return sample_rate * micro_turn_ms // 1000 * 4


def my_level_db(x, parts):
    # equal pieces; RMS of each; 20 log10(rms + 1e-5), rounded to 0.1 dB
    pieces = np.asarray(x, dtype=np.float64).reshape(parts, -1)
    rms = np.sqrt((pieces ** 2).mean(axis=1))
    return [round(float(v), 1) for v in 20 * np.log10(rms + 1e-5)]


def my_playout(arrivals):
    # clock0 maps the conversation's clock onto the audio clock; reply t plays at clock0 + 0.2 (t + 1).
    # The first reply, or one too late for its slot, (re)sets clock0 so it plays lead after arriving.
    step, lead, margin = 0.2, 0.15, 0.02
    clock0, starts, gaps = None, [], 0
    for t, now in enumerate(arrivals):
        if clock0 is None or clock0 + step * (t + 1) < now + margin:
            if clock0 is not None:
                gaps += 1
            clock0 = now + lead - step * (t + 1)
        starts.append(clock0 + step * (t + 1))
    return starts, gaps
