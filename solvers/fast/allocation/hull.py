"""Lagrangian relaxation of the layer budget allocation over each layer's lower convex hull.

The program (:mod:`pruneopt.formulations.allocation.problem`) is a multiple-choice knapsack (MCKP)

    min Σ_g Σ_j e_gj y_gj   s.t.   Σ_j y_gj = 1 (each g),   Σ n y ≤ K,   Σ f y ≤ F,   y ∈ {0,1}.

**The bound.** For multipliers λ ≥ 0 (NNZ) and ω ≥ 0 (FLOPs) the Lagrangian dual function

    D(λ, ω) = Σ_g min_j (e_gj + λ n_gj + ω f_gj) − λ K − ω F

is a lower bound on every feasible objective (weak duality: for a feasible y each layer's term is
at most the chosen option's e + λn + ωf, and λ(Σny − K) + ω(Σfy − F) ≤ 0). An absent budget keeps
its multiplier at 0. max_{λ,ω} D is the value of the LP relaxation (0 ≤ y ≤ 1), which we solve:

* **Inner (one budget, exact).** For fixed ω, with costs c = e + ω f, the LP with the NNZ row
  only is solved by the classic MCKP greedy: in each layer keep the lower convex hull of the
  points (n_gj, c_gj) left of the minimum c (Pareto filter, then removal of points above a chord,
  vectorised over all layers), start every layer at its leftmost hull point, and take hull
  segments in order of decreasing efficiency −Δc/Δn (loss saved per weight) while the NNZ budget
  allows; the segment that does not fit is taken fractionally (so at most one fractional layer)
  and its efficiency is the optimal λ(ω). Within a layer the hull's slopes increase, so the
  global order respects each layer's order.
* **Outer (second multiplier).** φ(ω) = LP₁(ω) − ωF is concave and piecewise linear with
  supergradient Σ f y*(ω) − F. It is maximised by safeguarded cutting planes (the intersection
  of the supporting lines at both ends of a bracket, bisection when that stalls), which ends in
  finitely many steps on a piecewise-linear function. With only a FLOP budget the inner greedy
  runs on the FLOP row instead and there is no outer search.

The reported bound is the largest D(λ, ω) evaluated directly at the (λ, ω) visited — a certified
lower bound whatever the search did. An infeasible LP (even the hull's cheapest points exceed a
budget) proves the program infeasible.

**The primal.** The LP optimum has at most two fractional layers; the integral points of the
inner LP solutions at both ends of the final ω bracket (each fractional layer rounded down to its
cheaper hull point) and the Lagrangian choice at the final (λ, ω) are repaired to meet both
budgets (cheapest loss increase per unit of violation removed) and improved by moves that
recompute everything in float64: the best single-layer change that fits, then the best exchange
of two layers among the options of smallest reduced cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pruneopt.solvers.constants import Status

_TINY = 1e-300
PAIR_LIMIT = 3000  # exchange moves compare all candidate pairs: skipped beyond this many


@dataclass(frozen=True, eq=False)
class MckpData:
    """The allocation data in solver form: float64 arrays over all n options."""

    loss: np.ndarray
    nnz: np.ndarray
    flops: np.ndarray
    ptr: np.ndarray  # int64[L+1]
    layer: np.ndarray  # int64[n]
    K: float  # inf when absent
    F: float  # inf when absent

    @classmethod
    def from_problem(cls, problem) -> MckpData:
        return cls(loss=problem.loss, nnz=problem.nnz.astype(np.float64), flops=problem.flops,
                   ptr=problem.option_ptr, layer=problem.layer_of_option, K=problem.nnz_limit,
                   F=problem.flop_limit)

    @property
    def L(self) -> int:
        return int(self.ptr.size - 1)

    @property
    def n(self) -> int:
        return int(self.loss.size)

    @property
    def start(self) -> np.ndarray:
        return self.ptr[:-1]

    def usage(self, idx: np.ndarray) -> tuple[float, float, float]:
        """(Σ e, Σ n, Σ f) of flat chosen indices (one per layer)."""
        return (float(np.sum(self.loss[idx])), float(np.sum(self.nnz[idx])),
                float(np.sum(self.flops[idx])))

    def fits(self, nnz_used: float, flops_used: float) -> bool:
        return nnz_used <= self.K and flops_used <= self.F


def layer_argmin(values: np.ndarray, data: MckpData, tie: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(min value of each layer, flat index of its first minimiser), ties broken by ``tie``."""
    start = data.start
    m = np.minimum.reduceat(values, start)
    is_min = values == m[data.layer]
    if tie is not None:
        t = np.where(is_min, tie, np.inf)
        tmin = np.minimum.reduceat(t, start)
        is_min &= t == tmin[data.layer]
    cand = np.where(is_min, np.arange(data.n), data.n)
    return m, np.minimum.reduceat(cand, start)


