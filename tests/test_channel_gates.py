"""Per-channel gates (pruneopt.models.channel_gates): the relaxed MAC count is the exact bilinear
count at 0/1 gates, and gating equals masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneopt.models.channel_gates import gated, relaxed_macs
from pruneopt.models.channels import build_channel_graph
from pruneopt.models.shrink import mask_channels
from pruneopt.models.zoo import build_model, input_shape

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nets():
    out = {}
    for name in ("digits-cnn", "resnet20"):
        model = build_model(name, seed=0).eval()
        x = torch.randn(2, *input_shape(name), generator=torch.Generator().manual_seed(1))
        out[name] = (model, build_channel_graph(model, x[:1]), x)
    return out


def _random_keep(graph, rng, p=0.5):
    keep = rng.random(graph.num_channels) < p
    keep[np.repeat(graph.fixed, graph.sizes)] = True
    ptr = graph.channel_ptr
    for g in range(graph.num_groups):  # every group keeps at least one (mask_channels' rule)
        if not keep[ptr[g]:ptr[g + 1]].any():
            keep[ptr[g] + rng.integers(graph.sizes[g])] = True
    return keep


@pytest.mark.parametrize("name", ["digits-cnn", "resnet20"])
def test_relaxed_macs_exact_at_binary_gates(nets, name):
    _model, graph, _x = nets[name]
    rng = np.random.default_rng(0)
    assert float(relaxed_macs(graph, torch.ones(graph.num_channels))) == graph.dense_macs
    for p in (0.1, 0.5, 0.9):
        for _ in range(5):
            keep = rng.random(graph.num_channels) < p  # empty groups allowed: counts may be 0
            gates = torch.as_tensor(keep, dtype=torch.float32)
            want = graph.macs_of_counts(graph.counts(keep | np.repeat(graph.fixed, graph.sizes)))
            got = relaxed_macs(graph, gates)
            assert got.dtype == torch.float64
            assert float(got) == want


def test_relaxed_macs_is_bilinear_in_gate_mass(nets):
    _model, graph, _x = nets["digits-cnn"]
    gates = torch.rand(graph.num_channels, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64, requires_grad=True)
    F = relaxed_macs(graph, gates)
    S = np.array([float(gates.detach()[a:b].sum()) for a, b in zip(graph.channel_ptr[:-1],
                                                          graph.channel_ptr[1:], strict=True)])
    S[graph.fixed] = graph.sizes[graph.fixed]
    e = graph.edges
    want = graph.const + graph.linear_coef @ S + np.sum(graph.edge_coef * S[e[:, 0]] * S[e[:, 1]])
    assert float(F.detach()) == pytest.approx(want, rel=1e-12)
    F.backward()
    # dF/dgate_c = b_g + Σ_{edges with g} a_e S_other, the same for every channel of a group
    grad = gates.grad.numpy()
    for g in range(graph.num_groups):
        if graph.fixed[g]:
            assert np.all(grad[graph.channel_ptr[g]:graph.channel_ptr[g + 1]] == 0)
            continue
        d = graph.linear_coef[g] + sum(graph.edge_coef[j] * S[e[j, 1] if e[j, 0] == g else e[j, 0]]
                                       for j in range(e.shape[0]) if g in e[j])
        assert np.allclose(grad[graph.channel_ptr[g]:graph.channel_ptr[g + 1]], d)


@pytest.mark.parametrize("name", ["digits-cnn", "resnet20"])
def test_gated_ones_unchanged_and_zero_gates_equal_masking(nets, name):
    model, graph, x = nets[name]
    with torch.no_grad():
        ref = model(x)
        with gated(model, graph, torch.ones(graph.num_channels)):
            same = model(x)
        assert torch.equal(same, ref)
        keep = _random_keep(graph, np.random.default_rng(3))
        with gated(model, graph, torch.as_tensor(keep, dtype=torch.float32)):
            out = model(x)
        masked = mask_channels(model, graph, keep)(x)
        assert torch.allclose(out, masked, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out, ref, atol=1e-3)
        # the hooks are gone after the block
        assert torch.equal(model(x), ref)


def test_gated_handle_updates_and_gradients_flow(nets):
    model, graph, x = nets["digits-cnn"]
    gates = torch.full((graph.num_channels,), 0.5, requires_grad=True)
    with gated(model, graph, gates) as handle:
        model(x).sum().backward()
        assert gates.grad is not None and gates.grad.abs().sum() > 0
        fixed = np.repeat(graph.fixed, graph.sizes)
        assert torch.all(gates.grad[torch.as_tensor(fixed)] == 0)  # fixed groups are not gated
        handle.gates = torch.zeros(graph.num_channels)
        with torch.no_grad():
            out = model(x)
    # every prunable channel 0: the classifier sees zeros and outputs its bias
    assert torch.allclose(out, model.fc.bias.detach().expand_as(out))


def test_gate_input_checks(nets):
    model, graph, _x = nets["digits-cnn"]
    with pytest.raises(ValueError, match="gates"):
        relaxed_macs(graph, torch.ones(graph.num_channels + 1))
    with pytest.raises(ValueError, match="gates"):
        relaxed_macs(graph, np.ones(graph.num_channels))
    with pytest.raises(ValueError, match="gates"), gated(model, graph, torch.ones(3)):
        pass
    other = build_model("digits-mlp")
    with pytest.raises(ValueError, match="model"), \
            gated(other, graph, torch.ones(graph.num_channels)):
        pass
