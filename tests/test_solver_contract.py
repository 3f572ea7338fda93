"""The solver contract, checked for every registered solver of every formulation.

The solvers come from the registry (``solver_specs(kind)``): a new solver is tested here just by
registering it; one whose backend is not installed is skipped with the reason. On each
formulation's canonical tiny instances (tests/solver_test_helpers.py: known brute-force optima,
zero budgets, everything fitting, ties, infeasible) every result must be consistent (objective
and usage recomputed from x, status from the documented set, ``optimal`` exactly when proven, the
gap by its formula, JSON without x), feasible, never better than the optimum, with its bound on
the right side of it, and an exact solver must prove the optimum. On a generated instance
beyond brute force the results must pass ``crosscheck``'s verdicts; under a 0.01 s time limit
nothing may raise and every answer stays certified. A solver may refuse an instance outside its
scope (``dp`` off a chain, a state space too large) only with a ValueError that names it, and
never a canonical instance marked ``must_accept``.
"""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest
from solver_test_helpers import (
    DECISION,
    KINDS,
    REFERENCE,
    better_or_equal,
    canonical,
    limited,
    mid,
    optimum,
    scale_of,
)

import pruneopt
from pruneopt.solvers.constants import STATUSES, Status
from pruneopt.solvers.crosscheck import verdicts
from pruneopt.solvers.registry import available_solvers, solver_specs

TIME_LIMIT = 0.01
HONOURED_SECONDS = 30.0  # a time-limited solve returns within this (shared CPUs, worker start)

# Exact solvers that may stop short of a proof, and why (every other check still applies: a
# feasible x, a valid bound, an honest status). Keep this list short and explained.
MAY_STOP_SHORT = {
    ("joint-qp", "pyomo-scip"): "SCIP's MIQP stalls at its own tolerances (the stall guard then "
                                "ends it: 'feasible') or fails in its LP solver ('error', the "
                                "incumbent returned); see solvers/joint_qp/registrations.py",
}
# Options that keep a solver's runs short here (they never change what is checked)
OPTIONS = {("joint-qp", "pyomo-scip"): {"stall_nodes": 2000}}  # its gap plateaus early


def _spec_params(with_cases: bool = False):
    params = []
    for kind in KINDS:
        for spec in solver_specs(kind):
            marks = () if spec.available() else (pytest.mark.skip(
                reason=f"{kind} solver '{spec.name}' is not available here ({spec.description})"),)
            cases = canonical(kind) if with_cases else (None,)
            for case in cases:
                ident = f"{kind}/{spec.name}" + (f"/{case.name}" if case is not None else "")
                args = (kind, spec, case) if with_cases else (kind, spec)
                params.append(pytest.param(*args, id=ident, marks=marks))
    return params


SPECS = _spec_params()
SPEC_CASES = _spec_params(with_cases=True)


def must_prove(kind: str, spec) -> bool:
    return spec.exact and (kind, spec.name) not in MAY_STOP_SHORT


