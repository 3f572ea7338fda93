"""Registration of every solver of the layer budget allocation (imported lazily by the registry).

| name        | kind      | what it is                                                      |
|-------------|-----------|-----------------------------------------------------------------|
| pyomo-highs | exact     | the readable Pyomo model (losses shifted, scaled), HiGHS, 0 gap |
| highs       | exact     | highspy from arrays, reduced-cost fixing, zero gap              |
| cpsat       | exact     | CP-SAT on integerised losses, bound corrected for rounding      |
| dp          | exact     | DP over integer budgets (1-D, or 2-D when small); else refuses  |
| exact       | exact     | dp when its state space is small, else highs                    |
| fast        | fast      | Lagrangian dual over convex hulls (= LP bound), rounding, moves |
| uniform     | heuristic | the same option in every layer, the densest that fits           |

Each exact registration declares the model (``problem.to_pyomo()``, ``problem.to_cpsat()``, or
highspy arrays in :mod:`~pruneopt.solvers.allocation.highs_arrays`), runs it through its backend
adapter (:mod:`pruneopt.solvers.backends`) and hands the answer to
:func:`~pruneopt.solvers.result.finalize`. Every floating-point answer (HiGHS through either
route, and CP-SAT's rounded one) is first checked by
:func:`~pruneopt.solvers.allocation.polish.check_answer`: improving moves that recompute losses
in float64 refute a backend's "optimal" (DESIGN §7), and every reported bound is at least the
LP dual value D(λ, ω), valid by weak duality.

Time limits hold (:mod:`pruneopt.solvers.deadline`): every backend gets the time left on the
clock of the solve; a Pyomo model of more than :data:`PYOMO_GUARD_OPTIONS` options is built and
solved in a worker ended at the deadline, and a CP-SAT model of more than
:data:`CPSAT_GUARD_OPTIONS` likewise; a backend without an answer at the limit gives way to the
fast solver's choice with the LP bound (status ``time_limit``).
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.formulations.allocation.problem import AllocationProblem
from pruneopt.solvers.backends.common import numpy_version
from pruneopt.solvers.constants import Status
from pruneopt.solvers.registry import register_table
from pruneopt.solvers.result import finalize

ALLOCATION = AllocationProblem.kind
# ``exact`` runs the DP when it needs at most this many cell updates (about 0.2 s), else HiGHS
EXACT_DP_CELLS = 50_000_000
# With a time limit, models of more options run in a worker ended at the deadline (+ grace):
# Pyomo took about 2 s to build and hand over 1e4 options (HiGHS then ran 2.5 s past a 2 s
# limit, measured, issue 15).
PYOMO_GUARD_OPTIONS = 2000
CPSAT_GUARD_OPTIONS = 20_000
FALLBACK_SHARE = 0.1  # of the time left: the fast choice's improving moves before a worker


# ------------------------------------------------------------------------------- highs (arrays)
def _run_highs(problem, *, time_limit=None, fixing=True, threads=None, seed=0, loss_scale=None):
    from pruneopt.solvers.allocation.highs_arrays import highs_allocation
    from pruneopt.solvers.backends import highspy as highspy_adapter

    x, bound, status, msg, info = highs_allocation(
        problem, time_limit=time_limit, fixing=bool(fixing), threads=threads, seed=seed,
        loss_scale=loss_scale)
    opts = {**highspy_adapter.ZERO_GAP, "fixing": bool(fixing), "threads": threads, "seed": seed,
            "loss_scale": info.get("loss_scale"), "cost_unit": info.get("cost_unit"),
            "time_limit": time_limit}
    return finalize(problem, solver="highs", x=x, bound=bound, backend_status=status,
                    backend="highspy", backend_version=highspy_adapter.version(), options=opts,
                    message=msg, info=info)


def _fallback(problem, clock):
    """The LP dual and the fast solver's choice (flat indices, or None), computed before a
    guarded backend starts (with :data:`FALLBACK_SHARE` of the time left for improving
    moves), so that an answer is ready when the worker is ended at the deadline."""
    import time

    from pruneopt.solvers.allocation.polish import fast_incumbent, lp_dual

    data, dual, rc = lp = lp_dual(problem)
    if not dual.feasible:
        return lp, None
    share = clock.share(FALLBACK_SHARE)
    deadline = None if share is None else time.perf_counter() + share
    return lp, fast_incumbent(data, dual, rc, deadline=deadline)[0]


# ------------------------------------------------------------------------------- pyomo-highs
def run_declared(problem, *, sigma: float, unit: float, time_limit=None, threads=None,
                 seed=0) -> dict:
    """Declare the allocation in Pyomo (losses shifted, scaled by σ, MACs divided by ``unit``)
    and run HiGHS on the time left once it is built; the raw answer as a dict (picklable
    inputs and output: usable in a worker)."""
    from pruneopt.solvers.backends import pyomo_highs
    from pruneopt.solvers.deadline import Clock

    clock = Clock(time_limit)
    model = problem.to_pyomo(loss_scale=sigma, cost_unit=unit, shift_losses=True)
    if clock.expired():
        return {"choice": None, "bound": -math.inf, "status": Status.TIME_LIMIT,
                "message": "the time limit ran out while Pyomo built the model"}
    run = pyomo_highs.run(model, time_limit=clock.backend_limit(), threads=threads, seed=seed)
    choice = None
    if run.has_solution:
        sizes = problem.option_counts.tolist()
        choice = np.array([max(range(sizes[g]), key=lambda j: model.y[g, j].value or 0.0)
                           for g in range(len(sizes))], dtype=np.int64)
    raw = run.bound if run.bound is not None else -math.inf
    return {"choice": choice, "bound": raw / sigma if math.isfinite(raw) else raw,
            "status": run.status, "message": run.message}


def _run_pyomo_highs(problem, *, time_limit=None, threads=None, seed=0, loss_scale=None):
    from pruneopt.solvers import scaling
    from pruneopt.solvers.allocation.polish import EPS, check_backend_answer, flat_index
    from pruneopt.solvers.backends import pyomo_highs
    from pruneopt.solvers.deadline import Clock, call_guarded

    clock = Clock(time_limit)
    base = np.minimum.reduceat(problem.loss, problem.option_ptr[:-1])
    shifted = problem.loss - np.repeat(base, problem.option_counts)
    sigma = float(loss_scale) if loss_scale is not None else scaling.loss_scale(shifted)
    unit = scaling.integer_cost_unit(problem.flops)[0] if problem.has_flop_budget else 1.0
    opts = {**pyomo_highs.ZERO_GAP, "threads": threads, "seed": seed, "loss_scale": sigma,
            "cost_unit": unit, "shift_losses": True, "time_limit": time_limit}
    guarded = clock.limited and problem.num_options > PYOMO_GUARD_OPTIONS
    lp, fallback = _fallback(problem, clock) if guarded else (None, None)
    raw = call_guarded(run_declared, dict(problem=problem, sigma=sigma, unit=unit,
                                          time_limit=time_limit, threads=threads, seed=seed),
                       clock, guarded,
                       lambda exc: {"choice": None, "bound": -math.inf,
                                    "status": Status.TIME_LIMIT, "message": str(exc)})
    bound = raw["bound"]
    rounding = (4 * EPS * (abs(float(np.sum(base))) + abs(bound))
                if math.isfinite(bound) else 0.0)
    x, bound, status, msg, lp_bound = check_backend_answer(
        problem, flat_index(problem, raw["choice"]), bound, raw["status"], raw["message"],
        rounding=rounding, deadline=clock.deadline, lp=lp, fallback=fallback)
    return finalize(problem, solver="pyomo-highs", x=x, bound=bound, backend_status=status,
                    backend="pyomo-highs", backend_version=pyomo_highs.version(), options=opts,
                    message=msg, info={"lp_bound": lp_bound})


# ------------------------------------------------------------------------------- cpsat
def run_cpsat_declared(problem, *, time_limit=None, workers=None, seed=0,
                       loss_scale=None) -> dict:
    """Declare the integerised allocation for CP-SAT and run it on the time left once it is
    built; the raw answer as a dict (picklable inputs and output: usable in a worker)."""
    from pruneopt.solvers.backends import cpsat
    from pruneopt.solvers.deadline import Clock

    clock = Clock(time_limit)
    model, y, scaling = problem.to_cpsat(loss_scale=loss_scale)
    info = {"loss_scale": scaling.loss_scale, "loss_offset": scaling.loss_offset,
            "cost_unit": scaling.cost_unit, "bound_correction": scaling.bound_correction,
            "integer_objective": None, "integer_bound": None,
            "workers": cpsat.default_workers() if workers is None else int(workers)}
    if clock.expired():
        return {"x": None, "bound": -math.inf, "status": Status.TIME_LIMIT, "info": info,
                "message": "the time limit ran out while the CP-SAT model was built"}
    run = cpsat.run(model, y, time_limit=clock.backend_limit(), workers=workers, seed=seed)
    x = problem.canonical(run.values.astype(bool)) if run.has_solution else None
    # Σ e y ≥ C + B̂/σ + Σ_g min_j r_gj (see formulations/allocation/cpsat_model.py); B̂ means
    # something only once CP-SAT has a solution
    if run.has_solution:
        bound = (scaling.loss_offset + run.bound / scaling.loss_scale
                 + scaling.bound_correction)
    else:
        bound = -math.inf
    info.update(integer_objective=run.objective, integer_bound=run.bound,
                workers=run.extra["workers"])
    return {"x": x, "bound": bound, "status": run.status, "info": info, "message": run.message}


def _run_cpsat(problem, *, time_limit=None, workers=None, seed=0, loss_scale=None):
    from pruneopt.solvers.allocation.polish import EPS, check_backend_answer, flat_index
    from pruneopt.solvers.backends import cpsat
    from pruneopt.solvers.deadline import Clock, call_guarded

    clock = Clock(time_limit)
    guarded = clock.limited and problem.num_options > CPSAT_GUARD_OPTIONS
    lp, fallback = _fallback(problem, clock) if guarded else (None, None)
    raw = call_guarded(run_cpsat_declared, dict(problem=problem, time_limit=time_limit,
                                                workers=workers, seed=seed,
                                                loss_scale=loss_scale),
                       clock, guarded,
                       lambda exc: {"x": None, "bound": -math.inf, "status": Status.TIME_LIMIT,
                                    "info": {"workers": cpsat.default_workers() if workers is None
                                             else int(workers)}, "message": str(exc)})
    bound, info = raw["bound"], raw["info"]
    offset = info.get("loss_offset", 0.0)
    rounding = (4 * EPS * (abs(offset) + abs(bound - offset)) if math.isfinite(bound) else 0.0)
    # the same answer check as for HiGHS (and the LP bound)
    x, bound, status, msg, _ = check_backend_answer(
        problem, flat_index(problem, raw["x"]), bound, raw["status"], raw["message"],
        rounding=rounding, deadline=clock.deadline, lp=lp, fallback=fallback)
    return cpsat.finalize_answer(problem, x=x, bound=bound, status=status, message=msg,
                                 info=info, seed=seed, time_limit=time_limit,
                                 scale_key="loss_scale")


# ------------------------------------------------------------------------------- dp
def _dp_result(problem, solver: str, res, *, time_limit, options, deadline=None):
    """finalize a DpResult; on a time limit the fast solver's choice and bound are returned."""
    x, bound, status, msg = res.choice, res.value, res.status, res.info["plan"]
    if status == Status.OPTIMAL:
        z = problem.evaluate(x).objective
        chosen = problem.loss[problem.flat_index(x)]
        if abs(bound - z) <= 1e-12 * float(np.sum(np.abs(chosen))):
            bound = z  # the same sum in another order: the DP proved this choice optimal
    elif status == Status.INFEASIBLE:
        bound = math.inf
    elif status == Status.TIME_LIMIT:
        from pruneopt.solvers.fast.allocation.hull import lagrangian_allocation

        fast = lagrangian_allocation(problem, deadline=deadline)
        x, bound = fast.choice, fast.bound
        msg += f"; stopped after {res.info.get('layers_done', 0)} layers: the fast solver's answer"
    return finalize(problem, solver=solver, x=x, bound=bound, backend_status=status,
                    backend="numpy", backend_version=numpy_version(),
                    options={**options, "time_limit": time_limit}, message=msg, info=res.info)


