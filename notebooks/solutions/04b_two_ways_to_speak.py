"""Solutions to the exercises of 04b_two_ways_to_speak (the tests run them through the notebook's checks)."""

import torch


def my_head_params(cfg):
    a, m = cfg.audio, cfg.model
    d, n = m.d_model, a.frames_per_token * a.n_mels  # k * 80 mel numbers per output token
    if m.mel_head == "discrete":
        return d * n * a.n_bins  # d -> k x 80 x 16 logits, no bias
    hf = m.flow_hidden
    # [x_t (n), t (1), h (d)] -> hf -> hf -> velocity (n), each layer with a bias
    return (n + 1 + d) * hf + hf + hf * hf + hf + hf * n + n


def my_head_flops(cfg):
    a, m = cfg.audio, cfg.model
    d, n = m.d_model, a.frames_per_token * a.n_mels
    if m.mel_head == "discrete":
        return 2 * d * n * a.n_bins  # one matmul
    hf = m.flow_hidden
    return m.flow_steps * 2 * ((n + 1 + d) * hf + hf * hf + hf * n)  # the MLP once per Euler step


def my_flow_sample(head, h, x0):
    c = head.cfg
    x = x0
    for i in range(head.steps):  # Euler steps from t = 0 towards t = 1
        t = torch.full((*h.shape[:-1], 1), i / head.steps)
        x = x + head.velocity(x, t, h) / head.steps
    log_mel = (x * head.scale + head.centre).clamp(c.log_min, c.log_max)  # back to log10-mel
    bins = torch.round((log_mel - c.log_min) / c.bin_step).long()  # the nearest of the 16 bins
    return bins.view(*h.shape[:-1], c.frames_per_token, c.n_mels)
