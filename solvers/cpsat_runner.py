"""Run the CP-SAT declaration at zero gap and turn its integer bound into a true bound."""

from __future__ import annotations

import os

import numpy as np
from ortools.sat.python import cp_model


def ortools_version() -> str:
    import ortools

    return str(ortools.__version__)


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
    bound = scaling.true_bound(solver.best_objective_bound) if has_solution or code == cp_model.UNKNOWN \
        else float("nan")
    info = {"score_scale": scaling.score_scale, "cost_unit": scaling.cost_unit,
            "bound_correction": scaling.bound_correction,
            "integer_objective": solver.objective_value if has_solution else None,
            "integer_bound": solver.best_objective_bound, "workers": params.num_workers}
    return {"x": x, "bound": bound, "status": status, "message": solver.status_name(code),
            "info": info}
