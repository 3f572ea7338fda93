"""The uniform baseline of the layer budget allocation, and its trivial bound (pure numpy).

``uniform_choice`` keeps the same option in every layer (the same ``option_labels`` value, or
the same index when the problem has no labels): the densest that meets both budgets.
``single_row_bound`` is the better of the two LP relaxations that keep one budget row each —
a valid lower bound that needs no search.
"""

from __future__ import annotations

import math

import numpy as np

from pruneopt.solvers.fast.allocation.hull import MckpData, hull_lp


def single_row_bound(problem) -> float:
    """max(LP with the NNZ row only, LP with the FLOP row only): a valid lower bound
    (Σ_g min_j e_gj without budgets; +inf when one of them is infeasible)."""
    data = MckpData.from_problem(problem)
    bound = float(np.sum(np.minimum.reduceat(data.loss, data.start)))
    for w, cap in ((data.nnz, data.K), (data.flops, data.F)):
        if math.isfinite(cap):
            lp = hull_lp(data.loss, w, cap, data)
            bound = max(bound, lp.value)
    return bound


def uniform_choice(problem) -> np.ndarray | None:
    """The same option in every layer — the same ``option_labels`` value, or the same index
    when the problem has no labels — the densest (most NNZ, then least loss) that meets both
    budgets; None when no such choice fits."""
    ptr, L = problem.option_ptr, problem.num_layers
    local = np.arange(problem.num_options) - np.repeat(ptr[:-1], problem.option_counts)
    key = problem.option_labels if problem.option_labels is not None else local.astype(float)
    best, best_key = None, None
    common = set(key[ptr[0]:ptr[1]].tolist())
    for g in range(1, L):
        common &= set(key[ptr[g]:ptr[g + 1]].tolist())
    for v in sorted(common):
        hit = np.flatnonzero(key == v)
        layer = problem.layer_of_option[hit]
        first = np.ones(hit.size, dtype=bool)
        first[1:] = layer[1:] != layer[:-1]
        choice = local[hit[first]]
        if not problem.is_feasible(choice):
            continue
        ev = problem.evaluate(choice)
        k = (ev.usage["nnz"], -ev.objective)
        if best_key is None or k > best_key:
            best, best_key = choice, k
    return best