def solve_or_refuse(problem, spec, **kwargs):
    """The result, or None when the solver refuses the instance (a ValueError naming it)."""
    kwargs = {**OPTIONS.get((problem.kind, spec.name), {}), **kwargs}
    try:
        return pruneopt.solve(problem, spec.name, **kwargs)
    except ValueError as exc:
        assert spec.name in str(exc), f"a refusal must name the solver: {exc}"
        return None


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def check_fields(problem, spec, r) -> None:
    """Every field of a result is consistent with the problem and with the others."""
    kind = problem.kind
    assert r.solver == spec.name and r.formulation == kind and r.sense == problem.sense
    assert r.status in STATUSES, r.status
    assert type(r.status) is str  # the plain word, not an enum member
    assert (r.status == Status.OPTIMAL) == r.proven_optimal
    assert r.seconds > 0 and math.isfinite(r.seconds)
    assert r.backend and r.backend_version
    assert isinstance(r.message, str)
    if r.x is not None:
        dtype, size = DECISION[kind]
        assert r.x.dtype == dtype and r.x.shape == (getattr(problem, size),)
        ev = problem.evaluate(r.x)
        assert r.objective == ev.objective and r.usage == ev.usage and r.limits == ev.limits
        assert r.feasible == problem.is_feasible(r.x)
        assert r.feasible or r.status == Status.ERROR, r.message
        if not math.isnan(r.bound):
            if math.isinf(r.bound):
                assert r.gap == math.inf
            else:  # gap = |bound - objective| / max(|bound|, |objective|)
                scale = max(abs(r.bound), abs(r.objective))
                expect = abs(r.bound - r.objective) / scale if scale else 0.0
                assert r.gap == pytest.approx(expect, rel=1e-12, abs=1e-300)
            # a valid bound of the problem's sense (up to float rounding of the backend's bound)
            rounding = 1e-12 * (abs(r.objective) or scale_of(problem))
            assert better_or_equal(problem, r.bound, r.objective, rounding), (
                r.bound, r.objective, r.message)
        if r.proven_optimal:
            assert r.gap <= 1e-9
    else:
        assert r.status in (Status.INFEASIBLE, Status.ERROR, Status.TIME_LIMIT), r.status
        assert not r.feasible and not r.proven_optimal and math.isnan(r.objective)
    summary = r.summary()
    assert "x" not in summary and summary["status"] == r.status
    assert same(summary["objective"], r.objective) and same(summary["bound"], r.bound)
    for key, val in r.usage.items():
        assert summary[f"{key}_used"] == val
    strict = json.loads(r.to_json())  # strict JSON: NaN and ±inf are null
    assert "x" not in strict and strict["status"] == r.status
    assert strict["objective"] == (r.objective if math.isfinite(r.objective) else None)


# ------------------------------------------------------------------------------------ registry
@pytest.mark.parametrize("kind", KINDS)
def test_every_formulation_registers_exact_and_fast_solvers(kind):
    specs = solver_specs(kind)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert any(s.exact for s in specs) and any(not s.exact for s in specs)
    assert available_solvers(kind) == [s.name for s in specs if s.available()]
    assert all(s.formulation == kind and s.description for s in specs)


# ------------------------------------------------------------------------------------ canonical
def test_canonical_instances_are_what_they_say():
    cases = {(kind, c.name): c.problem for kind in KINDS for c in canonical(kind)}
    assert optimum(cases["joint", "hand"]) == 17.0
    assert optimum(cases["joint", "everything-fits"]) == 21.0  # every positive score
    assert optimum(cases["joint", "zero-nnz-budget"]) == optimum(cases["joint", "zero-flop-budget"])
    assert optimum(cases["allocation", "hand"]) == 6.0
    assert optimum(cases["allocation", "infeasible"]) is None
    assert optimum(cases["channels", "collapse"]) == 9.0  # the expensive branch collapsed
    least = cases["channels", "budget-at-least-flops"]
    # c₀ + the least FLOPs (min-keep 1 everywhere) = 5 + 2 + 1·1·3 = 10 = F; F = 9 is infeasible
    assert least.flops_of_counts(least.min_counts) == least.flop_budget == 10.0
    assert optimum(cases["channels", "infeasible"]) is None
    assert optimum(cases["joint-qp", "everything-fits"]) == 0.0  # w = w̄
    for kind in KINDS:  # every formulation has its edge cases
        names = {c.name for c in canonical(kind)}
        assert "everything-fits" in names and names & {"zero-budget", "zero-budgets",
                                                       "zero-nnz-budget", "budget-at-least-flops"}


@pytest.mark.parametrize("kind, spec, case", SPEC_CASES)
def test_contract_on_canonical_instances(kind, spec, case):
    problem = case.problem
    r = solve_or_refuse(problem, spec)
    if r is None:
        assert not case.must_accept, f"'{spec.name}' refused the canonical instance {case.name}"
        return
    check_fields(problem, spec, r)
    opt = optimum(problem)
    tol = 1e-9 * scale_of(problem)
    if opt is None:  # no decision meets the constraints: every solver must say so
        assert r.status == Status.INFEASIBLE and r.x is None, (r.status, r.message)
        return
    assert r.status != Status.INFEASIBLE, r.message
    if not math.isnan(r.bound):  # the bound is on the right side of the optimum
        assert better_or_equal(problem, r.bound, opt, tol), (r.bound, opt, r.message)
    if r.x is None:  # a heuristic that found nothing says so; an exact solver always finds x
        assert not spec.exact and r.status == Status.ERROR, (r.status, r.message)
        return
    assert problem.is_feasible(r.x), r.message
    assert r.feasible, r.message
    assert better_or_equal(problem, opt, r.objective, tol), (r.objective, opt)  # never better
    if r.proven_optimal:
        assert abs(r.objective - opt) <= tol, (r.objective, opt)
    if must_prove(kind, spec):
        assert r.status == Status.OPTIMAL and r.proven_optimal, r.message


