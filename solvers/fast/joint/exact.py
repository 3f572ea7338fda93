"""``exact``: a proven optimum of the joint FLOP/NNZ ILP, in count space, in vectorised numpy.

    maximize Σ_i s_i x_i   s.t.   Σ_i x_i ≤ K,   Σ_i c_{g(i)} x_i ≤ F,   x ∈ {0,1}^p

Items of one layer cost the same, so an optimal x keeps a prefix of each layer's sorted scores.
Layers of *equal* cost are interchangeable too, so they are merged into cost classes
d = 1..D (ResNet-50: 54 layers, 6 distinct MACs-per-weight values), and the problem is over the
class counts m_d with the concave profits P_d(m) = sum of the m largest scores of class d:

    maximize Σ_d P_d(m_d)   s.t.   Σ_d m_d ≤ K,   Σ_d c_d m_d ≤ F,   0 ≤ m_d ≤ n_d integer.

Some optimal m uses only positive scores and fits the budgets class by class, so
m_d ≤ cap_d = min(#positive, K, ⌊F / c_d⌋). The method and its proof:

1. **Presort.** The scores are copied once into class order, negated and sorted per class; prefix
   sums are taken per class in blocks of ``BLOCK`` with the block offsets accumulated in extended
   precision, so that every P_d(m) is within about (BLOCK + 3)·u·P_d(m) of the exact sum.
2. **LP dual.** :func:`solve_dual` gives (λ, ω) ≥ 0 at the LP optimum and the dual value
   D = Kω + Fλ + Σ_d max_m [P_d(m) − t_d m] with t_d = λ c_d + ω, an upper bound. With the
   penalties pen_d(m) = max_j [P_d(j) − t_d j] − [P_d(m) − t_d m] ≥ 0 (convex in m, zero at the
   LP count) every feasible m has the *exact* identity

       Σ_d P_d(m_d) = D − Σ_d pen_d(m_d) − λ·sF − ω·sK,   sF = F − Σ c m ≥ 0,  sK = K − Σ m ≥ 0.

3. **Lattice bound.** With integer costs (or costs that are integers after scaling by 2^k) the
   slacks (sK, sF) of integer counts lie on a lattice, which the LP does not see: e.g. on
   ResNet-50 every MAC cost but the classifier's is a multiple of 49, so with the NNZ budget met
   exactly the FLOP slack is fixed modulo 3. :func:`lattice_slack_bound` computes
   L ≤ min λ·sF + ω·sK over that lattice, and D_eff = D − L is an upper bound; the same bound is
   applied at every B&B node with the node's own LP multipliers.
4. **Windows.** By the identity, a selection worth more than D_eff − Δ has pen_d(m_d) < Δ in every
   class: m_d lies in a window [lo_d, hi_d] (reduced-cost fixing at the level of counts, much
   narrower than fixing item by item because penalties add up along the window).
5. **Core.** For a trial Δ the windows define a small core: the items between lo_d and hi_d
   (their scores copied out), with budgets K − Σ lo, F − Σ c lo. A branch and bound over the core
   counts solves it: each node (a box of counts) is bounded by its LP relaxation minus the
   lattice bound; the LP is solved by Kelley's cutting planes on the FLOP multiplier λ with the NNZ
   multiplier in closed form (an order statistic of the reduced scores); branching on a class
   whose LP count is fractional; depth first, pruning by bound, with a rounding heuristic (the
   budget-feasible side of the LP solution, filled greedily) at every node.
   Then OPT ≤ max(core bound, D_eff − Δ): a selection outside the windows is worth at most
   D_eff − Δ. If that does not meet the incumbent, Δ grows (up to D_eff − incumbent, where the
   windows hold every better selection) and the core is solved again.
6. **Answer.** Class counts become a selection: in each class every item above the class's
   threshold score, ties at the threshold broken by item index, so exactly m_d items are kept.

Bounds are computed in float64 and each carries a safety margin for its rounding error
(documented where it is computed); the objective is recomputed from x by :func:`finalize`.
``rel_gap`` (default 0) is the relative gap at which a node is pruned, floored at 64 ulps of the
incumbent (below the margins the bounds carry); a finished run is ``optimal``, with a gap of
order 1e-14. A time limit returns the best selection with its certified bound and status
``time_limit`` (the presort itself is not interrupted).

Feasibility is exact for integer costs (MAC counts) and budgets below 2^53; with non-integer
costs the FLOP sums are float sums, as in ``problem.evaluate``. Proof time grows with the number
of distinct costs and is longest when the lattice bound is unavailable (non-integer costs that
share no power-of-two unit): the branch and bound must then close the LP's integrality gap
alone.

Memory: the class-sorted copy and its prefix sums (two float64 arrays of p entries), the
returned bool x, and O(core) besides. No Python loop runs over items; loops run over classes,
layers, B&B nodes and cutting-plane steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pruneopt.formulations.common import LOOP_SEGMENTS
from pruneopt.solvers.constants import Status
from pruneopt.solvers.fast.joint.lagrangian import solve_dual
from pruneopt.solvers.fast.joint.sorted_layers import SortedLayers
from pruneopt.solvers.result import finalize

UNIT = 2.0**-53  # unit roundoff of float64
BLOCK = 256  # prefix sums: sequential within blocks of this many items
UNIT_LD = float(np.finfo(np.longdouble).eps) / 2  # unit roundoff of the block offsets' type
DEFAULT_REL_GAP = 0.0
CORE_TARGET = 256  # items in the first trial core (per class: at least 32)


# ===================================================================================== presort
@dataclass
class CostClasses:
    """Layers merged by equal MAC cost; ``layers`` is a SortedLayers over the D classes."""

    layers: SortedLayers
    layer_class: np.ndarray  # int64[L]: the class of each layer
    class_layers: list  # per class, its layer indices in increasing order
    positive: np.ndarray  # int64[D]: items with score > 0 per class
    prefix_err: float  # relative error bound of every prefix sum P_d(m)

    @property
    def D(self) -> int:
        return self.layers.L


def build_classes(problem) -> CostClasses:
    """Copy the scores into cost-class order and sort each class (descending), with prefix sums."""
    scores = problem.scores
    ptr = problem.group_ptr
    sizes = np.diff(ptr)
    L = sizes.size
    ucost, inv = np.unique(problem.flop_cost, return_inverse=True)
    inv = inv.astype(np.int64).reshape(L)
    D = ucost.size
    csize = np.zeros(D, dtype=np.int64)
    np.add.at(csize, inv, sizes)  # items per class
    cptr = np.concatenate(([0], np.cumsum(csize))).astype(np.int64)
    order = np.argsort(inv, kind="stable")  # layers by class, in index order within a class
    dest = np.empty(L, dtype=np.int64)
    dest[order] = np.concatenate(([0], np.cumsum(sizes[order])))[:-1] if L else dest[order]
    p = scores.size
    neg = np.empty(p, dtype=np.float64)
    # one slice copy per layer (a loop over layers; a vectorised scatter would need p-sized
    # index arrays, more memory than the copy itself)
    for a, b, at in zip(ptr[:-1].tolist(), ptr[1:].tolist(), dest.tolist()):
        if b > a:
            np.negative(scores[a:b], out=neg[at:at + b - a])
    bounds = list(zip(cptr[:-1].tolist(), cptr[1:].tolist()))
    for a, b in bounds:
        if b - a > 1:
            neg[a:b].sort(kind="quicksort")
    cum = np.empty_like(neg)
    for a, b in bounds:
        _blocked_cumsum(neg[a:b], cum[a:b])
    np.negative(cum, out=cum)  # cum[start_d + m - 1] = P_d(m)

    layers = SortedLayers.__new__(SortedLayers)  # the same structure, built over the classes
    layers.ptr = cptr
    layers.start = cptr[:-1]
    layers.size = csize
    layers.cost = ucost.astype(np.float64)
    layers.L = D
    layers.neg = neg
    layers.cum = cum
    layers.top = layers.score_at(np.zeros(D, dtype=np.int64))
    positive = layers.count_above(np.zeros(D))
    class_layers = [[] for _ in range(D)]
    for g in order.tolist():
        class_layers[int(inv[g])].append(g)
    blocks = int(csize.max(initial=0)) // BLOCK + 2
    prefix_err = (BLOCK + 3) * UNIT + blocks * UNIT_LD
    return CostClasses(layers=layers, layer_class=inv, class_layers=class_layers,
                       positive=positive, prefix_err=prefix_err)


def _blocked_cumsum(x: np.ndarray, out: np.ndarray) -> None:
    """out = cumsum(x), sequential within blocks of BLOCK, block offsets in extended precision.

    Every entry is within ((BLOCK + 3)·u + (n / BLOCK + 2)·u_ld)·Σ|x| of the exact partial sum
    (u, u_ld: unit roundoffs of float64 and of np.longdouble; 80-bit on x86, so the second term
    is negligible there).
    """
    n = x.size
    if n == 0:
        return
    nb = n // BLOCK
    full = nb * BLOCK
    if nb:
        np.cumsum(x[:full].reshape(nb, BLOCK), axis=1, out=out[:full].reshape(nb, BLOCK))
    if full < n:
        np.cumsum(x[full:], out=out[full:])
    if nb == 0:
        return
    totals = out[BLOCK - 1:full:BLOCK].astype(np.longdouble)
    offsets = np.cumsum(totals).astype(np.float64)  # offset of block j+1 = offsets[j]
    if nb > 1:
        out[BLOCK:full].reshape(nb - 1, BLOCK)[...] += offsets[:-1, None]
    if full < n:
        out[full:] += offsets[-1]


def prefix_sums(layers: SortedLayers, k: np.ndarray) -> np.ndarray:
    """P_d(k_d) per class (float64[D])."""
    return layers.prefix(np.asarray(k, dtype=np.int64))


# ================================================================================ count windows
def dual_at(layers: SortedLayers, lam: float, omega: float, K: int, F: float,
            prefix_err: float):
    """(D(λ, ω) with a rounding margin added, the LP counts m*, the class thresholds t)."""
    t = lam * layers.cost + omega
    m = layers.count_above(t)
    P = prefix_sums(layers, m)
    terms = P - t * m
    val = K * omega + F * lam + float(np.sum(terms))
    mag = K * omega + F * lam + float(np.sum(P)) + float(np.sum(t * m))
    margin = prefix_err * float(np.sum(P)) + 8 * UNIT * mag
    return val + margin, m, t


def count_windows(cc: CostClasses, t: np.ndarray, mstar: np.ndarray, delta: float,
                  cap: np.ndarray):
    """Per class the counts m ≤ cap_d with pen_d(m) < Δ: [lo_d, hi_d].

    ``cap`` bounds the useful counts (positive scores, K, ⌊F / c_d⌋); when no count up to the cap
    is in the window, the window is [lo_d, lo_d] with lo_d > cap_d, which the core's budgets
    then reject.

    pen_d(m) = [P_d(m*) − t m*] − [P_d(m) − t m] is computed from the prefix sums; the window is
    widened by the rounding error of that computation, so it holds every m whose exact penalty
    is below Δ.
    """
    layers = cc.layers
    base = prefix_sums(layers, mstar) - t * mstar
    top = prefix_sums(layers, np.maximum(cap, mstar))
    err = cc.prefix_err * 2.0 * top + 8 * UNIT * (np.abs(base) + 2.0 * t * np.maximum(cap, mstar)
                                                   + top)
    lim = delta + err

    def pen(m):
        return base - (prefix_sums(layers, m) - t * m)

    # lower end: smallest m in [0, m*] with pen < lim (pen decreases on [0, m*])
    lo, hi = np.zeros_like(mstar), mstar.copy()
    while np.any(lo < hi):
        mid = (lo + hi) >> 1
        ok = pen(mid) < lim
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    w_lo = lo
    # upper end: largest m in [m*, max(cap, m*)] with pen < lim (pen increases there)
    lo, hi = mstar.copy(), np.maximum(cap, mstar)
    while np.any(lo < hi):
        mid = (lo + hi + 1) >> 1
        ok = pen(mid) < lim
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid - 1)
    return w_lo, np.maximum(w_lo, np.minimum(lo, cap))


# ============================================================================== core node LP
@dataclass
class _Eval:
    lam: float
    val: float
    omega: float
    s_right: float  # right derivative of φ at lam
    s_left: float  # left derivative


def _phi(lam: float, v: np.ndarray, c: np.ndarray, K_r: int, F_r: float) -> _Eval:
    """φ(λ) = F_r λ + max{Σ (v − λc) y : Σ y ≤ K_r, 0 ≤ y ≤ 1} and its one-sided derivatives."""
    a = v - lam * c
    n = a.size
    if n == 0:
        return _Eval(lam, F_r * lam, 0.0, F_r, F_r)
    if n > K_r:
        kth = np.partition(a, n - K_r - 1)[n - K_r - 1]  # the (K_r+1)-th largest reduced score
        omega = max(0.0, float(kth))
    else:
        omega = 0.0
    gt = a > omega
    n_gt = int(np.count_nonzero(gt))
    val = F_r * lam + K_r * omega + float((a[gt] - omega).sum())
    cy = float(c[gt].sum())
    room = K_r - n_gt
    lo_fill = hi_fill = 0.0
    if room > 0:
        eq = a == omega
        n_eq = int(np.count_nonzero(eq))
        if n_eq:
            ec = np.sort(c[eq])
            take = min(room, n_eq)
            hi_fill = float(ec[n_eq - take:].sum())
            if omega > 0:
                lo_fill = float(ec[:take].sum())
    return _Eval(lam, val, omega, F_r - (cy + lo_fill), F_r - (cy + hi_fill))


def _selection_counts(ev: _Eval, v, c, cls, K_r: int, Dc: int, cheapest: bool) -> np.ndarray:
    """Class counts of an optimal inner selection at ev.lam (ties filled cheapest or dearest)."""
    a = v - ev.lam * c
    gt = a > ev.omega
    counts = np.bincount(cls[gt], minlength=Dc).astype(np.int64)
    room = K_r - int(counts.sum())
    if room > 0 and not (cheapest and ev.omega <= 0):
        eq = np.flatnonzero(a == ev.omega)
        if eq.size:
            order = np.argsort(c[eq], kind="stable")
            pick = eq[order[:room]] if cheapest else eq[order[::-1][:room]]
            counts += np.bincount(cls[pick], minlength=Dc)
    return counts


@dataclass
class _NodeLP:
    bound: float  # LP value of the free part (with rounding margin)
    lam: float
    counts_lo: np.ndarray  # a selection meeting both budgets (from the λ ≥ λ* side)
    counts_hi: np.ndarray  # a selection over the FLOP budget (λ ≤ λ* side), or = counts_lo
    theta: float  # LP solution = θ·counts_hi + (1 − θ)·counts_lo
    evaluations: int
    dual_lam: float = 0.0  # the dual point (λ, ω) at which ``bound`` was evaluated
    dual_omega: float = 0.0
    bracket: tuple = ()  # the final λ bracket: where the children's searches start


def _node_lp(v, c, cls, class_cost: np.ndarray, K_r: int, F_r: float, hints: tuple,
             tol: float) -> _NodeLP:
    """LP relaxation over free items (values v, costs c, classes cls) with budgets K_r, F_r.

    Kelley's cutting planes on φ(λ) = min_ω D(λ, ω) (convex, piecewise linear): the next λ is
    where the tangents at the two ends of the bracket meet, and their meeting value is a lower
    bound on min φ; it stops at a λ whose one-sided derivatives have opposite signs (exact), or
    when the best φ is within ``tol`` of the lower bound. Every φ value is an upper bound. The
    bracket starts from ``hints`` (the parent's final bracket), else from 0 and λ_max.
    """
    Dc = class_cost.size
    zeros = np.zeros(Dc, dtype=np.int64)
    if v.size == 0 or K_r <= 0 or F_r <= 0:
        # nothing can be taken: every item costs c > 0 (and K_r = 0 allows none)
        return _NodeLP(0.0, 0.0, zeros, zeros, 0.0, 0)
    sum_v = float(v.sum())
    # beyond λmax every reduced score is < 0 (the factor keeps rounding on that side)
    lam_max = float(np.max(v / c)) * (1.0 + 8 * UNIT)
    evals = 0
    best = Lp = Rp = exact = None

    def consider(e: _Eval) -> None:
        nonlocal best, Lp, Rp, exact
        if best is None or e.val < best.val:
            best = e
        if e.s_left <= 0 <= e.s_right or (e.lam == 0.0 and e.s_right >= 0):
            exact = e
        elif e.s_right < 0:
            if Lp is None or e.lam > Lp.lam:
                Lp = e
        elif Rp is None or e.lam < Rp.lam:
            Rp = e

    for h in sorted(set(hints)):
        if exact is None and 0.0 < h < lam_max:
            consider(_phi(h, v, c, K_r, F_r))
            evals += 1
    if exact is None and Lp is None:
        consider(_phi(0.0, v, c, K_r, F_r))
        evals += 1
    if exact is None and Rp is None:
        consider(_phi(lam_max, v, c, K_r, F_r))  # φ'_+(λmax) = F_r > 0: exact or a right end
        evals += 1
    lower = -math.inf
    while exact is None and evals < 200:
        gL, gR = Lp.s_right, Rp.s_left  # gL < 0 < gR
        lam = (Rp.val - Lp.val + gL * Lp.lam - gR * Rp.lam) / (gL - gR)
        if not (Lp.lam < lam < Rp.lam):
            lam = 0.5 * (Lp.lam + Rp.lam)
            if not (Lp.lam < lam < Rp.lam):
                break
        else:
            lower = max(lower, Lp.val + gL * (lam - Lp.lam))
        consider(_phi(lam, v, c, K_r, F_r))
        evals += 1
        if best.val - lower <= tol:
            break
    mag = max(sum_v, F_r * best.lam + K_r * best.omega)
    bound = best.val + _lp_margin(best, mag)
    if exact is not None:
        lo = _selection_counts(exact, v, c, cls, K_r, Dc, cheapest=True)
        if exact.lam == 0.0:  # FLOPs do not bind at the optimum: the top K_r items
            hi = lo
        else:
            hi = _selection_counts(exact, v, c, cls, K_r, Dc, cheapest=False)
        lam_out = exact.lam
        bracket = (lam_out,)
    else:
        lo = _selection_counts(Rp, v, c, cls, K_r, Dc, cheapest=False)
        hi = _selection_counts(Lp, v, c, cls, K_r, Dc, cheapest=True)
        lam_out = best.lam
        bracket = (Lp.lam, Rp.lam)
    c_lo, c_hi = float(lo @ class_cost), float(hi @ class_cost)
    theta = 0.0 if c_hi <= c_lo else min(max((F_r - c_lo) / (c_hi - c_lo), 0.0), 1.0)
    return _NodeLP(bound, lam_out, lo, hi, theta, evals, best.lam, best.omega, bracket)


def _lp_margin(e: _Eval, mag: float) -> float:
    """Rounding error of a φ evaluation: a few ulps of every magnitude that enters it."""
    return 16 * UNIT * (abs(mag) + abs(e.val) + 1e-300) + 64 * UNIT * abs(mag)


# ============================================================================ lattice bound
@dataclass(frozen=True)
class Units:
    """MAC costs and the FLOP budget in exact integer units of 2^-k MACs.

    Every float is a dyadic rational, so with k the largest binary exponent among the costs'
    denominators each cost is exactly an integer number of units, and a selection's FLOPs are
    compared with the budget in exact integer arithmetic (Python ints), never by a rounded float
    sum. The budget is F_units + F_frac units (F_units an integer, 0 ≤ F_frac < 1):

    * integer costs (MAC counts, k = 0): exactly F — a selection one MAC over is infeasible;
    * other costs: F·(1 + (L + 2)·2⁻⁵³), i.e. F plus the largest rounding error of a float sum
      of L layer terms, so every selection whose FLOPs a float evaluation puts within F (as
      ``problem.evaluate`` does) is admitted, e.g. 5 items of cost 0.1 under F = 0.5.
    """

    k: int
    cost: tuple  # Python ints, one per class
    F_units: int
    F_frac: float
    vec: np.ndarray | None  # int64 costs when every Σ cost·m fits in int64, else None
    F_slack: float = 0.0  # FLOPs admitted beyond F (0 for integer costs)

    @classmethod
    def of(cls, costs: np.ndarray, F: float, max_count: int, layers: int) -> Units:
        fr = [Fraction(float(c)) for c in np.asarray(costs, dtype=np.float64).tolist()]
        k = max((q.denominator.bit_length() - 1 for q in fr), default=0)
        cost = tuple(q.numerator << (k - (q.denominator.bit_length() - 1)) for q in fr)
        F_ext = Fraction(float(F))
        if k > 0:
            F_ext *= Fraction(2**53 + layers + 2, 2**53)
        Fs = F_ext * (1 << k)
        F_units = math.floor(Fs)
        safe = bool(cost) and max(cost) * max(max_count, 1) * max(len(cost), 1) < 2**62
        vec = np.array(cost, dtype=np.int64) if safe else None
        return cls(k, cost, F_units, float(Fs - F_units), vec, float(F_ext - Fraction(float(F))))

    def dot(self, m: np.ndarray, idx: np.ndarray | None = None) -> int:
        """Σ_d cost_d·m_d exactly (over the classes ``idx`` when given)."""
        if self.vec is not None:
            c = self.vec if idx is None else self.vec[idx]
            return int(np.dot(c, np.asarray(m, dtype=np.int64)))
        cs = self.cost if idx is None else [self.cost[i] for i in np.asarray(idx).tolist()]
        return sum(c * int(v) for c, v in zip(cs, np.asarray(m).tolist()))

    def sub(self, idx: np.ndarray) -> Units:
        """The same units restricted to the classes ``idx`` (F unchanged)."""
        cost = tuple(self.cost[i] for i in np.asarray(idx).tolist())
        vec = None if self.vec is None else self.vec[idx]
        return Units(self.k, cost, self.F_units, self.F_frac, vec, self.F_slack)


LATTICE_SCAN = 1 << 12  # slack values scanned by the lattice bound (beyond them: a linear bound)


def lattice_slack_bound(costs, K_r: int, B: int, f: float, lam_unit: float, omega: float,
                        width_one: int | None = None) -> float:
    """A lower bound on λ·sF + ω·sK over the integer count vectors of the classes ``costs``.

    Costs are integers (units of 2^-k MACs), the FLOP budget left is B + f units (B an integer,
    0 ≤ f < 1) and ``lam_unit`` is λ per unit. The slacks sK = K_r − Σ τ ≥ 0 and
    sF = B + f − Σ c τ = J + f (J ≥ 0 an integer) of integer counts τ lie on a lattice: for two
    or more classes (c_a the first cost, g = gcd of the c_d − c_a), J − c_a·sK ≡ B − c_a·K_r
    (mod g), so for each sK ≥ 0 the smallest J is (B − c_a K_r + c_a sK) mod g. For one class
    (at most ``width_one`` items) the count is one integer, as large as the budgets allow. Only
    the slacks' signs and the lattice are used, so the LP bound minus this value is still an
    upper bound; it sees what the LP cannot: that the budgets can be met exactly only on the
    lattice (ResNet-50: every MAC cost but the classifier's is a multiple of 49, so with the NNZ
    budget met the FLOP slack is fixed mod 3).
    """
    if not costs or (lam_unit <= 0 and omega <= 0) or K_r < 0 or B < 0:
        return 0.0
    if len(costs) == 1:
        c = costs[0]
        top = K_r if width_one is None else min(K_r, width_one)
        tau = min(top, B // c)
        value = lam_unit * (float(B - c * tau) + f) + omega * float(K_r - tau)
        return max(0.0, value * (1 - 4 * UNIT))
    a = costs[0]
    g = 0
    for c in costs[1:]:
        g = math.gcd(g, abs(c - a))
    if g <= 1 or g >= 2**40:
        return max(0.0, lam_unit * f * (1 - 4 * UNIT))  # J ≥ 0 only
    n = min(g, LATTICE_SCAN)
    r = (B - a * K_r) % g
    sK = np.arange(n, dtype=np.int64)
    J = (r + (a % g) * sK) % g  # < 2^40 · 2^16: no overflow
    vals = omega * sK.astype(np.float64) + lam_unit * (J.astype(np.float64) + f)
    best = float(vals.min())
    if n < g:
        best = min(best, omega * n)  # every larger sK costs at least ω·n
    return max(0.0, best * (1 - 4 * UNIT))


# ============================================================================ core B&B
@dataclass
class _Core:
    classes: np.ndarray  # int64[Dc]: the class of each core class
    cost: np.ndarray  # float64[Dc]
    width: np.ndarray  # int64[Dc]: free items per core class
    v: np.ndarray  # float64[W]: scores of the core items, by class, descending within a class
    c: np.ndarray  # float64[W]
    cls: np.ndarray  # int64[W]: core class of each item
    pos: np.ndarray  # int64[W]: position within its class window
    starts: np.ndarray  # int64[Dc]: first item of each core class in v
    V_all: np.ndarray  # per core class its local prefix sums (width + 1 each), concatenated
    V_off: np.ndarray  # int64[Dc]: where each class's prefix sums start in V_all
    K: int  # NNZ budget left for the core
    units: Units  # the core classes' costs; units.F_units = FLOP budget left (exact)
    lattice: bool  # apply the lattice bound at the nodes


@dataclass
class _Search:
    best: float  # best core value found (core-local), or threshold from the global incumbent
    best_counts: np.ndarray | None
    pruned_max: float = -math.inf
    nodes: int = 0
    lp_evaluations: int = 0
    timed_out: bool = False
    open_max: float = -math.inf
    lattice_gain: float = 0.0


def _core_value(core: _Core, tau: np.ndarray) -> float:
    return float(core.V_all[core.V_off + tau].sum())


def fill_counts(k: np.ndarray, upper: np.ndarray, key: np.ndarray, K_left: int, F_left: int,
                units: Units) -> np.ndarray:
    """Add items class by class (highest ``key`` first) while both budgets allow, in exact
    integer arithmetic (F_left in units); never beyond ``upper``."""
    k = np.array(k, dtype=np.int64)
    if K_left <= 0 or F_left <= 0:
        return k
    for d in np.argsort(-key, kind="stable").tolist():
        if K_left <= 0:
            break
        fit = min(int(upper[d] - k[d]), K_left, F_left // units.cost[d])
        if fit > 0:
            k[d] += fit
            K_left -= fit
            F_left -= fit * units.cost[d]
    return k


def _greedy_core(core: _Core, tau: np.ndarray, u: np.ndarray, lam: float) -> np.ndarray:
    """Fill a budget-feasible core selection, best next reduced score first per class."""
    can = tau < u
    nxt = np.where(can, core.v[np.minimum(core.starts + tau, max(core.v.size - 1, 0))], -np.inf)
    K_left = core.K - int(tau.sum())
    F_left = core.units.F_units - core.units.dot(tau)
    return fill_counts(tau, u, nxt - lam * core.cost, K_left, F_left, core.units)


def _solve_core(core: _Core, search: _Search, tol_abs: float, lam0: float,
                deadline: float | None, root_bound: float) -> None:
    """Depth-first branch and bound over the core counts; updates ``search`` in place.

    ``root_bound`` bounds the core's optimum (core-local value) before any node is solved.
    Budgets are checked in exact integer units; the LP works in float64 with margins.
    """
    Dc = core.cost.size
    cost = core.cost
    units = core.units
    scale = math.ldexp(1.0, -units.k)  # FLOPs per unit
    stack = [(np.zeros(Dc, dtype=np.int64), core.width.copy(), root_bound, (lam0,))]
    while stack:
        if deadline is not None and time.perf_counter() > deadline:
            search.timed_out = True
            search.open_max = max(b for _, _, b, _ in stack)
            return
        l, u, parent_bound, hints = stack.pop()
        if parent_bound <= search.best + tol_abs:
            search.pruned_max = max(search.pruned_max, parent_bound)
            continue
        K_r = core.K - int(l.sum())
        Fu_r = units.F_units - units.dot(l)
        if K_r < 0 or Fu_r < 0:
            continue  # no selection in this box meets the budgets
        F_r = math.ldexp(float(Fu_r), -units.k) + units.F_frac * scale
        search.nodes += 1
        forced = _core_value(core, l)
        free = (core.pos >= l[core.cls]) & (core.pos < u[core.cls])
        fv, fc, fcls = core.v[free], core.c[free], core.cls[free]
        # Kelley stops when within a small part of the pruning tolerance of the LP optimum
        tol_k = max(0.01 * tol_abs, 32 * UNIT * (abs(forced) + float(np.sum(fv))))
        lp = _node_lp(fv, fc, fcls, cost, K_r, F_r, hints, tol_k)
        search.lp_evaluations += lp.evaluations
        bound = forced + lp.bound + 8 * UNIT * abs(forced)
        if core.lattice and lp.bound > 0 and bound > search.best + tol_abs:
            free_cls = np.flatnonzero(u > l)
            lat = lattice_slack_bound([units.cost[d] for d in free_cls.tolist()], K_r, Fu_r,
                                      units.F_frac, lp.dual_lam * scale, lp.dual_omega,
                                      int(u[free_cls[0]] - l[free_cls[0]]) if free_cls.size else 0)
            bound -= lat
            search.lattice_gain = max(search.lattice_gain, lat)
        # rounding heuristic: the budget-feasible side of the LP solution, filled greedily
        lp_int = None  # the LP solution when it is integral (as free-item counts)
        diff = np.flatnonzero(lp.counts_hi != lp.counts_lo)
        if diff.size == 0 or lp.theta <= 0.0:
            lp_int = lp.counts_lo
        elif lp.theta >= 1.0:
            lp_int = lp.counts_hi
        int_ok = False
        for cnt in (lp.counts_lo, lp.counts_hi):
            if int(cnt.sum()) > K_r or units.dot(cnt) > Fu_r:
                continue  # (the float LP can put a selection just over a budget)
            if cnt is lp_int:
                int_ok = True
            tau = _greedy_core(core, l + cnt, u, lp.lam)
            val = _core_value(core, tau)
            if val > search.best:
                search.best, search.best_counts = val, tau
        if bound <= search.best + tol_abs:
            search.pruned_max = max(search.pruned_max, bound)
            continue
        if int_ok or diff.size == 0:
            # the LP solution is integral and was evaluated: this box is solved
            search.pruned_max = max(search.pruned_max, bound)
            continue
        frac = l[diff] + lp.counts_lo[diff] + lp.theta * (lp.counts_hi[diff] - lp.counts_lo[diff])
        part = frac - np.floor(frac)
        score = np.minimum(part, 1.0 - part)
        j = int(np.argmax(score + 1e-9 * cost[diff] / cost.max()))
        d = int(diff[j])
        fl = int(math.floor(frac[j]))
        fl = min(max(fl, int(l[d])), int(u[d]) - 1)
        down_u = u.copy()
        down_u[d] = fl
        up_l = l.copy()
        up_l[d] = fl + 1
        down = (l, down_u, bound, lp.bracket)
        up = (up_l, u, bound, lp.bracket)
        if part[j] >= 0.5:
            stack.append(down)
            stack.append(up)
        else:
            stack.append(up)
            stack.append(down)


def _make_core(cc: CostClasses, lo: np.ndarray, hi: np.ndarray, K: int, units: Units,
               lattice: bool) -> _Core:
    layers = cc.layers
    width = hi - lo
    act = np.flatnonzero(width > 0)
    wa = width[act].astype(np.int64)
    parts = [-layers.neg[s + a:s + b] for s, a, b in
             zip(layers.start[act].tolist(), lo[act].tolist(), hi[act].tolist())]
    v = np.concatenate(parts) if parts else np.zeros(0)
    Vs = [np.concatenate(([0.0], np.cumsum(x))) for x in parts]
    V_off = np.concatenate(([0], np.cumsum(wa + 1)))[:-1].astype(np.int64)
    V_all = np.concatenate(Vs) if Vs else np.zeros(0)
    cost = layers.cost[act]
    W = int(wa.sum())
    cls = np.repeat(np.arange(act.size, dtype=np.int64), wa)
    starts = np.concatenate(([0], np.cumsum(wa)))[:-1].astype(np.int64)
    pos = np.arange(W, dtype=np.int64) - np.repeat(starts, wa)
    sub = units.sub(act)
    sub = Units(sub.k, sub.cost, units.F_units - units.dot(lo), units.F_frac, sub.vec,
                units.F_slack)
    return _Core(classes=act, cost=cost, width=wa, v=v, c=cost[cls], cls=cls, pos=pos,
                 starts=starts, V_all=V_all, V_off=V_off, K=K - int(lo.sum()), units=sub,
                 lattice=lattice)


# ===================================================================================== driver
def _select(problem, cc: CostClasses, m: np.ndarray) -> np.ndarray:
    """bool[p] keeping, in each class, the m_d largest scores (ties at the threshold by index)."""
    layers = cc.layers
    scores = problem.scores
    ptr = problem.group_ptr
    m = np.asarray(m, dtype=np.int64)
    thr = np.where(m > 0, layers.score_at(np.maximum(m - 1, 0)), np.inf)
    layer_thr = thr[cc.layer_class] if cc.layer_class.size else np.zeros(0)
    L = ptr.size - 1
    if L <= LOOP_SEGMENTS:
        x = np.empty(scores.size, dtype=bool)
        for g, (a, b) in enumerate(zip(ptr[:-1].tolist(), ptr[1:].tolist())):
            np.greater(scores[a:b], layer_thr[g], out=x[a:b])
    else:
        x = scores > np.repeat(layer_thr, np.diff(ptr))
    above = layers.count_above(thr)
    for d in np.flatnonzero(above < m).tolist():
        need = int(m[d] - above[d])
        for g in cc.class_layers[d]:
            if need <= 0:
                break
            a, b = int(ptr[g]), int(ptr[g + 1])
            tied = np.flatnonzero(scores[a:b] == thr[d])[:need]
            x[a + tied] = True
            need -= tied.size
    return x


def exact_joint(problem, *, time_limit: float | None = None, rel_gap: float = DEFAULT_REL_GAP):
    """Solve the joint ILP with a proof; returns (x, bound, backend_status, info)."""
    t_start = time.perf_counter()
    deadline = None if time_limit is None else t_start + float(time_limit)
    secs: dict[str, float] = {}
    K, F = int(problem.nnz_budget), float(problem.flop_budget)
    p = problem.num_items

    t0 = time.perf_counter()
    cc = build_classes(problem)
    layers = cc.layers
    secs["presort"] = time.perf_counter() - t0
    info = {"classes": cc.D, "items": p, "core_items": 0, "nodes": 0, "dual_evaluations": 0,
            "lp_evaluations": 0, "rounds": 0, "seconds": secs}

    # ---------------------------------------------------------------- LP dual and incumbent
    t0 = time.perf_counter()
    units = Units.of(layers.cost, F, int(layers.size.max(initial=0)), problem.num_groups)
    # useful counts per class: positive scores, at most K, at most ⌊F / c_d⌋ items (exactly)
    fit = np.array([min(units.F_units // c, 2**62) for c in units.cost], dtype=np.int64)
    cap = np.minimum(np.minimum(cc.positive, K), fit.reshape(cc.D))
    zeros = np.zeros(cc.D, dtype=np.int64)
    if p == 0 or K == 0 or not np.any(cap > 0):
        # nothing with a positive score fits: 0 is optimal, exactly
        dual = None
        k_best = zeros
        D_val, mstar, thr = 0.0, zeros, np.zeros(cc.D)
        lam = omega = 0.0
    else:
        dual = solve_dual(layers, K, F)
        info["dual_evaluations"] = dual.evaluations
        lam, omega = dual.lam, dual.omega
        # D at the budget the selections may use (F plus the float slack for non-integer costs)
        F_dual = F + 2.0 * units.F_slack
        D_val, mstar, thr = dual_at(layers, lam, omega, K, F_dual, cc.prefix_err)
        k0 = np.minimum(dual.counts, cap)
        if int(k0.sum()) > K or units.dot(k0) > units.F_units:
            # rounding at the end of the bisection can leave λ_hi's counts just over a budget
            k0 = zeros
        key = layers.score_at(k0) - lam * layers.cost
        k_best = fill_counts(k0, cap, key, K - int(k0.sum()), units.F_units - units.dot(k0),
                             units)
    z_best = float(np.sum(prefix_sums(layers, k_best))) if cc.D else 0.0
    secs["dual"] = time.perf_counter() - t0
    info["lp_bound"] = D_val
    # prune at rel_gap, but never below a few ulps of the objective (the bounds carry margins
    # of that size, so an exact tie between a bound and the incumbent must still prune)
    tol_rel = max(rel_gap, 64 * UNIT)
    tol_abs = tol_rel * abs(z_best)  # relative to the incumbent (the LP may be far above it)
    z_err = cc.prefix_err * abs(z_best)
    # the lattice of integer slacks lowers the root bound (see lattice_slack_bound)
    lat_root = 0.0
    if dual is not None:
        act = np.flatnonzero(cap > 0)  # some optimal selection uses no other class
        lat_root = lattice_slack_bound([units.cost[d] for d in act.tolist()], K, units.F_units,
                                       units.F_frac, math.ldexp(lam, -units.k), omega,
                                       int(cap[act[0]]))
    D_eff = D_val - lat_root
    info["lattice_root"] = lat_root

    # ---------------------------------------------------------------- windows and core B&B
    t0 = time.perf_counter()
    bound = max(D_eff, z_best)
    status = Status.OPTIMAL
    if D_eff - z_best > tol_abs:
        delta = _initial_delta(cc, thr, mstar, D_eff - z_best, cap)
        while True:
            info["rounds"] += 1
            full = delta >= D_eff - z_best
            if full:
                delta = D_eff - z_best
            lo, hi = count_windows(cc, thr, mstar, delta, cap)
            core = _make_core(cc, lo, hi, K, units, lattice=True)
            info["core_items"] = int(core.v.size)
            fixed = float(np.sum(prefix_sums(layers, lo)))
            fixed_err = cc.prefix_err * abs(fixed) + 8 * UNIT * abs(fixed)
            search = _Search(best=z_best - fixed, best_counts=None)
            if core.K >= 0 and core.units.F_units >= 0:
                # the core's optimum plus the fixed part is at most D_eff
                _solve_core(core, search, tol_abs, lam, deadline, D_eff - fixed + fixed_err)
            info["nodes"] += search.nodes
            info["lp_evaluations"] += search.lp_evaluations
            if search.best_counts is not None:
                m = lo.copy()
                m[core.classes] += search.best_counts
                z = float(np.sum(prefix_sums(layers, m)))
                if z > z_best:
                    z_best, k_best = z, m
                    z_err = cc.prefix_err * abs(z_best)
                    tol_abs = tol_rel * abs(z_best)
            # every leaf of the finished search is pruned or solved with its bound recorded
            core_bound = fixed + max(search.pruned_max, search.open_max) + fixed_err
            if core.K < 0 or core.units.F_units < 0:
                core_bound = -math.inf
            # outside the windows every selection is worth at most D_eff − Δ (≤ z_best when full)
            outside = z_best if full else D_eff - delta
            bound = max(core_bound, outside, z_best + z_err)
            if search.timed_out:
                status = Status.TIME_LIMIT
                break
            if bound - z_best <= tol_abs or full:
                break
            if deadline is not None and time.perf_counter() > deadline:
                status = Status.TIME_LIMIT
                break
            # grow Δ: at least 16×, and at least halfway (geometrically) to the full gap
            delta = max(16.0 * delta, math.sqrt(delta * (D_eff - z_best)))
    bound = max(min(bound, D_eff), z_best + z_err)
    if status != "time_limit":
        status = (Status.OPTIMAL if bound - z_best <= max(tol_abs, 1e-9 * abs(z_best))
                  else Status.FEASIBLE)
    secs["core"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    layers.cum = None  # the prefix sums are done with: free them before x is built
    x = _select(problem, cc, k_best)
    secs["select"] = time.perf_counter() - t0
    info["objective_counts"] = z_best
    info["lambda"], info["omega"] = lam, omega
    return x, bound, status, info


def _initial_delta(cc: CostClasses, thr, mstar, gap: float, cap) -> float:
    """The largest Δ ≤ gap (by bisection on log Δ) whose windows hold about CORE_TARGET items."""
    target = max(CORE_TARGET, 32 * cc.D)
    lo, hi = math.log(max(gap, 1e-300)) - 60.0, math.log(max(gap, 1e-300))

    def size(logd):
        a, b = count_windows(cc, thr, mstar, math.exp(logd), cap)
        return int(np.sum(b - a))

    if size(hi) <= target:
        return gap
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if size(mid) <= target:
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


def solve_exact(problem, *, time_limit=None, rel_gap: float = DEFAULT_REL_GAP):
    """The registered ``exact`` solver: :func:`exact_joint` checked by :func:`finalize`."""
    rel_gap = float(rel_gap)
    if not (rel_gap >= 0.0 and math.isfinite(rel_gap)):
        raise ValueError(f"rel_gap: must be a finite number >= 0, got {rel_gap!r}")
    x, bound, status, info = exact_joint(problem, time_limit=time_limit, rel_gap=rel_gap)
    msg = (f"{info['classes']} cost classes; core of {info['core_items']} items, "
           f"{info['nodes']} B&B nodes, {info['rounds']} window rounds")
    return finalize(problem, solver="exact", x=x, bound=bound, backend_status=status,
                    backend="numpy", backend_version=np.__version__,
                    options={"time_limit": time_limit, "rel_gap": rel_gap}, message=msg,
                    info=info)
