import pytest
import torch
import torch.nn as nn

from minitml.config import (
    AudioConfig,
    Config,
    ModelConfig,
    MoEConfig,
    VisionConfig,
    get_config,
)
from minitml.dmel import DMelEmbedding, DMelHead
from minitml.moe import MoE, SwiGLU
from minitml.patches import PatchEmbedding


def build_modules(cfg: Config) -> nn.ModuleDict:
    """Every weight-holding module the interaction model is made of, from the package's parts."""
    m = cfg.model
    blocks = nn.ModuleList()
    for i in range(m.n_layers):
        q_out, kv_out = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
        blocks.append(nn.ModuleDict({
            "attn_norm": nn.RMSNorm(m.d_model),
            "q": nn.Linear(m.d_model, q_out, bias=False),
            "k": nn.Linear(m.d_model, kv_out, bias=False),
            "v": nn.Linear(m.d_model, kv_out, bias=False),
            "o": nn.Linear(q_out, m.d_model, bias=False),
            "ffn_norm": nn.RMSNorm(m.d_model),
            "ffn": MoE(cfg.moe, m.d_model) if m.is_moe_layer(i) else SwiGLU(m.d_model, m.d_ff),
        }))
    return nn.ModuleDict({
        "text_embedding": nn.Embedding(m.text_vocab_size, m.d_model),
        "dmel_embedding": DMelEmbedding(cfg.audio, m.d_model),
        "patch_embedding": PatchEmbedding(cfg.vision, m.d_model, m.max_patch_rows,
                                          m.max_patch_cols),
        "stream_type": nn.Embedding(m.n_stream_types, m.d_model),
        "blocks": blocks,
        "final_norm": nn.RMSNorm(m.d_model),
        "text_head": nn.Linear(m.d_model, m.text_vocab_size, bias=False),
        "dmel_head": DMelHead(cfg.audio, m.d_model),
        **({"heard_head": nn.Linear(m.d_model, m.text_vocab_size, bias=False)}
           if m.heard_head else {}),
        **({"heard_embedding": nn.Embedding(m.text_vocab_size, m.d_model)} if m.heard_feedback else {}),
        **({"embed_norms": nn.ModuleList(nn.RMSNorm(m.d_model) for _ in range(3))} if m.embed_norm else {}),
        **({"seen_head": nn.Linear(m.d_model, m.text_vocab_size, bias=False)} if m.seen_head else {}),
        **({"seen_embedding": nn.Embedding(m.text_vocab_size, m.d_model)} if m.seen_feedback else {}),
    })


def count_built(cfg: Config) -> dict:
    with torch.device("meta"):  # shapes only, no memory: works for 276B parameters
        modules = build_modules(cfg)
    total = sum(p.numel() for p in modules.parameters())
    idle = 0  # routed experts a token does not use
    for module in modules.modules():
        if isinstance(module, MoE):
            per_expert = sum(p[0].numel() for p in (module.w_gate, module.w_up, module.w_down))
            idle += (cfg.moe.n_experts - cfg.moe.top_k) * per_expert
    assert all(p.device.type == "meta" for p in modules.parameters())
    return {"total": total, "active": total - idle}


@pytest.mark.parametrize("name", ["tiny", "small", "tml_small"])
def test_param_counts_equal_the_built_modules(name):
    cfg = get_config(name)
    assert cfg.param_counts() == count_built(cfg)


@pytest.mark.parametrize("name", ["tiny", "small", "tml_small"])
def test_param_counts_equal_the_interaction_model(name):
    from minitml.model import InteractionModel

    cfg = get_config(name)
    with torch.device("meta"):
        model = InteractionModel(cfg)
    assert sum(p.numel() for p in model.parameters()) == cfg.param_counts()["total"]


def test_flow_head_counts():
    from dataclasses import replace

    from minitml.model import InteractionModel

    cfg = get_config("tiny")
    cfg = cfg.replace(model=replace(cfg.model, mel_head="flow"))
    assert sum(p.numel() for p in InteractionModel(cfg).parameters()) == cfg.param_counts()["total"]


