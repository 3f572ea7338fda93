"""Gap measures of the structured pruners (models/method_gaps.py, models/mask_enumeration.py)
against brute force on tiny networks, and a planted suboptimal threshold that G0 must detect."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pruneopt.models.channels import build_channel_graph
from pruneopt.models.mask_enumeration import best_prefix_mask, masked_losses, prefix_masks
from pruneopt.models.method_gaps import (
    all_cuts,
    global_tolerance_gap,
    method_gaps,
    threshold_search_gap,
    true_loss_gap,
    value_gap,
)
from pruneopt.models.shrink import mask_channels
from pruneopt.models.structured_decision import StructuredDecision
from pruneopt.models.zoo import build_model


def _toy_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(6, 5)), ("r1", nn.ReLU()),
        ("fc2", nn.Linear(5, 4)), ("r2", nn.ReLU()), ("fc3", nn.Linear(4, 3))])).eval()


def _toy_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(4)),
        ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(4, 5, 3, padding=1, bias=False)),
        ("bn2", nn.BatchNorm2d(5)), ("relu2", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(5, 3))]))
    with torch.no_grad():  # non-trivial BN statistics, so that masking matters everywhere
        for bn in (m.bn1, m.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return m.eval()


def _data(shape, n=40, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(0, classes, (n,), generator=g)


def _decision(model, example, method, keep=None, scores=None, order=None, **kw):
    graph = build_channel_graph(model, example)
    rng = np.random.default_rng(1)
    N = graph.num_channels
    scores = rng.random(N) if scores is None else scores
    order = scores if order is None else order
    keep = np.ones(N, bool) if keep is None else keep
    return StructuredDecision(method, model, graph, keep, scores, order, **kw)


# ------------------------------------------------------------------ batched masked evaluation
def test_masked_losses_equal_masked_models():
    model = _toy_cnn()
    X, y = _data((1, 6, 6))
    graph = build_channel_graph(model, X[:1])
    rng = np.random.default_rng(0)
    masks = rng.random((7, graph.num_channels)) < 0.6
    fixed = np.repeat(graph.fixed, graph.sizes)
    masks[:, fixed] = True
    for g in range(graph.num_groups):  # every group keeps a channel (shrinkable masks)
        masks[:, graph.channel_ptr[g]] = True
    ce, acc = masked_losses(model, graph, masks, X, y, rows_per_pass=100)  # several passes
    for j in range(masks.shape[0]):
        m = mask_channels(model, graph, masks[j])
        with torch.no_grad():
            logits = m(X)
        ref = nn.functional.cross_entropy(logits.double(), y).item()
        assert ce[j] == pytest.approx(ref, rel=1e-5)
        assert acc[j] == pytest.approx((logits.argmax(1) == y).double().mean().item())


def test_prefix_masks_keep_best_ranked():
    model = _toy_mlp()
    graph = build_channel_graph(model, torch.zeros(1, 6))
    order = np.random.default_rng(3).random(graph.num_channels)
    counts = np.array([[2, 3, 3], [5, 1, 3]])
    masks = prefix_masks(graph, order, counts)
    for row, k in zip(masks, counts):
        assert np.array_equal(graph.counts(row), k)
        for g, part in enumerate(graph.split(order)):
            kept = graph.split(row)[g]
            if kept.any() and (~kept).any():
                assert part[kept].min() >= part[~kept].max()


def test_best_prefix_mask_is_the_brute_force_minimum():
    model = _toy_mlp(2)
    X, y = _data((6,), n=30, seed=2)
    graph = build_channel_graph(model, X[:1])
    order = np.random.default_rng(5).random(graph.num_channels)
    budget = 0.6 * graph.dense_macs
    best = best_prefix_mask(model, graph, order, budget, X, y)
    ref_ce, ref_k = np.inf, None
    for k1, k2 in itertools.product(range(1, 6), range(1, 5)):
        k = np.array([k1, k2, 3])
        if graph.macs_of_counts(k) > budget:
            continue
        m = mask_channels(model, graph, prefix_masks(graph, order, k[None])[0])
        with torch.no_grad():
            ce = nn.functional.cross_entropy(m(X).double(), y).item()
        if ce < ref_ce:
            ref_ce, ref_k = ce, k
    assert best["ce"] == pytest.approx(ref_ce, rel=1e-5)
    assert best["macs"] <= budget
    assert graph.macs_of_counts(best["counts"]) == graph.macs_of_counts(ref_k) or \
        best["ce"] == pytest.approx(ref_ce, rel=1e-5)


def test_enumeration_cap_is_reported():
    model = _toy_mlp()
    X, y = _data((6,))
    d = _decision(model, X[:1], "fair")
    with pytest.raises(ValueError, match="enumeration: 20 prefix-count"):
        true_loss_gap(d, X, y, max_combinations=10)


# ------------------------------------------------------------------ G0 threshold search
def test_all_cuts_macs_and_values_by_brute_force():
    model = _toy_cnn()
    graph = build_channel_graph(model, torch.zeros(1, 1, 6, 6))
    lam = np.random.default_rng(7).random(graph.num_channels)
    macs, values, thr = all_cuts(graph, lam)
    prunable = np.repeat(~graph.fixed, graph.sizes)
    for j in range(macs.size):
        keep = (lam > thr[j]) | ~prunable
        for g in np.flatnonzero(~graph.fixed):  # an empty layer keeps its argmax
            a, b = graph.channel_ptr[g], graph.channel_ptr[g + 1]
            if not keep[a:b].any():
                keep[a + np.argmax(lam[a:b])] = True
        assert macs[j] == graph.macs_of_counts(graph.counts(keep))
        assert values[j] == pytest.approx(lam[keep & prunable].sum())


def test_planted_suboptimal_threshold_is_detected():
    """A bisection that stopped early (threshold too high) keeps less than it could: G0 > 0."""
    model = _toy_cnn()
    graph = build_channel_graph(model, torch.zeros(1, 1, 6, 6))
    lam = np.random.default_rng(11).random(graph.num_channels)
    macs, values, thr = all_cuts(graph, lam)
    T = float(macs[6])  # the cut keeping the 6 best channels fits exactly
    prunable = np.repeat(~graph.fixed, graph.sizes)

    def mask_at(t):
        keep = (lam > t) | ~prunable
        for g in np.flatnonzero(~graph.fixed):
            a, b = graph.channel_ptr[g], graph.channel_ptr[g + 1]
            if not keep[a:b].any():
                keep[a + np.argmax(lam[a:b])] = True
        return keep

    good = StructuredDecision("autobot", model, graph, mask_at(thr[6]), lam, lam, target_macs=T,
                              arrays={"lambda": lam})
    row = threshold_search_gap(good)
    assert row["gap"] == pytest.approx(0.0, abs=1e-12) and row["feasibility"] <= 1.0
    bad = StructuredDecision("autobot", model, graph, mask_at(thr[3]), lam, lam, target_macs=T,
                             arrays={"lambda": lam})
    row = threshold_search_gap(bad)
    assert row["gap"] > 0.05
    assert row["exact_value"] == pytest.approx(values[6])
    assert row["method_value"] == pytest.approx(values[3])


# ------------------------------------------------------------------ G1 value gap
def _top_k_value(scores_g, k):
    return np.sort(scores_g)[::-1][:k].sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_gap_matches_brute_force_over_counts(seed):
    model = build_model("digits-cnn", seed=0).eval()
    graph = build_channel_graph(model, torch.zeros(1, 1, 8, 8))
    rng = np.random.default_rng(seed)
    s = rng.random(graph.num_channels)
    keep = rng.random(graph.num_channels) < 0.5
    keep[np.repeat(graph.fixed, graph.sizes)] = True
    for g in range(graph.num_groups):
        keep[graph.channel_ptr[g]] = True
    d = StructuredDecision("autobot", model, graph, keep, s, s)
    row = value_gap(d)
    budget = d.achieved_macs
    parts = graph.split(s)
    n = graph.sizes
    grid = np.array(list(itertools.product(*(range(1, n[g] + 1) for g in range(3)))))
    k = np.column_stack([grid, np.full(len(grid), n[3])]).astype(float)
    macs = graph.const + k @ graph.linear_coef + (
        k[:, graph.edges[:, 0]] * k[:, graph.edges[:, 1]]) @ graph.edge_coef.astype(float)
    tops = [np.concatenate(([0.0], np.cumsum(np.sort(p)[::-1]))) for p in parts[:3]]
    vals = sum(tops[g][grid[:, g]] for g in range(3))
    best = vals[macs <= budget].max()
    assert row["measure"] == "G1" and row["proven_optimal"]
    assert row["exact_value"] == pytest.approx(best, rel=1e-9)
    mine = s[keep & np.repeat(~graph.fixed, n)].sum()
    assert row["method_value"] == pytest.approx(mine)
    assert row["gap"] == pytest.approx((best - mine) / best, rel=1e-9, abs=1e-12)
    assert row["gap"] >= -1e-12


# ------------------------------------------------------------------ F4 global tolerance
def test_global_tolerance_gap_matches_brute_force():
    model = _toy_cnn()
    graph = build_channel_graph(model, torch.zeros(1, 1, 6, 6))
    rng = np.random.default_rng(4)
    alpha = 0.3
    overlap = []
    depths = []
    for g in range(graph.num_groups):
        if graph.fixed[g]:
            overlap.append(None)
            depths.append(0)
            continue
        kmax = int(np.floor(0.99 * graph.sizes[g]))
        o = np.concatenate(([0], np.cumsum(rng.random(kmax) < 0.5)))
        overlap.append(o)
        ok = [k for k in range(1, kmax + 1) if o[k] / k <= alpha]
        depths.append(max(ok) if ok else 0)
    keep = np.ones(graph.num_channels, bool)
    for g, dep in enumerate(depths):
        keep[graph.channel_ptr[g]:graph.channel_ptr[g] + dep] = False
    d = StructuredDecision("fair", model, graph, keep, rng.random(graph.num_channels),
                           rng.random(graph.num_channels), info={"tolerance": alpha},
                           arrays={"overlap": overlap})
    row = global_tolerance_gap(d)
    groups = [g for g in range(graph.num_groups) if overlap[g] is not None]
    best = max(sum(ks) for ks in itertools.product(*(range(len(overlap[g])) for g in groups))
               if sum(overlap[g][k] - alpha * k for g, k in zip(groups, ks)) <= 1e-12)
    assert row["exact_value"] == best
    assert row["method_value"] == sum(depths)
    assert row["gap"] >= 0


# ------------------------------------------------------------------ everything together
def test_method_gaps_rows_have_the_contract_keys():
    model = _toy_mlp(1)
    X, y = _data((6,), n=25, seed=1)
    graph = build_channel_graph(model, X[:1])
    lam = np.random.default_rng(2).random(graph.num_channels)
    macs, _, thr = all_cuts(graph, lam)
    keep = (lam > thr[5]) | np.repeat(graph.fixed, graph.sizes)
    d = StructuredDecision("autobot", model, graph, keep, lam, lam, target_macs=float(macs[5]),
                           arrays={"lambda": lam})
    rows = method_gaps(d, X, y)
    assert [r["measure"] for r in rows] == ["G0", "G1", "G2"]
    for r in rows:
        assert {"measure", "method_value", "exact_value", "gap"} <= set(r)
        assert np.isfinite(r["gap"]) and r["gap"] >= -1e-9