def dual_value(data: MckpData, lam: float, omega: float) -> tuple[float, np.ndarray]:
    """D(λ, ω) and the Lagrangian choice (flat indices; ties to fewer weights, then MACs)."""
    c = data.loss.copy()
    if lam > 0:
        c += lam * data.nnz
    if omega > 0:
        c += omega * data.flops
    m, idx = layer_argmin(c, data, tie=data.nnz)
    value = float(np.sum(m))
    if lam > 0:
        value -= lam * data.K
    if omega > 0:
        value -= omega * data.F
    return value, idx


# --------------------------------------------------------------------------------- inner LP
@dataclass(frozen=True, eq=False)
class HullLP:
    """The LP with one budget row (costs c, resource w, capacity C), solved on the hulls."""

    feasible: bool
    value: float  # Σ c y at the LP optimum
    lam: float  # optimal multiplier of the row
    point: np.ndarray  # flat index of each layer's integral point (left end if fractional)
    frac_layer: int  # -1 when the solution is integral
    frac_right: int  # flat index of the right end of the fractional segment (-1 if none)
    theta: float  # weight on the right end


def resource_order(w: np.ndarray, data: MckpData) -> np.ndarray:
    """Options sorted by layer, then by the resource w (computed once per resource)."""
    return np.lexsort((w, data.layer))


def _exclusive_segment_min(v: np.ndarray, layer: np.ndarray, data: MckpData) -> np.ndarray:
    """For values v grouped by layer (in layer order), the minimum of the earlier values of the
    same layer (+inf for a layer's first) — a running minimum that restarts at each layer."""
    n, L = v.size, data.L
    pos = np.arange(n) - data.ptr[layer]
    width = int(pos.max()) + 2 if n else 1
    if L * width <= 4 * n + 1024:  # padded rows: one vectorised running minimum
        pad = np.full((L, width), np.inf)
        pad[layer, pos + 1] = v
        return np.minimum.accumulate(pad, axis=1)[layer, pos]
    # very uneven layers: dense ranks, shifted per layer so that a running minimum restarts at
    # each layer (every key of a later layer is below every key of an earlier one)
    uniq, rank = np.unique(v, return_inverse=True)
    key = rank.astype(np.int64) - layer * (n + 1)
    run = np.minimum.accumulate(key)
    out = np.full(n, np.inf)
    same = np.flatnonzero(layer[1:] == layer[:-1]) + 1
    out[same] = uniq[run[same - 1] + layer[same] * (n + 1)]
    return out


