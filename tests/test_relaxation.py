"""The generalised continuous relaxation (pruneopt.models.relaxation): thresholding, folding the
gates into the model, and collapsing dead residual branches."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruneopt.models.channel_gates import gated, relaxed_macs
from pruneopt.models.channels import build_channel_graph
from pruneopt.models.relaxation import (
    continuous_relaxation,
    residual_branches,
    structure_from_gates,
)
from pruneopt.models.structured_decision import StructuredDecision
from pruneopt.models.zoo import BasicBlock, build_model, input_shape

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits(trained_digits_cnn):
    return trained_digits_cnn


class MiniResNet(nn.Module):
    """A stem conv (3 → 8) and two CIFAR basic blocks of 8 channels on 8×8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(OrderedDict([("0", BasicBlock(8, 8)), ("1", BasicBlock(8, 8))]))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _randomise_bn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
                m.running_mean.uniform_(-0.2, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return model.eval()


def _zero_outputs(model, names):
    """Forward hooks replacing the outputs of the named modules by zeros (a removed branch)."""
    return [model.get_submodule(n).register_forward_hook(lambda _m, _i, o: torch.zeros_like(o))
            for n in names]


def _gates_from_s(graph, s, a=5.0):
    g = 1 / (1 + np.exp(-a * s))
    g[np.repeat(graph.fixed, graph.sizes)] = 1.0
    return g


# ------------------------------------------------------------------------------------ folding
def test_folded_model_equals_gated_model_at_hard_gates(digits):
    model, graph, data = digits
    rng = np.random.default_rng(0)
    g = rng.uniform(0.0, 1.0, graph.num_channels)
    g[rng.random(graph.num_channels) < 0.3] = 0.01  # below the threshold 0.025
    g[np.repeat(graph.fixed, graph.sizes)] = 1.0
    ptr = graph.channel_ptr
    g[ptr[1]:ptr[2]] = 0.001  # conv2 left empty: not in a residual branch, keeps its argmax
    g[ptr[1] + 5] = 0.02
    keep, folded, collapsed = structure_from_gates(model, graph, g, threshold=0.025)
    assert collapsed == []
    fixed = np.repeat(graph.fixed, graph.sizes)
    want = (g > 0.025) | fixed
    want[ptr[1] + 5] = True
    assert np.array_equal(keep, want)
    assert graph.counts(keep)[1] == 1
    h = torch.as_tensor(np.where(fixed, 1.0, g * keep), dtype=torch.float32)
    X = data.X_test[:64]
    with torch.no_grad():
        with gated(model, graph, h):
            ref = model(X)
        out = folded(X)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    assert folded is not model
    # the input model is untouched
    assert not torch.equal(folded.bn1.weight, model.bn1.weight)


# ------------------------------------------------------------------------------------ collapse
def test_residual_branches_of_resnet20():
    model = build_model("resnet20", seed=0)
    graph = build_channel_graph(model, torch.zeros(1, *input_shape("resnet20")))
    br = residual_branches(model, graph)
    names = {graph.names[g]: mods for g, (_groups, mods) in br.items()}
    want = {f"layer{s}.{b}.conv1": [f"layer{s}.{b}.conv2"] for s in (1, 2, 3) for b in range(3)}
    assert names == want


def test_collapse_removes_a_branch_of_a_mini_resnet():
    torch.manual_seed(0)
    model = _randomise_bn(MiniResNet())
    X = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    graph = build_channel_graph(model, X[:1])
    gid = graph.group_index("layer1.0.conv1")
    ptr = graph.channel_ptr
    g = np.full(graph.num_channels, 0.97)
    g[np.repeat(graph.fixed, graph.sizes)] = 1.0
    g[ptr[gid]:ptr[gid + 1]] = 0.001  # the first block's inner channels all die
    g[ptr[gid] + 3] = 0.02
    keep, folded, collapsed = structure_from_gates(model, graph, g)
    k = graph.counts(keep)
    assert k[gid] == 0 and np.all(np.delete(k, gid) == graph.sizes[np.arange(graph.num_groups)
                                                                   != gid])
    assert collapsed == [{"group": "layer1.0.conv1", "groups": ["layer1.0.conv1"],
                          "modules": ["layer1.0.conv2"]}]
    # MACs: the two 3×3 8→8 convs of the block (9·8·8·8·8 MACs each) are gone
    per_conv = 9 * 8 * 8 * 8 * 8
    assert graph.macs_of_counts(k) == graph.dense_macs - 2 * per_conv
    # forward: the block is relu(x + 0), i.e. its branch output is removed
    h = torch.as_tensor(np.where(keep, g, 0.0), dtype=torch.float32)
    with torch.no_grad():
        handles = _zero_outputs(model, ["layer1.0.bn2"])
        try:
            with gated(model, graph, h):
                ref = model(X)
        finally:
            for hd in handles:
                hd.remove()
        out = folded(X)
        block_in = F.relu(folded.bn1(folded.conv1(X)))
        assert torch.allclose(folded.layer1[0](block_in), F.relu(block_in))
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    # without collapse the empty group keeps its best channel
    keep2, _f, col2 = structure_from_gates(model, graph, g, collapse=False)
    assert col2 == [] and graph.counts(keep2)[gid] == 1 and keep2[ptr[gid] + 3]


def test_relaxation_collapses_planted_resnet20_branches():
    model = _randomise_bn(build_model("resnet20", seed=0))
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(4, *input_shape("resnet20"), generator=gen)
    y = torch.randint(0, 10, (4,), generator=gen)
    graph = build_channel_graph(model, X[:1])
    ptr = graph.channel_ptr
    s = np.ones(graph.num_channels, dtype=np.float32)
    dead = [graph.group_index("layer2.0.conv1"), graph.group_index("layer3.1.conv1")]
    for gid in dead:
        s[ptr[gid]:ptr[gid + 1]] = -3.0  # g = σ(-15) ≈ 3e-7
    stream = graph.group_index("layer2.0.conv2(+2 tied)")
    s[ptr[stream]:ptr[stream + 1]] = -3.0  # a residual stream: never collapses, keeps argmax
    s[ptr[stream] + 7] = -0.5
    dec = continuous_relaxation(model, graph, X, y, epochs=0, init=torch.as_tensor(s))
    assert isinstance(dec, StructuredDecision) and dec.method == "relaxation"
    k = dec.counts
    assert [c["group"] for c in dec.info["collapsed_blocks"]] == ["layer2.0.conv1",
                                                                  "layer3.1.conv1"]
    assert all(k[g] == 0 for g in dead)
    assert k[stream] == 1 and dec.keep[ptr[stream] + 7]
    assert dec.achieved_macs == graph.macs_of_counts(k) == dec.info["thresholded_macs"]
    g = dec.arrays["gates"]
    assert np.array_equal(dec.scores, g)
    h = torch.as_tensor(np.where(dec.keep, g, 0.0), dtype=torch.float32)
    with torch.no_grad():
        handles = _zero_outputs(model, ["layer2.0.bn2", "layer3.1.bn2"])
        try:
            with gated(model, graph, h):
                ref = model(X)
        finally:
            for hd in handles:
                hd.remove()
        out = dec.model(X)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    assert dec.info["ce_hard"] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)


