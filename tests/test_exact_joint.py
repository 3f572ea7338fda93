"""The ``exact`` solver (solvers/fast/joint/exact.py): every answer is a proof.

Checked against a strict brute force on tiny instances, against HiGHS at zero gap on generated
instances up to p = 3e4, under exact rescaling (ImageNet-sized MACs and budgets, tiny scores),
on degenerate budgets, ties and empty layers, with a time limit; and its two bounding pieces
(the node LP and the lattice bound on the slacks) against independent computations.
"""

from __future__ import annotations

import itertools
import math
import time
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from conftest import KNOWN_HARD, J, all_selections, tiny_joint_problems
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

import pruneopt
from pruneopt import JointBudgetProblem
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.solvers.fast.joint import exact as ej
from pruneopt.solvers.fast.joint.exact import solve_exact


def layer_counts(problem: JointBudgetProblem, m: np.ndarray) -> np.ndarray:
    """Selected items per layer, one row per selection (rows of the bool matrix m)."""
    layer = np.repeat(np.arange(problem.num_groups), problem.group_sizes)
    counts = np.zeros((m.shape[0], problem.num_groups), dtype=np.int64)
    for g in range(problem.num_groups):
        counts[:, g] = m[:, layer == g].sum(axis=1)
    return counts


def within_flop_budget(problem: JointBudgetProblem, counts: np.ndarray) -> np.ndarray:
    """The solver's FLOP rule in exact rational arithmetic: Σ_g counts_g·c_g ≤ F for integer
    costs; ≤ F·(1 + (L + 2)·2⁻⁵³) otherwise (F plus the rounding of a float sum of L terms)."""
    costs = [Fraction(float(c)) for c in problem.flop_cost]
    F = Fraction(problem.flop_budget)
    if any(c.denominator != 1 for c in costs):
        F *= Fraction(2**53 + problem.num_groups + 2, 2**53)
    # every denominator is a power of two: scale all to integers (Python ints, exact)
    den = max([c.denominator for c in costs] + [F.denominator])
    ints = np.array([c.numerator * (den // c.denominator) for c in costs] + [0], dtype=object)
    used = counts.astype(object) @ ints[:-1] if costs else np.zeros(len(counts), dtype=object)
    return np.array([u <= F * den for u in used], dtype=bool)


def brute_optimum(problem: JointBudgetProblem, rounded: bool = False) -> float:
    """max s·x over all 2^p selections meeting both budgets: by the solver's exact rule, or
    (``rounded``) by the float sum that ``problem.evaluate`` computes, with no tolerance."""
    m = all_selections(problem.num_items)
    counts = layer_counts(problem, m)
    if rounded:
        flops_ok = counts.astype(np.float64) @ problem.flop_cost <= problem.flop_budget
    else:
        flops_ok = within_flop_budget(problem, counts)
    ok = (m.sum(axis=1) <= problem.nnz_budget) & flops_ok
    return float(np.max(np.where(ok, m.astype(np.float64) @ problem.scores, -np.inf)))


def assert_proven(problem: JointBudgetProblem, r) -> None:
    assert r.solver == "exact" and r.backend == "numpy"
    assert r.status == "optimal" and r.proven_optimal, r.message
    assert r.x is not None and r.x.dtype == np.bool_ and r.x.shape == (problem.num_items,)
    assert r.feasible and int(r.x.sum()) <= problem.nnz_budget
    if problem.num_items <= 5000:
        assert within_flop_budget(problem, problem.group_counts(r.x)[None, :])[0]
    if np.all(problem.flop_cost == np.rint(problem.flop_cost)):
        assert problem.is_feasible(r.x, tol=0.0)  # integer MACs: exact in float too
    assert r.objective == problem.evaluate(r.x).objective
    assert r.gap <= 1e-9
    assert "time_limit" in r.options and "rel_gap" in r.options


def check_brute_force(problem: JointBudgetProblem):
    r = solve_exact(problem)
    assert_proven(problem, r)
    opt = brute_optimum(problem)
    tol = 1e-12 * max(1.0, float(np.sum(problem.scores)))
    assert abs(r.objective - opt) <= tol, (r.objective, opt, r.message)
    assert r.bound >= opt - tol
    # never worse than the optimum under the rounded float sum with no tolerance
    assert r.objective >= brute_optimum(problem, rounded=True) - tol
    return r


# ------------------------------------------------------------------------------ brute force
# Layers that share a cost merge into one class: draw costs from a small set so that they do.
@st.composite
def class_heavy_problems(draw) -> JointBudgetProblem:
    n_layers = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(0, 5), min_size=n_layers, max_size=n_layers)
                 .filter(lambda s: 1 <= sum(s) <= 14))
    p = sum(sizes)
    scores = draw(st.lists(st.sampled_from([0.0, 1.0, 1.0, 2.0, 3.0, 0.25, 5.5]) |
                           st.floats(1e-3, 10.0, allow_subnormal=False), min_size=p, max_size=p))
    costs = draw(st.lists(st.sampled_from([1, 2, 3, 4, 6]), min_size=n_layers,
                          max_size=n_layers))
    total = int(np.dot(sizes, costs))
    return J(scores, sizes, costs, draw(st.integers(0, p + 1)),
             float(draw(st.integers(0, total + 2))))


@settings(max_examples=250, deadline=None)
@given(problem=tiny_joint_problems())
def test_matches_brute_force(problem):
    check_brute_force(problem)


@settings(max_examples=250, deadline=None)
@given(problem=class_heavy_problems())
@example(problem=J([1.0, 1.0, 1.0, 1.0], [2, 2], [5.0, 5.0], 3, 100.0))
def test_matches_brute_force_with_merged_classes(problem):
    check_brute_force(problem)




@pytest.mark.parametrize("index", range(len(KNOWN_HARD)))
def test_known_hard_instances(index):
    check_brute_force(KNOWN_HARD[index])


@pytest.mark.parametrize("K, F", [(0, 1e6), (100, 0.0), (0, 0.0), (100, 1e6), (3, 1e6),
                                  (100, 7.0), (3, 7.0)])
def test_degenerate_and_single_binding_budgets(K, F):
    """Empty selection only (K = 0 or F = 0), everything fits, NNZ only, FLOPs only, both."""
    p = J([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0], [3, 2, 2], [4.0, 2.0, 1.0], K, F)
    r = check_brute_force(p)
    if K == 0 or F == 0:
        assert not r.x.any() and r.bound == 0.0
    if (K, F) == (100, 1e6):
        assert r.objective == 21.0 and r.bound == pytest.approx(21.0, rel=1e-12)


@pytest.mark.parametrize("ptr, costs", [([0], []), ([0, 0], [3.0]), ([0, 0, 0], [1.0, 2.0])])
def test_problem_without_items(ptr, costs):
    p = JointBudgetProblem(np.zeros(0), np.array(ptr), np.array(costs, dtype=float), 4, 10.0)
    r = solve_exact(p)
    assert r.status == "optimal" and r.objective == 0.0 and r.bound == 0.0
    assert r.x.shape == (0,)


def test_ties_are_broken_by_item_index_within_a_class():
    # two layers of equal cost form one class; equal scores: the first items by index are kept
    p = J([1.0, 2.0, 1.0, 1.0, 2.0, 1.0], [3, 3], [5.0, 5.0], 4, 1e9)
    r = solve_exact(p)
    assert_proven(p, r)
    np.testing.assert_array_equal(r.x, [True, True, True, False, True, False])
    assert r.info["classes"] == 1


# ------------------------------------------------------------------------------ against HiGHS
REGIMES = {"nnz-only": (0.3, 1.0), "flops-only": (1.0, 0.3), "both": (0.45, 0.3),
           "neither": (1.0, 1.0), "tight": (0.05, 0.03)}
HIGHS_CASES = [
    ("kaiming", 1000, "both"), ("lognormal", 1000, "flops-only"), ("ties", 1000, "nnz-only"),
    ("uniform", 1000, "neither"), ("exponential", 1000, "tight"),
    ("kaiming", 10_000, "flops-only"), ("ties", 10_000, "both"), ("lognormal", 10_000, "tight"),
    ("uniform", 30_000, "both"), ("kaiming", 30_000, "nnz-only"),
]


def assert_same_as_highs(problem: JointBudgetProblem):
    r = solve_exact(problem)
    assert_proven(problem, r)
    h = pruneopt.solve(problem, "highs")
    assert h.status == "optimal", h.message
    top = max(abs(r.objective), abs(h.objective), 1e-300)
    assert abs(r.objective - h.objective) <= 1e-9 * top, (r.objective, h.objective)
    # each proven bound bounds the other's feasible objective
    assert r.bound >= h.objective - 1e-9 * top
    assert h.bound >= r.objective - 1e-9 * top
    return r


@pytest.mark.parametrize("dist, items, regime", HIGHS_CASES,
                         ids=[f"{d}-{n}-{g}" for d, n, g in HIGHS_CASES])
def test_same_optimum_as_highs(dist, items, regime):
    keep_nnz, keep_flops = REGIMES[regime]
    problem = generate_joint(layers=12, items=items, dist=dist, keep_nnz=keep_nnz,
                             keep_flops=keep_flops, seed=items % 7 + len(regime))
    assert_same_as_highs(problem)


@pytest.mark.parametrize("seed", range(4))
def test_same_optimum_as_highs_with_many_cost_classes(seed):
    """Random integer MAC costs shared by several layers (up to 9 classes)."""
    rng = np.random.default_rng(seed)
    L = 24
    sizes = rng.integers(1, 200, L)
    costs = rng.choice([1, 2, 3, 6, 49, 196, 784, 3136, 12544], L).astype(float)
    scores = rng.standard_normal(int(sizes.sum())) ** 2
    if seed % 2:
        scores[rng.random(scores.size) < 0.3] = 0.0
        scores = np.round(scores, 1)  # ties
    p = J(scores, sizes, costs, int(0.4 * sizes.sum()), float(np.floor(0.3 * sizes @ costs)))
    assert_same_as_highs(p)


# ------------------------------------------------------------------------------ numerics
def imagenet_like(seed: int, p: int, layers: int = 16) -> JointBudgetProblem:
    """MACs per weight 1e4..1e7 (integers), FLOP budgets ~1e9+, scores ~1e-8."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum(1, (rng.dirichlet(np.ones(layers)) * p).astype(np.int64))
    macs = np.round(np.exp(rng.uniform(np.log(1e4), np.log(1e7), 6)))
    costs = rng.choice(macs, layers)
    scores = 1e-8 * np.exp(rng.normal(0.0, 1.5, int(sizes.sum())))
    K = int(0.45 * sizes.sum())
    F = float(np.floor(0.35 * float(sizes @ costs)))
    return J(scores, sizes, costs, K, F)


@pytest.mark.parametrize("seed", range(3))
def test_imagenet_magnitudes_against_highs(seed):
    p = imagenet_like(seed, 20_000)
    assert p.flop_budget > 1e9
    assert_same_as_highs(p)


@pytest.mark.parametrize("seed", range(2))
def test_imagenet_magnitudes_are_scale_invariant(seed):
    """Scaling scores or MAC costs by a power of two changes no decision (exact in float)."""
    p = imagenet_like(seed, 20_000)
    r = solve_exact(p)
    assert_proven(p, r)
    up = J(p.scores * 2.0**30, np.diff(p.group_ptr), p.flop_cost, p.nnz_budget, p.flop_budget)
    r_up = solve_exact(up)
    assert_proven(up, r_up)
    np.testing.assert_array_equal(r.x, r_up.x)
    assert r_up.objective == r.objective * 2.0**30
    cheap = J(p.scores, np.diff(p.group_ptr), p.flop_cost / 2.0**4, p.nnz_budget,
              p.flop_budget / 2.0**4)
    np.testing.assert_array_equal(solve_exact(cheap).x, r.x)
    # a decimal rescaling of the scores to order one gives the same optimum
    r_one = solve_exact(J(p.scores * 1e8, np.diff(p.group_ptr), p.flop_cost, p.nnz_budget,
                          p.flop_budget))
    assert r_one.objective == pytest.approx(r.objective * 1e8, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_imagenet_magnitudes_brute_force(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 5, int(rng.integers(1, 5)))
    if sizes.sum() == 0 or sizes.sum() > 13:
        sizes = np.array([3, 4])
    costs = np.round(np.exp(rng.uniform(np.log(1e4), np.log(1e7), sizes.size)))
    scores = 1e-8 * np.exp(rng.normal(0.0, 1.0, int(sizes.sum())))
    F = float(np.floor(rng.uniform(0.1, 0.9) * float(sizes @ costs)))
    check_brute_force(J(scores, sizes, costs, int(rng.integers(0, sizes.sum() + 1)), F))


# ------------------------------------------------------------------------------ at scale
@pytest.mark.parametrize("keep_flops, keep_nnz", [(0.2, 0.25), (0.4, 0.48), (0.6, 0.68)])
def test_resnet20_shape_is_proven(keep_flops, keep_nnz):
    """268k weights, 4 MAC classes: proven, and consistent with FALCON's LP bound."""
    p = generate_joint(shape="resnet20", dist="kaiming", keep_flops=keep_flops,
                       keep_nnz=keep_nnz, seed=1)
    r = solve_exact(p)
    assert_proven(p, r)
    assert r.gap <= 1e-12
    f = pruneopt.solve(p, "falcon")
    assert r.objective >= f.objective
    assert r.bound <= f.bound * (1 + 1e-12)
    assert r.info["classes"] == 4


def test_peak_memory_is_within_three_copies_of_the_scores():
    p = generate_joint(layers=30, items=1_000_000, dist="kaiming", keep_flops=0.4,
                       keep_nnz=0.48, seed=3)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        r = solve_exact(p)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert r.proven_optimal, r.message
    assert peak <= 3.0 * p.scores.nbytes, peak / p.scores.nbytes


# ------------------------------------------------------------------------------ time limit
def hard_many_classes(p: int = 100_000, L: int = 50, seed: int = 0) -> JointBudgetProblem:
    """50 distinct random MAC costs: the proof needs a long branch and bound."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum(1, (rng.dirichlet(np.ones(L)) * p).astype(np.int64))
    scores = rng.standard_normal(int(sizes.sum())) ** 2
    costs = rng.integers(1, 100_000, L).astype(float)
    return J(scores, sizes, costs, int(0.5 * sizes.sum()), float(np.floor(0.4 * sizes @ costs)))


@pytest.mark.parametrize("limit", [1e-6, 0.2])
def test_time_limit_returns_a_certified_feasible_selection(limit):
    p = hard_many_classes()
    start = time.perf_counter()
    r = solve_exact(p, time_limit=limit)
    assert time.perf_counter() - start < limit + 5.0
    assert r.status in ("time_limit", "optimal"), r.message
    assert r.feasible and p.is_feasible(r.x, tol=0.0)  # integer MAC costs
    assert r.bound >= r.objective * (1 - 1e-12)
    assert r.options["time_limit"] == limit
    # the certified bound is no weaker than the LP dual (FALCON's bound)
    assert r.bound <= pruneopt.solve(p, "falcon").bound * (1 + 1e-12)


def test_rel_gap_option():
    p = generate_joint(layers=10, items=5000, dist="kaiming", keep_flops=0.3, keep_nnz=0.4,
                       seed=5)
    r = solve_exact(p, rel_gap=1e-10)
    assert r.proven_optimal and r.gap <= 1e-10 + 1e-13
    assert r.options["rel_gap"] == 1e-10
    with pytest.raises(ValueError, match="rel_gap"):
        solve_exact(p, rel_gap=-1.0)


def test_registered_as_exact_solver():
    p = J([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0], [3, 2, 2], [4.0, 2.0, 1.0], 4, 10.0)
    if "exact" not in pruneopt.available_solvers(p):
        pytest.skip("the 'exact' solver is not registered")
    r = pruneopt.solve(p, "exact", time_limit=10.0, rel_gap=0.0)
    assert r.solver == "exact" and r.status == "optimal" and r.objective == 17.0
    assert r.seconds >= 0.0


# ------------------------------------------------------------------------------ the pieces
@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_node_lp_equals_the_lp_relaxation(seed):
    """The B&B's node bound is the LP optimum of the free items (scipy's HiGHS LP)."""
    rng = np.random.default_rng(seed)
    Dc = int(rng.integers(1, 5))
    widths = rng.integers(1, 8, Dc)
    costs = rng.choice([1.0, 2.0, 3.0, 5.0, 7.5], Dc, replace=False)
    v = np.concatenate([np.sort(rng.choice([0.5, 1.0, 2.0], w) if rng.random() < 0.3
                                else rng.random(w) * 10)[::-1] for w in widths])
    cls = np.repeat(np.arange(Dc), widths)
    c = costs[cls]
    K_r = int(rng.integers(0, v.size + 1))
    F_r = float(rng.integers(0, int(c.sum()) + 2))
    hints = tuple(float(h) for h in rng.random(int(rng.integers(0, 3))))
    lp = ej._node_lp(v, c, cls, costs, K_r, F_r, hints, 1e-15)
    res = linprog(-v, A_ub=np.vstack([np.ones(v.size), c]), b_ub=[K_r, F_r], bounds=(0, 1),
                  method="highs")
    exact_lp = float(-res.fun)
    assert lp.bound >= exact_lp - 1e-9
    assert lp.bound <= exact_lp + 1e-9 * max(1.0, exact_lp)
    # the budget-feasible side of the LP solution meets both budgets
    assert lp.counts_lo.sum() <= K_r and lp.counts_lo @ costs <= F_r


@settings(max_examples=150, deadline=None)
@given(costs=st.lists(st.integers(1, 40), min_size=1, max_size=3, unique=True),
       widths=st.lists(st.integers(0, 6), min_size=3, max_size=3),
       K=st.integers(0, 12), F=st.integers(0, 150) | st.floats(0.0, 150.0),
       lam=st.floats(0.0, 3.0), omega=st.floats(0.0, 3.0))
def test_lattice_bound_is_a_lower_bound_on_the_slack_cost(costs, widths, K, F, lam, omega):
    """min over integer counts meeting both budgets of λ·sF + ω·sK, by enumeration."""
    widths = widths[:len(costs)]
    best = math.inf
    for tau in itertools.product(*[range(w + 1) for w in widths]):
        sK = K - sum(tau)
        sF = F - sum(c * t for c, t in zip(costs, tau))
        if sK >= 0 and sF >= 0:
            best = min(best, lam * sF + omega * sK)
    if best == math.inf:
        return
    B = math.floor(F)
    bound = ej.lattice_slack_bound(list(costs), K, B, F - B, lam, omega,
                                   widths[0] if len(costs) == 1 else None)
    assert bound <= best + 1e-12 * max(1.0, best)


def test_lattice_bound_sees_the_resnet_residue():
    # costs 1, 49, 196: all differences are multiples of 3, so with the NNZ budget met exactly
    # the FLOP slack is ≡ F − K (mod 3)
    K = 10
    for F, residue in [(K + 999, 0), (K + 1000, 1), (K + 1001, 2)]:
        bound = ej.lattice_slack_bound([1, 49, 196], K, F, 0.0, 1.0, 100.0)
        assert bound == pytest.approx(residue, rel=1e-12, abs=0.0)
    # with NNZ slack cheap, one unit of it absorbs the residue: sK = 1 gives sF ≡ 0
    assert ej.lattice_slack_bound([1, 49, 196], K, K + 1001, 0.0, 1.0, 0.5) == \
        pytest.approx(0.5, rel=1e-12)
