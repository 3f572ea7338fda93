"""The exact dual of the joint ILP's LP relaxation, solved in count space.

With multipliers λ ≥ 0 (FLOPs) and ω ≥ 0 (NNZ), the LP dual function is

    D(λ, ω) = K ω + F λ + Σ_i max(s_i − λ c_{g(i)} − ω, 0),

and every (λ, ω) ≥ 0 gives an upper bound on the LP and hence on the ILP (weak duality). For a
fixed λ the best ω is in closed form: with reduced scores a_i = s_i − λ c_{g(i)},
min_ω D(λ, ω) = F λ + (sum of the K largest positive a_i), attained at ω*(λ) = max(a_(K+1), 0).
The function φ(λ) = min_ω D(λ, ω) is convex and piecewise linear on [0, λ_max], with
λ_max = max_g (top score of g)/c_g; its right derivative is F − Σ_g c_g k_g(λ), where k_g counts
the items of g above the threshold λ c_g + ω*(λ).

Reduced scores keep each layer's order (they shift by the constant λ c_g), so every evaluation
works on the presorted layers: the K-th largest a is found by bisection on its value with
per-layer counts (binary searches), never by sorting p numbers again.

λ is found by bisection on the sign of the right derivative. The invariant "the selection at the
upper end λ_hi meets both budgets" holds throughout, which gives a feasible integral selection
for free; the smallest φ evaluated is the certified bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers


@dataclass(frozen=True)
class DualSolution:
    lam: float  # λ at the upper end of the final bracket
    omega: float  # ω*(lam)
    bound: float  # min over the evaluated (λ, ω*) of D: a valid upper bound on the ILP
    counts: np.ndarray  # k_g at (lam, omega): a selection that meets both budgets
    lam_lo: float  # lower end of the final bracket
    evaluations: int
    omega_steps: int


def _omega_star(layers: SortedLayers, lam: float,
                K: int) -> tuple[float, np.ndarray, np.ndarray, int]:
    """ω*(λ) (up to float resolution, from above) and the counts around the threshold λc + ω.

    Returns (ω, k, k_tied, steps): k counts the items with a > ω (Σ k ≤ K), k_tied the items of
    each layer tied at the threshold (a in (lo, ω] for the final bracket) of which K − Σ k belong
    to a top-K set. D(λ, ω) with this ω is a valid dual value.
    """
    shift = lam * layers.cost
    k0 = layers.count_above(shift)
    if k0.sum() <= K:
        return 0.0, k0, np.zeros_like(k0), 0
    lo, hi = 0.0, float(np.max(layers.top - shift))  # count(lo) > K, count(hi) = 0 ≤ K
    # Illinois (modified regula falsi) on f(ω) = count(ω) − K − ½, a decreasing step function
    # that is close to linear near its root for any smooth score distribution; halving the
    # weight of an end that stays put twice keeps both ends moving.
    f_lo, f_hi = float(k0.sum()) - K - 0.5, -K - 0.5
    k_hi, k_lo = np.zeros_like(k0), k0
    steps, side = 0, 0
    while True:
        mid = lo + (hi - lo) * (f_lo / (f_lo - f_hi))
        if not (lo < mid < hi):
            mid = 0.5 * (lo + hi)
            if not (lo < mid < hi):
                break
        steps += 1
        k = layers.count_above(shift + mid)
        total = int(k.sum())
        if total > K:
            lo, f_lo, k_lo = mid, total - K - 0.5, k
            if side == 1:
                f_hi *= 0.5
            side = 1
        else:
            hi, f_hi, k_hi = mid, total - K - 0.5, k
            if total == K:
                return hi, k, np.zeros_like(k), steps  # D is flat in ω: no tie to break
            if side == -1:
                f_lo *= 0.5
            side = -1
    return hi, k_hi, k_lo - k_hi, steps


def _fill_ties_cheapest(layers: SortedLayers, k: np.ndarray, tied: np.ndarray,
                        slots: int) -> np.ndarray:
    """Add ``slots`` of the tied items to k, cheapest layers first.

    This is the top-K set that the right derivative of φ sees (as λ grows, the reduced score of
    a cheaper item falls more slowly), and it keeps Σ k ≤ K.
    """
    if slots <= 0 or not tied.any():
        return k
    order = np.argsort(layers.cost, kind="stable")
    before = np.concatenate(([0], np.cumsum(tied[order])[:-1]))
    take = np.zeros_like(k)
    take[order] = np.clip(slots - before, 0, tied[order])
    return k + take


def dual_value(layers: SortedLayers, lam: float, omega: float, k: np.ndarray, K: int,
               F: float) -> float:
    """D(λ, ω) evaluated with the counts k above λc + ω."""
    thr = lam * layers.cost + omega
    return float(K * omega + F * lam + np.sum(layers.prefix(k) - k * thr))


def solve_dual(layers: SortedLayers, K: int, F: float, max_iter: int = 200) -> DualSolution:
    """Minimise φ(λ) over [0, λ_max]; see the module docstring."""
    cost = layers.cost
    evals = 0
    omega_steps = 0

    def at(lam: float):
        nonlocal evals, omega_steps
        omega, k, tied, steps = _omega_star(layers, lam, K)
        evals += 1
        omega_steps += steps
        value = dual_value(layers, lam, omega, k, K, F)
        k_top = _fill_ties_cheapest(layers, k, tied, K - int(k.sum()))
        return omega, k_top, value, F - float(k_top @ cost)  # right derivative of φ

    omega, k, val, slope = at(0.0)
    best = val
    if slope >= 0 or layers.L == 0:
        return DualSolution(0.0, omega, best, k, 0.0, evals, omega_steps)
    finite_top = np.where(np.isfinite(layers.top), layers.top, 0.0)
    lo = 0.0
    hi = float(np.max(finite_top / cost)) if layers.L else 0.0
    hi_state = at(hi)
    while hi_state[3] < 0:  # λ·c rounded just below a top score: move on until nothing is kept
        hi = hi * 2.0 + np.finfo(float).tiny
        hi_state = at(hi)
    best = min(best, hi_state[2])
    # Invariant: slope(lo) < 0 (over the FLOP budget), slope(hi) ≥ 0 (within it).
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        if not (lo < mid < hi):
            break
        state = at(mid)
        best = min(best, state[2])
        if state[3] >= 0:
            hi, hi_state = mid, state
            if state[3] == 0:
                break
        else:
            lo = mid
    omega, k, _, _ = hi_state
    return DualSolution(hi, omega, best, k, lo, evals, omega_steps)
