"""Every solver against the brute-force optimum on tiny instances, and FALCON's bound against an
independent LP relaxation (scipy's linprog)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KNOWN_HARD, J, brute_force, rel_close, scale_of, tiny_joint_problems
from hypothesis import example, given
from scipy.optimize import linprog

import pruneopt
from pruneopt import JointBudgetProblem
from pruneopt.formulations.joint.generate import DISTRIBUTIONS, generate_joint
from pruneopt.solvers.registry import solver_specs

# what the registry must hold, in this order (the solvers tested below come from the registry)
REGISTERED = ["pyomo-highs", "highs", "cpsat", "pyomo-scip", "falcon", "exact", "magnitude",
              "ratio"]
SPECS = [s for s in solver_specs("joint") if s.available()]
ALL_SOLVERS = [s.name for s in SPECS]
EXACT = [s.name for s in SPECS if s.exact]

# (solver, options) pairs: every solver with its defaults; highs also without its reduced-cost
# fixing and with the per-item core model
RUNS = [(name, {}) for name in ALL_SOLVERS] + [
    ("highs", {"fixing": False}), ("highs", {"model": "items"}),
    ("highs", {"fixing": False, "model": "items"})]
RUN_IDS = [name + "".join(f"-{k}={v}" for k, v in opts.items()) for name, opts in RUNS]


def test_available_solvers_are_all_registered_and_installed():
    p = J([1.0], [1], [1.0], 1, 1.0)
    assert pruneopt.available_solvers(p) == REGISTERED
    assert pruneopt.available_solvers("joint") == REGISTERED


def check_against_brute_force(problem: JointBudgetProblem, name: str, options: dict):
    bf = brute_force(problem)
    tol = 1e-9 * scale_of(problem)
    r = pruneopt.solve(problem, name, **options)
    assert r.solver == name
    assert r.x is not None, r.message
    assert r.x.dtype == np.bool_ and r.x.shape == (problem.num_items,)
    assert problem.is_feasible(r.x), r.message
    assert r.feasible is True and r.status != "error", r.message
    ev = problem.evaluate(r.x)
    assert r.objective == ev.objective
    assert r.usage == ev.usage
    assert r.bound >= bf.optimum - tol, (r.bound, bf.optimum, r.message)
    assert r.objective <= bf.optimum + tol
    assert r.proven_optimal == (r.status == "optimal")
    if name in EXACT:
        assert r.status == "optimal", r.message
        assert r.proven_optimal is True
        assert rel_close(r.objective, bf.optimum, 1e-9, 1.0), (r.objective, bf.optimum)
    else:
        assert r.bound >= bf.optimum - tol >= r.objective - 2 * tol
        # a heuristic may only call itself optimal when its bound meets its objective
        if r.proven_optimal:
            assert rel_close(r.objective, bf.optimum, 1e-9, 1.0)
    return r


@pytest.mark.parametrize("name, options", RUNS, ids=RUN_IDS)
@given(problem=tiny_joint_problems())
def test_solver_matches_brute_force(name, options, problem):
    check_against_brute_force(problem, name, options)


@pytest.mark.parametrize("name, options", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("index", range(len(KNOWN_HARD)))
def test_solver_on_known_hard_instances(name, options, index):
    check_against_brute_force(KNOWN_HARD[index], name, options)


@pytest.mark.parametrize("name, options", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("K, F", [(0, 1e6), (100, 0.0), (0, 0.0), (100, 1e6)])
def test_degenerate_budgets(name, options, K, F):
    """Only the empty selection fits (K = 0 or F = 0), or everything fits."""
    p = J([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0], [3, 2, 2], [4.0, 2.0, 1.0], K, F)
    r = check_against_brute_force(p, name, options)
    if K == 0 or F == 0:
        assert not r.x.any()
    elif name in EXACT:
        assert r.objective == 21.0


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_extreme_score_range(name):
    """Scores spanning 21 orders of magnitude are still data: no error, a valid proof."""
    p = J([1.0, 1e-21], [2], [1.0], 5, 1.5)
    r = pruneopt.solve(p, name)
    assert r.feasible and r.objective == 1.0
    assert r.bound >= 1.0 - 1e-9
    if name in EXACT:
        assert r.status == "optimal" and r.proven_optimal, r.message


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_problem_without_items(name):
    """p = 0 is either rejected by validation, or every solver returns the empty optimum."""
    try:
        p = JointBudgetProblem(np.zeros(0), [0, 0], [3.0], 0, 0.0)
    except ValueError as exc:
        assert str(exc).split(":")[0] in {"scores", "group_ptr"}
        return
    r = pruneopt.solve(p, name)
    assert r.status == "optimal" and r.objective == 0.0 and r.x.shape == (0,)


# ------------------------------------------------------------------------------------ FALCON = LP
def lp_relaxation(problem: JointBudgetProblem) -> float:
    """max s·x s.t. Σx ≤ K, Σ c x ≤ F, 0 ≤ x ≤ 1, solved independently with scipy's HiGHS LP."""
    if problem.num_items == 0:
        return 0.0
    A = np.vstack([np.ones(problem.num_items), problem.item_cost])
    res = linprog(-problem.scores, A_ub=A, b_ub=[problem.nnz_budget, problem.flop_budget],
                  bounds=(0.0, 1.0), method="highs")
    assert res.status == 0, res.message
    return float(-res.fun)


