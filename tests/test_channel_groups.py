"""Channel groups from torch.fx, physical shrinking, channel importance and ``pruneopt channels``.

The central check: for every zoo model and random keep vectors, the MACs that
``FlopCounterMode`` counts on the physically shrunk model equal the formulation's bilinear
prediction FLOPs(k) = c₀ + Σ b k + Σ a k k exactly (integers), and shrinking is the same function
as zeroing the removed channels' weights.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruneopt.models import zoo
from pruneopt.models.channel_importance import channel_scores
from pruneopt.models.channels import build_channel_graph, channel_problem, group_scores
from pruneopt.models.costs import flop_counter_macs
from pruneopt.models.shrink import ChannelMap, mask_channels, shrink_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ------------------------------------------------------------------------------------ helpers
_CACHE: dict[str, tuple] = {}


def zoo_graph(name: str):
    """(model in eval mode, example input, graph), built once per test session."""
    if name not in _CACHE:
        model = zoo.build_model(name, seed=0).eval()
        x = torch.zeros(1, *zoo.input_shape(name))
        _CACHE[name] = (model, x, build_channel_graph(model, x))
    return _CACHE[name]


def random_keep(graph, rng, low: float = 0.0) -> np.ndarray:
    """Fixed groups whole; every other group a random count in [1, n] of random channels."""
    z = np.zeros(graph.num_channels, dtype=bool)
    for g in range(graph.num_groups):
        a, b = int(graph.channel_ptr[g]), int(graph.channel_ptr[g + 1])
        n = b - a
        if graph.fixed[g]:
            z[a:b] = True
            continue
        k = int(rng.integers(max(1, int(low * n)), n + 1))
        z[a + rng.choice(n, size=k, replace=False)] = True
    return z


def check_exact(model, x, graph, z) -> int:
    shrunk = shrink_model(model, graph, z)
    k = graph.counts(z)
    measured = flop_counter_macs(shrunk, x)
    assert measured == graph.macs_of_counts(k)
    problem, _ = channel_problem(model, x, np.ones(graph.num_channels), 1.0, graph=graph)
    assert problem.flops_of_counts(k) == measured  # float64, exact on integers < 2^53
    return measured


# ------------------------------------------------------------------------------------ zoo
@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_zoo_dense_and_random_shrinks_are_exact(name):
    model, x, graph = zoo_graph(name)
    dense = flop_counter_macs(model, x)
    assert graph.dense_macs == dense
    assert graph.macs_of_counts(graph.sizes) == dense
    assert graph.unknown_ops == ()
    problem, _ = channel_problem(model, x, "l1", 0.5, graph=graph)
    assert problem.dense_flops == dense
    assert problem.flop_budget == 0.5 * dense
    # the classifier's classes are the one fixed group, with min_keep = n and score 0
    fixed = np.flatnonzero(graph.fixed)
    assert fixed.tolist() == [graph.num_groups - 1]
    assert graph.fixed_reason[-1] == "reaches the network output"
    assert problem.min_keep[-1] == graph.sizes[-1]
    assert np.all(problem.scores[graph.channel_ptr[-2]:] == 0)
    assert np.all(problem.min_keep[:-1] == 1)
    rng = np.random.default_rng(7)
    draws = {"resnet50": 1, "mobilenetv1": 1, "resnet56": 2}.get(name, 3)
    for _ in range(draws):
        z = random_keep(graph, rng)
        assert check_exact(model, x, graph, z) < dense


def test_digits_cnn_coefficients_by_hand():
    _, _, graph = zoo_graph("digits-cnn")
    # conv1: 1 fixed input, 3×3 at 8×8 → b = 9·64; conv2 16→32 at 8×8 → a = 9·64;
    # pool 2×2 → conv3 32→32 at 4×4 → a = 9·16; fc 32→10 (fixed) → b_conv3 = 10
    assert graph.names == ("conv1", "conv2", "conv3", "fc")
    assert graph.sizes.tolist() == [16, 32, 32, 10]
    assert graph.edges.tolist() == [[0, 1], [1, 2]]
    assert graph.edge_coef.tolist() == [576, 144]
    assert graph.linear_coef.tolist() == [576, 0, 10, 0]
    assert graph.const == 0
    _, _, mlp = zoo_graph("digits-mlp")
    # fc1 64→64 reads 64 fixed pixels: b = 64; fc2: edge 1; fc3 → 10 classes: b_fc2 = 10
    assert mlp.edges.tolist() == [[0, 1]] and mlp.edge_coef.tolist() == [1]
    assert mlp.linear_coef.tolist() == [64, 10, 0]


def test_resnet20_residual_ties():
    _, _, graph = zoo_graph("resnet20")
    producers = [[m for m, r in mem if r == "out"] for mem in graph.members]
    streams = [g for g in range(graph.num_groups) if len(producers[g]) > 1]
    assert [int(graph.sizes[g]) for g in streams] == [16, 32, 64]
    assert producers[streams[0]] == ["conv1", "layer1.0.conv2", "layer1.1.conv2",
                                     "layer1.2.conv2"]
    assert producers[streams[1]] == [f"layer2.{b}.conv2" for b in range(3)]
    inner = [g for g in range(graph.num_groups)
             if len(producers[g]) == 1 and producers[g][0].endswith("conv1")
             and producers[g][0] != "conv1"]
    assert len(inner) == 9  # one per basic block
    assert sorted(int(graph.sizes[g]) for g in inner) == [16] * 3 + [32] * 3 + [64] * 3
    assert graph.num_groups == 3 + 9 + 1
    # the option-A shortcuts became index maps; the identity ones tie
    maps = sorted(n for n, info in graph.modules.items() if info.kind == "map")
    assert maps == ["layer2.0.shortcut", "layer3.0.shortcut"]
    _, _, r56 = zoo_graph("resnet56")
    assert r56.num_groups == 3 + 27 + 1
    _, _, r50 = zoo_graph("resnet50")
    stream = [g for g, mem in enumerate(r50.members)
              if any(m == "layer1.0.downsample.0" and r == "out" for m, r in mem)]
    assert len(stream) == 1 and r50.sizes[stream[0]] == 256
    assert [m for m, r in r50.members[stream[0]] if r == "out"] == [
        "layer1.0.conv3", "layer1.0.downsample.0", "layer1.1.conv3", "layer1.2.conv3"]
    assert r50.num_groups == 1 + 4 + 2 * 16 + 1
    _, _, mb = zoo_graph("mobilenetv1")
    assert mb.num_groups == 1 + 13 + 1
    assert ("dw1", "dw") in mb.members[0] and ("dw1_bn", "bn") in mb.members[0]


def test_fixed_group_cannot_lose_a_channel_and_groups_cannot_empty():
    model, _, graph = zoo_graph("digits-cnn")
    z = np.ones(graph.num_channels, dtype=bool)
    z[-1] = False  # a class of the classifier
    with pytest.raises(ValueError, match="keep: group fc is not prunable"):
        shrink_model(model, graph, z)
    z = np.ones(graph.num_channels, dtype=bool)
    z[:16] = False
    with pytest.raises(ValueError, match="keeps no channel"):
        shrink_model(model, graph, z)
    with pytest.raises(ValueError, match="keep: must be a vector"):
        shrink_model(model, graph, np.ones(3))


# ------------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize("name", ["digits-cnn", "resnet20", "mobilenetv1"])
def test_shrinking_nothing_changes_nothing(name):
    model, x, graph = zoo_graph(name)
    shrunk = shrink_model(model, graph, np.ones(graph.num_channels, dtype=bool))
    xr = torch.randn(2, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(xr), shrunk.eval()(xr))


def _option_a_consistent(graph, z):
    """Remove a shortcut's source channel whenever its target channel is removed, so that
    zeroing weights alone (no shortcut masking) silences every removed channel."""
    ptr = graph.channel_ptr
    changed = True
    while changed:
        changed = False
        for info in graph.modules.values():
            if info.kind != "map":
                continue
            p = np.flatnonzero(info.src_pos >= 0)
            s = info.src_pos[p]
            out_flat = ptr[info.out_gid[p]] + info.out_idx[p]
            in_flat = ptr[info.in_gid[s]] + info.in_idx[s]
            drop = in_flat[~z[out_flat] & z[in_flat]]
            if drop.size:
                z[drop] = False
                changed = True
    return z


@pytest.mark.parametrize("name", ["digits-cnn", "resnet20"])
def test_shrunk_equals_masked_dense(name):
    model, x, graph = zoo_graph(name)
    if name == "digits-cnn":
        from pruneopt.models.digits import trained_model

        model = trained_model("digits-cnn", seed=0)
    # non-trivial BN statistics so that a missed BN slice shows
    model = model.eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    rng = np.random.default_rng(11)
    xr = torch.randn(3, *x.shape[1:], generator=gen)
    for _ in range(2):
        while True:
            z = _option_a_consistent(graph, random_keep(graph, rng, low=0.3))
            if np.all(graph.counts(z) >= 1):
                break
        assert not z.all()
        shrunk = shrink_model(model, graph, z, example_input=x).eval()
        masked = mask_channels(model, graph, z).eval()
        with torch.no_grad():
            a, b = shrunk(xr), masked(xr)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
        assert not torch.allclose(b, model(xr).detach())  # something was removed


def test_option_a_shortcut_becomes_channel_map():
    model, _, graph = zoo_graph("resnet20")
    z = random_keep(graph, np.random.default_rng(5))
    shrunk = shrink_model(model, graph, z)
    sc = shrunk.layer2[0].shortcut
    assert isinstance(sc, ChannelMap)
    k = graph.counts(z)
    g_in = graph.group_index("conv1(+3 tied)")
    g_out = graph.group_index("layer2.0.conv2(+2 tied)")
    assert sc.in_channels == k[g_in] and sc.out_channels == k[g_out]
    # kept output p copies kept input p − 8 (as ranks among the kept channels), else zero
    zi = graph.split(z)
    ranks_in = np.cumsum(zi[g_in]) - 1
    want = [int(ranks_in[p - 8]) if 8 <= p < 24 and zi[g_in][p - 8] else k[g_in]
            for p in np.flatnonzero(zi[g_out])]
    assert sc.gather.tolist() == want


# ------------------------------------------------------------------------------------ toys
class CatNet(nn.Module):
    """Two branches concatenated, one branch twice (multiplicity 2), a bias, a flatten head."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 5, 1, bias=False)
        self.bn = nn.BatchNorm2d(9)
        self.c = nn.Conv2d(9, 6, 3, stride=2, padding=1, bias=False)
        self.d = nn.Conv2d(8, 2, 1, bias=False)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        a, b = self.a(x), F.relu(self.b(x))
        h = F.relu(self.bn(torch.cat([a, b], dim=1)))
        c = self.c(h)
        d = self.d(torch.cat([a, a], 1))
        d = F.avg_pool2d(d, 2)
        return self.fc(torch.flatten(torch.cat([c, d], 1), 1))


