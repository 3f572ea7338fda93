"""Numerical scaling for floating-point MIP backends (DESIGN §7, measured pitfalls).

HiGHS treats objective coefficients below its tolerances as zero and drops matrix coefficients
below 1e-9; scaling scores by their maximum makes most of a heavy-tailed score vector tiny. So:

* scores are multiplied by σ = 1 / (the score at the LP decision threshold), which puts the
  items that the solver must decide between at order one. The threshold comes from the exact LP
  dual (λ*, ω*): in layer g the LP keeps the items with s_i > λ* c_g + ω*; σ uses the median of
  those per-layer thresholds over the layers that have items on both sides of it;
* MAC costs are divided by their greatest common divisor when they are integers (exact), and
  otherwise left as they are — never normalised to tiny fractions.

The reported objective is always recomputed from x on the original scores.
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.solvers.fast.lagrangian import solve_dual
from pruneopt.solvers.fast.sorted_layers import SortedLayers


def threshold_score_scale(problem) -> float:
    """σ such that the scores at the LP decision threshold are about 1."""
    s = problem.scores
    top = float(s.max()) if s.size else 0.0
    if top <= 0:
        return 1.0
    layers = SortedLayers(s, problem.group_ptr, problem.flop_cost)
    dual = solve_dual(layers, problem.nnz_budget, problem.flop_budget)
    thr = dual.lam * layers.cost + dual.omega
    kept = layers.count_above(thr)
    contested = (kept > 0) & (kept < layers.size) & (thr > 0)
    if np.any(contested):
        level = float(np.median(thr[contested]))
    else:
        positive = s[s > 0]
        level = float(np.median(positive)) if positive.size else top
    return 1.0 / level if level > 0 else 1.0 / top


def integer_cost_divisor(costs: np.ndarray) -> float:
    """The gcd of the costs when they are all integers (dividing by it is exact), else 1."""
    if costs.size == 0 or np.any(costs != np.rint(costs)) or np.any(costs > 2.0**62):
        return 1.0
    return float(math.gcd(*np.rint(costs).astype(np.int64).tolist()))
