"""FALCON's discrete first-order method on the full joint problem (a'), in pure numpy.

The problem (``JointQuadraticProblem``; see :mod:`pruneopt.solvers.fast.joint_qp.backsolve` for Q):

    minimize Q(w)   s.t.  ‖w‖₀ ≤ K,  Σ_i c_{g(i)} 1[w_i ≠ 0] ≤ F.

**Iteration.** With L the largest eigenvalue of ∇²Q, an iterative-hard-thresholding step

    u = w − (1/L)·∇Q(w),     z = argmax_{z feasible} Σ_i u_i² z_i     (the joint ILP, §2a)

projects the gradient step onto the budgets (u ⊙ z is the Euclidean projection), and the
backsolve w ← argmin {Q(w) : w_i = 0 off z} re-fits the kept weights. Q(u ⊙ z) ≤ Q(w) when
the projection is exact (the step minimises the L-majoriser of Q over the feasible set, and
w itself is feasible), and the backsolve can only lower it further, so the iterates descend
until the support repeats (a fixed point). Because 1/L is far too short to move a support
when the Fisher has rank n ≪ p, each iteration line-searches over longer steps (see
:func:`_line_search`) and keeps the best backsolved candidate; an iteration that does not
lower Q ends the run.
The start is FALCON's released "BS" algorithm: the ILP on w̄² (magnitude), then backsolve.

**Certified bound.** Dropping the (positive semidefinite) Fisher term gives the separable
lower bound Q(w) ≥ Σ_i [(λ/2) d_i² + a_i d_i]. Minimised over d_i, keeping i is worth
−a_i²/(2λ) and pruning it (d_i = −w̄_i) costs (λ/2)w̄_i² − a_i w̄_i; the difference is
s_i = (λw̄_i − a_i)²/(2λ) ≥ 0. Hence for every feasible w

    Q(w) ≥ Σ_i [(λ/2)w̄_i² − a_i w̄_i] − max_{z feasible} Σ_i s_i z_i ≥ Σ_i drop_i − UB_LP(s),

with UB_LP the LP-dual bound of the joint ILP. It is valid but weak when the Fisher term
dominates (the gap it certifies is honest, not small); exact values come from the MIQP
solvers on small layers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from pruneopt.formulations.joint.problem import JointBudgetProblem
from pruneopt.solvers.fast.joint_qp.backsolve import (
    hessian_norm,
    quadratic_gradient,
    quadratic_objective,
    restricted_ridge,
)

# Step sizes are (1/L)·scale. The line search brackets the shortest support-changing scale by
# factors of BRACKET, then refines upward by REFINE (CHITA's code uses 1.2) for MAX_TRIALS steps.
BRACKET = 4.0
REFINE = 1.2
MAX_TRIALS = 12
MAX_SCALE = 1e12


@dataclass
class FalconRun:
    """What one FALCON run did: the weights, the objective at each step, the projections."""

    w: np.ndarray
    objective: float
    objectives: list[float] = field(default_factory=list)  # Q after init and each accepted step
    support_changes: list[int] = field(default_factory=list)  # items entering or leaving
    projection_gaps: list[float] = field(default_factory=list)  # certified gap of each ILP
    projections: int = 0
    iterations: int = 0
    stopped: str = ""
    seconds_projection: float = 0.0
    seconds_backsolve: float = 0.0
    step: float = math.nan

    def summary(self) -> dict:
        return {
            "objective": self.objective,
            "objectives": list(self.objectives),
            "support_changes": list(self.support_changes),
            "max_projection_gap": max(self.projection_gaps, default=0.0),
            "projections": self.projections,
            "iterations": self.iterations,
            "stopped": self.stopped,
            "seconds_projection": self.seconds_projection,
            "seconds_backsolve": self.seconds_backsolve,
            "step": self.step,
        }


def projection_problem(problem, scores: np.ndarray) -> JointBudgetProblem:
    """The joint ILP with the quadratic problem's layers and budgets and the given scores."""
    return JointBudgetProblem(
        scores=scores,
        group_ptr=problem.group_ptr,
        flop_cost=problem.flop_cost,
        nnz_budget=problem.nnz_budget,
        flop_budget=problem.flop_budget,
    )


