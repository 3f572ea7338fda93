"""HiGHS on a declared Pyomo model, through Pyomo's new solver interface, at zero gap.

The formulations declare readable Pyomo models (``problem.to_pyomo()``); :func:`run` solves one
at ``rel_gap = abs_gap = 0`` with the seed (and further HiGHS options), threads and time
limit, loads the solution into the model when there is one, and returns a
:class:`~pruneopt.solvers.backends.common.BackendRun` whose ``bound`` is HiGHS's dual bound in
the model's own (scaled) objective units. Reading the decision off the model is the caller's.
"""

from __future__ import annotations

import functools

from pyomo.contrib.solver.common.results import TerminationCondition as TC

from pruneopt.solvers.backends import highspy as highspy_adapter
from pruneopt.solvers.backends.common import BackendRun, pyomo_version, run_pyomo_contrib
from pruneopt.solvers.constants import Status
from pruneopt.solvers.deadline import remaining

ZERO_GAP = highspy_adapter.ZERO_GAP  # the options recorded: the same HiGHS settings

STATUS_MAP = {
    TC.convergenceCriteriaSatisfied: Status.OPTIMAL,
    TC.provenInfeasible: Status.INFEASIBLE,
    TC.locallyInfeasible: Status.INFEASIBLE,
    TC.maxTimeLimit: Status.TIME_LIMIT,
    TC.iterationLimit: Status.TIME_LIMIT,
    TC.interrupted: Status.TIME_LIMIT,
}  # any other termination: feasible with a solution, error without


@functools.cache
def version() -> str:
    return f"pyomo {pyomo_version()}, highs {highspy_adapter.version()}"


def run(model, *, time_limit=None, threads=None, seed=0, options=None) -> BackendRun:
    """Solve ``model`` with HiGHS at zero gap; ``options`` are further HiGHS options. The time
    limit never reaches past the deadline of the solve (:mod:`pruneopt.solvers.deadline`)."""
    res, status, has_solution = run_pyomo_contrib(
        "highs", model, status_map=STATUS_MAP, time_limit=remaining(time_limit), threads=threads,
        solver_options={"random_seed": int(seed), **(options or {})})
    tc = res.termination_condition
    return BackendRun(status=status, message=str(tc.name), has_solution=has_solution,
                      bound=res.objective_bound, version=version())
