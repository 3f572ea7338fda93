"""Rounding constants and the LP dual of the two-row knapsack, shared by the joint MIQP's bounds.

    max Σ_i z_i v_i   s.t.  Σ_i z_i ≤ K,  Σ_i c_i z_i ≤ F,  0 ≤ z ≤ 1        (v ≥ 0, c > 0)

has the LP dual min_{μ,ν≥0} μK + νF + Σ_i (v_i − μ − νc_i)_+ (:func:`lp_dual`, and with its
rounding margin :func:`lp_bracket`), and the float64
error bounds of :mod:`~pruneopt.solvers.fast.joint_qp.dual_bound` use u = 2⁻⁵³ and
γ_k = ku/(1 − ku) (:func:`gamma`).
"""

from __future__ import annotations

import numpy as np

U = 2.0**-53  # unit roundoff of float64


def gamma(k: int | float) -> float:
    """γ_k = k·u / (1 − k·u), inflated by 1 % (it is itself computed in floating point)."""
    ku = float(k) * U
    return 1.01 * ku / (1.0 - ku)


def _top(r: np.ndarray, c: np.ndarray, K: int, cheap: bool = True):
    """For reduced values r: μ* = max(r_(K+1), 0) (the best NNZ multiplier) and a top-K set of
    positive r; ties at μ* are filled cheapest first (``cheap``: the set seen just to the right
    of the FLOP multiplier) or dearest first (just to the left)."""
    size = r.size
    if K >= size:
        mu = 0.0
    else:
        mu = max(float(np.partition(r, size - K - 1)[size - K - 1]), 0.0)
    sel = r > mu
    room = K - int(np.count_nonzero(sel))
    if room > 0 and mu > 0.0:
        tied = np.flatnonzero(r == mu)
        if tied.size:
            key = c[tied] if cheap else -c[tied]
            sel[tied[np.argsort(key, kind="stable")[:room]]] = True
    return mu, sel


def lp_dual(v: np.ndarray, c: np.ndarray, K: int, F: float, max_iter: int = 100):
    """The exact LP dual of max Σ z v s.t. Σ z ≤ K, Σ c z ≤ F, 0 ≤ z ≤ 1 (v ≥ 0, c > 0).

    h(ν) = νF + (sum of the K largest positive v_i − νc_i) is convex piecewise linear in the
    FLOP multiplier ν with right derivative F − c(top set); it is minimised by Kelley's
    cutting planes in one dimension inside a bracket [lo, hi] with h'(lo) < 0 ≤ h'(hi) (the
    tangent lines meet at the model's minimiser; when h there equals the model, that point is
    optimal — finite for a piecewise-linear h), bisection as a safeguard. Returns
    (μ, ν, sel_right, sel_left, θ): the multipliers, the top sets just right and left of ν and
    the weight θ of sel_left in the LP maximiser θ·sel_left + (1 − θ)·sel_right.
    """
    def at(nu):
        r = v - nu * c
        mu, sel = _top(r, c, K)
        val = nu * F + mu * K + float(np.sum(np.maximum(r - mu, 0.0)))
        return val, mu, sel, F - float(np.sum(c[sel]))

    def finish(nu, state):
        # the Lagrangian-optimal sets at (μ, ν): reduced value above 0 is in, below is out,
        # (numerically) zero is free; the free items are filled cheapest first (a set that
        # meets F) and dearest first (one that meets K), and mixed to meet F exactly
        mu = state[1]
        r = v - nu * c - mu
        tol = 1e-12 * (float(v.max(initial=0.0)) + nu * float(c.max(initial=0.0)) + mu)
        inn = r > tol
        tie = np.flatnonzero((np.abs(r) <= tol) & (v > 0))
        k_room = K - int(np.count_nonzero(inn))
        f_room = F - float(np.sum(c[inn]))
        sel_r, sel_l = inn.copy(), inn.copy()
        if tie.size and k_room > 0:
            cheap = tie[np.argsort(c[tie], kind="stable")]
            fits = np.cumsum(c[cheap]) <= f_room
            k_c = min(k_room, int(np.count_nonzero(fits)))
            sel_r[cheap[:k_c]] = True
            sel_l[cheap[::-1][:min(k_room, tie.size)]] = True
        f_r, f_l = float(np.sum(c[sel_r])), float(np.sum(c[sel_l]))
        theta = (F - f_r) / (f_l - f_r) if f_l > F >= f_r else 0.0
        return mu, nu, sel_r, sel_l, theta

    s0 = at(0.0)
    if s0[3] >= 0.0:
        return finish(0.0, s0)
    lo, st_lo = 0.0, s0
    hi = float(np.max(v / c)) * (1.0 + 4 * U) + 1e-300
    st_hi = at(hi)
    while st_hi[3] < 0.0:  # rounding: move on until nothing is kept
        hi = 2.0 * hi
        st_hi = at(hi)
    best = (st_lo, lo) if st_lo[0] <= st_hi[0] else (st_hi, hi)
    for _ in range(max_iter):
        if st_hi[3] == 0.0:
            best = (st_hi, hi) if st_hi[0] <= best[0][0] else best
            break
        # tangent at lo (slope st_lo[3] < 0) meets the tangent at hi (slope st_hi[3] > 0)
        x = ((st_hi[0] - st_hi[3] * hi) - (st_lo[0] - st_lo[3] * lo)) / (st_lo[3] - st_hi[3])
        meet = lo < x < hi
        if not meet:
            x = 0.5 * (lo + hi)
            if not lo < x < hi:
                break
        st = at(x)
        if st[0] < best[0][0]:
            best = (st, x)
        # h meets the model only proves optimality where the two tangents meet: a bisection
        # point on lo's own linear piece equals lo's tangent without being the minimiser
        model = st_lo[0] + st_lo[3] * (x - lo)
        if meet and st[0] <= model + 1e-15 * (abs(model) + abs(st[0])):
            best = (st, x)
            break
        if st[3] >= 0.0:
            hi, st_hi = x, st
        else:
            lo, st_lo = x, st
    st, nu = best
    return finish(nu, st)


def lp_bracket(v: np.ndarray, c: np.ndarray, K: int, F: float):
    """The LP dual value at :func:`lp_dual`'s multipliers with its rounding margin:
    (value, margin, μ, ν, sel_right, sel_left, θ), value + margin ≥ the exact dual value at
    (μ, ν) ≥ the LP optimum. A reduced value computed just below zero is at most its own
    rounding (γ_3 of its terms) above it; every sum is off by γ_k of its absolute terms."""
    mu, nu, sel_r, sel_l, theta = lp_dual(v, c, K, F)
    t = mu + nu * c
    pos = v - t
    near = pos > -1e-12 * (v + t)
    S = float(np.sum(np.maximum(pos, 0.0)))
    const = mu * K + nu * F
    margin = (gamma(3) * (float(np.sum(v[near] + t[near])) + const)
              + gamma(v.size + 2) * (S + const))
    return const + S, margin, mu, nu, sel_r, sel_l, theta