def hull_lp(c: np.ndarray, w: np.ndarray, C: float, data: MckpData,
            order: np.ndarray | None = None) -> HullLP:
    """min Σ c y s.t. Σ_j y_gj = 1, Σ w y ≤ C, y ≥ 0 — the MCKP greedy on lower convex hulls.

    ``order`` is :func:`resource_order` of w (computed here when not given)."""
    order = resource_order(w, data) if order is None else order
    cs, ws, ls = c[order], w[order], data.layer[order]
    # Pareto filter: keep a point when its c is below every c to its left in its layer; of points
    # with equal w only the last kept one (the cheapest) stays.
    keep = cs < _exclusive_segment_min(cs, ls, data)
    pos, cw, cc, cl = order[keep], ws[keep], cs[keep], ls[keep]
    if cw.size > 1:
        dup = np.zeros(cw.size, dtype=bool)
        dup[:-1] = (cw[:-1] == cw[1:]) & (cl[:-1] == cl[1:])
        if dup.any():
            pos, cw, cc, cl = pos[~dup], cw[~dup], cc[~dup], cl[~dup]
    # Remove points above the chord of their neighbours until none is left (all at once: a
    # point above a chord between two points of the set is not a hull vertex).
    while cw.size >= 3:
        same = cl[:-2] == cl[2:]
        above = ((cc[1:-1] - cc[:-2]) * (cw[2:] - cw[1:-1])
                 > (cc[2:] - cc[1:-1]) * (cw[1:-1] - cw[:-2]))
        drop = np.flatnonzero(same & above) + 1
        if drop.size == 0:
            break
        mask = np.ones(cw.size, dtype=bool)
        mask[drop] = False
        pos, cw, cc, cl = pos[mask], cw[mask], cc[mask], cl[mask]
    first = np.ones(cw.size, dtype=bool)
    first[1:] = cl[1:] != cl[:-1]
    first_pos = np.flatnonzero(first)  # index into the hull list of each layer's start
    base_w = float(np.sum(cw[first]))
    base_c = float(np.sum(cc[first]))
    R = C - base_w
    if R < -1e-12 * max(1.0, abs(C)):  # beyond summation rounding: the LP is infeasible
        return HullLP(False, math.inf, math.inf, pos[first], -1, -1, 0.0)
    R = max(R, 0.0)
    seg = np.flatnonzero(~first)  # segment k joins hull points k-1 and k
    dw = cw[seg] - cw[seg - 1]
    dc = cc[seg] - cc[seg - 1]
    slope = dc / dw
    sorder = np.argsort(slope, kind="stable")
    cum = np.cumsum(dw[sorder])
    t = int(np.searchsorted(cum, R, side="right")) if math.isfinite(R) else seg.size
    taken = sorder[:t]
    steps = np.bincount(cl[seg[taken]], minlength=data.L)
    point_hull = first_pos + steps
    value = base_c + float(np.sum(dc[taken]))
    frac_layer, frac_right, theta, lam = -1, -1, 0.0, 0.0
    if t < seg.size:
        s = sorder[t]
        lam = max(-float(slope[s]), 0.0)
        theta = (R - (float(cum[t - 1]) if t > 0 else 0.0)) / float(dw[s])
        if theta > 0:
            frac_layer = int(cl[seg[s]])
            frac_right = int(pos[seg[s]])
            value += theta * float(dc[s])
    return HullLP(True, value, lam, pos[point_hull], frac_layer, frac_right, theta)


# --------------------------------------------------------------------------------- the dual
@dataclass(frozen=True, eq=False)
class DualSolution:
    feasible: bool  # False: the LP relaxation is infeasible, so is the program
    bound: float  # max D(λ, ω) evaluated: a valid lower bound (inf when infeasible)
    lam: float  # NNZ multiplier at the best bound
    omega: float  # FLOP multiplier at the best bound
    candidates: list = field(default_factory=list)  # integral points of the LP solutions
    evaluations: int = 0


def _inner(data: MckpData, mu: float, order: np.ndarray):
    """The one-row LP at outer multiplier mu: (HullLP, λ_nnz, ω_flops, outer usage)."""
    if math.isfinite(data.K):
        c = data.loss + mu * data.flops if mu > 0 else data.loss
        lp = hull_lp(c, data.nnz, data.K, data, order)
        lam, omega = lp.lam, mu
        outer = data.flops
    else:
        lp = hull_lp(data.loss, data.flops, data.F, data, order)
        lam, omega = 0.0, lp.lam
        outer = None
    if not lp.feasible:
        return lp, lam, omega, math.inf
    used = float(np.sum(outer[lp.point])) if outer is not None else 0.0
    if outer is not None and lp.frac_layer >= 0:
        left = lp.point[lp.frac_layer]
        used += lp.theta * (float(outer[lp.frac_right]) - float(outer[left]))
    return lp, lam, omega, used