def test_heard_head_counts():
    from dataclasses import replace

    from minitml.model import InteractionModel

    cfg = get_config("tiny")
    without = cfg.replace(model=replace(cfg.model, heard_head=False))
    assert without.param_counts() == count_built(without)
    assert sum(p.numel() for p in InteractionModel(without).parameters()) == without.param_counts()["total"]
    assert cfg.param_counts()["total"] - without.param_counts()["total"] == 128 * 256
    reads = cfg.replace(model=replace(cfg.model, heard_feedback=True))  # + the read-back table
    assert reads.param_counts() == count_built(reads)
    assert sum(p.numel() for p in InteractionModel(reads).parameters()) == reads.param_counts()["total"]
    assert reads.param_counts()["total"] - cfg.param_counts()["total"] == 256 * 128
    normed = cfg.replace(model=replace(cfg.model, embed_norm=True))  # + three RMSNorm gains
    assert normed.param_counts() == count_built(normed)
    assert sum(p.numel() for p in InteractionModel(normed).parameters()) == normed.param_counts()["total"]
    assert normed.param_counts()["total"] - cfg.param_counts()["total"] == 3 * 128
    seeing = cfg.replace(model=replace(cfg.model, seen_head=True))  # + the seen head
    assert seeing.param_counts() == count_built(seeing)
    assert sum(p.numel() for p in InteractionModel(seeing).parameters()) == seeing.param_counts()["total"]
    assert seeing.param_counts()["total"] - cfg.param_counts()["total"] == 128 * 256
    looks = cfg.replace(model=replace(cfg.model, seen_head=True, seen_feedback=True))  # + its read-back table
    assert looks.param_counts() == count_built(looks)
    assert sum(p.numel() for p in InteractionModel(looks).parameters()) == looks.param_counts()["total"]
    assert looks.param_counts()["total"] - seeing.param_counts()["total"] == 256 * 128
    with pytest.raises(ValueError, match="heard_feedback"):
        replace(without.model, heard_feedback=True)
    with pytest.raises(ValueError, match="seen_feedback reads back what the seen head names"):
        replace(cfg.model, seen_feedback=True)
    with pytest.raises(ValueError, match="got 6 patches and 4 slots"):  # an 80x120 frame: a 2x3 grid
        looks.replace(vision=replace(looks.vision, frame_width=120))


def test_hmlp_stem_counts_too():
    cfg = get_config("tiny")
    cfg = cfg.replace(vision=VisionConfig(stem="hmlp"))
    assert cfg.param_counts() == count_built(cfg)


def test_tml_small_is_the_published_scale():
    counts = get_config("tml_small").param_counts()
    assert abs(counts["total"] / 276e9 - 1) < 0.02, counts
    assert abs(counts["active"] / 12e9 - 1) < 0.02, counts


def test_tiny_by_hand():
    d, V, h_dense, h_exp = 128, 256, 512, 256
    expected_total = (
        V * d  # text embedding
        + 80 * 16 * 32 + 4 * 32 * d  # dMel tables + projection of 4 frames
        + 3 * 40 * 40 * d + d  # linear patch stem
        + (16 + 16) * d  # patch row / column positions
        + 4 * d  # stream types
        + 4 * 4 * d * d  # q, k, v, o in 4 layers
        + 4 * 2 * d + d  # two RMSNorms per layer + final
        + 2 * 3 * d * h_dense  # layers 0 and 2 dense
        + 2 * (d * 4 + 4 * 3 * d * h_exp)  # layers 1 and 3: router + 4 experts
        + d * V  # text head
        + d * V  # heard head
        + d * 4 * 80 * 16  # dMel head
    )
    counts = get_config("tiny").param_counts()
    assert counts["total"] == expected_total
    assert counts["active"] == expected_total - 2 * 2 * 3 * d * h_exp  # 2 of 4 experts idle


def test_layout_of_the_tiny_micro_turn():
    layout = get_config("tiny").layout()
    assert layout == {"patches": 4, "user_audio": 4, "text_in": 2, "model_out": 4, "total": 14}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ModelConfig(d_model=130, n_heads=4), "divisible by n_heads"),
        (lambda: ModelConfig(n_heads=4, n_kv_heads=3), "multiple of n_kv_heads"),
        (lambda: MoEConfig(n_experts=4, top_k=5), r"top_k must be in \[1, n_experts=4\], got 5"),
        (lambda: MoEConfig(router="relu"), "'softmax' or 'sigmoid'"),
        (lambda: AudioConfig(frames_per_token=3), "must divide the 16 frames"),
        (lambda: AudioConfig(f_max=9000), "f_max"),
        (lambda: VisionConfig(stem="vit"), "'linear' or 'hmlp'"),
        (lambda: Config(vision=VisionConfig(frame_height=1000)), "patch grid"),
        (lambda: get_config("huge"), "unknown preset 'huge'"),
    ],
)
def test_bad_configs_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_dict_round_trip():
    cfg = get_config("small")
    assert Config.from_dict(cfg.to_dict()) == cfg
