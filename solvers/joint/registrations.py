"""Registration of every solver of the joint formulation (imported lazily by the registry).

| name        | kind      | what it is                                                           |
|-------------|-----------|----------------------------------------------------------------------|
| pyomo-highs | exact     | the readable Pyomo model, HiGHS at zero gap                          |
| highs       | exact     | highspy from arrays, reduced-cost fixing, count-space core, zero gap |
| cpsat       | exact     | OR-Tools CP-SAT on integerised scores, bound corrected for rounding   |
| pyomo-scip  | exact     | SCIP through Pyomo (``pip install pruneopt[scip]``)                  |
| exact       | exact     | count-space branch and bound over cost classes (fast/joint/exact.py) |
| falcon      | fast      | FALCON's LP-dual algorithm; certified bound                          |
| magnitude   | heuristic | top-K by score, cut back to meet the FLOP budget                     |
| ratio       | heuristic | by score per MAC, longest prefix meeting both budgets                |

Each exact registration declares the model (``problem.to_pyomo()``, ``problem.to_cpsat()``, or
highspy arrays in :mod:`~pruneopt.solvers.joint.highs_arrays`), runs it through its backend
adapter (:mod:`pruneopt.solvers.backends`) and hands the raw answer to
:func:`~pruneopt.solvers.result.finalize`; a floating-point answer is first checked by exchange
moves (:mod:`~pruneopt.solvers.joint.polish`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from pruneopt.formulations.joint.problem import JointBudgetProblem
from pruneopt.solvers.backends.common import numpy_version, unscale
from pruneopt.solvers.constants import Status
from pruneopt.solvers.registry import register_table
from pruneopt.solvers.result import finalize

JOINT = JointBudgetProblem.kind
# With a time limit, Pyomo solves of more items run in a worker ended at the deadline (+ grace):
# neither the model building nor HiGHS / SCIP on a large model can be stopped in-process.
PYOMO_GUARD_ITEMS = 5000
# ... and CP-SAT solves of more items: building the model took 0.7 s at 2e4 items and 12 s at
# 2.7e5, and CP-SAT overran a 1 s limit by 1.4 s at 2e4 items and a 5 s limit by 29 s at 2.7e5
# (measured, issue 15).
CPSAT_GUARD_ITEMS = 10_000


def _falcon_answer(problem, layers, dual) -> np.ndarray:
    """FALCON's selection (the rounding of the LP dual): the cheap feasible answer returned when
    a backend has none at the time limit (its bound is ``dual.bound``)."""
    from pruneopt.solvers.fast.joint.falcon import greedy_fill

    k = greedy_fill(layers, dual.counts, dual.lam, problem.nnz_budget, problem.flop_budget)
    return layers.select(problem.scores, k)


# ------------------------------------------------------------------------------- exact backends
def run_declared(problem, *, backend: str, score_scale: float, cost_unit: float, time_limit=None,
                 threads=None, seed=0) -> dict:
    """Declare the joint model in Pyomo and run it on ``backend`` ("highs" or "scip"); the raw
    answer as a dict (picklable inputs and output: usable in a worker). The backend gets the
    time left once the model is built; none left: no solve, status ``time_limit``."""
    from pruneopt.solvers.backends import pyomo_highs, pyomo_scip
    from pruneopt.solvers.deadline import Clock

    clock = Clock(time_limit)
    model = problem.to_pyomo(score_scale=score_scale, cost_unit=cost_unit)
    if clock.expired():
        return {"x": None, "bound": math.inf, "status": Status.TIME_LIMIT,
                "message": "the time limit ran out while Pyomo built the model"}
    time_limit = clock.backend_limit()
    adapter = pyomo_highs if backend == "highs" else pyomo_scip
    run = adapter.run(model, time_limit=time_limit, threads=threads, seed=seed)
    x = None
    if run.has_solution:
        vals = np.array([model.x[i].value if model.x[i].value is not None else 0.0
                         for i in range(problem.num_items)], dtype=np.float64)
        x = vals > 0.5
    return {"x": x, "bound": unscale(run.bound, score_scale), "status": run.status,
            "message": run.message}


def _run_pyomo(problem, *, time_limit=None, backend="highs", threads=None, seed=0,
               score_scale=None):
    from pruneopt.solvers.backends import pyomo_highs, pyomo_scip
    from pruneopt.solvers.deadline import Clock, call_guarded
    from pruneopt.solvers.fast.joint.lagrangian import solve_dual
    from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers
    from pruneopt.solvers.joint.polish import polish_selection
    from pruneopt.solvers.scaling import integer_cost_divisor, score_scale_at_threshold

    clock = Clock(time_limit)
    layers = SortedLayers(problem.scores, problem.group_ptr, problem.flop_cost)
    dual = solve_dual(layers, problem.nnz_budget, problem.flop_budget)
    sigma = (float(score_scale) if score_scale is not None
             else score_scale_at_threshold(layers, dual.lam, dual.omega))
    unit = integer_cost_divisor(problem.flop_cost)
    if backend == "highs":
        name, version = "pyomo-highs", pyomo_highs.version()
        opts = {**pyomo_highs.ZERO_GAP, "threads": threads}
    else:
        name, version = "pyomo-scip", pyomo_scip.version()
        opts = dict(pyomo_scip.EXACT_OPTIONS)
    opts.update(score_scale=sigma, cost_unit=unit, seed=seed, time_limit=time_limit)

    if problem.num_items == 0:  # nothing to declare: the empty selection is the optimum
        raw = {"x": np.zeros(0, dtype=bool), "bound": 0.0, "status": Status.OPTIMAL,
               "message": "no items"}
    else:
        # SCIP ran 400 s under a 60 s limit on 3e4 items: hold the limit from outside
        raw = call_guarded(run_declared, dict(problem=problem, backend=backend, score_scale=sigma,
                                              cost_unit=unit, time_limit=time_limit,
                                              threads=threads, seed=seed),
                           clock, problem.num_items > PYOMO_GUARD_ITEMS,
                           lambda exc: {"x": None, "bound": math.inf,
                                        "status": Status.TIME_LIMIT, "message": str(exc)})
    x, bound, status, message = raw["x"], raw["bound"], raw["status"], raw["message"]
    if x is None and status == Status.TIME_LIMIT:
        x, bound = _falcon_answer(problem, layers, dual), min(bound, dual.bound)
        message += "; FALCON's selection and the LP bound are returned"
    if x is not None and problem.is_feasible(x):
        x, gain, moves = polish_selection(problem, layers, x, deadline=clock.deadline)
        if gain > 0:
            message += f"; improved by {moves} exchange move(s) (+{gain:.3g})"
            if status == Status.OPTIMAL:
                message += ": the solver's tolerances hid small scores; its optimum is refuted"
                status = Status.FEASIBLE
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
    from pruneopt.solvers.backends import highspy as highspy_adapter
    from pruneopt.solvers.joint.highs_arrays import highs_joint

    x, bound, status, info = highs_joint(problem, time_limit=time_limit, fixing=bool(fixing),
                                         model=model, threads=threads, seed=seed,
                                         score_scale=score_scale)
    opts = {**highspy_adapter.ZERO_GAP, "fixing": bool(fixing), "model": model,
            "threads": threads, "seed": seed, "score_scale": info["score_scale"],
            "cost_unit": info["cost_unit"], "time_limit": time_limit}
    scope = (f"core of {info['core_items']} of {info['items']} items after reduced-cost fixing"
             if fixing else f"all {info['items']} items (no fixing)")
    msg = f"{scope}, {model} model; HiGHS: {info['highs_status']}, {info['nodes']} nodes"
    return finalize(problem, solver="highs", x=x, bound=bound, backend_status=status,
                    backend="highspy", backend_version=highspy_adapter.version(), options=opts,
                    message=msg, info=info)


def rounding_correction(problem, scaling, integer_bound: float) -> float:
    """An upper bound on Σ_i max(e_i, 0) x_i over the feasible x, e_i the rounding error of item
    i's integerised score (see :mod:`pruneopt.formulations.joint.cpsat_model`): only items whose
    integer score fits under the integer bound can be kept."""
    from pruneopt.solvers.fast.joint.greedy import relaxation_bound

    possible = scaling.integer_scores <= np.floor(integer_bound + 1e-6)
    positive = np.where(possible, np.maximum(scaling.rounding_error, 0.0), 0.0)
    if not positive.any():
        return 0.0
    return relaxation_bound(dataclasses.replace(problem, scores=positive))


def run_cpsat_declared(problem, *, time_limit=None, workers=None, seed=0,
                       score_scale=None) -> dict:
    """Declare the integerised joint model for CP-SAT and run it; the raw answer as a dict
    (picklable inputs and output: usable in a worker). The solver gets the time left once the
    model is built; none left: no solve, status ``time_limit``."""
    from pruneopt.solvers.backends import cpsat
    from pruneopt.solvers.deadline import Clock

    clock = Clock(time_limit)
    model, x_vars, scaling = problem.to_cpsat(score_scale=score_scale)
    info = {"score_scale": scaling.score_scale, "cost_unit": scaling.cost_unit,
            "bound_correction": math.nan, "integer_objective": None, "integer_bound": None,
            "workers": cpsat.default_workers() if workers is None else int(workers)}
    if clock.expired():
        return {"x": None, "bound": math.inf, "status": Status.TIME_LIMIT, "info": info,
                "message": "the time limit ran out while the CP-SAT model was built"}
    run = cpsat.run(model, x_vars, time_limit=clock.backend_limit(), workers=workers, seed=seed)
    # CP-SAT's bound means something only once it has a solution (without one it reads 0)
    x, correction, bound = None, math.nan, math.inf
    if run.has_solution:
        x = run.values.astype(bool)
        correction = rounding_correction(problem, scaling, run.bound)
        bound = run.bound / scaling.score_scale + correction
    info.update(bound_correction=correction, integer_objective=run.objective,
                integer_bound=run.bound, workers=run.extra["workers"])
    return {"x": x, "bound": bound, "status": run.status, "info": info, "message": run.message}


def _run_cpsat(problem, *, time_limit=None, workers=None, seed=0, score_scale=None):
    from pruneopt.solvers.backends import cpsat
    from pruneopt.solvers.deadline import Clock, call_guarded

    clock = Clock(time_limit)
    guarded = clock.limited and problem.num_items > CPSAT_GUARD_ITEMS

    def fallback():  # FALCON's selection and the LP bound
        from pruneopt.solvers.fast.joint.lagrangian import solve_dual
        from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers

        layers = SortedLayers(problem.scores, problem.group_ptr, problem.flop_cost)
        dual = solve_dual(layers, problem.nnz_budget, problem.flop_budget)
        return _falcon_answer(problem, layers, dual), dual.bound

    # a guarded solve may end without an answer: have the fallback ready before it starts
    ready = fallback() if guarded else None
    raw = call_guarded(run_cpsat_declared, dict(problem=problem, time_limit=time_limit,
                                                workers=workers, seed=seed,
                                                score_scale=score_scale),
                       clock, guarded,
                       lambda exc: {"x": None, "bound": math.inf, "status": Status.TIME_LIMIT,
                                    "info": {"workers": cpsat.default_workers() if workers is None
                                             else int(workers)}, "message": str(exc)})
    x, bound, status, message, info = (raw["x"], raw["bound"], raw["status"], raw["message"],
                                       raw["info"])
    if x is None and status == Status.TIME_LIMIT and problem.num_items:
        x, lp_bound = ready if ready is not None else fallback()
        bound = min(bound, lp_bound)
        message += "; FALCON's selection and the LP bound are returned"
    return cpsat.finalize_answer(problem, x=x, bound=bound, status=status, message=message,
                                 info=info, seed=seed, time_limit=time_limit,
                                 scale_key="score_scale")


# ------------------------------------------------------------------------------- fast algorithms
def _fast(name: str, select, message: str):
    def run(problem, *, time_limit=None):
        x, bound, info = select(problem)
        return finalize(problem, solver=name, x=x, bound=bound, backend_status=Status.FEASIBLE,
                        backend="numpy", backend_version=numpy_version(),
                        options={"time_limit": time_limit}, message=message, info=info)

    return run


def _register_all() -> None:
    from pruneopt.solvers.backends import pyomo_scip
    from pruneopt.solvers.fast.joint.exact import solve_exact
    from pruneopt.solvers.fast.joint.falcon import falcon_select
    from pruneopt.solvers.fast.joint.greedy import magnitude_select, ratio_select

    single_row = "heuristic; bound from single-row LP relaxations"
    scale = "score_scale"
    register_table(JOINT, [
        ("pyomo-highs", _run_pyomo_highs, True, ("threads", "seed", scale),
         "Pyomo model, HiGHS at zero gap"),
        ("highs", _run_highs, True, ("fixing", "model", "threads", "seed", scale),
         "highspy from arrays, reduced-cost fixing, zero gap"),
        ("cpsat", _run_cpsat, True, ("workers", "seed", scale),
         "OR-Tools CP-SAT on integerised scores, zero gap"),
        ("pyomo-scip", _run_pyomo_scip, True, ("seed", scale),
         "SCIP through Pyomo; needs the [scip] extra (pyscipopt)", pyomo_scip.available),
        ("falcon", _fast("falcon", falcon_select, "LP dual bound, rounded selection"), False, (),
         "FALCON: exact LP dual, rounding meeting both budgets"),
        ("exact", solve_exact, True, ("rel_gap",),
         "count-space branch and bound over cost classes, proven"),
        ("magnitude", _fast("magnitude", magnitude_select, single_row), False, (),
         "top-K scores, cut back to meet the FLOP budget"),
        ("ratio", _fast("ratio", ratio_select, single_row), False, (),
         "score per MAC order, longest prefix meeting both budgets"),
    ])


_register_all()
