"""The full joint MIQP (a') solved exactly by enumerating maximal supports (tiny p only).

For a support S let Q_S = min {Q(w) : w_i = 0 off S}, a strictly convex QP solved in closed
form (the backsolve). S ⊆ S' implies Q_{S'} ≤ Q_S (the minimiser for S is feasible for S'), so
the optimum of the MIQP is the minimum of Q_S over the *maximal* feasible supports: S meets
both budgets and no index can be added without breaking one. Enumerating exactly those is a
proof by exhaustion; the returned bound is the objective itself.

**Generation (vectorised).** Supports are the integers 0 .. 2^p − 1 read as bit masks. NNZ is
``np.bitwise_count``; the MAC cost is a sum of two table look-ups (low and high halves of the
bits). S is maximal iff it is feasible and either |S| = K or flops(S) + c_min(S) > F, where
c_min(S) is the cheapest cost of a layer that S does not fill (computed layer by layer,
vectorised over all masks). Feasibility uses the same relative tolerance as
``problem.is_feasible`` (1e-9 on the FLOP budget).

**Evaluation (batched).** Supports of equal size k are solved together: with C the pruned
indices (d_C = −w̄_C) and H = blockdiag(X_bᵀX_b) + λI, the restricted optimum is
d_S = H_SS⁻¹ (H_SC w̄_C − a_S), solved by ``np.linalg.solve`` on stacks of k × k systems, and
Q_S is evaluated in the residual form ½Σ_b‖X_b d_b‖² + (λ/2)‖d‖² + aᵀd. The few best
supports (the 8 lowest values and every value within 1e-9 of the minimum, relative to the
objective scale) are then re-solved one by one with the reference backsolve
(:func:`pruneopt.solvers.fast.joint_qp.backsolve.restricted_ridge`) and re-evaluated by
``problem.objective``; the best of them is returned. The batched values only rank supports;
their rounding errors (order κ(H)·ε relative) are far below that window.

The work grows as 2^p; p above ``MAX_ITEMS`` (22) is refused.
"""

from __future__ import annotations

import math
import time

import numpy as np

from pruneopt.solvers.constants import Status
from pruneopt.solvers.fast.joint_qp.backsolve import restricted_ridge

MAX_ITEMS = 22
_BATCH_DOUBLES = 1 << 22  # doubles per batched solve (32 MiB)


def dense_hessian(problem) -> np.ndarray:
    """H = blockdiag(X_bᵀX_b) + λI as a dense p × p matrix (tiny p only)."""
    p = problem.num_items
    H = np.zeros((p, p))
    bp = problem.blocks.tolist()
    for a, b in zip(bp[:-1], bp[1:]):
        if b > a:
            Xb = problem.X[:, a:b]
            H[a:b, a:b] = Xb.T @ Xb
    H[np.diag_indices_from(H)] += problem.ridge
    return H


def maximal_supports(problem, tol: float = 1e-9) -> tuple[np.ndarray, int]:
    """Every maximal feasible support as an int64 bit mask (bit i = weight i kept), and the
    number of feasible supports."""
    p = problem.num_items
    if p > 62:
        raise ValueError("p: bit masks hold at most 62 weights")
    K = problem.nnz_budget
    F = problem.flop_budget + tol * max(1.0, abs(problem.flop_budget))
    cost = problem.item_cost
    codes = np.arange(1 << p, dtype=np.int64)
    nnz = np.bitwise_count(codes).astype(np.int64)
    # MACs of a mask = table[low bits] + table[high bits]
    h = p // 2
    lo_bits = (np.arange(1 << h, dtype=np.int64)[:, None] >> np.arange(h)) & 1
    hi_bits = (np.arange(1 << (p - h), dtype=np.int64)[:, None] >> np.arange(p - h)) & 1
    lo_tab = lo_bits.astype(np.float64) @ cost[:h]
    hi_tab = hi_bits.astype(np.float64) @ cost[h:]
    flops = lo_tab[codes & ((1 << h) - 1)] + hi_tab[codes >> h]
    feasible = (nnz <= K) & (flops <= F)
    n_feasible = int(np.count_nonzero(feasible))
    codes, nnz, flops = codes[feasible], nnz[feasible], flops[feasible]
    # cheapest layer cost still available to each mask: write layers from dearest to cheapest
    # so that the cheapest unfilled layer's cost is the one left standing
    c_min = np.full(codes.size, np.inf)
    ptr = problem.group_ptr.tolist()
    for g in np.argsort(-problem.flop_cost, kind="stable").tolist():
        if ptr[g + 1] == ptr[g]:
            continue
        layer = ((1 << (ptr[g + 1] - ptr[g])) - 1) << ptr[g]
        c_min[(codes & layer) != layer] = problem.flop_cost[g]
    maximal = (nnz >= K) | (flops + c_min > F)
    return codes[maximal], n_feasible