def _run_dp(problem, *, time_limit=None, max_cells=None, max_table_bytes=None):
    from pruneopt.solvers.deadline import Clock
    from pruneopt.solvers.fast.allocation.dp import MAX_CELLS, MAX_TABLE_BYTES, solve_dp

    clock = Clock(time_limit)
    max_cells = int(max_cells) if max_cells is not None else MAX_CELLS
    max_table_bytes = int(max_table_bytes) if max_table_bytes is not None else MAX_TABLE_BYTES
    res = solve_dp(problem, time_limit=time_limit, max_cells=max_cells,
                   max_table_bytes=max_table_bytes)
    return _dp_result(problem, "dp", res, time_limit=time_limit, deadline=clock.deadline,
                      options={"max_cells": max_cells, "max_table_bytes": max_table_bytes})


# ------------------------------------------------------------------------------- exact
def _run_exact(problem, *, time_limit=None, threads=None, seed=0):
    from pruneopt.solvers.allocation.highs_arrays import highs_allocation
    from pruneopt.solvers.backends import highspy as highspy_adapter
    from pruneopt.solvers.deadline import Clock
    from pruneopt.solvers.fast.allocation.dp import plan_dp, solve_dp

    clock = Clock(time_limit)
    plan = plan_dp(problem)
    if plan.kind in ("free", "infeasible") or (plan.kind in ("1d", "2d")
                                               and plan.cells <= EXACT_DP_CELLS):
        res = solve_dp(problem, plan, time_limit=time_limit)
        r = _dp_result(problem, "exact", res, time_limit=time_limit, deadline=clock.deadline,
                       options={"method": "dp", "threads": threads, "seed": seed})
        return r.replace(message=f"dp: {r.message}")
    x, bound, status, msg, info = highs_allocation(problem, time_limit=time_limit,
                                                   threads=threads, seed=seed)
    if plan.kind in ("1d", "2d") or plan.cells:
        why = f"dp would need {plan.cells:.3g} cell updates"
    else:
        why = f"dp: {plan.reason}"
    opts = {**highspy_adapter.ZERO_GAP, "method": "highs", "fixing": True, "threads": threads,
            "seed": seed, "time_limit": time_limit}
    return finalize(problem, solver="exact", x=x, bound=bound, backend_status=status,
                    backend="highspy", backend_version=highspy_adapter.version(), options=opts,
                    message=f"highs ({why}): {msg}", info=info)


