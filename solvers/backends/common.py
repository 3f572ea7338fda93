"""What every backend adapter returns, and how a termination code becomes a status word.

An adapter runs a declared model (a Pyomo model, a CP-SAT model, highspy arrays) at zero gap
with the time limit and hands back a :class:`BackendRun`: the raw answer, before any check.
The registration that called it turns the raw values into a decision x, and
:func:`~pruneopt.solvers.result.finalize` recomputes and checks everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pruneopt.solvers.constants import Status


@dataclass(frozen=True)
class BackendRun:
    status: Status  # from the adapter's STATUS_MAP
    message: str  # the backend's own word for how it stopped
    has_solution: bool  # the backend holds a feasible solution (loaded into a Pyomo model)
    bound: float | None  # its dual bound in the model's own objective units (None: none given)
    version: str  # the backend's version string
    values: np.ndarray | None = None  # raw primal values (highspy columns, CP-SAT variables)
    objective: float | None = None  # the backend's own objective of ``values``
    nodes: int = -1  # branch-and-bound nodes, when the backend reports them
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific numbers


def status_of(status_map: dict, code, has_solution: bool, default: Status | None = None) -> Status:
    """The status word of a termination ``code``: ``status_map[code]``; a code the map does not
    name is ``default``, or (without one) ``feasible`` with a solution and ``error`` without."""
    if code in status_map:
        return status_map[code]
    if default is not None:
        return default
    return Status.FEASIBLE if has_solution else Status.ERROR


def numpy_version() -> str:
    """The version string of the pure-numpy algorithms (backend ``numpy``)."""
    return np.__version__


# ------------------------------------------------------------------------------- Pyomo
def pyomo_version() -> str:
    import pyomo.version

    return str(pyomo.version.version)


def run_pyomo_contrib(name: str, model, *, status_map: dict, default: Status | None = None,
                      time_limit=None, threads=None, solver_options=None,
                      **kwargs) -> tuple[Any, Status, bool]:
    """Solve ``model`` with the solver ``name`` of Pyomo's new interface (``pyomo.contrib.
    solver``) at zero relative and absolute gap; returns (results, status, has_solution) and
    loads the solution into the model when there is one.

    The new interface raises on a time limit by default: it is called with
    ``load_solutions=False, raise_exception_on_nonoptimal_result=False`` and the results object
    is read instead (DESIGN §7).
    """
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import SolutionStatus

    call = dict(load_solutions=False, raise_exception_on_nonoptimal_result=False,
                rel_gap=0.0, abs_gap=0.0, **kwargs)
    if solver_options is not None:
        call["solver_options"] = solver_options
    if time_limit is not None:
        call["time_limit"] = float(time_limit)
    if threads is not None:
        call["threads"] = int(threads)
    res = SolverFactory(name).solve(model, **call)
    has_solution = res.solution_status in (SolutionStatus.feasible, SolutionStatus.optimal)
    if has_solution:
        res.solution_loader.load_vars()
    return res, status_of(status_map, res.termination_condition, has_solution, default), \
        has_solution


def unscale(bound: float | None, scale: float, missing: float = math.inf) -> float:
    """A backend's bound on the scaled objective, in the problem's units (``missing`` when the
    backend gave none, or no finite one)."""
    return bound / scale if bound is not None and math.isfinite(bound) else missing
