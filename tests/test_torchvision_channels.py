"""Channel tracing, shrinking and exact MACs on torchvision's architectures (random weights).

Every architecture: trace → ``fast`` at 50 % of the MACs → shrink physically → FlopCounterMode/2
on the shrunk model equals the formulation's count, the budget holds, and what is not modelled is
fixed with a reason. Small inputs (32×32) and reduced variants built with torchvision's own
classes keep the file fast on one core."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pruneopt
from pruneopt.models.channels import build_channel_graph, channel_problem
from pruneopt.models.costs import flop_counter_macs
from pruneopt.models.shrink import shrink_model
from pruneopt.models.vision import import_torchvision, torchvision_model, vit_tiny

tv = import_torchvision()


def _densenet_small():
    from torchvision.models.densenet import DenseNet

    return DenseNet(growth_rate=8, block_config=(3, 3), num_init_features=16, bn_size=2,
                    num_classes=10).eval()


def _convnext_small():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    cfg = [CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)]
    return ConvNeXt(cfg, stochastic_depth_prob=0.1, num_classes=10).eval()


def _regnet_small():
    from torchvision.models.regnet import BlockParams, RegNet

    params = BlockParams.from_init_params(depth=4, w_0=16, w_a=8.0, w_m=2.0, group_width=8)
    return RegNet(params, num_classes=10).eval()


def _model(name):
    builders = {"densenet_small": _densenet_small, "convnext_small": _convnext_small,
                "regnet_small": _regnet_small, "vit_tiny": vit_tiny}
    if name in builders:
        torch.manual_seed(0)
        return builders[name]()
    return torchvision_model(name, num_classes=10, input_shape=(3, 32, 32))


def _fixed_reasons(graph):
    return [graph.fixed_reason[g] for g in range(graph.num_groups) if graph.fixed[g]]


ARCHS = ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5",
         "squeezenet1_0", "regnet_small", "densenet_small", "convnext_small", "vit_tiny"]


@pytest.mark.parametrize("name", ARCHS)
def test_fast_shrink_measured_equals_predicted(name, one_torch_thread):
    torch.manual_seed(0)
    model = _model(name)
    x = torch.randn(1, 3, 32, 32)
    problem, graph = channel_problem(model, x, "l1", 0.5)
    assert graph.prunable.sum() >= 2
    res = pruneopt.solve(problem, "fast", time_limit=30)
    assert res.feasible and res.x is not None
    k = graph.counts(res.x)
    predicted = graph.macs_of_counts(k)
    assert predicted <= problem.flop_budget
    assert np.any(k[graph.prunable] < graph.sizes[graph.prunable])  # something was removed
    shrunk = shrink_model(model, graph, res.x, example_input=x)
    assert flop_counter_macs(shrunk, x) == predicted
    assert flop_counter_macs(model, x) == graph.dense_macs
    # the shrunk network is itself traceable, with one group per group kept
    g2 = build_channel_graph(shrunk, x)
    assert g2.dense_macs == predicted
    # the channels kept compute what they computed in the dense network: zeroing the removed
    # ones where they are produced changes nothing else (eval mode)
    if name in ("resnet18", "squeezenet1_0", "densenet_small"):
        from pruneopt.models.shrink import mask_channels

        with torch.no_grad():
            torch.testing.assert_close(shrunk(x), mask_channels(model, graph, res.x)(x),
                                       rtol=1e-4, atol=1e-4)


def test_what_is_modelled_and_what_is_fixed(one_torch_thread):
    x = torch.randn(1, 3, 32, 32)
    # EfficientNet: stochastic depth passes through, squeeze-excitation ties its branch
    g = build_channel_graph(_model("efficientnet_b0"), x)
    assert not any("stochastic_depth" in r for r in _fixed_reasons(g))
    assert g.unknown_ops == ()
    assert _fixed_reasons(g) == ["reaches the network output"]
    # x * scale (N×C×1×1 from the SE branch): fc2's outputs are tied to the block's group
    se = [gi for gi in range(g.num_groups)
          if any(m.endswith("fc2") and r == "out" for m, r in g.members[gi])]
    assert se and all(sum(r == "out" for _, r in g.members[gi]) >= 2 for gi in se)
    # RegNet: grouped convs fold their groups per slice, nothing fixed but the classifier
    g = build_channel_graph(_model("regnet_small"), x)
    assert _fixed_reasons(g) == ["reaches the network output"]
    assert any(info.kind == "gconv" for info in g.modules.values())
    # ConvNeXt: permutes, LayerNorm on the channels, Linear on the last dim, layer scale
    g = build_channel_graph(_model("convnext_small"), x)
    assert _fixed_reasons(g) == ["reaches the network output"]
    assert g.params and all(v[0] == 0 for v in g.params.values())  # layer_scale (C, 1, 1)
    assert any(info.kind == "ln" for info in g.modules.values())
    # ViT: the MLP hidden widths are groups; the residual stream is read by attention, which
    # is not modelled, so it is one tied group, fixed, with the reason
    g = build_channel_graph(_model("vit_tiny"), x)
    mlp = [gi for gi, n in enumerate(g.names) if "mlp.0" in n]
    assert len(mlp) == 2 and not g.fixed[mlp].any()
    stream = [gi for gi in range(g.num_groups) if g.fixed[gi] and "self_attention" in
              g.fixed_reason[gi]]
    assert len(stream) == 1 and "conv_proj" in g.names[stream[0]]
    assert any("self_attention" in u for u in g.unknown_ops)
    # ShuffleNet: a channel shuffle and chunk need equal slices; the stream groups they mix
    # collapse and stay fixed, the branches' inner groups are prunable
    g = build_channel_graph(_model("shufflenet_v2_x0_5"), x)
    reasons = " ".join(_fixed_reasons(g))
    assert "channel shuffle" in reasons or "equal parts" in reasons
    assert g.prunable.sum() >= 10


class _Weird(nn.Module):
    """Ops the tracer does not model: they must fix groups, never crash, and keep MACs exact."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 6, 1)
        self.d = nn.Conv2d(6, 4, 1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        y = self.a(x)
        y = torch.roll(y, 1, dims=1)  # a channel permutation: not modelled
        y = self.b(y)
        z = self.c(y)
        z = z[:, [1, 0, 2, 3, 4, 5]]  # indexing with a list: not modelled
        w = torch.einsum("nchw->nchw", self.d(z))
        return self.fc(w.mean((2, 3)))


def test_unknown_ops_fix_groups_and_never_crash(one_torch_thread):
    model = _Weird().eval()
    x = torch.randn(1, 3, 8, 8)
    g = build_channel_graph(model, x)
    assert g.unknown_ops
    assert g.fixed[g.group_index("a")] and "roll" in g.fixed_reason[g.group_index("a")]
    assert g.dense_macs == flop_counter_macs(model, x)
    assert not g.fixed[g.group_index("b")]  # b feeds c only: still prunable


def test_exact_proves_on_resnet18_against_a_second_exact_solver(one_torch_thread):
    model = _model("resnet18")
    x = torch.zeros(1, 3, 32, 32)
    problem, graph = channel_problem(model, x, "l1", 0.5)
    fast = pruneopt.solve(problem, "fast")
    assert not fast.proven_optimal  # the Lagrangian alone leaves a duality gap here
    exact = pruneopt.solve(problem, "exact", time_limit=60)
    assert exact.proven_optimal and exact.status == "optimal"
    assert "windows" in exact.options["method"]  # count windows, then B&B or P1′ inside
    other = pruneopt.solve(problem, "pyomo-highs-mccormick", time_limit=60)
    assert other.proven_optimal
    assert exact.objective == pytest.approx(other.objective, rel=1e-9)
    assert exact.objective >= fast.objective - 1e-9 * abs(fast.objective)