def falcon_qp(problem, *, projection: str = "falcon", max_iter: int = 20,
              max_trials: int = MAX_TRIALS, tol: float = 1e-12,
              time_limit: float | None = None, callback=None) -> FalconRun:
    """Run FALCON on a ``JointQuadraticProblem``; ``projection`` names the joint ILP solver.

    ``callback(iteration, objective)`` is called after each accepted step (progress bars).
    With ``time_limit`` (or inside a solve with one: :class:`~pruneopt.solvers.deadline.Clock`)
    the clock is checked before every projection after the first (the start, magnitude and
    its backsolve, is always computed); ``stopped`` is then ``"time_limit"``.
    """
    from pruneopt.solvers.deadline import Clock
    from pruneopt.solvers.registry import solve

    clock = Clock(time_limit)
    X, w_bar, lam, a, blocks = (problem.X, problem.w_bar, problem.ridge, problem.linear,
                                problem.block_ptr)
    run = FalconRun(w=np.zeros_like(w_bar), objective=math.nan)

    def project(u: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        res = solve(projection_problem(problem, u * u), projection)
        run.seconds_projection += time.perf_counter() - t0
        run.projections += 1
        if res.x is None or not res.feasible:
            raise RuntimeError(f"projection: solver '{projection}' returned no feasible "
                               f"selection ({res.status}: {res.message})")
        run.projection_gaps.append(float(res.gap))
        return np.asarray(res.x, dtype=bool)

    def backsolve(z: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        w = restricted_ridge(X, w_bar, lam, a, z, blocks)
        run.seconds_backsolve += time.perf_counter() - t0
        return w, quadratic_objective(X, w_bar, lam, a, w, blocks)

    support = project(w_bar)
    w, q = backsolve(support)
    run.objectives.append(q)
    run.step = 1.0 / hessian_norm(X, lam, blocks)
    run.stopped = "max_iter"
    scale = 1.0
    for it in range(max_iter):
        if clock.expired():
            run.stopped = "time_limit"
            break
        grad = quadratic_gradient(X, w_bar, lam, a, w, blocks)
        best, scale = _line_search(w, grad, run.step, scale, support, project, backsolve,
                                   max_trials, clock.expired)
        run.iterations = it + 1
        if clock.expired():
            run.stopped = "time_limit"
            if best is not None and best[2] < q:
                support, w, q = best
                run.objectives.append(q)
            break
        if best is None or best[2] >= q - tol * max(1.0, abs(q)):
            run.stopped = "fixed point" if best is None else "no descent"
            break
        run.support_changes.append(int(np.count_nonzero(best[0] != support)))
        support, w, q = best
        run.objectives.append(q)
        if callback is not None:
            callback(it + 1, q)
    run.w, run.objective = w, q
    return run


def _line_search(w, grad, step, scale, support, project, backsolve, max_trials,
                 expired=lambda: False):
    """Best backsolved candidate along the projected-gradient path w − (scale/L)·∇Q(w).

    1/L guarantees descent but, with L the top eigenvalue of a Fisher of rank n ≪ p, it is far
    too short to change a support, while long steps swap hundreds of weights at once and
    overshoot (CHITA's code line-searches for the same reason). So the search first brackets
    the shortest support-changing step (scales ×BRACKET from ``scale``), then walks up from
    there by ×REFINE while the backsolved objective keeps improving, for at most
    ``max_trials`` candidates. Returns ((z, w, Q) or None, the bracket's lower scale). Once
    ``expired()`` holds, no further projection is made: the best candidate so far is returned.
    """
    def moved(sc):
        z = project(w - (sc * step) * grad)
        return None if np.array_equal(z, support) else z

    lo, z = scale, moved(scale)
    if z is not None and scale > 1.0 and not expired():  # the bracket is too long now: 1/L
        lo, z = 1.0, moved(1.0)
    while z is None and lo < MAX_SCALE:
        if expired():
            return None, scale
        lo *= BRACKET
        z = moved(lo)
    if z is None:
        return None, scale
    lo /= BRACKET  # the last scale that kept the support
    best = None
    sc, trials = lo, 0
    while trials < max_trials and sc < MAX_SCALE and not expired():
        sc *= REFINE
        z = moved(sc)
        trials += 1
        if z is None:
            continue
        cand, qc = backsolve(z)
        if best is not None and qc >= best[2]:
            break
        best = (z, cand, qc)
    return best, max(lo, 1.0)


def separable_lower_bound(problem) -> float:
    """The certified lower bound of the module docstring (uses FALCON's exact LP dual)."""
    from pruneopt.solvers.registry import solve

    lam = float(problem.ridge)
    w_bar = problem.w_bar
    a = problem.linear if problem.linear is not None else np.zeros_like(w_bar)
    drop = 0.5 * lam * w_bar * w_bar - a * w_bar
    gain = (lam * w_bar - a) ** 2 / (2.0 * lam)
    res = solve(projection_problem(problem, gain), "falcon")
    return float(np.sum(drop) - res.bound)