def solve_dual(data: MckpData, max_iter: int = 100) -> DualSolution:
    """max_{λ,ω ≥ 0} D(λ, ω) (the LP relaxation's value); see the module docstring."""
    evals = 0
    best = [-math.inf, 0.0, 0.0]
    candidates: list[np.ndarray] = []

    def certify(lam: float, omega: float) -> float:
        nonlocal evals
        evals += 1
        value, idx = dual_value(data, lam, omega)
        candidates.append(idx)
        if value > best[0]:
            best[:] = [value, lam, omega]
        return value

    if not (math.isfinite(data.K) or math.isfinite(data.F)):
        value = certify(0.0, 0.0)  # no budget: each layer's cheapest option is optimal
        return DualSolution(True, value, 0.0, 0.0, candidates, evals)

    order = resource_order(data.nnz if math.isfinite(data.K) else data.flops, data)
    lp, lam, omega, used = _inner(data, 0.0, order)
    if not lp.feasible:
        return DualSolution(False, math.inf, 0.0, 0.0, [], evals)
    candidates.append(lp.point)
    certify(lam, omega)
    two_rows = math.isfinite(data.K) and math.isfinite(data.F)
    if not two_rows or used <= data.F:
        return DualSolution(True, best[0], best[1], best[2], candidates, evals)

    def phi(mu: float):
        lp, lam, omega, used = _inner(data, mu, order)
        candidates.append(lp.point)
        value = certify(lam, omega)
        return value, used - data.F, lp

    g_lo, lo, f_lo = used - data.F, 0.0, best[0]
    # is any LP solution within the FLOP budget? (the MACs-cheapest one within the NNZ budget)
    lp_f = hull_lp(data.flops, data.nnz, data.K, data, order)
    if not lp_f.feasible or lp_f.value > data.F + 1e-12 * max(1.0, data.F):
        return DualSolution(False, math.inf, 0.0, 0.0, [], evals)
    # an upper end where the inner LP meets the FLOP budget: ω grows until f dominates e
    spread_e = float(np.sum(np.maximum.reduceat(data.loss, data.start)
                            - np.minimum.reduceat(data.loss, data.start)))
    spread_f = float(np.sum(np.maximum.reduceat(data.flops, data.start)
                            - np.minimum.reduceat(data.flops, data.start)))
    hi = max(spread_e, _TINY) / max(spread_f, _TINY) * 1e-3
    mu_cap = 1e250 / max(float(np.max(data.flops)), 1.0)
    while True:
        f_hi, g_hi, lp_hi = phi(hi)
        if g_hi <= 0:
            break
        lo, f_lo, g_lo = hi, f_hi, g_hi
        hi *= 4.0
        if hi > mu_cap:  # not reached on real data; the bound found so far stays valid
            return DualSolution(True, best[0], best[1], best[2], candidates, evals)
    # maximise the concave piecewise-linear φ on [lo, hi]: g_lo > 0 ≥ g_hi
    for _ in range(max_iter):
        if g_hi == 0:
            break
        denom = g_lo - g_hi
        mu = (f_hi - f_lo + g_lo * lo - g_hi * hi) / denom if denom > 0 else math.nan
        top = f_lo + g_lo * (mu - lo) if math.isfinite(mu) else math.inf
        if not (lo < mu < hi):
            mu = 0.5 * (lo + hi)
            top = math.inf
        if not (lo < mu < hi):
            break
        f_mu, g_mu, lp_mu = phi(mu)
        if top - f_mu <= 1e-13 * max(abs(f_mu), _TINY):
            break  # the supporting lines meet the function: mu maximises φ
        if g_mu > 0:
            lo, f_lo, g_lo = mu, f_mu, g_mu
        else:
            hi, f_hi, g_hi = mu, f_mu, g_mu
        if hi - lo <= 1e-15 * hi:
            break
    return DualSolution(True, best[0], best[1], best[2], candidates, evals)


def dual_rounding(data: MckpData, lam: float, omega: float) -> float:
    """An upper estimate of the float error in D(λ, ω): 1e-13 of the sum of the magnitudes of
    its terms (pairwise summation errs by far less). D can exceed an objective only by this."""
    c = data.loss + lam * data.nnz + omega * data.flops
    mag = float(np.sum(np.abs(np.minimum.reduceat(c, data.start))))
    mag += (lam * data.K if lam > 0 else 0.0) + (omega * data.F if omega > 0 else 0.0)
    return 1e-13 * mag


def reduced_costs(data: MckpData, lam: float, omega: float) -> np.ndarray:
    """r_gj = (e + λn + ωf)_gj − min_j (e + λn + ωf)_gj ≥ 0: any y using option (g, j) has
    objective ≥ D(λ, ω) + r_gj."""
    c = data.loss + lam * data.nnz + omega * data.flops
    return c - np.minimum.reduceat(c, data.start)[data.layer]


# --------------------------------------------------------------------------------- the primal
def repair(data: MckpData, idx: np.ndarray, max_moves: int | None = None) -> np.ndarray | None:
    """Change one layer at a time, least loss per unit of budget violation removed, until both
    budgets hold; None when no single change reduces the violation."""
    idx = np.array(idx, dtype=np.int64)
    sK = data.K if math.isfinite(data.K) and data.K > 0 else 1.0
    sF = data.F if math.isfinite(data.F) and data.F > 0 else 1.0
    max_moves = max_moves if max_moves is not None else 4 * data.n + 10
    for _ in range(max_moves):
        _, N, Fu = data.usage(idx)
        viol = max(N - data.K, 0.0) / sK + max(Fu - data.F, 0.0) / sF
        if viol <= 0:
            return idx
        cur = idx[data.layer]
        dN = data.nnz - data.nnz[cur]
        dF = data.flops - data.flops[cur]
        new = (np.maximum(N + dN - data.K, 0.0) / sK + np.maximum(Fu + dF - data.F, 0.0) / sF)
        gain = viol - new
        dE = data.loss - data.loss[cur]
        score = np.where(gain > 0, dE / np.maximum(gain, _TINY), np.inf)
        o = int(np.argmin(score))
        if not math.isfinite(score[o]):
            return None
        idx[data.layer[o]] = o
    return None


