"""Count windows: reduced-cost fixing on the channel counts from the Lagrangian bound.

For μ ≥ 0 and any box B of counts (lo ≤ k ≤ hi), every feasible k ∈ B has

    Σ_g V_g(k_g) ≤ D_B(μ) = max_{k ∈ B} [Σ_g V_g(k_g) − μ FLOPs(k)] + μ F,

computed exactly by the count DP of :class:`~pruneopt.solvers.fast.channels.dp.CountElimination`
restricted to B (an upper bound when the DP has cut edges). So with an incumbent of value T, the
counts j of group g with D_{B ∩ {k_g ≤ j}}(μ) ≤ T (and likewise from above) hold nothing better
than T: :func:`count_windows` finds, by bisection on j (the restricted bound is monotone in j),
the window [lo_g, hi_g] outside which no count can beat the incumbent, group after group, and
repeats while the windows shrink (a smaller box tightens every other group's bound).

Float safety: each D is evaluated in float64 and a value is excluded only when
D + margin ≤ T with margin = ``1e-11 · max(|D|, |T|)`` on top of the DP's own 1e-12 relative
rounding slack, so an excluded count is at most T in exact arithmetic (the DP sums a few
thousand float64 terms of one sign: its relative error is far below 1e-11).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from pruneopt.solvers.fast.channels.elimination import CountElimination

EXCLUDE_MARGIN = 1e-11
ROUNDING_SLACK = 1e-12


@dataclass
class WindowResult:
    lo: np.ndarray
    hi: np.ndarray
    empty: bool  # no count vector in the box can beat the threshold
    evaluations: int
    rounds: int
    seconds: float
    complete: bool  # every group was windowed in the last round (no time-out)


def box_bound(problem, el: CountElimination, mu: float, lo, hi) -> float:
    """D_B(μ) plus its rounding slack: a valid upper bound on the value of every feasible k in
    the box (−inf when the box holds no allowed count)."""
    ans = el.solve(mu, None, lo, hi)
    if not ans.value > -math.inf:
        return -math.inf
    vtot = float(sum(problem.value_table(g)[-1] for g in range(problem.num_groups)))
    return ans.value + mu * problem.flop_budget + ROUNDING_SLACK * (
        vtot + mu * problem.dense_flops)


def _excluded(D: float, T: float) -> bool:
    return D + EXCLUDE_MARGIN * max(abs(D), abs(T), 1e-300) <= T


def _with(v: np.ndarray, g: int, value: int) -> np.ndarray:
    out = v.copy()
    out[g] = value
    return out


def _refuted_end(refuted: int, open_: int, is_refuted) -> int:
    """Bisection between a count ``refuted`` (its box is excluded, e.g. empty) and ``open_`` (not
    excluded), either side of it: the count nearest ``open_`` still excluded, given that
    ``is_refuted`` is monotone along the way."""
    while abs(open_ - refuted) > 1:
        mid = (refuted + open_) // 2
        if is_refuted(mid):
            refuted = mid
        else:
            open_ = mid
    return refuted


def count_windows(problem, el: CountElimination, mu: float, threshold: float, *,
                  lo=None, hi=None, deadline: float | None = None,
                  max_rounds: int = 4) -> WindowResult:
    """Windows [lo_g, hi_g] such that every feasible k outside them has value ≤ ``threshold``
    (module docstring). ``deadline``: a ``time.perf_counter()`` value to stop at (the windows
    found so far stay valid)."""
    start = time.perf_counter()
    n = problem.group_sizes
    lo = np.where(problem.blocks >= 0, 0, problem.min_keep).astype(np.int64) if lo is None \
        else np.array(lo, dtype=np.int64)
    hi = n.astype(np.int64).copy() if hi is None else np.array(hi, dtype=np.int64)
    evals = 0
    rounds = 0
    complete = True
    order = np.argsort(-(hi - lo), kind="stable")

    def bound(lo_, hi_):
        nonlocal evals
        evals += 1
        return box_bound(problem, el, mu, lo_, hi_)

    if _excluded(bound(lo, hi), threshold):
        return WindowResult(lo, hi, True, evals, 0, time.perf_counter() - start, True)
    for rounds in range(1, max_rounds + 1):
        changed = False
        for g in order.tolist():
            if deadline is not None and time.perf_counter() > deadline:
                complete = False
                break
            if hi[g] == lo[g]:
                continue
            # from below: the largest a with the box {k_g ≤ a} excluded
            L = _refuted_end(lo[g] - 1, hi[g], lambda a: _excluded(
                bound(lo, _with(hi, g, a)), threshold))
            if L >= lo[g]:
                lo[g] = L + 1
                changed = True
            if lo[g] > hi[g]:
                return WindowResult(lo, hi, True, evals, rounds, time.perf_counter() - start,
                                    True)
            # from above: the smallest b with the box {k_g ≥ b} excluded
            R = _refuted_end(hi[g] + 1, lo[g], lambda b: _excluded(
                bound(_with(lo, g, b), hi), threshold))
            if R <= hi[g]:
                hi[g] = R - 1
                changed = True
        if not changed or not complete:
            break
    return WindowResult(lo, hi, False, evals, rounds, time.perf_counter() - start, complete)


# ============================================================================ branch and bound
@dataclass
class BoxSearchResult:
    k: np.ndarray | None  # the best counts found (None: nothing beat the incumbent given)
    value: float
    proven: bool  # every box was explored: nothing in the root box beats ``value``
    bound: float  # an upper bound on the root box's optimum (value when proven)
    nodes: int
    evaluations: int
    seconds: float


def _node_bound(problem, el, mu0, lo, hi, threshold, counter):
    """min over a few μ near μ0 of D_B(μ) (each one valid), stopping once one excludes the box;
    returns (bound, μ used, the DP's counts at that μ)."""
    F = problem.flop_budget
    best = (math.inf, mu0, None)
    mu = mu0
    step = 1.25
    last_dir = 0
    for _ in range(8):
        counter[0] += 1
        ans = el.solve(mu, None, lo, hi)
        if not ans.value > -math.inf:
            return -math.inf, mu, None
        vtot = float(problem.sorted_scores.sum())
        D = ans.value + mu * F + ROUNDING_SLACK * (vtot + mu * problem.dense_flops)
        if D < best[0]:
            best = (D, mu, ans.k)
        if _excluded(best[0], threshold):
            break
        f = problem.flops_of_counts(ans.k)
        direction = 1 if f > F else -1  # the subgradient F − FLOPs(k) of D at μ
        if mu == 0 and direction < 0:
            break
        if last_dir and direction != last_dir:
            step = math.sqrt(step)
        last_dir = direction
        mu = mu * step if direction > 0 else mu / step
        if abs(step - 1.0) < 1e-4:
            break
    return best


def box_search(problem, el: CountElimination, mu: float, lo, hi, *, incumbent_k=None,
               incumbent_value: float = -math.inf, deadline: float | None = None,
               max_nodes: int = 200_000) -> BoxSearchResult:
    """Depth-first branch and bound over the counts in the box lo ≤ k ≤ hi, with the
    Lagrangian box bound D_B(μ) (μ adjusted per node, a few DP solves) at every node; a node
    whose bound cannot beat the best value (up to :data:`EXCLUDE_MARGIN`) is pruned; a box of
    one count vector is evaluated exactly. Branching halves the widest window, the half holding
    the DP's counts first."""
    start = time.perf_counter()
    best_k = None if incumbent_k is None else np.asarray(incumbent_k, dtype=np.int64)
    best_v = incumbent_value
    counter = [0]
    nodes = 0
    open_bound = -math.inf  # the largest bound of a box left unexplored
    stack = [(np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64), mu)]
    F = problem.flop_budget
    tol = 1e-9 * max(1.0, F)
    while stack:
        if (deadline is not None and time.perf_counter() > deadline) or nodes >= max_nodes:
            for blo, bhi, bmu in stack:
                open_bound = max(open_bound, box_bound(problem, el, bmu, blo, bhi))
            stack = []
            break
        blo, bhi, bmu = stack.pop()
        nodes += 1
        if np.all(blo == bhi):
            if problem.counts_feasible(blo):
                v = problem.value_of_counts(blo)
                if v > best_v:
                    best_v, best_k = v, blo.copy()
            continue
        D, nmu, kdp = _node_bound(problem, el, bmu, blo, bhi, best_v, counter)
        if _excluded(D, best_v):
            continue
        if kdp is not None and problem.flops_of_counts(kdp) <= F + tol \
                and problem.counts_feasible(kdp):
            v = problem.value_of_counts(kdp)
            if v > best_v:
                best_v, best_k = v, kdp.copy()
                if _excluded(D, best_v):
                    continue
        width = bhi - blo
        g = int(np.argmax(width))
        mid = (int(blo[g]) + int(bhi[g])) // 2
        lo_a, hi_a = blo.copy(), bhi.copy()
        hi_a[g] = mid
        lo_b, hi_b = blo.copy(), bhi.copy()
        lo_b[g] = mid + 1
        first_low = kdp is not None and kdp[g] <= mid
        if first_low:
            stack.append((lo_b, hi_b, nmu))
            stack.append((lo_a, hi_a, nmu))
        else:
            stack.append((lo_a, hi_a, nmu))
            stack.append((lo_b, hi_b, nmu))
    proven = open_bound == -math.inf or _excluded(open_bound, best_v)
    bound = best_v if proven else max(best_v, open_bound)
    return BoxSearchResult(best_k, best_v, proven, bound, nodes, counter[0],
                           time.perf_counter() - start)
