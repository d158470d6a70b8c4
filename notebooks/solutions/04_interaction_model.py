"""Solutions to the exercises of 04_interaction_model (the tests run them through the notebook's checks)."""


def my_predictor_position(cfg, t, j):
    layout = cfg.layout()
    L = layout["total"]
    out_start = layout["patches"] + layout["user_audio"] + layout["text_in"]  # P + A + X
    # Output token j sits at t*L + out_start + j; the position just before it predicts it:
    # the last text-in slot for j = 0, output token j - 1 otherwise.
    return t * L + out_start + j - 1


def my_playing_turn(cfg, seconds):
    a = cfg.audio
    sample = round(seconds * a.sample_rate)
    turn = sample // a.samples_per_micro_turn - 1  # output t plays during [200(t+1), 200(t+2))
    return None if turn < 0 else turn


def my_cache_nbytes(cfg):
    m = cfg.model
    W = cfg.window  # positions kept: window_micro_turns * positions per micro-turn
    keys_and_values = 2 * m.n_kv_heads * W * m.head_dim * 4  # float32, batch 1
    positions = W * 8  # int64 absolute position of each slot
    return m.n_layers * (keys_and_values + positions)