def assert_falcon_bound_is_lp(problem: JointBudgetProblem) -> None:
    r = pruneopt.solve(problem, "falcon")
    lp = lp_relaxation(problem)
    assert r.feasible, r.message
    assert r.bound == pytest.approx(lp, rel=1e-7, abs=1e-12 * scale_of(problem)), (r.bound, lp)


LP_CASES = [(dist, seed) for dist in DISTRIBUTIONS for seed in range(3)]


@pytest.mark.parametrize("dist, seed", LP_CASES, ids=[f"{d}-{s}" for d, s in LP_CASES])
def test_falcon_bound_equals_lp_relaxation(dist, seed):
    rng = np.random.default_rng(1000 + seed)
    keep = [(0.5, 0.4), (0.2, 0.9), (0.9, 0.15)][seed]
    problem = generate_joint(layers=int(rng.integers(1, 12)), items=int(rng.integers(50, 500)),
                             dist=dist, keep_nnz=keep[0], keep_flops=keep[1], seed=seed)
    assert_falcon_bound_is_lp(problem)


@given(problem=tiny_joint_problems())
@example(problem=J([2.0, 2.0], [2], [6.0], 1, 0.0))
@example(problem=J([1.0, 1.0], [2], [1.0], 1, 0.5))
def test_falcon_bound_equals_lp_relaxation_tiny(problem):
    assert_falcon_bound_is_lp(problem)


# ------------------------------------------------------------------------------------ the oracle
def test_brute_force_oracle_on_a_hand_instance():
    p = J([5.0, 1.0, 3.0, 4.0, 0.0, 2.0, 6.0], [3, 2, 2], [4.0, 2.0, 1.0], 4, 10.0)
    bf = brute_force(p)
    assert bf.optimum == 17.0
    np.testing.assert_array_equal(bf.x, [1, 0, 0, 1, 0, 1, 1])
    assert p.evaluate(bf.x).objective == 17.0 and p.is_feasible(bf.x)


def test_strategy_covers_the_promised_shapes():
    from hypothesis import settings

    seen = set()

    @settings(max_examples=300, derandomize=True, database=None)
    @given(tiny_joint_problems())
    def collect(p):
        sizes = p.group_sizes
        positive = p.scores[p.scores > 0]
        if np.any(sizes == 0):
            seen.add("empty layer")
        if np.any(sizes == 1) and p.num_groups > 1:
            seen.add("single-item layer")
        if np.unique(positive).size < positive.size:
            seen.add("ties")
        if np.any(p.scores == 0):
            seen.add("zeros")
        if p.nnz_budget == 0 or p.flop_budget == 0:
            seen.add("zero budget")
        if p.nnz_budget >= p.num_items and p.flop_budget >= p.total_flops:
            seen.add("everything fits")
        if p.num_items >= 12:
            seen.add("large")
        assert 1 <= p.num_items <= 14 and 1 <= p.num_groups <= 4
        assert set(p.flop_cost.tolist()) <= set(range(1, 51))

    collect()
    assert seen == {"empty layer", "single-item layer", "ties", "zeros", "zero budget",
                    "everything fits", "large"}