def _masks_to_indices(codes: np.ndarray, p: int, k: int) -> np.ndarray:
    """(m, k) int64: the set bits of each mask in increasing order."""
    bits = ((codes[:, None] >> np.arange(p, dtype=np.int64)) & 1).astype(bool)
    return np.nonzero(bits)[1].reshape(codes.size, k)


def _batch_values(problem, H: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Q_S for a batch of supports of size k (see the module docstring)."""
    p = problem.num_items
    m = codes.size
    w_bar, a = problem.w_bar, problem.linear
    mask = ((codes[:, None] >> np.arange(p, dtype=np.int64)) & 1).astype(bool)
    D = np.where(mask, 0.0, -w_bar)  # d_C = −w̄_C, d_S filled below
    if k:
        idx = _masks_to_indices(codes, p, k)
        # rhs = H_SC w̄_C − a_S  (= −H_{S,:} d with d_S = 0, minus a_S)
        rhs = -np.take_along_axis(D @ H, idx, axis=1) - a[idx]
        Hss = H[idx[:, :, None], idx[:, None, :]]
        dS = np.linalg.solve(Hss, rhs[:, :, None])[:, :, 0]
        np.put_along_axis(D, idx, dS, axis=1)
    fit = np.zeros(m)
    bp = problem.blocks.tolist()
    if problem.num_samples:
        for lo, hi in zip(bp[:-1], bp[1:]):
            if hi > lo:
                R = D[:, lo:hi] @ problem.X[:, lo:hi].T
                fit += np.einsum("mj,mj->m", R, R)
    return 0.5 * fit + 0.5 * problem.ridge * np.einsum("mi,mi->m", D, D) + D @ a


def solve_enumerate(problem, *, max_items: int = MAX_ITEMS, time_limit: float | None = None
                    ) -> dict:
    """Enumerate the maximal supports; returns ``{"x", "bound", "status", "message", "info"}``.

    Raises ``ValueError`` when p > ``max_items`` (2^p masks would be generated).
    """
    start = time.perf_counter()
    p = problem.num_items
    if p > max_items:
        raise ValueError(
            f"p: enumerate refuses p={p} > max_items={max_items} (it scans 2^p supports); "
            f"use 'oa-highs' or 'pyomo-scip', or raise max_items")
    if p == 0:
        return {"x": np.zeros(0), "bound": 0.0, "status": Status.OPTIMAL, "message": "no weights",
                "info": {"maximal_supports": 1, "feasible_supports": 1}}
    codes, n_feasible = maximal_supports(problem)
    H = dense_hessian(problem)
    sizes = np.bitwise_count(codes).astype(np.int64)
    values = np.full(codes.size, np.inf)
    timed_out = False
    for k in np.unique(sizes).tolist():
        where = np.flatnonzero(sizes == k)
        chunk = max(1, _BATCH_DOUBLES // (k * k + 2 * p + 1))
        for s in range(0, where.size, chunk):
            if time_limit is not None and time.perf_counter() - start > time_limit:
                timed_out = True
                break
            sel = where[s:s + chunk]
            values[sel] = _batch_values(problem, H, codes[sel], k)
        if timed_out:
            break
    done = np.isfinite(values)
    # re-solve the best few with the reference backsolve and keep the best recomputed one
    order = np.argsort(values, kind="stable")
    vmin = values[order[0]]
    scale = abs(vmin) + abs(problem.objective(np.zeros(p)))
    near = values <= vmin + 1e-9 * scale
    cand = np.union1d(order[:8][done[order[:8]]], np.flatnonzero(near & done)[:64])
    best_w, best_q = np.zeros(p), problem.objective(np.zeros(p))  # w = 0 is always feasible
    bits = np.arange(p, dtype=np.int64)
    for c in cand.tolist():
        support = ((codes[c] >> bits) & 1).astype(bool)
        w = restricted_ridge(problem.X, problem.w_bar, problem.ridge, problem.linear, support,
                             problem.block_ptr)
        q = problem.objective(w)
        if q < best_q:
            best_w, best_q = w, q
    info = {"maximal_supports": int(codes.size), "feasible_supports": n_feasible,
            "evaluated": int(np.count_nonzero(done)), "candidates_resolved": int(cand.size),
            "batched_min": float(vmin) if math.isfinite(vmin) else math.nan}
    if timed_out:
        return {"x": best_w, "bound": problem.lower_bound(), "status": Status.TIME_LIMIT,
                "message": (f"time limit after {info['evaluated']} of {codes.size} maximal "
                            "supports; bound = the unconstrained minimum of Q"), "info": info}
    message = f"exhaustive over {codes.size} maximal feasible supports"
    bound = best_q
    if vmin < best_q - 1e-9 * max(abs(best_q), 1e-300):
        # a batched value below every re-solved one: rounding beyond the window; be honest
        bound = float(vmin)
        message += "; batched minimum below the re-solved optimum (numerical trouble)"
    return {"x": best_w, "bound": bound, "status": Status.OPTIMAL, "message": message,
            "info": info}
