"""The SolveResult contract on the joint formulation: the gap, finalize's rules, time limits
through the worker guard, the options each backend records, and their validation.

The contract checks that hold for every registered solver of every formulation (fields,
brute-force optima, time limits, unknown options, bad time limits) are in
tests/test_solver_contract.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import pruneopt
from pruneopt import JointBudgetProblem
from pruneopt.formulations.joint.generate import generate_joint
from pruneopt.solvers.result import finalize, relative_gap

ZERO_GAP_OPTIONS = {
    "highs": {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0},
    "pyomo-highs": {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0},
    "cpsat": {"relative_gap_limit": 0.0, "absolute_gap_limit": 0.0},
    "pyomo-scip": {"limits/gap": 0.0, "limits/absgap": 0.0},
}


@pytest.fixture(scope="module")
def mid_problem() -> JointBudgetProblem:
    return generate_joint(layers=6, items=150, dist="exponential", keep_nnz=0.4, keep_flops=0.35,
                          seed=11)


@pytest.fixture(scope="module")
def mid_results(mid_problem):
    return {name: pruneopt.solve(mid_problem, name) for name in ZERO_GAP_OPTIONS}


def test_relative_gap_formula():
    assert relative_gap(10.0, 9.0) == pytest.approx(0.1)
    assert relative_gap(10.0, 10.0) == 0.0
    assert relative_gap(0.0, 0.0) == 0.0
    assert relative_gap(-2.0, -4.0) == pytest.approx(0.5)
    assert relative_gap(math.inf, 3.0) == math.inf
    assert math.isnan(relative_gap(math.nan, 3.0)) and math.isnan(relative_gap(3.0, math.nan))
    assert relative_gap(1e-300, 0.0) == 1.0


# ------------------------------------------------------------------------------------ finalize
@pytest.fixture
def tiny():
    return JointBudgetProblem([5.0, 1.0, 3.0], [0, 3], [1.0], 2, 10.0)  # optimum 8 = {5, 3}


def _fin(problem, x, bound, status, **kw):
    return finalize(problem, solver="t", x=x, bound=bound, backend_status=status, backend="t",
                    backend_version="0", options={}, **kw)


def test_finalize_proven_only_when_bound_meets_objective(tiny):
    best = np.array([1, 0, 1], dtype=bool)
    r = _fin(tiny, best, 8.0, "optimal")
    assert r.status == "optimal" and r.proven_optimal and r.gap == 0.0 and r.objective == 8.0
    # the backend says optimal, but its bound is 1e-4 above the objective: not proven
    r = _fin(tiny, best, 8.0 * (1 + 1e-4), "optimal")
    assert r.status == "feasible" and not r.proven_optimal
    assert "not proven" in r.message
    # a bound within 1e-9 relative proves it, even from a heuristic or a time limit
    r = _fin(tiny, best, 8.0 * (1 + 1e-10), "time_limit")
    assert r.status == "optimal" and r.proven_optimal
    r = _fin(tiny, best, 8.0 * (1 + 1e-10), "feasible")
    assert r.status == "optimal"


def test_finalize_recomputes_the_objective_and_rejects_infeasible_x(tiny):
    r = _fin(tiny, np.array([1, 1, 1]), 9.0, "optimal")  # 3 items > K = 2
    assert r.status == "error" and not r.proven_optimal and not r.feasible
    assert "nnz" in r.message
    r = _fin(tiny, np.array([0, 1, 1]), 100.0, "feasible")
    assert r.objective == 4.0 and r.status == "feasible"


def test_finalize_bound_below_objective_is_not_a_proof(tiny):
    best = np.array([1, 0, 1], dtype=bool)
    r = _fin(tiny, best, 7.0, "optimal")
    assert not r.proven_optimal and r.status != "optimal"
    assert "bound" in r.message


def test_finalize_time_limit_without_x(tiny):
    r = _fin(tiny, None, math.inf, "time_limit")
    assert r.status == "time_limit" and r.x is None and not r.proven_optimal
    r = _fin(tiny, None, math.nan, "optimal")
    assert r.status == "error"


# ------------------------------------------------------------------------------------ time limits
def _check_time_limited(problem, r, reference):
    """A time-limited result: no exception, a valid status, a feasible x or none, a valid bound."""
    assert r.status in ("time_limit", "optimal"), (r.status, r.message)
    assert r.proven_optimal == (r.status == "optimal")
    if r.x is not None:
        assert problem.is_feasible(r.x) and r.feasible
        assert r.objective == problem.evaluate(r.x).objective
        assert r.objective <= reference.bound * (1 + 1e-9)  # never better than an LP bound
    if not math.isnan(r.bound):
        # a reported bound is an upper bound on every feasible selection (FALCON's included)
        assert r.bound >= reference.objective * (1 - 1e-9), (r.bound, reference.objective)


def test_highs_without_fixing_on_a_big_instance():
    p = generate_joint(layers=8, items=20000, dist="uniform", keep_nnz=0.4, keep_flops=0.3, seed=2)
    r = pruneopt.solve(p, "highs", time_limit=0.01, fixing=False)
    _check_time_limited(p, r, pruneopt.solve(p, "falcon"))
    assert r.seconds < 30


def test_highs_time_limit_through_the_worker_guard():
    """A core above the guard size runs in a worker process; the answer is still certified."""
    p = generate_joint(layers=8, items=60000, dist="uniform", keep_nnz=0.4, keep_flops=0.3, seed=3)
    r = pruneopt.solve(p, "highs", time_limit=0.01, fixing=False)
    _check_time_limited(p, r, pruneopt.solve(p, "falcon"))
    assert r.x is not None
    assert r.seconds < 30


# ------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("name, keys", list(ZERO_GAP_OPTIONS.items()))
def test_exact_options_record_zero_gap_tolerances(mid_results, name, keys):
    opts = mid_results[name].options
    for key, value in keys.items():
        assert key in opts and opts[key] == value
    assert "time_limit" in opts and opts["time_limit"] is None
    assert "score_scale" in opts and opts["score_scale"] > 0


def test_options_are_passed_and_recorded(mid_problem):
    r = pruneopt.solve(mid_problem, "highs", fixing=False, seed=3, time_limit=60)
    assert r.options["fixing"] is False and r.options["seed"] == 3 and r.options["time_limit"] == 60
    r2 = pruneopt.solve(mid_problem, "cpsat", workers=1, seed=5)
    assert r2.options["num_workers"] == 1 and r2.options["seed"] == 5
    assert r.objective == pytest.approx(r2.objective, rel=1e-9)


@pytest.mark.parametrize("name, option", [
    ("highs", "bogus"), ("highs", "workers"), ("pyomo-highs", "fixing"), ("cpsat", "fixing"),
    ("pyomo-scip", "threads"), ("falcon", "seed"), ("magnitude", "fixing"), ("ratio", "bogus"),
])
def test_unknown_option_is_a_value_error(mid_problem, name, option):
    with pytest.raises(ValueError, match=r"^options:"):
        pruneopt.solve(mid_problem, name, **{option: 1})


@pytest.mark.parametrize("limit", [np.int64(30), np.float32(30.0), 30, 30.0])
def test_numpy_time_limits_are_accepted(mid_problem, limit):
    r = pruneopt.solve(mid_problem, "highs", time_limit=limit)
    assert r.status == "optimal"


def test_unknown_solver_is_a_value_error(mid_problem):
    with pytest.raises(ValueError, match=r"^solver:"):
        pruneopt.solve(mid_problem, "gurobi")