# ------------------------------------------------------------------------------------ mid-size
@cache
def mid_result(kind: str, name: str):
    spec = next(s for s in solver_specs(kind) if s.name == name)
    return solve_or_refuse(mid(kind), spec)


@pytest.mark.parametrize("kind, spec", SPECS)
def test_contract_on_a_generated_instance(kind, spec):
    problem = mid(kind)
    r = mid_result(kind, spec.name)
    if r is None:
        return  # refused (outside the solver's scope), with a ValueError naming it
    check_fields(problem, spec, r)
    assert r.x is not None and r.feasible, r.message
    assert r.options.get("time_limit", "missing") is None
    if must_prove(kind, spec):
        assert r.status == Status.OPTIMAL and r.proven_optimal, r.message


@pytest.mark.parametrize("kind", KINDS)
def test_solvers_agree_on_a_generated_instance(kind):
    """crosscheck's verdicts over every solver's answer: no proven optimum beaten, no bound
    below a feasible objective, no infeasible x, no two proven optima that differ."""
    results = [mid_result(kind, name) for name in available_solvers(kind)]
    results = [r for r in results if r is not None]
    assert sum(r.proven_optimal for r in results) >= 1
    df = verdicts(mid(kind), results)
    assert list(df["verdict"]) == ["ok"] * len(results), df[["solver", "verdict", "message"]]


# ------------------------------------------------------------------------------------ time limits
@cache
def reference(kind: str):
    return pruneopt.solve(limited(kind), REFERENCE[kind])


@pytest.mark.parametrize("kind, spec", SPECS)
def test_tiny_time_limit_is_honoured(kind, spec):
    """No exception, a valid status, a feasible x or none, a valid bound, returned in time."""
    problem, ref = limited(kind), reference(kind)
    r = solve_or_refuse(problem, spec, time_limit=TIME_LIMIT)
    if r is None:
        return
    check_fields(problem, spec, r)
    assert r.options["time_limit"] == TIME_LIMIT
    assert r.seconds < HONOURED_SECONDS
    if must_prove(kind, spec):
        assert r.status in (Status.TIME_LIMIT, Status.OPTIMAL), (r.status, r.message)
    else:  # "error": a heuristic that found nothing, or a backend failure (MAY_STOP_SHORT)
        assert r.status != Status.INFEASIBLE, r.message
        assert r.status != Status.ERROR or r.x is None or (kind, spec.name) in MAY_STOP_SHORT
    tol = 1e-9 * max(abs(ref.objective), abs(ref.bound))
    if r.x is not None:
        assert r.feasible and problem.is_feasible(r.x), r.message
        # never better than a certified bound
        assert better_or_equal(problem, ref.bound, r.objective, tol), (ref.bound, r.objective)
    if not math.isnan(r.bound):
        # a reported bound bounds every feasible decision (the reference's included)
        assert better_or_equal(problem, r.bound, ref.objective, tol), (r.bound, ref.objective)


# ------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("kind, spec", SPECS)
def test_unknown_option_is_a_value_error(kind, spec):
    with pytest.raises(ValueError, match=rf"^options: '{spec.name}' does not take"):
        pruneopt.solve(canonical(kind)[0].problem, spec.name, no_such_option=1)


@pytest.mark.parametrize("limit", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, "10",
                                   True, np.bool_(True)])
@pytest.mark.parametrize("kind, spec", SPECS)
def test_bad_time_limit_is_a_value_error(kind, spec, limit):
    with pytest.raises(ValueError, match=r"^time_limit:"):
        pruneopt.solve(canonical(kind)[0].problem, spec.name, time_limit=limit)
