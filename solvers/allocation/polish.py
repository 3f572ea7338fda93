"""A check on floating-point answers of the allocation, and the LP bound that backs every bound.

A float MIP solver treats loss differences below its tolerances as zero (DESIGN §7): it can
return a choice that a single move improves and still report "optimal". Every answer of HiGHS
(either route) and CP-SAT is passed through :func:`check_answer`: improving moves that recompute
losses in float64 (:func:`pruneopt.solvers.fast.allocation.hull.improve`) refute such an
optimum, and the reported bound becomes at least the LP dual value D(λ, ω) of
:mod:`pruneopt.solvers.fast.allocation.hull` (valid by weak duality); a backend bound that a
returned choice contradicts is replaced by it.

Choices are handled here as flat option indices (``idx``, one per layer), as the hull module
does; :func:`choice_of` turns them into the problem's decision (option index within each layer).
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.solvers.constants import Status
from pruneopt.solvers.fast.allocation.hull import (
    MckpData,
    dual_rounding,
    improve,
    reduced_costs,
    repair,
    solve_dual,
)

EPS = np.finfo(np.float64).eps


def lp_dual(problem):
    """(data, the LP dual, its reduced costs — None when the LP is infeasible)."""
    data = MckpData.from_problem(problem)
    dual = solve_dual(data)
    rc = reduced_costs(data, dual.lam, dual.omega) if dual.feasible else None
    return data, dual, rc


def fast_incumbent(data, dual, rc):
    """The fast solver's choice (flat indices) and its loss, from an already solved dual (None,
    inf when no candidate can be repaired)."""
    best, best_e = None, math.inf
    for cand in dual.candidates[-4:] + dual.candidates[:1]:
        fixed = repair(data, cand)
        if fixed is None:
            continue
        fixed, _ = improve(data, fixed, rc)
        e = float(np.sum(data.loss[fixed]))
        if e < best_e:
            best, best_e = fixed, e
    return best, best_e


def check_answer(data, dual, rc, idx, bound, status, message, rounding=0.0):
    """Improving moves on a float solver's answer; keep the bound only while no choice refutes it.

    The bound becomes at least the LP bound D(λ, ω). ``rounding`` is the float error of turning
    the backend's bound back into loss units (a few ulp of the terms added); a bound within it
    of the recomputed objective of a backend-proven optimum is that objective (this matters only
    when the objective is 0, where the relative gap cannot absorb one ulp). A bound above the
    objective by more than that is contradicted and replaced by D.

    Returns (choice flat indices, bound, status, message)."""
    if idx is None:
        return idx, bound, status, message
    z = float(np.sum(data.loss[idx]))
    better, moves = improve(data, idx, rc)
    zb = float(np.sum(data.loss[better]))
    if moves and zb < z:
        message += (f"; improved by {moves} move(s) ({zb - z:.3g}): the solver's tolerances hid "
                    "small loss differences; its optimum is refuted")
        if status == Status.OPTIMAL:
            status = Status.FEASIBLE
        idx, z = better, zb
    if dual is not None and dual.feasible:
        bound = max(bound, dual.bound) if not math.isnan(bound) else dual.bound
        if z < dual.bound <= z + dual_rounding(data, dual.lam, dual.omega):
            bound = z  # D ≤ optimum ≤ z: D exceeds z only by its own rounding
    if status == Status.OPTIMAL and abs(bound - z) <= rounding:
        bound = z
    elif bound > z + 1e-12 * abs(z) and dual is not None and dual.feasible:
        bound = dual.bound  # the solver's bound is contradicted; the LP bound is valid
    return idx, bound, status, message


def check_backend_answer(problem, idx, bound, status, message, rounding=0.0):
    """:func:`check_answer` on a backend's answer (flat indices ``idx``), with the LP dual solved
    here; an ``infeasible`` answer gets the bound +inf unchecked. Returns (choice, bound, status,
    message, LP bound) with the choice as the problem's decision (or None)."""
    data, dual, rc = lp_dual(problem)
    if status == Status.INFEASIBLE:
        return choice_of(problem, idx), math.inf, status, message, dual.bound
    idx, bound, status, message = check_answer(data, dual, rc, idx, bound, status, message,
                                               rounding=rounding)
    return choice_of(problem, idx), bound, status, message, dual.bound


def flat_index(problem, choice):
    """Flat option indices of a per-layer choice (None stays None)."""
    return None if choice is None else problem.option_ptr[:-1] + np.asarray(choice)


def choice_of(problem, idx):
    """The per-layer choice (option index within each layer) of flat option indices."""
    return None if idx is None else np.asarray(idx, dtype=np.int64) - problem.option_ptr[:-1]