def test_cat_gives_one_edge_per_source_group():
    model = CatNet().eval()
    x = torch.randn(1, 3, 8, 8)
    graph = build_channel_graph(model, x)
    assert graph.names == ("a", "b", "c", "d", "fc")
    assert graph.fixed.tolist() == [False, False, False, False, True]
    edges = {tuple(e): int(c) for e, c in zip(graph.edges.tolist(),
                                                 graph.edge_coef.tolist(), strict=True)}
    # c reads cat(a, b) at 4×4 output, 3×3: a = 9·16 for each source; d reads cat(a, a): 2·64
    assert edges == {(0, 2): 144, (1, 2): 144, (0, 3): 128}
    # a, b read 3 fixed inputs at 8×8; c and d feed the fixed fc through a flatten:
    # c: 4·4 positions × 10 outputs per channel; d: 4·4 × 10
    assert graph.linear_coef.tolist() == [27 * 64, 3 * 64, 160, 160, 0]
    assert graph.dense_macs == flop_counter_macs(model, x)
    bn = graph.modules["bn"]
    assert bn.in_gid.tolist() == [0] * 4 + [1] * 5
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.randn(9, generator=gen))
        model.bn.bias.copy_(torch.randn(9, generator=gen))
    xr = torch.randn(4, 3, 8, 8, generator=gen)
    for _ in range(5):
        z = random_keep(graph, rng)
        check_exact(model, x, graph, z)
        with torch.no_grad():
            assert torch.allclose(shrink_model(model, graph, z).eval()(xr),
                                  mask_channels(model, graph, z).eval()(xr), atol=1e-5)


