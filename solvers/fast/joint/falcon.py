"""FALCON's algorithm for the joint ILP: exact LP dual, rounding that meets both budgets, bound.

1. Presort each layer's scores once (:class:`SortedLayers`).
2. Solve the LP dual exactly (:func:`solve_dual`): ω in closed form for each λ, bisection on λ.
   The smallest dual value evaluated is returned as the certified ``bound``.
3. Primal: the selection "a_i > ω*" at the upper end of the final λ bracket meets both budgets
   (the bisection keeps that invariant). Then a greedy fill spends what is left of both budgets:
   layers in decreasing order of their next reduced score a = s − λc, each taking as many of its
   next items as still fit. This is FALCON's "longest prefix that fits", improved by letting
   cheaper layers use the leftover FLOPs; the LP solution has at most two fractional items, so
   the loss against the bound is at most about two items' scores.

Everything is vectorised over items; the only Python loops run over layers or bisection steps.
"""

from __future__ import annotations

import numpy as np

from pruneopt.solvers.fast.joint.lagrangian import DualSolution, solve_dual
from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers


def greedy_fill(layers: SortedLayers, k: np.ndarray, lam: float, K: int, F: float) -> np.ndarray:
    """Add items to the counts k while both budgets allow, best reduced score first (per layer)."""
    k = np.array(k, dtype=np.int64)
    nnz_left = K - int(k.sum())
    flops_left = F - float(k @ layers.cost)
    if nnz_left <= 0 or flops_left <= 0:
        return k
    nxt = layers.score_at(k)
    positive = layers.count_above(np.zeros(layers.L))  # only items with s > 0 add value
    order = np.argsort(-(nxt - lam * layers.cost), kind="stable")
    for g in order.tolist():
        if nnz_left <= 0:
            break
        fit = min(int(positive[g] - k[g]), nnz_left, int(flops_left // layers.cost[g]))
        if fit <= 0:
            continue
        k[g] += fit
        nnz_left -= fit
        flops_left -= fit * float(layers.cost[g])
    return k


def falcon_counts(problem) -> tuple[SortedLayers, DualSolution, np.ndarray]:
    """Presort, solve the dual, round and fill: the per-layer counts of FALCON's selection."""
    layers = SortedLayers(problem.scores, problem.group_ptr, problem.flop_cost)
    dual = solve_dual(layers, problem.nnz_budget, problem.flop_budget)
    k = greedy_fill(layers, dual.counts, dual.lam, problem.nnz_budget, problem.flop_budget)
    return layers, dual, k


def falcon_select(problem):
    """Run FALCON on a joint problem; return (x, bound, info)."""
    layers, dual, k = falcon_counts(problem)
    x = layers.select(problem.scores, k)
    info = {
        "lambda": dual.lam,
        "lambda_lo": dual.lam_lo,
        "omega": dual.omega,
        "dual_evaluations": dual.evaluations,
        "omega_steps": dual.omega_steps,
        "lp_bound": dual.bound,
    }
    return x, dual.bound, info
