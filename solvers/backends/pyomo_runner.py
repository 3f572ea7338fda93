"""Run a declared Pyomo model exactly: HiGHS (new solver interface) or SCIP (``scip_direct``).

Both run at zero relative and absolute gap. Pyomo's new interface raises on a time limit by
default, so it is called with ``load_solutions=False, raise_exception_on_nonoptimal_result=False``
and the results object is read instead (DESIGN §7). Returned values are the raw backend answer;
:func:`pruneopt.solvers.result.finalize` recomputes and checks everything.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyomo.environ as pyo


def pyomo_version() -> str:
    import pyomo.version

    return str(pyomo.version.version)


@functools.cache
def scip_available() -> bool:
    try:
        import pyscipopt  # noqa: F401
    except ImportError:
        return False
    return bool(pyo.SolverFactory("scip_direct").available(exception_flag=False))


def scip_version() -> str:
    import pyscipopt

    return str(pyscipopt.__version__)


def _selection(model, size: int) -> np.ndarray:
    vals = np.array([model.x[i].value if model.x[i].value is not None else 0.0
                     for i in range(size)], dtype=np.float64)
    return vals > 0.5


def run_pyomo_highs(model, size: int, *, score_scale: float, time_limit=None, threads=None,
                    seed=0) -> dict:
    from pyomo.contrib.solver.common.factory import SolverFactory
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

    opt = SolverFactory("highs")
    kwargs = dict(load_solutions=False, raise_exception_on_nonoptimal_result=False,
                  rel_gap=0.0, abs_gap=0.0, solver_options={"random_seed": int(seed)})
    if time_limit is not None:
        kwargs["time_limit"] = float(time_limit)
    if threads is not None:
        kwargs["threads"] = int(threads)
    res = opt.solve(model, **kwargs)
    tc = res.termination_condition
    has_solution = res.solution_status in (SolutionStatus.feasible, SolutionStatus.optimal)
    x = None
    if has_solution:
        res.solution_loader.load_vars()
        x = _selection(model, size)
    if tc == TerminationCondition.convergenceCriteriaSatisfied:
        status = "optimal"
    elif tc in (TerminationCondition.provenInfeasible, TerminationCondition.locallyInfeasible):
        status = "infeasible"
    elif tc in (TerminationCondition.maxTimeLimit, TerminationCondition.iterationLimit,
                TerminationCondition.interrupted):
        status = "time_limit"
    else:
        status = "feasible" if has_solution else "error"
    bound = res.objective_bound
    bound = bound / score_scale if bound is not None and math.isfinite(bound) else math.inf
    return {"x": x, "bound": bound, "status": status, "message": str(tc.name)}


# Zero gap, and tolerances tight enough that SCIP's own objective of its x matches the value
# recomputed in numpy (at the default feastol 1e-6 they differed by 2e-7 relative).
SCIP_EXACT_OPTIONS = {"limits/gap": 0.0, "limits/absgap": 0.0, "numerics/feastol": 1e-9,
                      "numerics/dualfeastol": 1e-10}


def run_pyomo_scip(model, size: int, *, score_scale: float, time_limit=None, seed=0) -> dict:
    from pyomo.opt import TerminationCondition as TC

    opt = pyo.SolverFactory("scip_direct")
    options = dict(SCIP_EXACT_OPTIONS, **{"randomization/randomseedshift": int(seed)})
    if time_limit is not None:
        options["limits/time"] = float(time_limit)
    res = opt.solve(model, options=options, load_solutions=False)
    tc = res.solver.termination_condition
    x = None
    if len(res.solution) > 0:
        model.solutions.load_from(res)
        x = _selection(model, size)
    if tc == TC.optimal:
        status = "optimal"
    elif tc == TC.infeasible:
        status = "infeasible"
    elif tc in (TC.maxTimeLimit, TC.maxIterations, TC.userInterrupt):
        status = "time_limit"
    else:
        status = "feasible" if x is not None else "error"
    bound = res.problem.upper_bound  # maximisation: the dual bound is the upper bound
    bound = float(bound) / score_scale if bound is not None and math.isfinite(bound) else math.inf
    return {"x": x, "bound": bound, "status": status, "message": str(tc)}


def run_declared(problem, *, backend: str, score_scale: float, cost_unit: float, time_limit=None,
                 threads=None, seed=0) -> dict:
    """Declare the joint model in Pyomo and run it (picklable inputs: usable in a worker)."""
    model = problem.to_pyomo(score_scale=score_scale, cost_unit=cost_unit)
    if backend == "highs":
        return run_pyomo_highs(model, problem.num_items, score_scale=score_scale,
                               time_limit=time_limit, threads=threads, seed=seed)
    return run_pyomo_scip(model, problem.num_items, score_scale=score_scale,
                          time_limit=time_limit, seed=seed)