def improve(data: MckpData, idx: np.ndarray, rc: np.ndarray | None = None, pair_k: int = 4,
            max_rounds: int = 10_000) -> tuple[np.ndarray, int]:
    """Improving moves on a feasible choice: best single-layer change that fits, then (when
    none is left) the best exchange of two layers among each layer's ``pair_k`` options of
    smallest reduced cost ``rc``. Returns (flat indices, moves made)."""
    idx = np.array(idx, dtype=np.int64)
    moves = 0
    cand = None
    if rc is not None and pair_k > 0 and data.L > 1:
        order = np.lexsort((rc, data.layer))
        rank = np.empty(data.n, dtype=np.int64)
        rank[order] = np.arange(data.n) - data.start[data.layer[order]]
        cand = np.flatnonzero(rank < pair_k)
    for _ in range(max_rounds):
        E, N, Fu = data.usage(idx)
        cur = idx[data.layer]
        dE = data.loss - data.loss[cur]
        dN = data.nnz - data.nnz[cur]
        dF = data.flops - data.flops[cur]
        ok = (N + dN <= data.K) & (Fu + dF <= data.F) & (dE < 0)
        if ok.any():
            o = int(np.argmin(np.where(ok, dE, np.inf)))
            idx[data.layer[o]] = o
            moves += 1
            continue
        if cand is None:
            break
        c = cand[cand != cur[cand]]
        if c.size < 2 or c.size > PAIR_LIMIT:
            break
        e2 = dE[c][:, None] + dE[c][None, :]
        ok2 = ((N + dN[c][:, None] + dN[c][None, :] <= data.K)
               & (Fu + dF[c][:, None] + dF[c][None, :] <= data.F)
               & (data.layer[c][:, None] != data.layer[c][None, :]) & (e2 < 0))
        if not ok2.any():
            break
        a, b = np.unravel_index(int(np.argmin(np.where(ok2, e2, np.inf))), e2.shape)
        idx[data.layer[c[a]]] = c[a]
        idx[data.layer[c[b]]] = c[b]
        moves += 1
    return idx, moves


@dataclass(frozen=True, eq=False)
class HullResult:
    status: str  # "feasible" (x found), "infeasible" (proven by the LP) or "error" (none found)
    choice: np.ndarray | None  # int64[L] option index per layer
    bound: float
    info: dict


def lagrangian_allocation(problem, pair_k: int = 4) -> HullResult:
    """The ``fast`` solver: LP dual bound, rounded + repaired + improved choice."""
    data = MckpData.from_problem(problem)
    dual = solve_dual(data)
    info = {"lambda": dual.lam, "omega": dual.omega, "dual_evaluations": dual.evaluations,
            "lp_bound": dual.bound}
    if not dual.feasible:
        return HullResult(Status.INFEASIBLE, None, math.inf, info)
    rc = reduced_costs(data, dual.lam, dual.omega)
    best, best_e = None, math.inf
    seen = set()
    for cand in dual.candidates[-4:] + dual.candidates[:1]:
        key = cand.tobytes()
        if key in seen:
            continue
        seen.add(key)
        fixed = repair(data, cand)
        if fixed is None:
            continue
        fixed, _ = improve(data, fixed, rc, pair_k=pair_k)
        e = float(np.sum(data.loss[fixed]))
        if e < best_e:
            best, best_e = fixed, e
    if best is None:
        return HullResult(Status.ERROR, None, dual.bound,
                          {**info, "message": "rounding and repair found no feasible choice"})
    bound = dual.bound
    if best_e < bound <= best_e + dual_rounding(data, dual.lam, dual.omega):
        bound = best_e  # D ≤ optimum ≤ best_e: D exceeds best_e only by its own rounding
    return HullResult(Status.FEASIBLE, best - data.start, bound, info)
