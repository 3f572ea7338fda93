"""Registration of every solver of the joint formulation (imported lazily by the registry).

| name          | kind      | what it is                                                         |
|---------------|-----------|--------------------------------------------------------------------|
| pyomo-highs   | exact     | the readable Pyomo model, HiGHS at zero gap                          |
| highs         | exact     | highspy from arrays, reduced-cost fixing, count-space core, zero gap |
| cpsat         | exact     | OR-Tools CP-SAT on integerised scores, bound corrected for rounding   |
| pyomo-scip    | exact     | SCIP through Pyomo (``pip install pruneopt[scip]``)                  |
| exact         | exact     | count-space branch and bound over cost classes (fast/exact_joint.py) |
| falcon        | fast      | FALCON's LP-dual algorithm; certified bound                          |
| magnitude     | heuristic | top-K by score, cut back to meet the FLOP budget                     |
| ratio         | heuristic | by score per MAC, longest prefix meeting both budgets                |
"""

from __future__ import annotations

import numpy as np

from pruneopt.formulations.joint.problem import JointBudgetProblem
from pruneopt.solvers.registry import SolverSpec, register
from pruneopt.solvers.result import finalize

JOINT = JointBudgetProblem.kind
ZERO_GAP = {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0}
# With a time limit, Pyomo solves of more items run in a worker ended at the limit (+ grace).
PYOMO_GUARD_ITEMS = 5000


def _numpy_version() -> str:
    return np.__version__


# ------------------------------------------------------------------------------- exact backends
def _run_pyomo(problem, *, time_limit=None, backend="highs", threads=None, seed=0,
               score_scale=None):
    from pruneopt.solvers.backends import pyomo_runner
    from pruneopt.solvers.fast.joint.lagrangian import solve_dual
    from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers
    from pruneopt.solvers.joint.highs_arrays import highs_version
    from pruneopt.solvers.joint.polish import polish_selection
    from pruneopt.solvers.scaling import integer_cost_divisor, score_scale_at_threshold

    layers = SortedLayers(problem.scores, problem.group_ptr, problem.flop_cost)
    dual = solve_dual(layers, problem.nnz_budget, problem.flop_budget)
    sigma = (float(score_scale) if score_scale is not None
             else score_scale_at_threshold(layers, dual.lam, dual.omega))
    unit = integer_cost_divisor(problem.flop_cost)
    if backend == "highs":
        name, version = "pyomo-highs", f"pyomo {pyomo_runner.pyomo_version()}, highs {highs_version()}"
        opts = {**ZERO_GAP, "threads": threads}
    else:
        name = "pyomo-scip"
        version = f"pyomo {pyomo_runner.pyomo_version()}, pyscipopt {pyomo_runner.scip_version()}"
        opts = dict(pyomo_runner.SCIP_EXACT_OPTIONS)
    opts.update(score_scale=sigma, cost_unit=unit, seed=seed, time_limit=time_limit)

    kwargs = dict(problem=problem, backend=backend, score_scale=sigma, cost_unit=unit,
                  time_limit=time_limit, threads=threads, seed=seed)
    if problem.num_items == 0:  # nothing to declare: the empty selection is the optimum
        raw = {"x": np.zeros(0, dtype=bool), "bound": 0.0, "status": "optimal",
               "message": "no items"}
    elif time_limit is not None and problem.num_items > PYOMO_GUARD_ITEMS:
        # SCIP ran 400 s under a 60 s limit on 3e4 items: hold the limit from outside
        from pruneopt.solvers.deadline import DeadlineExceeded, call_with_deadline
        from pruneopt.solvers.fast.joint.falcon import greedy_fill

        try:
            raw = call_with_deadline(pyomo_runner.run_declared, kwargs,
                                     time_limit + max(5.0, 0.25 * time_limit))
        except DeadlineExceeded as exc:
            k = greedy_fill(layers, dual.counts, dual.lam, problem.nnz_budget,
                            problem.flop_budget)
            raw = {"x": layers.select(problem.scores, k), "bound": dual.bound,
                   "status": "time_limit",
                   "message": f"{exc}; FALCON's selection and the LP bound are returned"}
    else:
        raw = pyomo_runner.run_declared(**kwargs)
    x, bound, status, message = raw["x"], raw["bound"], raw["status"], raw["message"]
    if x is not None and problem.is_feasible(x):
        x, gain, moves = polish_selection(problem, layers, x)
        if gain > 0:
            message += f"; improved by {moves} exchange move(s) (+{gain:.3g})"
            if status == "optimal":
                message += ": the solver's tolerances hid small scores; its optimum is refuted"
                status = "feasible"
        z = problem.evaluate(x).objective
        if bound < z - 1e-12 * abs(z):
            bound = dual.bound  # the solver's bound is contradicted; the exact LP bound is valid
    return finalize(problem, solver=name, x=x, bound=bound, backend_status=status, backend=name,
                    backend_version=version, options=opts, message=message)


