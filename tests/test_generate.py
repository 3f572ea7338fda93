"""Random instances: valid, reproducible from the seed; real network layer tables with their
known totals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pruneopt import JointBudgetProblem
from pruneopt.formulations.joint.generate import DISTRIBUTIONS, SHAPES, generate_joint
from pruneopt.formulations.network_shapes import NETWORKS, layer_arrays, resnet50


def same(a: JointBudgetProblem, b: JointBudgetProblem) -> bool:
    return (np.array_equal(a.scores, b.scores) and np.array_equal(a.group_ptr, b.group_ptr)
            and np.array_equal(a.flop_cost, b.flop_cost) and a.nnz_budget == b.nnz_budget
            and a.flop_budget == b.flop_budget and a.names == b.names)


def assert_valid(p: JointBudgetProblem, keep_nnz: float, keep_flops: float) -> None:
    p.validate()
    assert np.all(np.isfinite(p.scores)) and np.all(p.scores >= 0)
    assert p.group_ptr[0] == 0 and p.group_ptr[-1] == p.num_items
    assert np.all(np.diff(p.group_ptr) >= 0)
    assert np.all(p.flop_cost > 0) and np.all(p.flop_cost == np.rint(p.flop_cost))
    assert p.nnz_budget == int(np.floor(keep_nnz * p.num_items))
    assert p.flop_budget == float(np.floor(keep_flops * p.total_flops))
    assert p.names is not None and len(p.names) == p.num_groups


@given(layers=st.integers(1, 12), extra=st.integers(0, 300), dist=st.sampled_from(DISTRIBUTIONS),
       keep_nnz=st.floats(0, 1), keep_flops=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_random_shape_is_valid_and_reproducible(layers, extra, dist, keep_nnz, keep_flops, seed):
    items = layers + extra
    kw = dict(layers=layers, items=items, dist=dist, keep_nnz=keep_nnz, keep_flops=keep_flops)
    p = generate_joint(seed=seed, **kw)
    assert p.num_items == items and p.num_groups == layers
    assert np.all(p.group_sizes >= 1)  # the random shape has no empty layer
    assert_valid(p, keep_nnz, keep_flops)
    assert same(p, generate_joint(seed=seed, **kw))
    if items >= 8:
        assert not same(p, generate_joint(seed=seed + 1, **kw))
    # layer costs are CNN-like: resolutions 32, 16, 8, 4 squared, and 1 for a last classifier
    allowed = {1024.0, 256.0, 64.0, 16.0} | ({1.0} if layers > 1 else set())
    assert set(p.flop_cost.tolist()) <= allowed
    if layers > 1:
        assert p.flop_cost[-1] == 1.0


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_distributions_have_their_shape(dist):
    p = generate_joint(layers=4, items=20000, dist=dist, seed=1)
    s = p.scores
    if dist == "ties":
        assert set(np.unique(s).tolist()) == set(range(10))
        assert np.count_nonzero(s == 0) > 1000
    elif dist == "uniform":
        assert s.max() < 1.0 and abs(s.mean() - 0.5) < 0.02
    elif dist == "exponential":
        assert abs(s.mean() - 1.0) < 0.05 and s.max() > 5.0
    elif dist == "lognormal":
        assert abs(np.mean(np.log(s))) < 0.1 and abs(np.std(np.log(s)) - 2.0) < 0.1
    else:  # kaiming: w^2, with w ~ N(0, 2/fan_in) per layer
        assert np.all(s >= 0) and np.unique(s).size == s.size
    assert same(p, generate_joint(layers=4, items=20000, dist=dist, seed=1))
    assert not np.array_equal(s, generate_joint(layers=4, items=20000, dist=dist, seed=2).scores)


KNOWN_TOTALS = {
    "resnet20": (268_336, 40_551_040),
    "mobilenetv1": (4_209_088, 568_740_352),
    "resnet50": (25_502_912, 4_089_184_256),
}


@pytest.mark.parametrize("network", sorted(KNOWN_TOTALS))
def test_network_layer_tables_have_the_known_totals(network):
    names, sizes, costs = layer_arrays(NETWORKS[network]())
    weights, macs = KNOWN_TOTALS[network]
    assert int(sizes.sum()) == weights
    assert int(np.sum(sizes.astype(np.int64) * costs.astype(np.int64))) == macs
    assert len(set(names)) == len(names)
    assert np.all(sizes > 0) and np.all(costs >= 1)


def test_network_layer_details():
    names, sizes, costs = layer_arrays(NETWORKS["resnet20"]())
    assert len(names) == 20 and names[0] == "conv1" and names[-1] == "fc"
    assert (sizes[0], costs[0]) == (3 * 16 * 9, 32 * 32)
    assert (sizes[-1], costs[-1]) == (640, 1)
    names, sizes, costs = layer_arrays(NETWORKS["mobilenetv1"]())
    assert len(names) == 28 and (sizes[-1], costs[-1]) == (1024 * 1000, 1)
    assert costs[-2] == 7 * 7  # the last pointwise conv at 7x7
    names, sizes, costs = layer_arrays(resnet50(downsample=False))
    assert not any("downsample" in n for n in names)
    with_ds = layer_arrays(resnet50())
    assert len(with_ds[0]) == len(names) + 4  # one downsample conv per stage
    assert len(names) == 50  # 1 + 16 blocks x 3 + fc


@pytest.mark.parametrize("network", ["resnet20", "mobilenetv1"])
def test_network_shape_generation(network):
    weights, macs = KNOWN_TOTALS[network]
    p = generate_joint(shape=network, dist="kaiming", keep_nnz=0.5, keep_flops=0.4, seed=0)
    assert p.num_items == weights and p.total_flops == macs
    assert p.names == tuple(layer_arrays(NETWORKS[network]())[0])
    assert p.nnz_budget == weights // 2
    assert p.flop_budget == float(np.floor(0.4 * macs))
    assert_valid(p, 0.5, 0.4)
    q = generate_joint(shape=network, dist="kaiming", keep_nnz=0.5, keep_flops=0.4, seed=0)
    assert same(p, q)
    r = generate_joint(shape=network, dist="kaiming", keep_nnz=0.5, keep_flops=0.4, seed=1)
    assert not np.array_equal(p.scores, r.scores)
    np.testing.assert_array_equal(p.group_ptr, r.group_ptr)


def test_network_shape_ignores_items_and_layers():
    a = generate_joint(shape="resnet20", layers=3, items=10, dist="uniform", seed=4)
    b = generate_joint(shape="resnet20", layers=50, items=99999, dist="uniform", seed=4)
    assert same(a, b) and a.num_items == 268_336


@pytest.mark.parametrize("kwargs, field", [
    (dict(layers=0, items=5), "layers"),
    (dict(layers=4, items=3), "items"),
    (dict(dist="gaussian"), "dist"),
    (dict(shape="vgg16"), "shape"),
    (dict(keep_nnz=1.5), "keep_nnz"),
    (dict(keep_nnz=-0.1), "keep_nnz"),
    (dict(keep_flops=2.0), "keep_flops"),
])
def test_generate_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        generate_joint(**{"layers": 3, "items": 30, "seed": 0, **kwargs})


def test_shapes_and_distributions_are_listed():
    assert set(SHAPES) == {"random", "resnet20", "mobilenetv1", "resnet50"}
    assert set(DISTRIBUTIONS) == {"kaiming", "uniform", "lognormal", "exponential", "ties"}
