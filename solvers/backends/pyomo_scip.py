"""SCIP on a declared Pyomo model (``scip_direct``, needs the ``[scip]`` extra: pyscipopt).

Two routes, both at zero relative and absolute gap with the exact tolerances below:

* :func:`run` — Pyomo's classic ``scip_direct`` interface, for the MILPs (joint ILP, channel
  selection). Its ``STATUS_MAP`` maps Pyomo's classic termination conditions.
* :func:`run_miqp` — Pyomo's new interface (``pyomo.contrib.solver``), for the joint MIQP, with a
  MIP start (``warmstart_discrete_vars``). At zero gap SCIP can stall on a continuous objective;
  the stall guard ``limits/stallnodes`` then ends the search with Pyomo's ``iterationLimit``,
  which is a ``feasible`` answer with its honest gap (``MIQP_STATUS_MAP``). SoPlex's native
  output is sent to a file while SCIP runs (:func:`native_output_to_file`: Pyomo's pipe capture
  deadlocked, DESIGN §7).

Both load the solution into the model when there is one and return a
:class:`~pruneopt.solvers.backends.common.BackendRun` whose ``bound`` is SCIP's dual bound in the
model's own (scaled) objective units.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile

import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition as NewTC
from pyomo.opt import TerminationCondition as TC

from pruneopt.solvers.backends.common import BackendRun, pyomo_version, run_pyomo_contrib, status_of
from pruneopt.solvers.constants import Status

# Zero gap, and tolerances tight enough that SCIP's own objective of its x matches the value
# recomputed in numpy (at the default feastol 1e-6 they differed by 2e-7 relative).
EXACT_OPTIONS = {"limits/gap": 0.0, "limits/absgap": 0.0, "numerics/feastol": 1e-9,
                 "numerics/dualfeastol": 1e-10}

STATUS_MAP = {
    TC.optimal: Status.OPTIMAL,
    TC.infeasible: Status.INFEASIBLE,
    TC.maxTimeLimit: Status.TIME_LIMIT,
    TC.maxIterations: Status.TIME_LIMIT,
    TC.userInterrupt: Status.TIME_LIMIT,
}  # any other termination: feasible with a solution, error without

# The MIQP always has a feasible start (w = 0), so every other termination — the stall guard's
# iterationLimit included — is a feasible answer.
MIQP_STATUS_MAP = {
    NewTC.convergenceCriteriaSatisfied: Status.OPTIMAL,
    NewTC.maxTimeLimit: Status.TIME_LIMIT,
    NewTC.interrupted: Status.TIME_LIMIT,
}


@functools.cache
def available() -> bool:
    try:
        import pyscipopt  # noqa: F401
    except ImportError:
        return False
    return bool(pyo.SolverFactory("scip_direct").available(exception_flag=False))


@functools.cache
def version() -> str:
    import pyscipopt

    return f"pyomo {pyomo_version()}, pyscipopt {pyscipopt.__version__}"


def _maximizes(model) -> bool:
    objective = next(model.component_data_objects(pyo.Objective, active=True))
    return objective.sense == pyo.maximize


def run(model, *, time_limit=None, threads=None, seed=0, options=None) -> BackendRun:
    """Solve ``model`` with SCIP (classic interface) at zero gap; ``options`` are further SCIP
    parameters. SCIP runs on one thread here (``threads`` is for a signature shared with
    :func:`pyomo_highs.run <pruneopt.solvers.backends.pyomo_highs.run>` and must be None)."""
    if threads is not None:
        raise ValueError("threads: SCIP runs on one thread here")
    opts = dict(EXACT_OPTIONS, **(options or {}), **{"randomization/randomseedshift": int(seed)})
    if time_limit is not None:
        opts["limits/time"] = float(time_limit)
    res = pyo.SolverFactory("scip_direct").solve(model, options=opts, load_solutions=False)
    tc = res.solver.termination_condition
    has_solution = len(res.solution) > 0
    if has_solution:
        model.solutions.load_from(res)
    # the dual bound is the upper bound of a maximisation and the lower bound of a minimisation
    bound = res.problem.upper_bound if _maximizes(model) else res.problem.lower_bound
    return BackendRun(status=status_of(STATUS_MAP, tc, has_solution), message=str(tc),
                      has_solution=has_solution, bound=None if bound is None else float(bound),
                      version=version())


def run_miqp(model, *, time_limit=None, seed=0, options=None, warmstart=True) -> BackendRun:
    """Solve the MIQP ``model`` with SCIP (new interface) at zero gap, from the values of its
    discrete variables when ``warmstart``. A SCIP failure (e.g. "error in LP solver" at tight
    tolerances) is an ``error`` run with the exception as its message, not an exception."""
    opts = dict(EXACT_OPTIONS, **(options or {}), **{"randomization/randomseedshift": int(seed)})
    try:
        with native_output_to_file():
            res, status, has_solution = run_pyomo_contrib(
                "scip_direct", model, status_map=MIQP_STATUS_MAP, default=Status.FEASIBLE,
                time_limit=None if time_limit is None else max(time_limit, 1e-3),
                solver_options=opts, warmstart_discrete_vars=bool(warmstart))
    except Exception as exc:  # noqa: BLE001 — the caller keeps its incumbent
        return BackendRun(status=Status.ERROR, message=f"{type(exc).__name__}: {exc}",
                          has_solution=False, bound=None, version=version())
    try:
        nodes = int(res.extra_info["NNodes"])
    except (AttributeError, KeyError, TypeError, ValueError):
        nodes = -1
    return BackendRun(status=status, message=res.termination_condition.name,
                      has_solution=has_solution, bound=res.objective_bound, version=version(),
                      objective=res.incumbent_objective, nodes=nodes)


@contextlib.contextmanager
def native_output_to_file():
    """Send the process's file descriptors 1 and 2 to a temporary file for the duration.

    Pyomo's solver interfaces capture fds 1/2 through a pipe drained by a Python thread, while
    pyscipopt's ``optimize()`` holds the GIL: once SoPlex writes more than a pipe buffer
    (64 KiB) — it prints "Cannot set optimality tolerance to small value ... without GMP" on
    every LP that SCIP re-solves with tightened tolerances, thousands of times on hard MIQPs —
    the write blocks forever (measured: a p = 20 instance hung with 0% CPU). So fd capture is
    switched off in Pyomo (its documented ``OVERRIDE_CAPTURE_OUTPUT`` flag) and the fds point
    at a file, which never blocks; the native output is discarded.
    """
    import pyomo.common.tee as tee
    from pyomo.common.enums import CaptureOutputMode

    old_mode = tee.OVERRIDE_CAPTURE_OUTPUT
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            tee.OVERRIDE_CAPTURE_OUTPUT = CaptureOutputMode.DISABLE_FD_CAPTURE
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                tee.OVERRIDE_CAPTURE_OUTPUT = old_mode
    finally:
        os.close(saved[0])
        os.close(saved[1])
