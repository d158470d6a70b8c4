"""Expert parallelism: experts split over 2 processes, tokens sent to them with all-to-all.

First the layer alone: 2 processes (torchrun, gloo) each run a MoE layer on their
own tokens with the experts split between them; outputs and gradients must be
those of one process running the same layer on all the tokens. Then the whole
training run: `python -m minitml train --expert-parallel` on 2 processes follows
the 1-process run step by step, and its checkpoint loads into one process.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from test_distributed import assert_follows, train

from minitml import checkpoint
from minitml.config import MoEConfig, get_config
from minitml.expert_parallel import shard_experts
from minitml.moe import MoE
from minitml.train import TrainConfig, Trainer

# (name, sigmoid router bias or None, tokens on process 0 and 1). With the bias pushed up
# for experts 0 and 1, every token goes to process 0's experts and process 1 receives no
# rows; in the last case process 1 has no tokens at all. The exchanges must still work.
CASES = [("random", None, [24, 24]), ("all to process 0", [9.0, 9.0, 0.0, 0.0], [24, 24]),
         ("no tokens on process 1", None, [24, 0])]

# Runs in each of the 2 processes: route this process's own tokens, experts split.
LAYER = textwrap.dedent("""
    import json, sys
    import torch, torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from minitml.config import MoEConfig
    from minitml.expert_parallel import shard_experts
    from minitml.moe import MoE

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    for case, bias, tokens in json.loads(sys.argv[2]):
        torch.manual_seed(0)
        moe = MoE(MoEConfig(n_experts=4, top_k=2, d_expert=16, router="sigmoid"), 8)
        if bias:
            moe.bias.copy_(torch.tensor(bias))
        x_all = torch.randn(world, 24, 8)  # every process's tokens; this one uses its own
        c_all = torch.randn(world, 24, 8)
        shard_experts(moe, init_device_mesh("cpu", (world,)))
        x = x_all[rank, :tokens[rank]].clone().requires_grad_()
        y, aux = moe(x)
        (y * c_all[rank, :tokens[rank]]).sum().backward()
        results[case] = {
            "y": y.tolist(), "x_grad": x.grad.tolist(),
            "w_gate_grad": moe.w_gate.grad.full_tensor().tolist(),  # every process's experts
            "w_down_grad": moe.w_down.grad.full_tensor().tolist(),
            "experts_held": moe.w_gate.to_local().shape[0],
            "aux_finite": bool(torch.isfinite(aux.loss)),
        }
    json.dump(results, open(sys.argv[1] + f"/rank{rank}.json", "w"))
    dist.destroy_process_group()
""")


def test_layer_matches_one_process(tmp_path):
    (tmp_path / "layer.py").write_text(LAYER)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", "2", str(tmp_path / "layer.py"), str(tmp_path),
                             json.dumps(CASES)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for case, bias, tokens in CASES:
        torch.manual_seed(0)
        moe = MoE(MoEConfig(n_experts=4, top_k=2, d_expert=16, router="sigmoid"), 8)
        if bias:
            moe.bias.copy_(torch.tensor(bias))
        x_all = torch.randn(2, 24, 8)
        c_all = torch.randn(2, 24, 8)
        xs = [x_all[r, :tokens[r]].clone().requires_grad_() for r in (0, 1)]
        y, _ = moe(torch.cat(xs))  # one process, everybody's tokens
        ys = y.split(tokens)
        # The 2-process loss is a mean over processes of each one's sum.
        (sum((ys[r] * c_all[r, :tokens[r]]).sum() for r in (0, 1)) / 2).backward()
        for r in (0, 1):
            got = ranks[r][case]
            assert got["experts_held"] == 2  # each process holds 2 of the 4 experts
            assert got["aux_finite"]  # no tokens: no balance loss, not NaN
            torch.testing.assert_close(torch.tensor(got["y"]).reshape(-1, 8), ys[r].detach())
            # A process's own loss is not halved: its input gradient is twice the mean's.
            torch.testing.assert_close(torch.tensor(got["x_grad"]).reshape(-1, 8) / 2, xs[r].grad)
            torch.testing.assert_close(torch.tensor(got["w_gate_grad"]), moe.w_gate.grad)
            torch.testing.assert_close(torch.tensor(got["w_down_grad"]), moe.w_down.grad)
        if bias:  # the skewed case really skipped process 1's experts
            assert torch.all(moe.w_gate.grad[2:] == 0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("expert_parallel")
    one = train(tmp, "one", steps=4)
    ep = train(tmp, "ep", steps=4, processes=2, extra=["--expert-parallel"])
    return tmp, one, ep


def test_training_follows_one_process(runs):
    # Within the tolerances of FSDP alone. Without halving the expert gradients (each sums
    # the tokens of both processes), the gradient norm would be off.
    _, one, ep = runs
    assert_follows(one, ep, "expert parallel on 2 processes")


def test_checkpoint_loads_into_one_process_and_resumes_without_experts_split(runs):
    tmp, one, _ = runs
    sharded = checkpoint.load(tmp / "ep" / "last.dcp")
    gathered = checkpoint.load(tmp / "ep" / "model.pt")
    for (name, a), b in zip(sharded.state_dict().items(), gathered.state_dict().values()):
        assert torch.equal(a, b), name
    single = checkpoint.load(tmp / "one" / "model.pt")
    worst = max((a - b).abs().max().item()
                for a, b in zip(sharded.state_dict().values(), single.state_dict().values()))
    assert worst < 1e-3
    # Expert-parallel shards -> plain FSDP on 2 processes, and one-process last.pt -> expert parallel.
    one_one = train(tmp, "one_then_one", steps=6, extra=["--resume", str(tmp / "one" / "last.pt")])
    ep_fsdp = train(tmp, "ep_then_fsdp", steps=6, processes=2,
                    extra=["--resume", str(tmp / "ep" / "last.dcp")])
    one_ep = train(tmp, "one_then_ep", steps=6, processes=2,
                   extra=["--resume", str(tmp / "one" / "last.pt"), "--expert-parallel"])
    for history in (ep_fsdp, one_ep):
        for a, b in zip(one_one[4:], history[4:]):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    print(f"expert parallel weights after 4 steps vs 1 process: largest difference {worst:.1e}")


def test_refusals(tmp_path):
    class ThreeProcesses:  # all shard_experts asks of a mesh before it splits anything
        def size(self):
            return 3

    with pytest.raises(ValueError, match="n_experts divisible by 3, got n_experts=4"):
        shard_experts(MoE(MoEConfig(n_experts=4), 8), ThreeProcesses())
    tc = TrainConfig(steps=1, out=str(tmp_path), expert_parallel=True)
    with pytest.raises(ValueError, match="expert parallelism needs several processes"):
        Trainer(tc, [], [], cfg=get_config("tiny"))
    # The command line refuses at once, before it generates any data.
    result = subprocess.run([sys.executable, "-m", "minitml", "train", "--expert-parallel", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "MINITML_CACHE": str(tmp_path / "cache")})
    assert result.returncode != 0
    assert "--expert-parallel: expert parallelism needs several processes" in result.stderr
    assert not (tmp_path / "cache").exists()
