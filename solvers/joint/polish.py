"""A check on floating-point MIP answers for the joint ILP: can a simple move improve x?

A float MIP solver treats objective coefficients below its tolerances as zero (DESIGN §7): it can
drop an item of small but real score and still report "optimal" with a matching bound. Such an
x is caught by moves that recompute values exactly in float64, in count space:

* prefix — within a layer, keep the best k_g items (never worse than any k_g items);
* add    — keep one more item of a layer whose next score is positive, if both budgets allow;
* swap   — drop the last kept item of layer g and keep the next item of layer h, if the score
           rises and the FLOP budget allows (the NNZ count is unchanged).

An improving move refutes the backend's claim; the improved x is returned. This is a check, not a
proof: the proof is the bound, which a refuted backend cannot supply (the caller then uses the
exact LP bound instead).
"""

from __future__ import annotations

import time

import numpy as np

from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers

_SWAP_LAYERS = 2000  # the swap move compares all layer pairs; skip it beyond this many layers


def improve_counts(layers: SortedLayers, k: np.ndarray, K: int, F: float,
                   max_moves: int = 10_000, deadline: float | None = None
                   ) -> tuple[np.ndarray, int]:
    """Apply improving add/swap moves to per-layer counts; returns (counts, moves made).

    Past ``deadline`` (a ``time.perf_counter`` reading) no further move is searched once one
    has been made (the first search still runs: it is the check that refutes an optimum)."""
    k = np.array(k, dtype=np.int64)
    cost = layers.cost
    positive = layers.count_above(np.zeros(layers.L))
    moves = 0
    while moves < max_moves:
        if moves and deadline is not None and time.perf_counter() > deadline:
            break
        nnz_left = K - int(k.sum())
        flops_left = F - float(k @ cost)
        nxt = np.where(k < positive, layers.score_at(k), -np.inf)
        addable = (nxt > 0) & (cost <= flops_left) & (nnz_left >= 1)
        if addable.any():
            g = int(np.argmax(np.where(addable, nxt, -np.inf)))
            k[g] += 1
            moves += 1
            continue
        if layers.L > _SWAP_LAYERS:
            break
        last = np.where(k > 0, layers.score_at(k - 1), np.inf)  # value lost by dropping one
        gain = nxt[None, :] - last[:, None]  # drop from row g, add to column h
        fits = (flops_left + cost[:, None] - cost[None, :]) >= 0
        np.fill_diagonal(fits, False)
        gain = np.where(fits & np.isfinite(gain), gain, -np.inf)
        best = int(np.argmax(gain))
        if not gain.flat[best] > 0:
            break
        g, h = divmod(best, layers.L)
        k[g] -= 1
        k[h] += 1
        moves += 1
    return k, moves


def polish_selection(problem, layers: SortedLayers, x: np.ndarray,
                     deadline: float | None = None) -> tuple[np.ndarray, float, int]:
    """(x', improvement, moves): the best prefix of x's counts, then improving moves (see
    :func:`improve_counts` for ``deadline``)."""
    z = problem.evaluate(x).objective
    k, moves = improve_counts(layers, problem.group_counts(x), problem.nnz_budget,
                              problem.flop_budget, deadline=deadline)
    z_new = float(np.sum(layers.prefix(k)))
    if z_new > z + 1e-12 * max(abs(z), abs(z_new)) or moves:
        x_new = layers.select(problem.scores, k)
        z_new = problem.evaluate(x_new).objective
        if z_new > z:
            return x_new, z_new - z, moves
    return x, 0.0, 0
