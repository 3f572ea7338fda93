"""The numpy side of FALCON: backsolve, the discrete first-order method, the baselines, the bound.

Everything is compared with dense linear algebra or with brute force over all supports.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pruneopt.solvers import solve
from pruneopt.solvers.fast.joint_qp.backsolve import (
    hessian_norm,
    quadratic_gradient,
    quadratic_objective,
    restricted_ridge,
)
from pruneopt.solvers.fast.joint_qp.baselines import (
    chita_qp,
    flop_repair,
    magnitude_qp,
    woodfisher_qp,
)
from pruneopt.solvers.fast.joint_qp.falcon import (
    falcon_qp,
    projection_problem,
    separable_lower_bound,
)


def dense_hessian(X, ridge, block_ptr):
    p = X.shape[1]
    H = np.zeros((p, p))
    bounds = [(0, p)] if block_ptr is None else list(zip(block_ptr[:-1], block_ptr[1:]))
    for a, b in bounds:
        H[a:b, a:b] = X[:, a:b].T @ X[:, a:b]
    return H + ridge * np.eye(p)


def instance(seed, n, sizes, costs, keep_nnz=0.5, keep_flops=0.4, blocks=False, linear=True):
    rng = np.random.default_rng(seed)
    p = int(sum(sizes))
    ptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    cost = np.asarray(costs, dtype=float)
    block_ptr = None
    if blocks:
        cuts = sorted(set(rng.integers(1, p, size=2).tolist()) | {0, p}) if p > 1 else [0, p]
        block_ptr = np.array(cuts, dtype=np.int64)
    return SimpleNamespace(
        X=rng.normal(size=(n, p)), w_bar=rng.normal(size=p), ridge=float(rng.uniform(0.05, 2)),
        linear=rng.normal(size=p) * 0.3 if linear else np.zeros(p), group_ptr=ptr,
        flop_cost=cost, nnz_budget=int(keep_nnz * p),
        flop_budget=keep_flops * float(np.diff(ptr) @ cost), block_ptr=block_ptr)


def Q(P, w):
    return quadratic_objective(P.X, P.w_bar, P.ridge, P.linear, w, P.block_ptr)


def brute_force(P):
    p = P.w_bar.size
    cost = np.repeat(P.flop_cost, np.diff(P.group_ptr))
    masks = ((np.arange(2**p)[:, None] >> np.arange(p)) & 1).astype(bool)
    ok = (masks.sum(1) <= P.nnz_budget) & (masks @ cost <= P.flop_budget * (1 + 1e-12))
    best, arg = np.inf, None
    for z in masks[ok]:
        w = restricted_ridge(P.X, P.w_bar, P.ridge, P.linear, z, P.block_ptr)
        q = Q(P, w)
        if q < best:
            best, arg = q, w
    return best, arg


def feasible(P, w):
    cost = np.repeat(P.flop_cost, np.diff(P.group_ptr))
    nz = w != 0
    return nz.sum() <= P.nnz_budget and cost[nz].sum() <= P.flop_budget * (1 + 1e-12)


# ------------------------------------------------------------------------------ backsolve
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 9), p=st.integers(1, 14),
       blocks=st.booleans())
def test_backsolve_matches_dense_solve(seed, n, p, blocks):
    P = instance(seed, n, [p], [1.0], blocks=blocks)
    rng = np.random.default_rng(seed + 1)
    z = rng.random(p) < 0.6
    w = restricted_ridge(P.X, P.w_bar, P.ridge, P.linear, z, P.block_ptr)
    H = dense_hessian(P.X, P.ridge, P.block_ptr)
    d = np.where(z, 0.0, -P.w_bar)
    S, C = np.flatnonzero(z), np.flatnonzero(~z)
    if S.size:
        d[S] = np.linalg.solve(H[np.ix_(S, S)], -(H[np.ix_(S, C)] @ d[C] + P.linear[S]))
    np.testing.assert_allclose(w, P.w_bar + d, rtol=1e-9, atol=1e-10)
    assert np.all(w[~z] == 0)
    expected = 0.5 * d @ H @ d + P.linear @ d
    assert Q(P, w) == pytest.approx(expected, rel=1e-9, abs=1e-10)
    np.testing.assert_allclose(quadratic_gradient(P.X, P.w_bar, P.ridge, P.linear, w,
                                                  P.block_ptr), H @ d + P.linear, atol=1e-9)
    assert hessian_norm(P.X, P.ridge, P.block_ptr) == pytest.approx(
        np.linalg.eigvalsh(H).max(), rel=1e-9)


def test_backsolve_woodbury_and_cholesky_agree():
    # |S| > n takes the Woodbury branch, |S| <= n the Cholesky one: the same minimiser.
    P = instance(3, 4, [12], [1.0])
    z = np.ones(12, dtype=bool)
    z[[0, 5]] = False
    wide = restricted_ridge(P.X, P.w_bar, P.ridge, P.linear, z)
    tall = restricted_ridge(np.vstack([P.X, np.zeros((20, 12))]), P.w_bar, P.ridge, P.linear, z)
    np.testing.assert_allclose(wide, tall, rtol=1e-10, atol=1e-12)


def test_backsolve_rejects_bad_input():
    P = instance(0, 3, [5], [1.0])
    with pytest.raises(ValueError, match="support"):
        restricted_ridge(P.X, P.w_bar, P.ridge, P.linear, np.ones(4, bool))
    with pytest.raises(ValueError, match="ridge"):
        restricted_ridge(P.X, P.w_bar, 0.0, P.linear, np.ones(5, bool))


# ------------------------------------------------------------------------------ falcon
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 8), blocks=st.booleans(),
       linear=st.booleans(), keep=st.sampled_from([(0.5, 0.4), (0.3, 0.6), (0.7, 0.3)]))
def test_falcon_is_feasible_descends_and_is_bounded(seed, n, blocks, linear, keep):
    P = instance(seed, n, [4, 3, 4], [4.0, 2.0, 1.0], keep_nnz=keep[0], keep_flops=keep[1],
                 blocks=blocks, linear=linear)
    run = falcon_qp(P)
    assert feasible(P, run.w)
    assert run.objective == pytest.approx(Q(P, run.w), rel=1e-12, abs=1e-12)
    assert all(b < a for a, b in zip(run.objectives, run.objectives[1:]))  # strict descent
    # It starts from the ILP on w̄² + backsolve (FALCON's "BS"): never worse than that.
    z0 = solve(projection_problem(P, P.w_bar ** 2), "falcon").x
    start = Q(P, restricted_ridge(P.X, P.w_bar, P.ridge, P.linear, z0, P.block_ptr))
    assert run.objectives[0] == pytest.approx(start, rel=1e-12, abs=1e-12)
    assert run.objective <= start
    best, _ = brute_force(P)
    assert run.objective >= best - 1e-9 * max(1, abs(best))
    assert separable_lower_bound(P) <= best + 1e-9 * max(1, abs(best))


def test_falcon_is_optimal_when_the_hessian_is_a_multiple_of_identity():
    # H = (c² + λ)I: Q separates with equal curvature, so the best support is the joint ILP on
    # w̄² (the exact projection), which is FALCON's start; it must then be the optimum.
    rng = np.random.default_rng(5)
    p = 10
    P = SimpleNamespace(X=1.7 * np.eye(p), w_bar=rng.normal(size=p), ridge=0.3,
                        linear=np.zeros(p), group_ptr=np.array([0, 5, 10]),
                        flop_cost=np.array([2.0, 1.0]), nnz_budget=5, flop_budget=8.0,
                        block_ptr=None)
    best, _ = brute_force(P)
    run = falcon_qp(P, projection="exact")
    assert run.objective == pytest.approx(best, rel=1e-12)


def test_separable_bound_is_tight_without_a_fisher_term():
    # X = 0: Q is exactly the separable function the bound minimises (up to the LP's rounding,
    # zero here because the LP optimum of this instance is integral: unit costs, K binding).
    rng = np.random.default_rng(8)
    p = 9
    P = SimpleNamespace(X=np.zeros((1, p)), w_bar=rng.normal(size=p), ridge=0.7,
                        linear=rng.normal(size=p), group_ptr=np.array([0, 9]),
                        flop_cost=np.array([1.0]), nnz_budget=4, flop_budget=9.0,
                        block_ptr=None)
    best, _ = brute_force(P)
    assert separable_lower_bound(P) == pytest.approx(best, rel=1e-12, abs=1e-12)


def test_falcon_time_limit_returns_a_feasible_point():
    P = instance(11, 6, [6, 6], [3.0, 1.0])
    run = falcon_qp(P, time_limit=1e-9)
    assert run.stopped == "time_limit" and feasible(P, run.w)


# ------------------------------------------------------------------------------ baselines
def test_magnitude_keeps_dense_values_on_its_support():
    P = instance(2, 4, [5, 5], [3.0, 1.0])
    w, info = magnitude_qp(P)
    assert feasible(P, w)
    nz = w != 0
    np.testing.assert_array_equal(w[nz], P.w_bar[nz])
    assert info["objective"] == pytest.approx(Q(P, w))


def test_flop_repair_keeps_the_longest_prefix_by_weight_per_mac():
    P = SimpleNamespace(group_ptr=np.array([0, 2, 4]), flop_cost=np.array([10.0, 1.0]),
                        nnz_budget=4, flop_budget=12.0)
    w = np.array([3.0, 0.5, 2.0, 1.0])  # |w|/c = 0.3, 0.05, 2, 1
    z = flop_repair(P, w)
    # order: item 2 (cost 1), item 3 (1), item 0 (10) -> 12 MACs; item 1 does not fit.
    np.testing.assert_array_equal(z, [True, False, True, True])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_chita_meets_both_budgets(seed):
    P = instance(seed, 5, [5, 4], [5.0, 1.0], keep_nnz=0.6, keep_flops=0.3)
    w, info = chita_qp(P)
    assert feasible(P, w)
    assert info["objective"] == pytest.approx(Q(P, w), rel=1e-12, abs=1e-12)


def test_woodfisher_matches_explicit_inverse():
    P = instance(7, 5, [6, 6], [2.0, 1.0], keep_nnz=0.5, keep_flops=0.5, linear=False)
    P.block_ptr = np.array([0, 4, 12])
    w, _ = woodfisher_qp(P)
    Hinv = np.linalg.inv(dense_hessian(P.X, P.ridge, P.block_ptr))
    z = w != 0
    pruned = ~z
    rho = P.w_bar ** 2 / (2 * np.diag(Hinv))
    # Selection: the joint ILP on rho, solved exactly here by brute force.
    cost = np.repeat(P.flop_cost, np.diff(P.group_ptr))
    masks = ((np.arange(2**12)[:, None] >> np.arange(12)) & 1).astype(bool)
    ok = (masks.sum(1) <= P.nnz_budget) & (masks @ cost <= P.flop_budget)
    assert rho[z].sum() == pytest.approx((masks[ok] @ rho).max(), rel=1e-6)
    v = np.where(pruned, P.w_bar / np.diag(Hinv), 0.0)
    expected = P.w_bar - Hinv @ v
    expected[pruned] = 0.0
    np.testing.assert_allclose(w, expected, rtol=1e-8, atol=1e-10)