# ------------------------------------------------------------------------------- fast, uniform
def _run_fast(problem, *, time_limit=None, pair_k=4):
    from pruneopt.solvers.deadline import Clock
    from pruneopt.solvers.fast.allocation.hull import lagrangian_allocation

    res = lagrangian_allocation(problem, pair_k=int(pair_k), deadline=Clock(time_limit).deadline)
    msg = {"feasible": "LP dual bound over the convex hulls; rounded, repaired and improved choice",
           "infeasible": "the LP relaxation is infeasible: no choice meets the budgets",
           "error": res.info.get("message", "")}[res.status]
    status = res.status
    if status == Status.FEASIBLE and res.info.get("stopped") == "time_limit":
        status, msg = Status.TIME_LIMIT, msg + "; the time limit cut the improving moves short"
    return finalize(problem, solver="fast", x=res.choice, bound=res.bound,
                    backend_status=status, backend="numpy",
                    backend_version=numpy_version(),
                    options={"pair_k": int(pair_k), "time_limit": time_limit}, message=msg,
                    info=res.info)


def _run_uniform(problem, *, time_limit=None):
    from pruneopt.solvers.fast.allocation.baselines import single_row_bound, uniform_choice

    x = uniform_choice(problem)
    bound = single_row_bound(problem)
    status = (Status.FEASIBLE if x is not None
              else (Status.INFEASIBLE if math.isinf(bound) else Status.ERROR))
    msg = ("heuristic; bound from single-row LP relaxations" if x is not None else
           "no uniform choice meets the budgets")
    return finalize(problem, solver="uniform", x=x, bound=bound, backend_status=status,
                    backend="numpy", backend_version=numpy_version(),
                    options={"time_limit": time_limit}, message=msg)


def _register_all() -> None:
    scale = "loss_scale"
    register_table(ALLOCATION, [
        ("pyomo-highs", _run_pyomo_highs, True, ("threads", "seed", scale),
         "Pyomo model, HiGHS at zero gap"),
        ("highs", _run_highs, True, ("fixing", "threads", "seed", scale),
         "highspy from arrays, reduced-cost fixing, zero gap"),
        ("cpsat", _run_cpsat, True, ("workers", "seed", scale),
         "OR-Tools CP-SAT on integerised losses, zero gap"),
        ("dp", _run_dp, True, ("max_cells", "max_table_bytes"),
         "dynamic program over integer budgets; refuses when too large"),
        ("exact", _run_exact, True, ("threads", "seed"),
         "dp when its state space is small, else highs"),
        ("fast", _run_fast, False, ("pair_k",),
         "Lagrangian dual over convex hulls (LP bound), rounding, moves"),
        ("uniform", _run_uniform, False, (),
         "the same option in every layer, the densest that fits"),
    ])


_register_all()
