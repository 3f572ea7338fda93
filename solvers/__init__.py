"""pruneopt.solvers — running declared models exactly, fast algorithms, results, cross-checks.

Never imports torch (import direction: formulations ← solvers ← models ← reports).

Layout::

    solvers/
      registry.py       solve(problem, solver, time_limit=, **options), available_solvers,
                        solver_specs; each formulation registers its solvers as a table
      result.py         SolveResult and finalize: every answer recomputed and checked in numpy
      constants.py      Status: the status words (optimal, feasible, infeasible, time_limit, error)
      crosscheck.py     crosscheck / verdicts: several solvers on one instance, flags of any lie
      deadline.py       a worker process ended at a deadline (a time limit that must hold)
      scaling.py        score / loss scaling and integer cost units for float MIP backends
      backends/         one adapter per backend: its STATUS_MAP (termination -> status word) and
                        one run at zero gap with the time limit, returning a BackendRun
        pyomo_highs.py    HiGHS on a declared Pyomo model (Pyomo's new interface)
        pyomo_scip.py     SCIP on a declared Pyomo model (MILPs; the MIQP with a stall guard)
        cpsat.py          OR-Tools CP-SAT on a declared CpModel
        highspy.py        HiGHS from arrays (HighsLp, one passModel)
        common.py         BackendRun, status_of, shared Pyomo call, version strings
      joint/ joint_qp/ allocation/ channels/
                        one package per formulation: registrations.py (imported lazily by the
                        registry: build the model, call the adapter, finalize) and the pieces
                        its solvers share (highspy array models, answer checks by improving
                        moves, reduced-cost fixing, outer approximation, enumeration, ...)
      fast/             purpose-built algorithms in vectorised numpy, one package per formulation
        joint/            FALCON's LP dual, greedy baselines, count-space branch and bound
        joint_qp/         FALCON's first-order method, the backsolve, CHITA/WoodFisher baselines
        allocation/       the Lagrangian over convex hulls, the DP over budgets, uniform baseline
        channels/         the Lagrangian with the count DP (elimination plan and evaluation),
                          the exact Pareto DP on chains
"""

from pruneopt.solvers.crosscheck import crosscheck
from pruneopt.solvers.registry import available_solvers, solve
from pruneopt.solvers.result import SolveResult

__all__ = ["SolveResult", "available_solvers", "crosscheck", "solve"]