class UnknownOps(nn.Module):
    """A channel slice and a matmul with a parameter: both unknown, both conservative."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 5, 1)
        self.proj = nn.Parameter(torch.randn(5, 7))
        self.fc = nn.Linear(7, 10)

    def forward(self, x):
        a = F.relu(self.bn1(self.conv1(x)))
        b = F.relu(self.conv2(a[:, :4]))
        c = self.conv3(b)
        v = c.mean((2, 3)) @ self.proj
        return self.fc(v)


def test_unknown_ops_fix_the_groups_they_read():
    model = UnknownOps().eval()
    x = torch.randn(1, 3, 6, 6)
    graph = build_channel_graph(model, x)
    assert graph.names == ("conv1", "conv2", "conv3", "fc")
    assert graph.fixed.tolist() == [True, False, True, True]
    assert "getitem" in graph.fixed_reason[0]
    assert "matmul" in graph.fixed_reason[2]
    assert len(graph.unknown_ops) == 2
    # the matmul's 5·7 MACs and conv1's are constants; conv2 reads 4 fixed channels
    assert graph.dense_macs == flop_counter_macs(model, x)
    assert graph.linear_coef.tolist() == [0, 9 * 36 * 4 + 36 * 5, 0, 0]
    rng = np.random.default_rng(2)
    for _ in range(3):
        check_exact(model, x, graph, random_keep(graph, rng))
    problem, _ = channel_problem(model, x, "l2", 0.8, graph=graph)
    assert problem.min_keep.tolist() == [8, 1, 5, 10]


class Depthwise(nn.Module):
    """Depthwise with channel multiplier 2 (passes its input group through, repeated), a
    module called twice, and a residual add of its two calls."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 8, 3, padding=1, groups=4)
        self.bn1 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 6, 1, bias=False)
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        h = F.relu(self.bn0(self.stem(x)))
        d = F.relu(self.bn1(self.dw(h)))
        p = self.pw(d) + self.pw(d * 0.5)
        return self.fc(p.mean((2, 3)))


