"""Run the CP-SAT declaration at zero gap and turn its integer bound into a true bound."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from ortools.sat.python import cp_model

from pruneopt.solvers.fast.joint.greedy import relaxation_bound


def ortools_version() -> str:
    import ortools

    return str(ortools.__version__)


def rounding_correction(problem, scaling, integer_bound: float) -> float:
    """An upper bound on Σ_i max(e_i, 0) x_i over the feasible x (see joint_cpsat)."""
    possible = scaling.integer_scores <= np.floor(integer_bound + 1e-6)
    positive = np.where(possible, np.maximum(scaling.rounding_error, 0.0), 0.0)
    if not positive.any():
        return 0.0
    return relaxation_bound(dataclasses.replace(problem, scores=positive))


def run_cpsat(problem, *, time_limit=None, workers=None, seed=0, score_scale=None) -> dict:
    model, x_vars, scaling = problem.to_cpsat(score_scale=score_scale)
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.relative_gap_limit = 0.0
    params.absolute_gap_limit = 0.0
    params.random_seed = int(seed)
    params.num_workers = int(workers) if workers is not None else max(1, min(8, os.cpu_count() or 1))
    if time_limit is not None:
        params.max_time_in_seconds = float(time_limit)
    code = solver.solve(model)
    has_solution = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    x = None
    if has_solution:
        x = np.array([solver.boolean_value(v) for v in x_vars], dtype=bool)
    if code == cp_model.OPTIMAL:
        status = "optimal"
    elif code == cp_model.INFEASIBLE:
        status = "infeasible"
    elif code in (cp_model.FEASIBLE, cp_model.UNKNOWN):
        status = "time_limit" if time_limit is not None else ("feasible" if has_solution else "error")
    else:
        status = "error"
    # CP-SAT's bound means something only once it has a solution (without one it reads 0)
    correction = (rounding_correction(problem, scaling, solver.best_objective_bound)
                  if has_solution else float("nan"))
    bound = (solver.best_objective_bound / scaling.score_scale + correction if has_solution
             else float("inf"))
    info = {"score_scale": scaling.score_scale, "cost_unit": scaling.cost_unit,
            "bound_correction": correction,
            "integer_objective": solver.objective_value if has_solution else None,
            "integer_bound": solver.best_objective_bound, "workers": params.num_workers}
    return {"x": x, "bound": bound, "status": status, "message": solver.status_name(code),
            "info": info}
