"""Registration of the fast and heuristic solvers of the full joint problem (a') ("joint-qp").

| name        | kind      | what it is                                                        |
|-------------|-----------|-------------------------------------------------------------------|
| falcon      | fast      | FALCON's first-order method (fast/joint_qp/falcon.py); bound:     |
|             |           | the separable lower bound (Fisher term dropped, FALCON's LP dual) |
| chita       | heuristic | NNZ-only IHT, FLOPs repaired by |w|/c, backsolve                   |
| woodfisher  | heuristic | OBS saliency by the joint ILP, WoodFisher's one-shot update       |
| magnitude   | heuristic | top-K |w̄| cut back to meet FLOPs, no update                        |

The exact solvers (enumeration, outer approximation, SCIP) are in registrations.py.
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.solvers.constants import Status
from pruneopt.solvers.registry import SolverSpec, register
from pruneopt.solvers.result import finalize

KIND = "joint-qp"


def _finish(problem, name, w, bound, options, info, message=""):
    return finalize(problem, solver=name, x=w, bound=bound, backend_status=Status.FEASIBLE,
                    backend="pruneopt.fast", backend_version=np.__version__, options=options,
                    info=info, message=message)


def _run_falcon(problem, *, time_limit=None, projection="falcon", max_iter=20):
    from pruneopt.solvers.fast.joint_qp.falcon import falcon_qp, separable_lower_bound

    run = falcon_qp(problem, projection=projection, max_iter=max_iter, time_limit=time_limit)
    bound = separable_lower_bound(problem)
    status_note = "time limit reached" if run.stopped == "time_limit" else ""
    return _finish(problem, "falcon", run.w, bound,
                   {"projection": projection, "max_iter": max_iter, "time_limit": time_limit},
                   run.summary(), status_note)


def _run_baseline(name):
    def run(problem, *, time_limit=None):
        from pruneopt.solvers.fast.joint_qp import baselines as qp_baselines

        func = {"chita": qp_baselines.chita_qp, "woodfisher": qp_baselines.woodfisher_qp,
                "magnitude": qp_baselines.magnitude_qp}[name]
        w, info = func(problem)
        return _finish(problem, name, w, math.nan, {"time_limit": time_limit},
                       {k: v for k, v in info.items() if k != "objective"})
    return run


register(SolverSpec("falcon", KIND, _run_falcon, exact=False,
                    description="FALCON: IHT with the joint ILP as projection + backsolve; "
                                "separable certified bound",
                    options=("projection", "max_iter")))
for _name, _desc in (("chita", "NNZ-only IHT, FLOPs repaired by |w|/c, backsolve"),
                     ("woodfisher", "OBS saliency via the joint ILP, WoodFisher update"),
                     ("magnitude", "top-K |w| cut back to meet FLOPs, no update")):
    register(SolverSpec(_name, KIND, _run_baseline(_name), exact=False, description=_desc))