def test_depthwise_multiplier_and_shared_module():
    model = Depthwise().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bn in (model.bn0, model.bn1):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen))
    x = torch.randn(1, 3, 8, 8)
    graph = build_channel_graph(model, x)
    assert graph.names == ("stem", "pw", "fc")
    assert ("dw", "dw") in graph.members[0] and ("bn1", "bn") in graph.members[0]
    dw = graph.modules["dw"]
    assert dw.kind == "depthwise" and dw.out_idx.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # stem: 3 fixed inputs, 3×3 at 4×4; dw: 3·3·4·4 MACs per output, 2 outputs per kept stem
    # channel; pw (called twice) reads each stem channel twice (multiplier 2): 2·16 per call;
    # pw feeds the 10 fixed classes: b = 10
    assert graph.linear_coef.tolist() == [27 * 16 + 2 * 9 * 16, 10, 0]
    assert graph.edges.tolist() == [[0, 1]] and graph.edge_coef.tolist() == [2 * 2 * 16]
    assert graph.dense_macs == flop_counter_macs(model, x)
    rng = np.random.default_rng(4)
    xr = torch.randn(3, 3, 8, 8, generator=gen)
    for _ in range(4):
        z = random_keep(graph, rng)
        check_exact(model, x, graph, z)
        with torch.no_grad():
            assert torch.allclose(shrink_model(model, graph, z).eval()(xr),
                                  mask_channels(model, graph, z).eval()(xr), atol=1e-5)


