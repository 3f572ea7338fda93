"""Exact solvers agree with each other on generated instances beyond brute-force size."""

from __future__ import annotations

import numpy as np
import pytest

import pruneopt
from pruneopt import JointBudgetProblem
from pruneopt.formulations.joint.generate import generate_joint

# regime -> (keep_nnz, keep_flops): which budgets bind
REGIMES = {
    "nnz-only": (0.3, 1.0),
    "flops-only": (1.0, 0.3),
    "both": (0.45, 0.3),
    "neither": (1.0, 1.0),
}

SMALL = ["highs", "pyomo-highs", "cpsat", "pyomo-scip"]
LARGE = ["highs", "pyomo-highs"]
CASES = [
    (50, "ties", SMALL),
    (60, "exponential", SMALL),
    (200, "lognormal", SMALL),
    (400, "kaiming", SMALL),
    (500, "ties", ["highs", "cpsat", "pyomo-scip"]),
    (1000, "uniform", LARGE),
    (2000, "ties", LARGE),
    (2000, "lognormal", LARGE),
]
PARAMS = [(items, dist, solvers, regime) for items, dist, solvers in CASES for regime in REGIMES]
IDS = [f"{items}-{dist}-{regime}" for items, dist, _, regime in PARAMS]


def assert_agree(problem: JointBudgetProblem, solvers: list[str]) -> list:
    results = [pruneopt.solve(problem, name) for name in solvers]
    for r in results:
        assert r.status == "optimal" and r.proven_optimal, (r.solver, r.message)
        assert problem.is_feasible(r.x)
        assert r.objective == problem.evaluate(r.x).objective
        assert r.gap <= 1e-9
    objs = [r.objective for r in results]
    top = max(abs(v) for v in objs)
    for r in results:
        assert abs(r.objective - objs[0]) <= 1e-9 * max(top, 1e-300), (
            [(q.solver, q.objective) for q in results])
        # every proven bound is a bound on every other solver's feasible objective
        assert r.bound >= max(objs) - 1e-9 * top, (r.solver, r.bound, max(objs))
    return results


@pytest.mark.parametrize("items, dist, solvers, regime", PARAMS, ids=IDS)
def test_exact_solvers_agree(items, dist, solvers, regime):
    keep_nnz, keep_flops = REGIMES[regime]
    problem = generate_joint(layers=7, items=items, dist=dist, keep_nnz=keep_nnz,
                             keep_flops=keep_flops, seed=items + len(regime))
    results = assert_agree(problem, solvers)
    best = results[0]
    falcon = pruneopt.solve(problem, "falcon")
    assert falcon.bound >= best.objective - 1e-9 * abs(best.objective)
    assert falcon.objective <= best.objective + 1e-9 * abs(best.objective)
    # the regime is what it says: a binding budget is (almost) used up at the optimum
    used, limit = best.usage, best.limits
    nnz_tight = used["nnz"] == limit["nnz"]
    flops_tight = limit["flops"] - used["flops"] < problem.flop_cost.max()
    if regime == "nnz-only":
        assert nnz_tight and used["flops"] < limit["flops"]
    elif regime == "flops-only":
        assert flops_tight and used["nnz"] < limit["nnz"]
    elif regime == "both":
        assert nnz_tight or flops_tight
    else:
        assert int(best.x.sum()) == int(np.count_nonzero(problem.scores > 0)) or \
            best.objective == float(problem.scores.sum())


def imagenet_like(seed: int, items: int = 600, layers: int = 9) -> JointBudgetProblem:
    """MAC costs per weight of 1e4..1e7 (integers), budgets around 1e9, scores around 1e-8."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(items - layers, np.full(layers, 1.0 / layers)) + 1
    costs = rng.integers(10**4, 10**7, layers).astype(np.float64)
    scores = 1e-8 * rng.exponential(1.0, items)
    scores[rng.random(items) < 0.05] = 0.0
    total = float(sizes @ costs)
    return JointBudgetProblem(scores, np.concatenate(([0], np.cumsum(sizes))), costs,
                              nnz_budget=int(0.5 * items), flop_budget=float(np.floor(0.35 * total)))


@pytest.mark.parametrize("seed", range(3))
def test_imagenet_magnitudes_highs_and_cpsat_agree(seed):
    problem = imagenet_like(seed)
    assert 1e8 < problem.flop_budget < 1e10
    results = assert_agree(problem, ["highs", "cpsat"])
    falcon = pruneopt.solve(problem, "falcon")
    assert falcon.bound >= results[0].objective * (1 - 1e-9)
    assert falcon.objective <= results[0].objective * (1 + 1e-9)


def test_imagenet_magnitudes_pyomo_backends_agree():
    problem = imagenet_like(7, items=300)
    assert_agree(problem, ["highs", "cpsat", "pyomo-highs", "pyomo-scip"])
