"""The greedy rules users reach for, as baselines: ``magnitude`` and ``ratio``.

Both order the items by a key and keep the longest prefix of that order that meets both budgets
(and stop at items of score 0, which add nothing):

* magnitude — key s_i: global top-K by score, cut back until the FLOP budget holds;
* ratio     — key s_i / c_{g(i)}: value per MAC, the classic knapsack greedy (FALCON's |w|/f
              repair rule).

Neither has a dual, so each reports the weaker of two cheap valid bounds: the LP with only the
NNZ row (the sum of the K largest scores) and the LP with only the FLOP row (the fractional
knapsack: items by s/c, the last one fractional). Their minimum bounds the joint ILP.
"""

from __future__ import annotations

import numpy as np


def prefix_selection(problem, key: np.ndarray) -> np.ndarray:
    """Keep the longest prefix of the items sorted by decreasing key that meets both budgets."""
    s, c = problem.scores, problem.item_cost
    order = np.argsort(-key, kind="stable")
    positive = int(np.count_nonzero(s > 0))  # key ≥ 0 puts every zero score after them
    cum_cost = np.cumsum(c[order])
    m = int(np.searchsorted(cum_cost, problem.flop_budget, side="right"))
    m = min(m, problem.nnz_budget, positive)
    x = np.zeros(s.size, dtype=bool)
    x[order[:m]] = True
    return x


def relaxation_bound(problem) -> float:
    """min(LP with the NNZ row only, LP with the FLOP row only): a valid upper bound."""
    s, c = problem.scores, problem.item_cost
    K = min(problem.nnz_budget, s.size)
    nnz_only = float(np.sum(np.partition(s, s.size - K)[s.size - K:])) if K > 0 else 0.0
    ratio = s / c
    order = np.argsort(-ratio, kind="stable")
    cum_cost = np.cumsum(c[order])
    j = int(np.searchsorted(cum_cost, problem.flop_budget, side="right"))
    flop_only = float(np.sum(s[order[:j]]))
    if j < s.size:
        left = problem.flop_budget - (float(cum_cost[j - 1]) if j > 0 else 0.0)
        flop_only += max(left, 0.0) * float(ratio[order[j]])
    return min(nnz_only, flop_only)


def magnitude_select(problem):
    return prefix_selection(problem, problem.scores), relaxation_bound(problem), {}


def ratio_select(problem):
    return prefix_selection(problem, problem.scores / problem.item_cost), relaxation_bound(problem), {}
