"""OR-Tools CP-SAT: run a declared ``CpModel`` at zero gap and map its status.

The formulations declare their CP-SAT models on integerised data (``problem.to_cpsat()``) and
say how to turn the integer bound back into a true one; :func:`run` only solves, with
``relative_gap_limit = absolute_gap_limit = 0``, the seed, the number of workers (default: the
cores, at most 8) and the time limit, and reads the given variables. CP-SAT's bound means
something only once it holds a solution (without one it reads 0).
"""

from __future__ import annotations

import functools
import os

import numpy as np
from ortools.sat.python import cp_model

from pruneopt.solvers.backends.common import BackendRun, status_of
from pruneopt.solvers.constants import Status
from pruneopt.solvers.deadline import remaining

ZERO_GAP = {"relative_gap_limit": 0.0, "absolute_gap_limit": 0.0}

# FEASIBLE and UNKNOWN: stopped before a proof, i.e. at the time limit (without a time limit,
# see :func:`run`).
STATUS_MAP = {
    cp_model.OPTIMAL: Status.OPTIMAL,
    cp_model.INFEASIBLE: Status.INFEASIBLE,
    cp_model.FEASIBLE: Status.TIME_LIMIT,
    cp_model.UNKNOWN: Status.TIME_LIMIT,
    cp_model.MODEL_INVALID: Status.ERROR,
}


@functools.cache
def version() -> str:
    import ortools

    return str(ortools.__version__)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def run(model: cp_model.CpModel, variables, *, time_limit=None, workers=None,
        seed=0) -> BackendRun:
    """Solve ``model`` at zero gap; ``values`` are the integer values of ``variables`` (0/1
    for Booleans) when CP-SAT holds a solution. ``extra["workers"]`` is the number used. The
    time limit never reaches past the deadline of the solve (:mod:`pruneopt.solvers.deadline`)."""
    time_limit = remaining(time_limit)
    solver = cp_model.CpSolver()
    params = solver.parameters
    for key, value in ZERO_GAP.items():
        setattr(params, key, value)
    params.random_seed = int(seed)
    params.num_workers = int(workers) if workers is not None else default_workers()
    if time_limit is not None:
        params.max_time_in_seconds = float(time_limit)
    code = solver.solve(model)
    has_solution = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    status = status_of(STATUS_MAP, code, has_solution)
    if status == Status.TIME_LIMIT and time_limit is None:  # stopped short without a limit
        status = Status.FEASIBLE if has_solution else Status.ERROR
    values = (np.array([solver.value(v) for v in variables], dtype=np.int64) if has_solution
              else None)
    return BackendRun(status=status, message=solver.status_name(code), has_solution=has_solution,
                      bound=float(solver.best_objective_bound), version=version(), values=values,
                      objective=float(solver.objective_value) if has_solution else None,
                      extra={"workers": params.num_workers})


def finalize_answer(problem, *, x, bound, status, message, info: dict, seed, time_limit,
                    scale_key: str):
    """:func:`~pruneopt.solvers.result.finalize` a CP-SAT answer of a float-scored formulation,
    its options recorded alike everywhere (``scale_key``: the name of its value scale in
    ``info``, e.g. ``loss_scale`` or ``score_scale``)."""
    from pruneopt.solvers.result import finalize

    opts = {**ZERO_GAP, "seed": seed, "num_workers": info.get("workers"),
            scale_key: info.get(scale_key), "cost_unit": info.get("cost_unit"),
            "time_limit": time_limit}
    return finalize(problem, solver="cpsat", x=x, bound=bound, backend_status=status,
                    backend="ortools-cpsat", backend_version=version(), options=opts,
                    message=message, info=info)
