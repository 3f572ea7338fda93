"""HiGHS through highspy, from arrays: a ``HighsLp`` passed in one ``passModel``, zero gap.

Callers build the ``HighsLp`` (columns, rows, integrality) in numpy; :func:`run` configures a
silent ``Highs`` at ``mip_rel_gap = mip_abs_gap = 0`` with the seed, threads, further options
and an optional MIP start, runs it with the time limit and returns a
:class:`~pruneopt.solvers.backends.common.BackendRun` (the primal columns when HiGHS holds a
feasible solution, its dual bound ``mip_dual_bound``, its node count). A model that is re-solved
as it grows (the outer-approximation master) is built once by :func:`configure` and run by
:func:`solve` each time.
"""

from __future__ import annotations

import functools

import highspy
import numpy as np

from pruneopt.solvers.backends.common import BackendRun, status_of
from pruneopt.solvers.constants import Status
from pruneopt.solvers.deadline import remaining

# HiGHS says "optimal" at its default 1e-4 relative gap, which is not optimal (DESIGN §3).
ZERO_GAP = {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0}

_MS = highspy.HighsModelStatus
STATUS_MAP = {
    _MS.kOptimal: Status.OPTIMAL,
    _MS.kInfeasible: Status.INFEASIBLE,
    _MS.kTimeLimit: Status.TIME_LIMIT,
    _MS.kIterationLimit: Status.TIME_LIMIT,
    _MS.kInterrupt: Status.TIME_LIMIT,
    _MS.kSolutionLimit: Status.TIME_LIMIT,
}  # any other model status: feasible with a solution, error without
_FEASIBLE_SOLUTION = 2  # HighsInfo.primal_solution_status of a feasible point


@functools.cache
def version() -> str:
    return str(highspy.Highs().version())


def configure(lp, *, seed=0, threads=None, options=None) -> highspy.Highs:
    """A silent ``Highs`` holding ``lp``, at zero gap, with the seed, threads and ``options``."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    for key, value in {**ZERO_GAP, **(options or {})}.items():
        h.setOptionValue(key, value)
    h.setOptionValue("random_seed", int(seed))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    return h


def solve(h: highspy.Highs, *, time_limit=None) -> BackendRun:
    """Run (or run again) a configured ``Highs`` with the time limit (at least 1 ms), never past
    the deadline of the solve (:mod:`pruneopt.solvers.deadline`)."""
    time_limit = remaining(time_limit)
    h.setOptionValue("time_limit", float(time_limit) if time_limit is not None
                     else highspy.kHighsInf)
    h.run()
    info = h.getInfo()
    model_status = h.getModelStatus()
    has_solution = info.primal_solution_status == _FEASIBLE_SOLUTION
    return BackendRun(
        status=status_of(STATUS_MAP, model_status, has_solution),
        message=h.modelStatusToString(model_status), has_solution=has_solution,
        bound=float(info.mip_dual_bound), version=version(),
        values=np.asarray(h.getSolution().col_value) if has_solution else None,
        objective=float(info.objective_function_value) if has_solution else None,
        nodes=int(info.mip_node_count))


def run(lp, *, time_limit=None, seed=0, threads=None, options=None, start=None) -> BackendRun:
    """Solve ``lp`` at zero gap; ``start`` (values of every column) is handed over as a MIP
    start."""
    h = configure(lp, seed=seed, threads=threads, options=options)
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = np.asarray(start, dtype=np.float64).tolist()
        h.setSolution(sol)
    return solve(h, time_limit=time_limit)