def _run_pyomo_highs(problem, *, time_limit=None, threads=None, seed=0, score_scale=None):
    return _run_pyomo(problem, time_limit=time_limit, backend="highs", threads=threads, seed=seed,
                      score_scale=score_scale)


def _run_pyomo_scip(problem, *, time_limit=None, seed=0, score_scale=None):
    return _run_pyomo(problem, time_limit=time_limit, backend="scip", seed=seed,
                      score_scale=score_scale)


def _run_highs(problem, *, time_limit=None, fixing=True, model="counts", threads=None, seed=0,
               score_scale=None):
    from pruneopt.solvers.joint.highs_arrays import highs_joint, highs_version

    x, bound, status, info = highs_joint(problem, time_limit=time_limit, fixing=bool(fixing),
                                         model=model, threads=threads, seed=seed,
                                         score_scale=score_scale)
    opts = {**ZERO_GAP, "fixing": bool(fixing), "model": model, "threads": threads, "seed": seed,
            "score_scale": info["score_scale"], "cost_unit": info["cost_unit"],
            "time_limit": time_limit}
    scope = (f"core of {info['core_items']} of {info['items']} items after reduced-cost fixing"
             if fixing else f"all {info['items']} items (no fixing)")
    msg = f"{scope}, {model} model; HiGHS: {info['highs_status']}, {info['nodes']} nodes"
    return finalize(problem, solver="highs", x=x, bound=bound, backend_status=status,
                    backend="highspy", backend_version=highs_version(), options=opts,
                    message=msg, info=info)


def _run_cpsat(problem, *, time_limit=None, workers=None, seed=0, score_scale=None):
    from pruneopt.solvers.backends.cpsat import ortools_version, run_cpsat

    raw = run_cpsat(problem, time_limit=time_limit, workers=workers, seed=seed,
                    score_scale=score_scale)
    info = raw["info"]
    opts = {"relative_gap_limit": 0.0, "absolute_gap_limit": 0.0, "seed": seed,
            "num_workers": info["workers"], "score_scale": info["score_scale"],
            "cost_unit": info["cost_unit"], "time_limit": time_limit}
    return finalize(problem, solver="cpsat", x=raw["x"], bound=raw["bound"],
                    backend_status=raw["status"], backend="ortools-cpsat",
                    backend_version=ortools_version(), options=opts, message=raw["message"],
                    info=info)


# ------------------------------------------------------------------------------- fast algorithms
def _fast(name: str, select, message: str):
    def run(problem, *, time_limit=None):
        x, bound, info = select(problem)
        return finalize(problem, solver=name, x=x, bound=bound, backend_status="feasible",
                        backend="numpy", backend_version=_numpy_version(),
                        options={"time_limit": time_limit}, message=message, info=info)

    return run


def _register_all() -> None:
    from pruneopt.solvers.fast.joint.falcon import falcon_select
    from pruneopt.solvers.fast.joint.greedy import magnitude_select, ratio_select
    from pruneopt.solvers.backends.pyomo_runner import scip_available

    register(SolverSpec("pyomo-highs", JOINT, _run_pyomo_highs, exact=True,
                        description="Pyomo model, HiGHS at zero gap",
                        options=("threads", "seed", "score_scale")))
    register(SolverSpec("highs", JOINT, _run_highs, exact=True,
                        description="highspy from arrays, reduced-cost fixing, zero gap",
                        options=("fixing", "model", "threads", "seed", "score_scale")))
    register(SolverSpec("cpsat", JOINT, _run_cpsat, exact=True,
                        description="OR-Tools CP-SAT on integerised scores, zero gap",
                        options=("workers", "seed", "score_scale")))
    register(SolverSpec("pyomo-scip", JOINT, _run_pyomo_scip, exact=True,
                        description="SCIP through Pyomo; needs the [scip] extra (pyscipopt)",
                        available=scip_available, options=("seed", "score_scale")))
    register(SolverSpec("falcon", JOINT, _fast("falcon", falcon_select,
                        "LP dual bound, rounded selection"), exact=False,
                        description="FALCON: exact LP dual, rounding meeting both budgets"))
    from pruneopt.solvers.fast.joint.exact import solve_exact

    register(SolverSpec("exact", JOINT, solve_exact, exact=True,
                        description="count-space branch and bound over cost classes, proven",
                        options=("rel_gap",)))
    register(SolverSpec("magnitude", JOINT, _fast("magnitude", magnitude_select,
                        "heuristic; bound from single-row LP relaxations"), exact=False,
                        description="top-K scores, cut back to meet the FLOP budget"))
    register(SolverSpec("ratio", JOINT, _fast("ratio", ratio_select,
                        "heuristic; bound from single-row LP relaxations"), exact=False,
                        description="score per MAC order, longest prefix meeting both budgets"))


_register_all()
