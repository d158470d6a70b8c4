"""Solutions to the exercises of 08_evaluation (the tests run them through the notebook's checks)."""


def my_took_turn(duration_s, n_words):
    return duration_s >= 1.0 or n_words > 3


def my_turn_ends(spans, threshold_s, duration):
    out = []
    for i, (_, end) in enumerate(spans):
        decide = end + threshold_s
        next_start = spans[i + 1][0] if i + 1 < len(spans) else float("inf")
        if decide <= next_start + 1e-9 and decide < duration:
            out.append((end, decide))
    return out


def my_polite_threshold(sweep, curve):
    polite = [(latency, th) for th, (rate, latency) in zip(sweep, curve) if rate <= 0.1 and latency is not None]
    return min(polite)[1]


def my_holds(reply, value):
    from minitml.metrics import NUMBER_WORDS

    n = len(value)
    for i in range(len(reply) - n + 1) if n else []:
        if reply[i:i + n] != value:
            continue
        around = [reply[j] for j in (i - 1, i + n) if 0 <= j < len(reply)]
        if all(w in NUMBER_WORDS for w in value) and any(w in NUMBER_WORDS for w in around):
            continue
        return True
    return False