# ------------------------------------------------------------------------------------ end to end
def test_relaxation_on_trained_digits_cnn(digits):
    model, graph, data = digits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    dec = continuous_relaxation(model, graph, data.X_train, data.y_train, keep_flops=0.5,
                                progress=seen.append)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert len(seen) == 12 and seen[-1]["k_pb"] > 0 and seen[5]["k_pb"] == 0
    info = dec.info
    g = dec.arrays["gates"]
    fixed = np.repeat(graph.fixed, graph.sizes)
    assert np.all(g[fixed] == 1.0)
    # kept channels are exactly g > threshold (no group emptied here)
    assert np.all(graph.counts(g > info["threshold"])[graph.prunable] >= 1)
    assert np.array_equal(dec.keep, (g > info["threshold"]) | fixed)
    assert dec.target_macs == 0.5 * graph.dense_macs
    frac = dec.achieved_macs / graph.dense_macs
    assert 0.4 <= frac <= 0.6
    assert info["thresholded_macs"] == dec.achieved_macs
    assert info["relaxed_macs"] == pytest.approx(
        float(relaxed_macs(graph, torch.as_tensor(g))))
    # the ejector drove the gates to 0 or 1: the relaxation gap is small
    assert abs(info["relaxed_macs"] - dec.achieved_macs) < 0.05 * graph.dense_macs
    assert info["ce_hard"] < 0.5 and np.isfinite(info["ce_soft"])
    # removed channels are exactly 0 where they are produced in the returned model
    acts = {}
    hooks = [dec.model.get_submodule(n).register_forward_hook(
        lambda _m, _i, o, n=n: acts.__setitem__(n, o)) for n, _g, _i in graph.activations]
    with torch.no_grad():
        dec.model(data.X_test[:32])
    for h in hooks:
        h.remove()
    ptr = graph.channel_ptr
    for name, gid, idx in graph.activations:
        z = dec.keep[ptr[gid] + idx]
        assert torch.all(acts[name][:, torch.as_tensor(~z)] == 0)


def test_relaxation_bad_input(digits):
    model, graph, data = digits
    X, y = data.X_train[:64], data.y_train[:64]
    for bad in (-0.1, 1.5, float("inf"), "x"):
        with pytest.raises(ValueError, match="keep_flops"):
            continuous_relaxation(model, graph, X, y, keep_flops=bad, epochs=0)
    with pytest.raises(ValueError, match="X"):
        continuous_relaxation(model, graph, X[:0], y[:0], epochs=0)
    with pytest.raises(ValueError, match="y"):
        continuous_relaxation(model, graph, X, y[:3], epochs=0)
    with pytest.raises(ValueError, match="threshold"):
        continuous_relaxation(model, graph, X, y, threshold=1.0, epochs=0)
    with pytest.raises(ValueError, match="init"):
        continuous_relaxation(model, graph, X, y, init=torch.ones(3), epochs=0)
    with pytest.raises(ValueError, match="epochs"):
        continuous_relaxation(model, graph, X, y, epochs=-1)