def test_untraceable_model_is_a_value_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="model: cannot be traced"):
        build_channel_graph(Branchy(), torch.zeros(1, 1, 4, 4))


# ------------------------------------------------------------------------------------ scores
class Tiny(nn.Module):
    """conv_a and conv_b tied by a residual add (one group of 3), each followed by BN."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(2, 3, 1, bias=False)
        self.bn_a = nn.BatchNorm2d(3)
        self.conv_b = nn.Conv2d(3, 3, 1, bias=False)
        self.bn_b = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        a = self.bn_a(self.conv_a(x))
        b = self.bn_b(self.conv_b(F.relu(a)))
        y = F.relu(a + b)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def test_importance_scores_by_hand():
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():
        model.conv_a.weight.copy_(torch.tensor([[1., -2.], [0., 3.], [-1., 1.]]).view(3, 2, 1, 1))
        model.conv_b.weight.copy_(torch.tensor([[1., 0., 0.], [2., -2., 1.],
                                                [0., 0., -4.]]).view(3, 3, 1, 1))
        model.bn_a.weight.copy_(torch.tensor([0.5, -1.0, 2.0]))
        model.bn_b.weight.copy_(torch.tensor([1.0, 0.25, -3.0]))
    x = torch.zeros(1, 2, 3, 3)
    graph = build_channel_graph(model, x)
    assert graph.names == ("conv_a(+1 tied)", "fc") and graph.sizes.tolist() == [3, 2]
    np.testing.assert_allclose(channel_scores(model, graph, "l1")[:3],
                               [3 + 1, 3 + 5, 2 + 4])
    np.testing.assert_allclose(channel_scores(model, graph, "l2")[:3],
                               [math.sqrt(5) + 1, 3 + 3, math.sqrt(2) + 4])
    np.testing.assert_allclose(channel_scores(model, graph, "bn")[:3], [1.5, 1.25, 5.0])
    assert channel_scores(model, graph, "l1").shape == (5,)

    # taylor: per sample |Σ_{h,w} (a·∂L/∂a + b·∂L/∂b)| at the two BN outputs, averaged
    X = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 1, 0])
    got = channel_scores(model, graph, "taylor", X=X, y=y, batch_size=3)[:3]
    want = np.zeros(3)
    for i in range(4):
        a = model.bn_a(model.conv_a(X[i:i + 1]))
        b = model.bn_b(model.conv_b(F.relu(a)))
        out = model.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(a + b), 1), 1))
        ga, gb = torch.autograd.grad(F.cross_entropy(out, y[i:i + 1]), [a, b])
        want += (a * ga + b * gb).sum((0, 2, 3)).abs().detach().numpy()
    np.testing.assert_allclose(got, want / 4, rtol=1e-5)
    # own predictions as labels when y is None
    assert np.all(channel_scores(model, graph, "taylor", X=X) >= 0)
    with pytest.raises(ValueError, match="data:"):
        channel_scores(model, graph, "taylor")
    with pytest.raises(ValueError, match="score: unknown"):
        channel_scores(model, graph, "hrank")


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_scores_on_every_zoo_model(name):
    model, x, graph = zoo_graph(name)
    methods = ["l1", "l2"] + (["bn"] if name != "digits-mlp" else [])
    if name not in ("resnet50",):  # taylor on ResNet-50 costs a backward pass at 224²
        methods.append("taylor")
    X = torch.randn(2, *x.shape[1:], generator=torch.Generator().manual_seed(0))
    for method in methods:
        s = channel_scores(model, graph, method, X=X)
        assert s.shape == (graph.num_channels,) and s.dtype == np.float64
        assert np.all(np.isfinite(s)) and np.all(s >= 0)
        if method != "taylor":  # random deep nets can saturate the softmax (zero gradients)
            assert np.all(s[np.repeat(graph.prunable, graph.sizes)] > 0)
        group_scores(graph, graph.split(s))  # the per-group form is accepted too
    if name == "digits-mlp":
        with pytest.raises(ValueError, match="score: 'bn' needs a BatchNorm"):
            channel_scores(model, graph, "bn")


def test_channel_problem_validation():
    model, x, graph = zoo_graph("digits-cnn")
    with pytest.raises(ValueError, match="flops:"):
        channel_problem(model, x, "l1", 0.0, graph=graph)
    with pytest.raises(ValueError, match="scores:"):
        channel_problem(model, x, np.ones(5), 0.5, graph=graph)
    with pytest.raises(ValueError, match="min_keep:"):
        channel_problem(model, x, "l1", 0.5, 0, graph=graph)
    p, _ = channel_problem(model, x, "l1", 0.5, 20, graph=graph)
    assert p.min_keep.tolist() == [16, 20, 20, 10]  # capped at n_g, fixed groups whole


# ------------------------------------------------------------------------------------ CLI
def _cli(argv):
    from pruneopt.cli_channels import add_parser

    parser = argparse.ArgumentParser(prog="pruneopt")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = args.func(args)
    return rc, buf.getvalue()


def test_cli_json_record(tmp_path):
    from pruneopt.solvers.registry import available_solvers

    solver = "exact" if "exact" in available_solvers("channels") else "fast"
    rc, out = _cli(["channels", "--model", "digits-cnn", "--flops", "0.5", "--solver", solver,
                    "--json", "--out", str(tmp_path), "--score", "l2"])
    assert rc == 0
    rec = json.loads(out)
    for key in ("solver", "status", "objective", "bound", "gap", "proven_optimal",
                "macs_before", "macs_predicted", "macs_measured", "channels_before",
                "channels_after", "accuracy_before", "accuracy_after"):
        assert key in rec, key
    assert rec["macs_measured"] == rec["macs_predicted"] <= 0.5 * rec["macs_before"]
    assert rec["macs_before"] == 451904 and rec["channels_before"] == 90
    assert rec["channels_after"] < rec["channels_before"] and rec["data"] == "digits"
    assert rec["accuracy_before"] > 0.95
    assert (tmp_path / "record.json").exists() and (tmp_path / "problem.npz").exists()
    shrunk = torch.load(tmp_path / "model.pt", weights_only=False)
    assert flop_counter_macs(shrunk, torch.zeros(1, 1, 8, 8)) == rec["macs_measured"]
    from pruneopt.formulations.channels.problem import ChannelProblem

    assert ChannelProblem.load(tmp_path / "problem.npz").dense_flops == 451904


def test_cli_synthetic_model_and_errors():
    rc, out = _cli(["channels", "--model", "resnet20", "--flops", "0.6", "--solver", "uniform",
                    "--json", "--eval-samples", "64"])
    rec = json.loads(out)
    assert rc == 0 and rec["data"] == "synthetic" and rec["accuracy_before"] == 1.0
    assert rec["macs_measured"] == rec["macs_predicted"] <= 0.6 * rec["macs_before"]
    with pytest.raises(ValueError, match="solver: unknown solver 'nope'"):
        _cli(["channels", "--model", "digits-mlp", "--flops", "0.5", "--solver", "nope"])
    with pytest.raises(ValueError, match=r"flops: .* below the least"):
        _cli(["channels", "--model", "digits-mlp", "--flops", "0.001", "--solver", "fast"])
    with pytest.raises(ValueError, match="model:"):
        _cli(["channels", "--model", "no-such-model", "--flops", "0.5", "--solver", "fast"])
