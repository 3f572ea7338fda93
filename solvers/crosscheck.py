"""Run several solvers on one instance and flag any disagreement that proves a bug.

For a maximisation, with z_s the recomputed objective of solver s (on its returned x) and b_s its
bound, the verdict of a row lists every flag that applies:

1. ``beaten-optimum``     — s claims a proven optimum, yet another solver's feasible x is better;
2. ``bound-below-feasible`` — b_s is below another solver's feasible objective (an invalid bound);
3. ``infeasible-x``       — s returned an x that violates a constraint (or is not 0/1);
4. ``optima-differ``      — s and another solver both claim proven optima that differ.

A decision made elsewhere (a pruning method's mask) can stand beside the solvers: pass it in
``decisions={name: x}`` and it gets a row of its own (status ``feasible`` or ``infeasible``,
no bound), so that its gap to the best bound and any flag against it are read off the same table.

Comparisons allow a relative tolerance (1e-9 by default, the proof tolerance), never an absolute
one, so that verdicts do not depend on the units of the scores. A row with no flag
reads ``ok``. Any flag is a bug in a formulation or a solver.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from pruneopt.solvers.constants import Status
from pruneopt.solvers.registry import solve
from pruneopt.solvers.result import SolveResult

COLUMNS = ["solver", "status", "proven_optimal", "objective", "bound", "gap", "gap_to_best_bound",
           "seconds", "feasible", "verdict", "message"]


def run_solvers(problem, solvers: Iterable[str], *, time_limit=None,
                options: dict[str, dict] | None = None) -> list[SolveResult]:
    """Solve with each solver in turn; a solver that raises becomes an ``error`` result row."""
    from pruneopt.solvers.registry import get_solver

    results = []
    options = options or {}
    names = list(solvers)
    for name in names:  # unknown names fail before any solve starts
        get_solver(problem, name)
    for name in names:
        try:
            results.append(solve(problem, name, time_limit=time_limit, **options.get(name, {})))
        except Exception as exc:  # noqa: BLE001 — one failing backend must not hide the others
            results.append(SolveResult(
                solver=name, formulation=problem.kind, status=Status.ERROR.value, x=None,
                objective=math.nan, bound=math.nan, gap=math.nan, seconds=math.nan,
                proven_optimal=False, backend=name, backend_version="", sense=problem.sense,
                message=f"{type(exc).__name__}: {exc}"))
    return results


def verdicts(problem, results: Sequence[SolveResult], rtol: float = 1e-9) -> pd.DataFrame:
    """The cross-check table of already computed results (see the module docstring)."""
    sign = 1.0 if problem.sense == "maximize" else -1.0
    feas = []
    for r in results:
        ok = r.x is not None and problem.is_feasible(r.x)
        z = problem.evaluate(r.x).objective if r.x is not None and ok else math.nan
        feas.append((ok, z))

    def better(a: float, b: float) -> bool:  # a strictly better than b beyond the tolerance
        # purely relative, so that verdicts do not depend on the units of the scores
        return sign * (a - b) > rtol * max(abs(a), abs(b), 1e-300)

    feasible_objs = [z for ok, z in feas if ok]
    best_feasible = (max(feasible_objs) if sign > 0 else min(feasible_objs)) if feasible_objs \
        else math.nan
    bounds = [r.bound for r in results if not math.isnan(r.bound)]
    best_bound = (min(bounds) if sign > 0 else max(bounds)) if bounds else math.nan
    rows = []
    for i, r in enumerate(results):
        ok, z = feas[i]
        flags = []
        if r.x is not None and not ok:
            flags.append("infeasible-x")
        for j, other in enumerate(results):
            if j == i:
                continue
            ok_j, z_j = feas[j]
            if r.proven_optimal and ok_j and ok and better(z_j, z):
                flags.append(f"beaten-optimum({other.solver})")
            if ok_j and not math.isnan(r.bound) and better(z_j, r.bound):
                flags.append(f"bound-below-feasible({other.solver})")
            if r.proven_optimal and other.proven_optimal and ok and ok_j and (
                    better(z, z_j) or better(z_j, z)):
                flags.append(f"optima-differ({other.solver})")
        z_row = z if ok else math.nan
        gap_best = (abs(best_bound - z_row) / max(abs(best_bound), abs(z_row), 1e-300)
                    if not (math.isnan(best_bound) or math.isnan(z_row)) else math.nan)
        if best_bound == 0 and z_row == 0:
            gap_best = 0.0
        rows.append({
            "solver": r.solver, "status": r.status, "proven_optimal": r.proven_optimal,
            "objective": r.objective, "bound": r.bound, "gap": r.gap,
            "gap_to_best_bound": gap_best, "seconds": r.seconds, "feasible": ok,
            "verdict": "ok" if not flags else " ".join(flags), "message": r.message,
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["best_feasible"] = best_feasible
    df.attrs["best_bound"] = best_bound
    return df


def decision_result(problem, name: str, x) -> SolveResult:
    """A fixed decision as a result row: objective recomputed, no bound, nothing proven."""
    x = problem.canonical(x) if hasattr(problem, "canonical") else np.asarray(x)
    ev = problem.evaluate(x)
    ok = bool(problem.is_feasible(x))
    return SolveResult(
        solver=name, formulation=problem.kind,
        status=(Status.FEASIBLE if ok else Status.INFEASIBLE).value, x=x,
        objective=ev.objective, bound=math.nan, gap=math.nan, seconds=0.0,
        proven_optimal=False, backend="decision", backend_version="", sense=problem.sense,
        feasible=ok, usage=dict(ev.usage), message="a given decision (not a solver)")


def crosscheck(problem, solvers: Iterable[str], *, time_limit=None,
               options: dict[str, dict] | None = None, rtol: float = 1e-9,
               decisions: dict | None = None) -> pd.DataFrame:
    """Run ``solvers`` on ``problem`` and return one row per solver with its verdict, plus one
    row per given decision (``decisions={name: x}``)."""
    results = run_solvers(problem, solvers, time_limit=time_limit, options=options)
    for name, x in (decisions or {}).items():
        results.append(decision_result(problem, name, x))
    df = verdicts(problem, results, rtol=rtol)
    df.attrs["results"] = results
    return df


def any_flag(df: pd.DataFrame) -> bool:
    return bool(np.any(df["verdict"] != "ok"))
